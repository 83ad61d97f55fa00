"""Scoring Spark DataFrames: a pandas UDF, or a ``mapInPandas`` function over whole rows.

The bundle is distributed once, as a broadcast of its ``.mpk`` bytes; each executor Python
process opens it and creates its ONNX Runtime session on first use and keeps them in a
process-wide cache keyed by the bundle digest (Spark reuses its Python workers, so this is once
per process, not per task or batch; :data:`LOADS` counts it). The session runs with as many
threads as a task has cores (``spark.task.cpus``, 1 by default): Spark runs one task per core,
each in its own Python worker. The functions shipped to executors close over the broadcast
handle and the digest only.

``score_file(..., engine="spark")`` on Parquet uses :func:`piece_map` with ``mapInArrow``: no pandas
on the way, and the scored rows do not go back through the JVM either; each Python worker commits
them as parts to the job's work directory (which the executors must be able to reach), numbered
by the input rows Spark's ``_metadata.row_index`` gives.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport._deps import require
from modelport.batch.score import (
    ERROR_COLUMN,
    UNKNOWN_COLUMN,
    ChunkScorer,
    OnError,
    check_clash,
    check_columns,
    input_columns,
    resolve_keep,
    score_frame,
)
from modelport.errors import InputError, ModelportError

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle
    from modelport.runtime.session import Runtime

_CACHE: dict[str, Runtime] = {}
#: how many times each bundle was opened, with its session, in this process (1 per executor
#: Python worker when caching works)
LOADS: dict[str, int] = {}
_LOCK = threading.Lock()
#: the scorers of the file jobs this worker has taken part in (the latest few)
_JOBS: dict[tuple[str, str], Any] = {}
_MAX_JOBS = 4


def _runtime(digest: str, broadcast: Any) -> Runtime:
    """This process's one session for the bundle ``digest`` (opened from the broadcast once)."""
    rt = _CACHE.get(digest)
    if rt is None:
        from modelport.batch.score import BATCH_SESSION_CONFIG
        from modelport.bundle.core import Bundle
        from modelport.runtime.session import Runtime

        with _LOCK:
            rt = _CACHE.get(digest)
            if rt is None:
                b = Bundle.from_bytes(broadcast.value, origin=f"<spark bundle {digest[:19]}>")
                rt = Runtime(b, intra_op_threads=_task_cpus(), inter_op_threads=1, session_config=BATCH_SESSION_CONFIG)
                _CACHE[digest] = rt
                LOADS[digest] = LOADS.get(digest, 0) + 1
    return rt


def _task_cpus() -> int:
    from pyspark import TaskContext

    ctx = TaskContext.get()
    try:
        return max(1, int(ctx.cpus())) if ctx is not None else 1
    except (AttributeError, TypeError, ValueError):
        return 1


def _session(spark: Any | None) -> Any:
    require("pyspark", purpose="scoring on Spark")
    from pyspark.sql import SparkSession

    s = spark or SparkSession.getActiveSession()
    if s is None:
        raise ModelportError(
            "no active SparkSession.",
            hint="create one first (SparkSession.builder.getOrCreate()) or pass spark=...",
        )
    return s


def _spark_type(T: Any, dtype: np.dtype[Any]) -> Any:
    if dtype.kind in "OUS":
        return T.StringType()
    if dtype.kind == "b":
        return T.BooleanType()
    if dtype.kind in "iu":
        return T.IntegerType() if dtype.itemsize <= 4 and dtype.kind == "i" else T.LongType()
    if dtype.kind == "f":
        return T.FloatType() if dtype.itemsize <= 4 else T.DoubleType()
    raise InputError(f"cannot map prediction dtype {dtype} to a Spark type.")


def prediction_fields(core: ChunkScorer) -> list[Any]:
    from pyspark.sql import types as T

    return [T.StructField(n, _spark_type(T, d), True) for n, d in core.output_layout]


def _broadcast(bundle: Bundle, spark: Any) -> tuple[str, Any]:
    return bundle.digest, spark.sparkContext.broadcast(bundle.to_bytes())


def predict_udf(
    bundle: Bundle | str, *, spark: Any | None = None, on_error: OnError = "fail", prefix: str = ""
) -> Any:
    """A pandas UDF returning a struct of the prediction columns (``label``, ``proba_<class>`` ...).

    Call it with the model's input columns in the bundle's order (``udf.input_columns``)::

        udf = modelport.spark.predict_udf(bundle)
        df = df.withColumn("pred", udf(*udf.input_columns)).select("id", "pred.*")

    With ``on_error="null"`` rows that cannot be scored get a null struct's fields; ``"skip"`` is
    not possible for a column expression and is refused (use :func:`predict`).
    """
    from modelport._uri import load

    if on_error == "skip":
        raise InputError(
            "a UDF column cannot drop rows, so on_error='skip' is not available here.",
            hint="use on_error='null' and filter, or modelport.spark.predict(bundle, df, on_error='skip')",
        )
    b = load(bundle)
    s = _session(spark)
    pd = require("pandas", purpose="scoring on Spark")
    from pyspark.sql import types as T
    from pyspark.sql.functions import pandas_udf

    core = ChunkScorer(b, on_error=on_error, prefix=prefix)
    return_type = T.StructType(prediction_fields(core))
    digest, bc = _broadcast(b, s)
    names = input_columns(b)

    def _score(batches: Any) -> Any:
        from pyspark import TaskContext

        rt = _runtime(digest, bc)
        scorer = ChunkScorer(rt.bundle, on_error=on_error, prefix=prefix, runtime=rt)
        ctx = TaskContext.get()
        offset = 0
        for series in batches:
            cols = [series] if len(names) == 1 else list(series)
            frame = pd.concat([c.rename(n).reset_index(drop=True) for c, n in zip(cols, names)], axis=1)
            try:
                out, _ = score_frame(scorer, frame, [], first_row=offset)
            except InputError as exc:
                raise _in_partition(exc, ctx) from exc
            offset += len(frame)
            yield out.reset_index(drop=True)

    # pyspark picks the UDF kind from these hints: an iterator of (tuples of) Series -> of DataFrames
    series: Any = pd.Series
    several: Any = tuple[(series,) * len(names)]  # type: ignore[misc]
    frame: Any = pd.DataFrame
    arg: Any = Iterator[series] if len(names) == 1 else Iterator[several]
    _score.__annotations__ = {"batches": arg, "return": Iterator[frame]}
    udf = pandas_udf(_score, returnType=return_type)  # type: ignore[call-overload]
    udf.input_columns = names
    udf.output_columns = core.output_names
    return udf


def _in_partition(exc: InputError, ctx: Any) -> InputError:
    where = f"partition {ctx.partitionId()}" if ctx is not None else "a partition"
    return InputError(f"{where}: {exc.message} (row numbers count from the partition's start)", hint=exc.hint)


def predict_map(
    bundle: Bundle | str,
    schema: Any,
    *,
    spark: Any | None = None,
    keep: str | Sequence[str] | None = None,
    on_error: OnError = "fail",
    prefix: str = "",
    error_column: str | None = None,
) -> tuple[Any, Any]:
    """``(function, output schema)`` for ``df.mapInPandas(function, schema)`` over an input ``schema``.

    The output holds the kept input columns (default: those that are not model inputs) and the
    prediction columns; ``error_column`` adds the reason a row could not be scored.
    """
    from modelport._uri import load

    b = load(bundle)
    s = _session(spark)
    from pyspark.sql import types as T

    names = list(schema.names)
    check_columns(b, names, where="the Spark DataFrame")
    kept = resolve_keep(b, names, keep)
    core = ChunkScorer(b, on_error=on_error, prefix=prefix)
    check_clash(core, kept)
    fields = [schema[c] for c in kept] + prediction_fields(core)
    if error_column is not None:
        fields.append(T.StructField(error_column, T.StringType(), True))
    if error_column == ERROR_COLUMN:  # an engine's part also says which rows held unknown categories
        fields.append(T.StructField(UNKNOWN_COLUMN, T.StringType(), True))
    out_schema = T.StructType(fields)
    digest, bc = _broadcast(b, s)

    def _map(frames: Iterator[Any]) -> Iterator[Any]:
        from pyspark import TaskContext

        rt = _runtime(digest, bc)
        scorer = ChunkScorer(rt.bundle, on_error=on_error, prefix=prefix, runtime=rt)
        ctx = TaskContext.get()
        offset = 0
        for frame in frames:
            try:
                out, _ = score_frame(scorer, frame, kept, first_row=offset, error_column=error_column)
            except InputError as exc:
                raise _in_partition(exc, ctx) from exc
            offset += len(frame)
            yield out

    return _map, out_schema


def predict(
    bundle: Bundle | str,
    df: Any,
    *,
    keep: str | Sequence[str] | None = None,
    on_error: OnError = "fail",
    prefix: str = "",
    error_column: str | None = None,
) -> Any:
    """Score a Spark DataFrame (lazily): kept input columns + prediction columns, via ``mapInPandas``."""
    fn, schema = predict_map(
        bundle, df.schema, spark=df.sparkSession, keep=keep, on_error=on_error, prefix=prefix,
        error_column=error_column,
    )
    return df.mapInPandas(fn, schema)


#: what :func:`piece_map`'s function returns to Spark for each piece it committed
PIECE_SCHEMA = "first_row long, rows long, rows_out long, rejected long"


def piece_map(bundle: Bundle, spark: Any, job: dict[str, Any]) -> Any:
    """The ``mapInArrow`` function of ``score_file(engine="spark")`` on Parquet (see the module docstring).

    Its input batches hold the model and kept columns, ``_metadata.row_index`` as ``row_column``
    and, for several files, ``_metadata.file_path`` as ``file_column``. Each run of consecutive
    rows of one file is scored (rejects numbered by global input row: ``offsets`` gives each
    file's first row) and committed as a piece to ``workdir``; the function yields one row of
    :data:`PIECE_SCHEMA` per piece. ``job`` also holds ``schema`` (the input's Arrow schema, IPC
    bytes), ``keep``, ``on_error`` and ``prefix``: plain data only.
    """
    digest, bc = _broadcast(bundle, spark)

    def _map(batches: Iterator[Any]) -> Iterator[Any]:
        pa = require("pyarrow", purpose="scoring on Spark")
        scorer, work = _piece_job(digest, bc, job)
        for batch in batches:
            for first, piece in _runs(pa, batch, job):
                out, rejects = scorer.score(_conform_kept(pa, piece, scorer.keep, scorer.schema), first)
                work.write_part(first, out, rejects, rows=piece.num_rows)
                yield pa.record_batch([pa.array([v], pa.int64()) for v in (first, piece.num_rows, out.num_rows,
                                                                          len(rejects))],
                                      names=["first_row", "rows", "rows_out", "rejected"])

    return _map


def _piece_job(digest: str, bc: Any, job: dict[str, Any]) -> tuple[Any, Any]:
    from pathlib import Path

    from modelport.batch.resume import WorkDir
    from modelport.batch.score import ArrowChunkScorer

    key = (digest, str(job["workdir"]))
    with _LOCK:
        found = _JOBS.get(key)
    if found is not None:
        return found
    rt = _runtime(digest, bc)
    pa = require("pyarrow", purpose="scoring on Spark")
    schema = pa.ipc.read_schema(pa.py_buffer(job["schema"]))
    scorer = ArrowChunkScorer(rt.bundle, schema, keep=job["keep"], on_error=job["on_error"], prefix=job["prefix"],
                              runtime=rt)
    made = (scorer, WorkDir(Path(job["workdir"]), durable=False))
    with _LOCK:
        while len(_JOBS) >= _MAX_JOBS:
            _JOBS.pop(next(iter(_JOBS)))
        _JOBS[key] = made
    return made


def _runs(pa: Any, batch: Any, job: dict[str, Any]) -> Iterator[tuple[int, Any]]:
    """``(first global row, rows)`` for each run of consecutive rows of one file in ``batch``."""
    n = batch.num_rows
    if n == 0:
        return
    index = batch.column(job["row_column"]).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    if job.get("file_column"):
        from urllib.parse import unquote, urlparse

        files = batch.column(job["file_column"])
        codes = files.dictionary_encode()
        paths = codes.dictionary.to_pylist()
        known = job["offsets"]
        starts = []
        for p in paths:
            local = unquote(urlparse(p).path) if "://" in p or p.startswith("file:") else p
            if local not in known:
                raise ModelportError(f"Spark read rows from {p!r}, which is not one of the job's input files.")
            starts.append(known[local])
        index = index + np.asarray(starts, dtype=np.int64)[codes.indices.to_numpy(zero_copy_only=False)]
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    bounds = [0, *breaks.tolist(), n]
    for lo, hi in itertools.pairwise(bounds):
        yield int(index[lo]), batch.slice(lo, hi - lo)


def _conform_kept(pa: Any, batch: Any, keep: list[str], schema: Any) -> Any:
    """Spark hands kept columns over in its own types (unsigned integers widened, say): cast them
    back to the input's, so that the parts have local scoring's schema."""
    for name in keep:
        want = schema.field(name).type
        i = batch.schema.get_field_index(name)
        col = batch.column(i)
        if col.type != want:
            try:
                batch = batch.set_column(i, pa.field(name, want), col.cast(want))
            except pa.ArrowException as exc:
                raise ModelportError(
                    f"Spark returned column {name!r} as {col.type}, which does not convert back to {want}: {exc}"
                ) from exc
    return batch


def translate(exc: BaseException) -> ModelportError | None:
    """An InputError raised on an executor arrives wrapped in a Spark exception: unwrap its message."""
    text = str(exc)
    marker = "modelport.errors.InputError: "
    if marker in text:
        msg = text.split(marker, 1)[1].strip().split("\n\n")[0]
        first = msg.splitlines()[0] if msg else msg
        hint = None
        for line in msg.splitlines()[1:]:
            if line.strip().startswith("hint:"):
                hint = line.strip()[5:].strip()
        return InputError(first, hint=hint)
    for marker in ("ModuleNotFoundError: No module named 'modelport'", "ModuleNotFoundError: No module named 'pandas'",
                   "ModuleNotFoundError: No module named 'pyarrow'"):
        if marker in text:
            return ModelportError(
                f"Spark's Python workers cannot import what scoring needs ({marker.split(': ', 1)[1]}): they run "
                "another Python interpreter than this one.",
                hint="start Spark with the interpreter that has modelport: set PYSPARK_PYTHON to "
                "this environment's python (or spark.pyspark.python); `modelport score --engine spark` does so itself",
            )
    return None


def use_this_interpreter() -> None:
    """Before modelport starts a SparkContext: its Python workers run this very interpreter (a
    virtual environment's, where modelport is installed) unless the user chose one. pyspark reads
    only the ``PYSPARK_PYTHON`` variable when the context starts in-process (``spark.pyspark.python``
    is read by spark-submit alone)."""
    import os
    import sys

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
