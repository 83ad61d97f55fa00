"""A batch worker process: ``python -m modelport.batch.worker``, driven by its parent over stdin/stdout.

Messages both ways are a 4-byte big-endian length, a JSON header of that length, then
``header["size"]`` bytes of payload (nothing is pickled):

* parent -> worker ``init`` (payload: the bundle's ``.mpk`` bytes, then the input schema as
  Arrow IPC; the header gives both sizes and the scoring options); the worker answers ``ready``.
* parent -> worker ``score`` with ``index`` and ``first_row``, payload the chunk as an Arrow IPC
  stream; or ``range`` with ``start`` and ``stop`` (chunk numbers of a Parquet input, which the
  worker reads itself, streaming through the range). For each chunk the worker commits its part
  to the work directory and answers ``done`` with ``[index, rows in, rows out, rejects]``; after
  the last one of the message it answers ``idle``.
* any failure is answered with ``error`` (``type``, ``message``, ``hint``) and ends the worker.
* end of input on stdin ends the worker.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from modelport._deps import require

if TYPE_CHECKING:
    from modelport.runtime.session import Runtime

_LEN = struct.Struct(">I")
MAX_HEADER = 1 << 20


def write_message(out: IO[bytes], header: dict[str, Any], payload: bytes = b"") -> None:
    head = json.dumps({**header, "size": len(payload)}).encode()
    out.write(_LEN.pack(len(head)) + head)
    if payload:
        out.write(payload)
    out.flush()


def read_message(inp: IO[bytes]) -> tuple[dict[str, Any], bytes]:
    """One message; EOFError at a clean end of input, ValueError for a malformed one."""
    raw = inp.read(_LEN.size)
    if not raw:
        raise EOFError("end of input")
    if len(raw) < _LEN.size:
        raise ValueError("truncated message length")
    (n,) = _LEN.unpack(raw)
    if n > MAX_HEADER:
        raise ValueError(f"message header of {n} bytes")
    head = inp.read(n)
    if len(head) < n:
        raise ValueError("truncated message header")
    header = json.loads(head)
    size = int(header.get("size", 0))
    payload = inp.read(size) if size else b""
    if len(payload) < size:
        raise ValueError("truncated message payload")
    return header, payload


class ChunkWorker:
    """One process's scorer: its bundle, ONNX Runtime session, work directory and (for Parquet) input.

    Built from a runtime this process already holds (a Dask worker's, say), or with
    :meth:`from_bytes` from the bundle's ``.mpk`` bytes and the input schema (worker processes).
    """

    def __init__(self, runtime: Runtime, schema: Any, *, keep: list[str], on_error: str, prefix: str,
                 workdir: str, parquet: Any = None, durable: bool = True, log: Any = None) -> None:
        from modelport.batch.resume import WorkDir
        from modelport.batch.score import ArrowChunkScorer

        self.pa = require("pyarrow")
        self.scorer = ArrowChunkScorer(runtime.bundle, schema, keep=keep, on_error=on_error,  # type: ignore[arg-type]
                                       prefix=prefix, runtime=runtime)
        if log is not None:  # score --log: this process writes its own log files
            from modelport.monitor.log import ScoredChunks

            self.scorer.log = ScoredChunks(log, runtime.bundle)
        self.workdir = WorkDir(Path(workdir), durable=durable)
        self.source: tuple[Any, list[str], int] | None = None
        if parquet is not None:
            from modelport.batch.io import open_source

            files, columns, chunk_rows = parquet
            self.source = (open_source(list(files), format="parquet"), list(columns), int(chunk_rows))

    @classmethod
    def from_bytes(cls, bundle_bytes: bytes, schema_ipc: bytes, *, keep: list[str], on_error: str, prefix: str,
                   threads: int | None, workdir: str, parquet: Any = None, log: Any = None) -> ChunkWorker:
        """A worker with its own session for the bundle ``bundle_bytes`` and the schema ``schema_ipc``."""
        from modelport.batch.score import BATCH_SESSION_CONFIG
        from modelport.bundle.core import Bundle
        from modelport.runtime.session import Runtime

        pa = require("pyarrow")
        bundle = Bundle.from_bytes(bundle_bytes, origin="<worker bundle>")
        schema = pa.ipc.read_schema(pa.py_buffer(schema_ipc))
        runtime = Runtime(bundle, intra_op_threads=threads, inter_op_threads=1, session_config=BATCH_SESSION_CONFIG)
        return cls(runtime, schema, keep=keep, on_error=on_error, prefix=prefix, workdir=workdir, parquet=parquet,
                   log=log)

    def close(self) -> None:
        """Flush this process's prediction log (``score --log``)."""
        if self.scorer.log is not None:
            self.scorer.log.close()

    def score_chunk(self, chunk: tuple[int, int, Any]) -> tuple[int, int, int, int]:
        """Score chunk ``index`` (``batch``: a record batch or Arrow IPC bytes) and commit its part."""
        index, first_row, batch = chunk
        pa = self.pa
        if isinstance(batch, bytes):
            with pa.ipc.open_stream(pa.py_buffer(batch)) as reader:
                batch = reader.read_next_batch()
        out, rejects = self.scorer.score(batch, first_row)
        self.workdir.write_part(index, out, rejects)
        return index, batch.num_rows, out.num_rows, len(rejects)

    def score_range(self, start: int, stop: int) -> Iterator[tuple[int, int, int, int]]:
        """Read chunks ``start`` to ``stop`` (excluded) of the Parquet input in one pass and score each.

        One pass, because a chunk that begins inside a row group can only be read by decoding
        that row group from its start: reading chunk by chunk would decode such groups twice.
        """
        if self.source is None:
            raise ValueError("a range of chunks for a worker that reads no Parquet input")
        source, columns, chunk_rows = self.source
        expect = start
        for index, batch in source.batches(chunk_rows, columns=columns, start_chunk=start, stop_chunk=stop):
            expect = index + 1
            yield self.score_chunk((index, index * chunk_rows, batch))
        if expect != stop:
            raise ValueError(f"chunk {expect} lies past the end of the input")


def main() -> int:
    from modelport.batch.memory import tune_this_process

    tune_this_process()  # mimalloc's setting came in the environment from the parent
    # the protocol owns the real stdout; anything a library prints goes to stderr (the log)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    inp = sys.stdin.buffer
    worker: ChunkWorker | None = None
    while True:
        try:
            header, payload = read_message(inp)
        except EOFError:
            if worker is not None:
                worker.close()
            return 0
        try:
            if header["op"] == "init":
                n = int(header["bundle_size"])
                worker = ChunkWorker.from_bytes(
                    payload[:n], payload[n:], keep=header["keep"], on_error=header["on_error"],
                    prefix=header["prefix"], threads=header["threads"], workdir=header["workdir"],
                    parquet=header["parquet"], log=header.get("log"),
                )
                write_message(out, {"op": "ready"})
            elif header["op"] == "score" and worker is not None:
                result = worker.score_chunk((int(header["index"]), int(header["first_row"]), payload))
                write_message(out, {"op": "done", "result": list(result)})
                write_message(out, {"op": "idle"})
            elif header["op"] == "range" and worker is not None:
                for result in worker.score_range(int(header["start"]), int(header["stop"])):
                    write_message(out, {"op": "done", "result": list(result)})
                write_message(out, {"op": "idle"})
            else:
                raise ValueError(f"unexpected message {header.get('op')!r}")
        except Exception as exc:
            from modelport.errors import ModelportError

            if isinstance(exc, ModelportError):
                reply = {"op": "error", "type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
            else:
                reply = {"op": "error", "type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}",
                         "hint": None}
            write_message(out, reply)
            return 1


if __name__ == "__main__":
    sys.exit(main())
