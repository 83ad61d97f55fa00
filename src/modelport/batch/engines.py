"""``score_file`` on a cluster: Dask or Spark reads and scores the input, then the output is assembled here.

The engine writes its scored partitions (with a per-row error column) as Parquet into the job's work
directory; they are then streamed in input order into the requested output format, with the same
schema as local scoring and with rejects numbered by their global input row, exactly as a local run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelport._deps import require
from modelport.batch.resume import WorkDir, split_errors, write_atomic, write_rejects
from modelport.batch.score import ERROR_COLUMN, UNKNOWN_COLUMN, ArrowChunkScorer, add_counts
from modelport.bundle.core import Bundle
from modelport.errors import InputError, ModelportError

_ORDER_FILE = "__modelport_file"
_ORDER_ROW = "__modelport_row"


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
) -> tuple[int, int, int]:
    """Score with ``engine``; returns (rows in, rows written, rejects). Scored unknown categories
    are added to ``unknown`` (column -> count)."""
    parts_dir = work.path / "engine"
    columns = list(dict.fromkeys([*scorer.core.columns, *kept]))
    # skip/null: the engine marks bad rows and assembly numbers them; fail: the engine stops at once
    engine_on_error = "fail" if on_error == "fail" else "null"
    if engine == "dask":
        _dask(bundle, source, columns, kept, engine_on_error, prefix, address, parts_dir)
        files = sorted(parts_dir.glob("*.parquet"), key=_part_number)
    else:
        _spark(bundle, source, columns, kept, engine_on_error, prefix, address, parts_dir)
        files = sorted(parts_dir.glob("part-*.parquet"))
    return _assemble(files, output, out_fmt, scorer, on_error, rejects_path, source,
                     {} if unknown is None else unknown)


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
def _dask(bundle: Bundle, source: Any, columns: list[str], kept: list[str], on_error: str, prefix: str,
          address: str | None, parts_dir: Path) -> None:
    dd = require("dask.dataframe", purpose="scoring on Dask")
    distributed = require("distributed", purpose="scoring on Dask")
    from modelport.batch.dask import predict

    own: list[Any] = []
    try:
        if address:
            client = distributed.Client(address)
            own.append(client)
        else:
            try:
                client = distributed.default_client()
            except ValueError:
                cluster = distributed.LocalCluster(threads_per_worker=1, dashboard_address=None)
                client = distributed.Client(cluster)
                own.extend([client, cluster])
        paths = [str(f) for f in source.files]
        if source.format == "parquet":
            ddf = dd.read_parquet(paths, columns=columns)
        elif source.format == "csv":
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
    finally:
        for obj in own:
            obj.close()


# ---------------------------------------------------------------------------- spark
def _spark(bundle: Bundle, source: Any, columns: list[str], kept: list[str], on_error: str, prefix: str,
           address: str | None, parts_dir: Path) -> None:
    require("pyspark", purpose="scoring on Spark")
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from modelport.batch.spark import predict, translate, use_this_interpreter

    active = SparkSession.getActiveSession()
    if active is not None and (address is None or active.sparkContext.master == address):
        spark = active
    else:
        use_this_interpreter()
        spark = (SparkSession.builder.master(address or "local[*]").appName("modelport score")
                 .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    paths = [str(f) for f in source.files]
    pa = require("pyarrow", purpose="scoring on Spark")
    schema = from_arrow_schema(pa.schema([source.schema.field(c) for c in columns]))
    if source.format == "parquet":
        df = spark.read.parquet(*paths)
    elif source.format == "csv":
        df = (spark.read.schema(schema).option("header", True).option("sep", source.delimiter)
              .option("mode", "FAILFAST").csv(paths[0]))
    else:
        df = spark.read.schema(schema).option("mode", "FAILFAST").json(paths[0])
    ordered = source.format == "parquet" and len(paths) > 1
    if ordered:
        # Spark packs the splits of several files by size, not in order: restore input order explicitly
        df = df.select(*columns, F.col("_metadata.file_path").alias(_ORDER_FILE),
                       F.col("_metadata.row_index").alias(_ORDER_ROW))
        keep_cols = [*kept, _ORDER_FILE, _ORDER_ROW]
    else:
        df = df.select(*columns)
        keep_cols = kept
    scored = predict(bundle, df, keep=keep_cols, on_error=on_error, prefix=prefix,  # type: ignore[arg-type]
                     error_column=ERROR_COLUMN)
    if ordered:
        scored = scored.orderBy(_ORDER_FILE, _ORDER_ROW).drop(_ORDER_FILE, _ORDER_ROW)
    try:
        scored.write.mode("overwrite").parquet(str(parts_dir))
    except Exception as exc:
        mp_exc = translate(exc)
        if mp_exc is not None:
            raise mp_exc from None
        raise ModelportError(f"the Spark job failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from exc
