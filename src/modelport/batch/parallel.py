"""Worker processes for ``--workers N``: the parent reads chunks, N processes score and write parts.

For CSV and JSON lines the parent streams the input (they can only be read in order) and hands
each chunk to a worker as Arrow IPC bytes; Parquet workers read their own chunks (row groups are
randomly accessible), so the parent only hands out chunk numbers. Each worker holds its own bundle (sent once, as ``.mpk`` bytes, when
it starts; nothing is pickled but plain bytes and strings) and ONNX Runtime session, scores the
chunk and commits it to the work directory itself, so the parent never holds more than
``2 * N`` chunks. Processes are started with ``spawn``: forking a parent that already runs ONNX
Runtime threads is not safe.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from modelport._deps import require

_STATE: dict[str, Any] = {}


def _init(bundle_bytes: bytes, schema_ipc: bytes, keep: list[str], on_error: str, prefix: str,
          threads: int | None, workdir: str, parquet: tuple[list[str], list[str], int] | None) -> None:
    from modelport.batch.resume import WorkDir
    from modelport.batch.score import ArrowChunkScorer
    from modelport.bundle.core import Bundle
    from modelport.runtime.session import Runtime

    pa = require("pyarrow")
    bundle = Bundle.from_bytes(bundle_bytes, origin="<worker bundle>")
    schema = pa.ipc.read_schema(pa.py_buffer(schema_ipc))
    runtime = Runtime(bundle, intra_op_threads=threads, inter_op_threads=1)
    _STATE["scorer"] = ArrowChunkScorer(bundle, schema, keep=keep, on_error=on_error, prefix=prefix,  # type: ignore[arg-type]
                                        runtime=runtime)
    _STATE["workdir"] = WorkDir(Path(workdir))
    _STATE["pa"] = pa
    if parquet is not None:
        from modelport.batch.io import open_source

        files, columns, chunk_rows = parquet
        _STATE["source"] = (open_source(files, format="parquet"), columns, chunk_rows)


def _score(index: int, first_row: int, payload: bytes | None) -> tuple[int, int, int, int]:
    pa = _STATE["pa"]
    if payload is None:  # read our own chunk of the Parquet input
        source, columns, chunk_rows = _STATE["source"]
        _, batch = next(source.batches(chunk_rows, columns=columns, start_chunk=index))
    else:
        with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
            batch = reader.read_next_batch()
    out, rejects = _STATE["scorer"].score(batch, first_row)
    _STATE["workdir"].write_part(index, out, rejects)
    return index, batch.num_rows, out.num_rows, len(rejects)


def _ipc(batch: Any) -> bytes:
    pa = require("pyarrow")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue().to_pybytes()


def run_workers(
    *,
    workers: int,
    bundle_bytes: bytes,
    schema: Any,
    keep: list[str],
    on_error: str,
    prefix: str,
    threads: int | None,
    workdir: Path,
    chunks: Iterator[tuple[int, int, Any]],
    on_done: Callable[[int, int, int, int], None],
    parquet: tuple[list[str], list[str], int] | None = None,
) -> None:
    """Score ``(index, first_row, batch)`` chunks in ``workers`` processes; ``on_done`` per chunk.

    With ``parquet=(files, columns, chunk_rows)`` the batch is None and workers read the chunk.
    """
    ctx = multiprocessing.get_context("spawn")
    schema_ipc = schema.serialize().to_pybytes()
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init,
        initargs=(bundle_bytes, schema_ipc, keep, on_error, prefix, threads, str(workdir), parquet),
    ) as pool:
        pending: set[Future[tuple[int, int, int, int]]] = set()
        try:
            for index, first_row, batch in chunks:
                while len(pending) >= 2 * workers:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        on_done(*f.result())
                payload = None if batch is None else _ipc(batch)
                pending.add(pool.submit(_score, index, first_row, payload))
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    on_done(*f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise
