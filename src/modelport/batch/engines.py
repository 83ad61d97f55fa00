"""``score_file`` on a cluster: Dask or Spark reads and scores the input, then the output is assembled here.

Parquet inputs: the engine's tasks commit the very parts local scoring commits (Arrow IPC, rejects
numbered by their global input row) into the job's work directory, and this process appends them in
input order to the output *while* the engine scores, with local scoring's :class:`Assembler`; so
the output is local scoring's by construction, and the only extra cost is the engine's start-up.
Dask tasks read runs of chunks of the file themselves (:func:`modelport.batch.dask.score_chunks`);
Spark reads the file and feeds Arrow batches to ``mapInArrow`` on its Python workers, which number
the rows from Spark's ``_metadata.row_index`` (:func:`modelport.batch.spark.piece_map`) and record
pieces named by their first row.

CSV and JSON lines: the engine writes its scored partitions (with a per-row error column) as
Parquet into the work directory; they are then streamed in input order into the requested output
format, with the same schema as local scoring and rejects numbered by their global input row.

The caller gets the time of each phase (``timings``): ``startup`` (the cluster or session, the
bundle shipped to the workers), ``scoring`` (until the last part is in), ``shutdown`` (closing a
cluster started here; a Spark session is left running) and ``write`` (finishing the output).
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelport._deps import require
from modelport.batch.resume import Assembler, WorkDir, split_errors, write_atomic, write_rejects
from modelport.batch.score import ERROR_COLUMN, UNKNOWN_COLUMN, ArrowChunkScorer, add_counts
from modelport.bundle.core import Bundle
from modelport.errors import InputError, ModelportError

_ORDER_FILE = "__modelport_file"
_ORDER_ROW = "__modelport_row"
#: how often this process looks for the pieces a Spark job has finished
_POLL_S = 0.05


def run_engine(
    engine: str,
    bundle: Bundle,
    source: Any,
    output: Path,
    out_fmt: str,
    scorer: ArrowChunkScorer,
    work: WorkDir,
    *,
    kept: list[str],
    on_error: str,
    prefix: str,
    address: str | None,
    rejects_path: Path | None,
    progress: bool,
    unknown: dict[str, int] | None = None,
    chunk_rows: int = 131_072,
    timings: dict[str, float] | None = None,
) -> tuple[int, int, int]:
    """Score with ``engine``; returns (rows in, rows written, rejects). Scored unknown categories
    are added to ``unknown`` (column -> count), the seconds of each phase to ``timings``."""
    timings = {} if timings is None else timings
    unknown = {} if unknown is None else unknown
    columns = list(dict.fromkeys([*scorer.core.columns, *kept]))
    if source.format == "parquet":
        work.durable = False  # an engine job is not resumable: its parts need not reach the disk
        delimiter = ","
        assembler = Assembler(work, output, out_fmt, scorer.schema, rejects_path=rejects_path, delimiter=delimiter)
        try:
            if engine == "dask":
                end = _dask_parts(bundle, source, columns, kept, on_error, prefix, address, work, assembler,
                                  chunk_rows, timings)
            else:
                end = _spark_parts(bundle, source, columns, kept, on_error, prefix, address, work, assembler,
                                   chunk_rows, timings)
            t = time.perf_counter()
            rows_out, n_rej = assembler.finish(end)
            timings["write"] = time.perf_counter() - t
        except BaseException:
            assembler.abort()
            raise
        add_counts(unknown, assembler.unknown)
        return int(source.num_rows or 0), rows_out, n_rej
    parts_dir = work.path / "engine"
    # skip/null: the engine marks bad rows and assembly numbers them; fail: the engine stops at once
    engine_on_error = "fail" if on_error == "fail" else "null"
    if engine == "dask":
        _dask(bundle, source, columns, kept, engine_on_error, prefix, address, parts_dir, timings)
        files = sorted(parts_dir.glob("*.parquet"), key=_part_number)
    else:
        _spark(bundle, source, columns, kept, engine_on_error, prefix, address, parts_dir, timings)
        files = sorted(parts_dir.glob("part-*.parquet"))
    t = time.perf_counter()
    result = _assemble(files, output, out_fmt, scorer, on_error, rejects_path, source, unknown)
    timings["write"] = time.perf_counter() - t
    return result


def _unpickled(exc: BaseException) -> BaseException:
    """A modelport error that crossed a process boundary by pickling arrives with its hint folded
    into its message: split them again."""
    if isinstance(exc, ModelportError) and exc.hint is None and "\n  hint: " in exc.message:
        message, hint = exc.message.split("\n  hint: ", 1)
        return type(exc)(message, hint=hint)
    return exc


def _part_number(p: Path) -> tuple[int, str]:
    m = re.search(r"(\d+)", p.name)
    return (int(m.group(1)) if m else -1, p.name)


def _assemble(
    files: list[Path], output: Path, fmt: str, scorer: ArrowChunkScorer, on_error: str,
    rejects_path: Path | None, source: Any, unknown: dict[str, int],
) -> tuple[int, int, int]:
    pq = require("pyarrow.parquet", purpose="batch scoring")
    pa = require("pyarrow", purpose="batch scoring")
    rejects: list[Any] = []
    counter = {"rows": 0}
    target = scorer.schema

    def raw() -> Iterator[Any]:
        for f in files:
            for b in pq.ParquetFile(f).iter_batches(batch_size=65_536):
                counter["rows"] += b.num_rows
                if UNKNOWN_COLUMN in b.schema.names:  # which rows held unknown categories: count, then drop
                    marks = b.column(UNKNOWN_COLUMN)
                    if marks.null_count < len(marks):
                        counts: dict[str, int] = {}
                        for m in marks.drop_null().to_pylist():
                            for name in str(m).split(","):
                                counts[name] = counts.get(name, 0) + 1
                        add_counts(unknown, counts)
                    b = b.drop_columns([UNKNOWN_COLUMN])
                yield b

    def conformed() -> Iterator[Any]:
        for b in split_errors(raw(), on_error, rejects):
            yield _conform(pa, b, target)

    rows_out = write_atomic(output, fmt, target, conformed(),
                            delimiter=source.delimiter if fmt == "csv" and source.format == "csv" else ",")
    n_rej = sum(b.num_rows for b in rejects)
    if rejects_path is not None:
        write_rejects(rejects_path, iter(rejects))
    return counter["rows"], rows_out, n_rej


def _conform(pa: Any, batch: Any, schema: Any) -> Any:
    """Cast an engine's batch to the schema local scoring writes (engines widen or rename types)."""
    arrays = []
    for f in schema:
        col = batch.column(f.name)
        if col.type != f.type:
            try:
                col = col.cast(f.type)
            except pa.ArrowException as exc:
                raise ModelportError(
                    f"the engine returned column {f.name!r} as {col.type}, which does not convert to {f.type}: {exc}"
                ) from exc
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# ---------------------------------------------------------------------------- dask
class _DaskClient:
    """The client to run on: ``address``'s scheduler, the current default client, or a LocalCluster
    closed at the end: one worker process with a thread per core (each thread scores its own
    chunks with single-threaded runs, as local scoring does; one process instead of one per core
    halves the start-up, measured: 10.5 s instead of 12.5 s of CPU for 2M rows), without the
    worker's statistical profiler (it samples every thread's stack every 10 ms)."""

    def __init__(self, address: str | None) -> None:
        self.distributed = require("distributed", purpose="scoring on Dask")
        self.address = address
        self.own: list[Any] = []

    def __enter__(self) -> Any:
        distributed = self.distributed
        if self.address:
            client = distributed.Client(self.address)
            self.own.append(client)
            return client
        try:
            return distributed.default_client()
        except ValueError:
            import dask

            with dask.config.set({"distributed.worker.profile.enabled": False}):
                cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=os.cpu_count() or 1,
                                                   dashboard_address=None)
            client = distributed.Client(cluster)
            self.own.extend([client, cluster])
            return client

    def __exit__(self, *exc: Any) -> None:
        for obj in self.own:
            obj.close()


def _dask_parts(bundle: Bundle, source: Any, columns: list[str], kept: list[str], on_error: str, prefix: str,
                address: str | None, work: WorkDir, assembler: Assembler, chunk_rows: int,
                timings: dict[str, float]) -> int:
    """Parquet on Dask: tasks of consecutive chunks; returns the number of chunks."""
    from modelport.batch.dask import score_chunks, ship
    from modelport.batch.parallel import Ranges

    started = time.perf_counter()
    with _DaskClient(address) as client:
        distributed = require("distributed", purpose="scoring on Dask")
        digest = ship(bundle, client)  # every worker opens the bundle and its session now
        timings["startup"] = time.perf_counter() - started
        started = time.perf_counter()
        n_chunks = math.ceil((source.num_rows or 0) / chunk_rows)
        job = {
            "schema": source.schema.serialize().to_pybytes(), "keep": kept, "on_error": on_error, "prefix": prefix,
            "workdir": str(work.path), "files": [str(f) for f in source.files], "columns": columns,
            "chunk_rows": chunk_rows,
        }
        # long runs of chunks first, single chunks at the end (each run is read in one pass, and
        # all workers finish together); queued tasks go to workers in this order as they free up
        slots = max(1, sum(client.nthreads().values()))
        tag = uuid.uuid4().hex[:12]
        futures = [client.submit(score_chunks, digest, job, a, b, key=f"modelport-chunks-{a}-{b}-{tag}", pure=False)
                   for a, b in Ranges(list(range(n_chunks)), slots)]
        try:
            for future in distributed.as_completed(futures):
                for index, *_ in future.result():
                    assembler.done(index)
        except BaseException as exc:
            client.cancel(futures)
            exc = _unpickled(exc)
            if isinstance(exc, ModelportError):
                raise exc from None
            raise ModelportError(f"the Dask job failed: {exc}") from exc
        timings["scoring"] = time.perf_counter() - started
        started = time.perf_counter()
    timings["shutdown"] = time.perf_counter() - started  # closing a cluster started here
    return n_chunks


def _dask(bundle: Bundle, source: Any, columns: list[str], kept: list[str], on_error: str, prefix: str,
          address: str | None, parts_dir: Path, timings: dict[str, float]) -> None:
    dd = require("dask.dataframe", purpose="scoring on Dask")
    from modelport.batch.dask import predict

    started = time.perf_counter()
    with _DaskClient(address) as client:
        timings["startup"] = time.perf_counter() - started
        started = time.perf_counter()
        paths = [str(f) for f in source.files]
        if source.format == "csv":
            text = {c: "object" for c in columns if c in source._csv_types}
            ddf = dd.read_csv(paths[0], sep=source.delimiter, usecols=columns, dtype=text, blocksize="64MB")
        else:
            ddf = dd.read_json(paths[0], lines=True, blocksize=64 * 1024 * 1024)[columns]
        scored = predict(bundle, ddf, keep=kept, on_error=on_error, prefix=prefix,  # type: ignore[arg-type]
                         error_column=ERROR_COLUMN, client=client)
        try:
            scored.to_parquet(str(parts_dir), write_index=False, compute=True)
        except InputError:
            raise
        except Exception as exc:
            raise ModelportError(f"the Dask job failed: {exc}") from exc
        timings["scoring"] = time.perf_counter() - started
        started = time.perf_counter()
    timings["shutdown"] = time.perf_counter() - started


# ---------------------------------------------------------------------------- spark
def _spark_session(address: str | None) -> Any:
    """The active SparkSession (for ``address``), or a new one: ``local[*]`` by default, with the
    workers running this interpreter (see :func:`modelport.batch.spark.use_this_interpreter`)."""
    require("pyspark", purpose="scoring on Spark")
    from pyspark.sql import SparkSession

    from modelport.batch.spark import use_this_interpreter

    active = SparkSession.getActiveSession()
    if active is not None and (address is None or active.sparkContext.master == address):
        return active
    use_this_interpreter()
    spark = (SparkSession.builder.master(address or "local[*]").appName("modelport score")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _spark_failed(exc: BaseException) -> ModelportError:
    from modelport.batch.spark import translate

    mp_exc = translate(exc)
    if mp_exc is not None:
        return mp_exc
    text = str(exc).strip()
    return ModelportError(f"the Spark job failed: {text.splitlines()[0] if text else type(exc).__name__}")


def _spark_parts(bundle: Bundle, source: Any, columns: list[str], kept: list[str], on_error: str, prefix: str,
                 address: str | None, work: WorkDir, assembler: Assembler, chunk_rows: int,
                 timings: dict[str, float]) -> int:
    """Parquet on Spark: ``mapInArrow`` pieces, appended here as they appear; returns the number of rows."""
    from pyspark.sql import functions as F

    from modelport.batch.spark import PIECE_SCHEMA, piece_map

    started = time.perf_counter()
    spark = _spark_session(address)
    timings["startup"] = time.perf_counter() - started
    started = time.perf_counter()
    paths = [str(f) for f in source.files]
    several = len(paths) > 1
    offsets, at = {}, 0
    for f, n in zip(source.files, source._row_counts):
        offsets[str(Path(f).resolve())] = at
        at += n
    total = at
    job = {
        "schema": source.schema.serialize().to_pybytes(), "keep": kept, "on_error": on_error, "prefix": prefix,
        "workdir": str(work.path), "row_column": _ORDER_ROW, "file_column": _ORDER_FILE if several else None,
        "offsets": offsets,
    }
    df = spark.read.parquet(*[str(Path(p).resolve()) for p in paths])
    extra = [F.col("_metadata.row_index").alias(_ORDER_ROW)]
    if several:  # the file's name, only when needed: it travels with every row
        extra.append(F.col("_metadata.file_path").alias(_ORDER_FILE))
    scored = df.select(*columns, *extra).mapInArrow(piece_map(bundle, spark, job), PIECE_SCHEMA)

    batch_key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(batch_key, None)
    spark.conf.set(batch_key, str(chunk_rows))  # pieces of about a chunk (Spark's default: 10,000 rows)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["rows"] = scored.collect()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="modelport-spark-job", daemon=True)
    seen: set[int] = set()

    def take(pieces: dict[int, int]) -> None:
        for first in sorted(pieces):
            if first not in seen and first >= assembler.next:
                seen.add(first)
                assembler.done(first, pieces[first])

    try:
        thread.start()
        while thread.is_alive():
            thread.join(_POLL_S)
            take(work.pieces())  # append what is finished while Spark scores the rest
    finally:
        thread.join()
        if before is None:
            spark.conf.unset(batch_key)
        else:
            spark.conf.set(batch_key, before)
    if "error" in outcome:
        raise _spark_failed(outcome["error"]) from None
    pieces = {int(r["first_row"]): int(r["rows"]) for r in outcome["rows"]}
    covered = 0
    for first in sorted(pieces):
        if first != covered:
            break
        covered += pieces[first]
    if covered != total:
        raise ModelportError(f"the Spark job returned no results for input rows from {covered} on (of {total}).",
                             hint="run the job again")
    take(pieces)
    timings["scoring"] = time.perf_counter() - started
    return total


def _spark(bundle: Bundle, source: Any, columns: list[str], kept: list[str], on_error: str, prefix: str,
           address: str | None, parts_dir: Path, timings: dict[str, float]) -> None:
    require("pyspark", purpose="scoring on Spark")
    from pyspark.sql.pandas.types import from_arrow_schema

    from modelport.batch.spark import predict

    started = time.perf_counter()
    spark = _spark_session(address)
    timings["startup"] = time.perf_counter() - started
    started = time.perf_counter()
    paths = [str(f) for f in source.files]
    pa = require("pyarrow", purpose="scoring on Spark")
    schema = from_arrow_schema(pa.schema([source.schema.field(c) for c in columns]))
    if source.format == "csv":
        df = (spark.read.schema(schema).option("header", True).option("sep", source.delimiter)
              .option("mode", "FAILFAST").csv(paths[0]))
    else:
        df = spark.read.schema(schema).option("mode", "FAILFAST").json(paths[0])
    scored = predict(bundle, df.select(*columns), keep=kept, on_error=on_error, prefix=prefix,  # type: ignore[arg-type]
                     error_column=ERROR_COLUMN)
    try:
        scored.write.mode("overwrite").parquet(str(parts_dir))
    except Exception as exc:
        raise _spark_failed(exc) from exc
    timings["scoring"] = time.perf_counter() - started
