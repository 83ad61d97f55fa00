"""``score_file``: score a file of any size with a bundle, in chunks, resumably, on one machine or an engine.

    >>> from modelport.batch import score_file
    >>> score_file("churn.mpk", "input.parquet", "scored.parquet", workers=2)

The input is streamed in chunks of ``chunk_rows`` rows (memory does not grow with the file); each
chunk's result is committed to a work directory next to the output (see :mod:`.resume`), and the
output is assembled from those parts and renamed into place at the end, so it never exists half
written and ``resume=True`` continues an interrupted job. ``engine="dask"`` / ``"spark"`` runs the
scoring on a cluster instead and assembles the same output.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelport._deps import require
from modelport.batch.io import format_of, open_source
from modelport.batch.resume import Assembler, WorkDir, workdir_for
from modelport.batch.score import (
    BATCH_SESSION_CONFIG,
    ON_ERROR,
    ArrowChunkScorer,
    OnError,
    check_columns,
    input_columns,
    resolve_keep,
    with_unknown_policy,
)
from modelport.bundle.core import Bundle
from modelport.errors import InputError

Engine = Literal["local", "dask", "spark"]
DEFAULT_CHUNK_ROWS = 131_072


@dataclass
class ScoreResult:
    """What a scoring job did."""

    output: Path
    rows_in: int
    rows_out: int
    rejected: int
    rejects_path: Path | None
    seconds: float
    resumed_chunks: int = 0
    #: per column, how many scored rows held a value outside the column's categories
    unknown_categories: dict[str, int] = field(default_factory=dict)
    #: seconds of each phase: ``startup`` (opening the input and the session; an engine's cluster
    #: or Spark session and the bundle shipped to its workers), ``scoring`` (until the last part is
    #: in; parts are appended to the output meanwhile), for engines ``shutdown`` (closing a cluster
    #: started for the job) and ``write`` (finishing the output after that)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else float("inf")


def score_file(
    bundle: Bundle | str | os.PathLike[str],
    input: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    keep: str | Sequence[str] | None = None,
    on_error: OnError = "fail",
    rejects: str | os.PathLike[str] | None = None,
    prefix: str = "",
    workers: int = 1,
    threads: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    resume: bool = False,
    overwrite: bool = False,
    engine: Engine = "local",
    address: str | None = None,
    input_format: str | None = None,
    output_format: str | None = None,
    progress: bool = False,
    unknown_categories: str | None = None,
    log: str | os.PathLike[str] | None = None,
    log_sample: float = 1.0,
    log_id_column: str | None = None,
) -> ScoreResult:
    """Score ``input`` (Parquet file / directory / glob, CSV, JSON lines) into ``output``.

    ``keep``: input columns copied to the output (default: those that are not model inputs).
    ``on_error``: ``fail`` stops at the first row that cannot be scored; ``skip`` leaves such rows
    out and ``null`` gives them null predictions, both listing them in ``rejects`` (default
    ``<output>.rejects.csv``) as ``row`` (0-based input row) and ``reason``. ``workers`` processes
    score in parallel, each with ``threads`` ONNX Runtime threads (default: cores / workers).
    ``resume`` continues an interrupted job; an existing output is replaced only with ``overwrite``.
    ``engine``: ``local``, ``dask`` (``address`` of a scheduler, default a LocalCluster) or ``spark``
    (``address`` is the master URL, default ``local[*]``). ``unknown_categories`` (``native``,
    ``missing``, ``error``) overrides the bundle's policy for values outside a column's categories;
    those scored are counted in :attr:`ScoreResult.unknown_categories`, with ``error`` they are rejects.
    ``log``: also write the scored rows to a prediction log (a directory or fsspec URL; see
    :mod:`modelport.monitor.log`), ``log_sample`` of them, with ids from ``log_id_column`` (else
    ``<run id>:<row>``), so that ``modelport drift`` / ``perf`` / ``replay`` read batch jobs too.
    """
    from modelport._uri import load

    started = time.perf_counter()
    if on_error not in ON_ERROR:
        raise InputError(f"on_error must be one of {', '.join(ON_ERROR)}; got {on_error!r}.")
    if workers < 1:
        raise InputError(f"workers must be at least 1; got {workers}.")
    if engine not in ("local", "dask", "spark"):
        raise InputError(f"unknown engine {engine!r}; expected local, dask or spark.")
    if engine != "local" and (resume or workers != 1):
        raise InputError(
            f"--resume and --workers apply to local scoring; the {engine} engine schedules and retries its own tasks.",
            hint=f"drop --resume/--workers with --engine {engine}",
        )
    if log is not None and engine != "local":
        raise InputError(f"--log applies to local scoring; the {engine} engine's tasks run elsewhere.",
                         hint=f"drop --log with --engine {engine}, or score locally (--workers N)")
    b = with_unknown_policy(load(bundle), unknown_categories)
    out = Path(output)
    out_fmt = format_of(out, output_format, what="output")
    rej_path = None if on_error == "fail" else Path(rejects) if rejects else out.with_name(out.name + ".rejects.csv")
    if rej_path is not None:
        format_of(rej_path, what="rejects")
    if out.is_dir():
        raise InputError(f"{out} is a directory; the output must be a file path (.parquet, .csv or .jsonl).")
    if not out.parent.exists():
        raise InputError(f"{out.parent}: the output directory does not exist.", hint="create it first")

    source = open_source(input, format=input_format)
    check_columns(b, source.column_names, where=f"the input {source.files[0]}" if len(source.files) == 1 else "the input")
    kept = resolve_keep(b, source.column_names, keep)
    # CSV model columns are read as text and converted per chunk, so bad values become row errors
    source.set_text_columns(input_columns(b))
    columns = list(dict.fromkeys([*input_columns(b), *kept]))

    work = WorkDir(workdir_for(out))
    job = {
        "bundle": b.digest,
        "input": source.fingerprint(),
        "input_format": source.format,
        "chunk_rows": chunk_rows,
        "keep": kept,
        "on_error": on_error,
        "prefix": prefix,
        "output_format": out_fmt,
        "unknown_categories": unknown_categories,
    }
    resuming = False
    if work.exists:
        if resume:
            work.check_same_job(job)
            resuming = True
        elif overwrite:
            work.remove()
        else:
            raise InputError(
                f"an earlier run of this job was interrupted; its finished chunks are in {work.path}.",
                hint="pass --resume to continue it, or --overwrite to start over",
            )
    if out.exists() and not resuming and not overwrite:
        raise InputError(f"{out} already exists.", hint="pass --overwrite to replace it, or choose another output path")
    if rej_path is not None and rej_path.exists() and not resuming and not overwrite:
        raise InputError(f"the rejects file {rej_path} already exists.", hint="pass --overwrite to replace it")
    if not resuming:
        work.create(job)

    cores = os.cpu_count() or 1
    # one process without --threads: one single-threaded run per core, on different chunks,
    # rather than one run split across the cores (no thread waits for another's share)
    scorers = cores if workers == 1 and threads is None else 1
    if threads is None:
        threads = max(1, cores // workers) if workers > 1 else (1 if scorers > 1 else None)
    runtime = None  # engines and worker processes score with sessions of their own
    if engine == "local" and workers == 1:
        from modelport.runtime.session import Runtime

        runtime = Runtime(b, intra_op_threads=threads, session_config=BATCH_SESSION_CONFIG)
    scorer = ArrowChunkScorer(b, source.schema, keep=kept, on_error=on_error, prefix=prefix, runtime=runtime)
    log_spec = None
    if log is not None:
        import uuid

        from modelport.monitor.log import ScoredChunks

        if log_id_column is not None and log_id_column not in source.column_names:
            raise InputError(f"--log-id names column {log_id_column!r}, which the input does not have.",
                             hint="name a column of the input that holds the rows' ids")
        if log_id_column is not None and log_id_column not in columns:
            columns.append(log_id_column)
        log_spec = {"url": os.fspath(log), "sample": float(log_sample), "id_column": log_id_column,
                    "run_id": uuid.uuid4().hex[:12]}
        if workers == 1:
            scorer.log = ScoredChunks(log_spec, b)
    if engine != "local":
        from modelport.batch.engines import run_engine

        timings = {"startup": time.perf_counter() - started}
        try:
            unknown: dict[str, int] = {}
            phases: dict[str, float] = {}
            rows_in, rows_out, n_rej = run_engine(
                engine, b, source, out, out_fmt, scorer, work, kept=kept, on_error=on_error, prefix=prefix,
                address=address, rejects_path=rej_path, progress=progress, unknown=unknown,
                chunk_rows=chunk_rows, timings=phases,
            )
        finally:  # engine jobs are not resumable: never leave a work directory that asks for --resume
            work.remove()
        timings = {k: timings.get(k, 0.0) + phases.get(k, 0.0) for k in ("startup", "scoring", "shutdown", "write")}
        return ScoreResult(out, rows_in, rows_out, n_rej, rej_path, time.perf_counter() - started,
                           unknown_categories=unknown, timings=timings)

    done = work.done() if resuming else set()
    end = work.end() if resuming else None
    total = source.num_rows if source.num_rows is not None else _estimate_rows(source)
    n_chunks_known = math.ceil(source.num_rows / chunk_rows) if source.num_rows is not None else None

    delimiter = source.delimiter if out_fmt == "csv" and source.format == "csv" else ","
    assembler = Assembler(work, out, out_fmt, scorer.schema, rejects_path=rej_path, delimiter=delimiter)
    finished = False
    timings = {"startup": time.perf_counter() - started}
    try:
        with _Progress(progress, total, f"scoring {source.files[0].name}") as bar:
            for i in sorted(done):  # finished parts of the interrupted run go straight to the output
                assembler.done(i)
            if end is None or len(done) < end["chunks"]:
                first_missing = min(set(range(max(done, default=-1) + 2)) - done)
                state = {"rows": 0, "chunks": first_missing}

                def chunks() -> Iterator[tuple[int, int, Any]]:
                    for index, batch in source.batches(chunk_rows, columns=columns, start_chunk=first_missing):
                        state["chunks"] = index + 1
                        state["rows"] = index * chunk_rows + batch.num_rows
                        if index in done:
                            bar.advance(batch.num_rows)
                            continue
                        yield index, index * chunk_rows, batch

                bar.advance(min(first_missing * chunk_rows, total or 0))
                if workers == 1:
                    _pipeline(chunks(), scorer, work, assembler, bar, scorers=scorers)
                else:
                    from modelport.batch.parallel import run_workers

                    parquet = None
                    streamed: Iterator[tuple[int, int, Any]] | None = chunks()
                    # scorers read Parquet themselves (the parent only hands out chunk numbers),
                    # unless its row groups are so large that each reader would decode most of
                    # a group to reach its own rows: then the parent reads it in one pass
                    if source.format == "parquet" and source.largest_row_group <= 4 * chunk_rows:
                        todo = [i for i in range(first_missing, n_chunks_known or 0) if i not in done]
                        parquet = ([str(f) for f in source.files], columns, chunk_rows, todo)
                        streamed = None
                        bar.advance(sum(min(chunk_rows, (source.num_rows or 0) - i * chunk_rows)
                                        for i in done if i >= first_missing))

                    def on_done(index: int, n_in: int, n_out: int, n_rej: int) -> None:
                        assembler.done(index)
                        bar.advance(n_in)

                    run_workers(
                        workers=workers, bundle_bytes=b.to_bytes(), schema=source.schema, keep=kept,
                        on_error=on_error, prefix=prefix, threads=threads, workdir=work.path, chunks=streamed,
                        on_done=on_done, parquet=parquet, log=log_spec,
                    )
                if n_chunks_known is not None:
                    n_chunks, rows_in = n_chunks_known, source.num_rows or 0
                else:
                    n_chunks, rows_in = state["chunks"], state["rows"]
                work.mark_end(n_chunks, rows_in)
            else:
                n_chunks, rows_in = end["chunks"], end["rows"]
            bar.status("writing output")
            t = time.perf_counter()
            timings["scoring"] = t - started - timings["startup"]
            rows_out, n_rej = assembler.finish(n_chunks)
            timings["write"] = time.perf_counter() - t
            finished = True
    finally:
        if not finished:
            assembler.abort()
        if scorer.log is not None:
            scorer.log.close()  # its files are complete whether or not the job finished
    work.remove()
    return ScoreResult(out, rows_in, rows_out, n_rej, rej_path, time.perf_counter() - started,
                       resumed_chunks=len(done), unknown_categories=dict(assembler.unknown), timings=timings)


_STOP = object()


def _pipeline(chunks: Iterator[tuple[int, int, Any]], scorer: ArrowChunkScorer, work: WorkDir,
              assembler: Assembler, bar: _Progress, *, scorers: int = 1) -> None:
    """Read, score and write in threads, so that I/O overlaps ONNX Runtime (which drops the GIL).

    The reading thread also prepares each chunk (checks and conversion to the runtime's feeds),
    so the ``scorers`` scoring threads do little but run ONNX Runtime, each on its own chunk;
    the writing thread commits the parts and hands them to the assembler, which puts them back
    in order. At most two chunks wait on each side, so memory stays bounded by a few chunks.
    """
    inq: queue.Queue[Any] = queue.Queue(maxsize=2)
    outq: queue.Queue[Any] = queue.Queue(maxsize=2)
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            for index, first_row, batch in chunks:
                if stop.is_set():
                    return
                inq.put((index, scorer.prepare(batch, first_row)))
        except BaseException as exc:
            errors.append(exc)
        finally:
            for _ in range(scorers):
                inq.put(_STOP)

    def score() -> None:
        try:
            while not stop.is_set():
                try:
                    item = inq.get(timeout=0.1)  # with a timeout, so that a stop is noticed
                except queue.Empty:
                    continue
                if item is _STOP:
                    return
                index, prepared = item
                scored, rej = scorer.finish(prepared)
                outq.put((index, scored, rej, prepared[0].num_rows))
        except BaseException as exc:
            errors.insert(0, exc)
            stop.set()

    def write() -> None:
        failed = False
        while (item := outq.get()) is not _STOP:
            if failed:
                continue  # keep draining so that the scoring threads never block
            try:
                index, scored, rej, n = item
                work.write_part(index, scored, rej)
                assembler.done(index)
                bar.advance(n)
            except BaseException as exc:
                errors.append(exc)
                stop.set()
                failed = True

    reader = threading.Thread(target=read, name="modelport-read", daemon=True)
    writer = threading.Thread(target=write, name="modelport-write", daemon=True)
    workers = [threading.Thread(target=score, name=f"modelport-score-{i}", daemon=True) for i in range(scorers)]
    reader.start()
    writer.start()
    for t in workers:
        t.start()
    try:
        for t in workers:
            t.join()
    finally:
        stop.set()  # on an error or an interrupt: every thread ends after its current chunk
        for t in workers:
            t.join()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                inq.get(timeout=0.05)
            except queue.Empty:
                pass
        reader.join()
        outq.put(_STOP)  # after the scorers: the writer drains whatever they still produced
        writer.join()
    if errors:
        raise errors[0]


def _estimate_rows(source: Any) -> int | None:
    """Lines in a CSV / JSON-lines file: a cheap total for the progress bar (never used for results)."""
    f = source.files[0]
    if f.suffix in (".gz", ".bz2", ".zst"):
        return None
    n = 0
    try:
        with open(f, "rb") as fh:
            while chunk := fh.read(8 * 1024 * 1024):
                n += chunk.count(b"\n")
    except OSError:
        return None
    return max(n - (1 if source.format == "csv" else 0), 0)


class _Progress:
    """A rich progress bar on stderr (rows, rows/s, ETA), or nothing."""

    def __init__(self, enabled: bool, total: int | None, label: str) -> None:
        self.enabled = enabled
        self.total = total
        self.label = label
        self._p: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._p = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                transient=False,
            )
            self._p.__enter__()
            self._task = self._p.add_task(self.label, total=self.total, rate="")
            self._t0 = time.perf_counter()
            self._n = 0
        return self

    def advance(self, n: int) -> None:
        if self._p is not None:
            self._n += n
            dt = time.perf_counter() - self._t0
            rate = f"{self._n / dt:,.0f} rows/s" if dt > 0 else ""
            self._p.update(self._task, advance=n, rate=rate)

    def status(self, text: str) -> None:
        if self._p is not None:
            self._p.update(self._task, description=text)

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)


def _pa() -> Any:
    return require("pyarrow", purpose="batch scoring")
