"""``modelport score BUNDLE INPUT -o OUTPUT``: batch-score a file of any size (chunked, resumable, Dask or Spark)."""

from __future__ import annotations

import sys

import click


@click.command("score")
@click.argument("bundle")
@click.argument("input", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Output file: .parquet, .csv or .jsonl (by its suffix).")
@click.option("--keep", default="rest", show_default=True,
              help="Input columns to copy to the output: 'rest' (those that are not model inputs, e.g. ids), "
                   "'all', 'none', or a comma-separated list of names.")
@click.option("--prefix", default="", help="Prefix for the prediction column names (e.g. pred_).")
@click.option("--on-error", type=click.Choice(["fail", "skip", "null"]), default="fail", show_default=True,
              help="Rows that cannot be scored: stop the job, leave them out, or give them null predictions.")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Where skip/null write the rows that could not be scored (row, reason); "
                   "default OUTPUT.rejects.csv.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Scoring processes on this machine.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="ONNX Runtime threads per worker (default: cores / workers).")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=131_072, show_default=True,
              help="Rows per chunk: memory use grows with this, never with the file.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run of the same job where it stopped.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output (and discard an interrupted run).")
@click.option("--engine", type=click.Choice(["local", "dask", "spark"]), default="local", show_default=True,
              help="Where to score: this machine, a Dask cluster, or Spark.")
@click.option("--address", default=None,
              help="Dask scheduler address (default: a LocalCluster) or Spark master URL (default: local[*]).")
@click.option("--input-format", type=click.Choice(["parquet", "csv", "jsonl"]), default=None,
              help="Input format when the file name does not say it.")
@click.option("--output-format", type=click.Choice(["parquet", "csv", "jsonl"]), default=None,
              help="Output format when the file name does not say it.")
@click.option("--unknown-categories", type=click.Choice(["native", "missing", "error"]), default=None,
              help="Values outside a column's categories: as the model's library does (native), scored as "
                   "missing, or rejected (error); default: the bundle's own policy. Scored ones are counted.")
@click.option("--log", "log", default=None, metavar="DIR|URL",
              help="Also write the scored rows to this prediction log (read by drift, perf, replay).")
@click.option("--log-sample", default=1.0, show_default=True, type=click.FloatRange(0, 1), metavar="RATE",
              help="Share of rows logged (by row id).")
@click.option("--log-id", "log_id_column", default=None, metavar="COLUMN",
              help="Input column holding the rows' ids in the log (default: <run id>:<row>), for labels to join.")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the result summary as JSON.")
def score(
    bundle: str,
    input: tuple[str, ...],
    output: str,
    keep: str,
    prefix: str,
    on_error: str,
    rejects: str | None,
    workers: int,
    threads: int | None,
    chunk_rows: int,
    resume: bool,
    overwrite: bool,
    engine: str,
    address: str | None,
    input_format: str | None,
    output_format: str | None,
    progress: bool | None,
    unknown_categories: str | None,
    as_json: bool,
    log: str | None,
    log_sample: float,
    log_id_column: str | None,
) -> None:
    """Score INPUT (a Parquet file, directory or glob; CSV; JSON lines) with BUNDLE into OUTPUT.

    The file is streamed in chunks, so memory does not depend on its size; the output appears
    only when complete. Example: modelport score churn.mpk input.parquet -o scored.parquet --workers 2
    """
    from modelport.batch.memory import tune_this_process

    tune_this_process()  # this process only scores: keep freed buffers for the next chunk
    from modelport.batch.job import score_file

    keep_arg: str | list[str]
    keep_arg = keep if keep in ("rest", "all", "none") else [c.strip() for c in keep.split(",") if c.strip()]
    result = score_file(
        bundle,
        list(input) if len(input) > 1 else input[0],
        output,
        keep=keep_arg,
        on_error=on_error,  # type: ignore[arg-type]
        rejects=rejects,
        prefix=prefix,
        workers=workers,
        threads=threads,
        chunk_rows=chunk_rows,
        resume=resume,
        overwrite=overwrite,
        engine=engine,  # type: ignore[arg-type]
        address=address,
        input_format=input_format,
        output_format=output_format,
        progress=sys.stderr.isatty() if progress is None else progress,
        unknown_categories=unknown_categories,
        log=log,
        log_sample=log_sample,
        log_id_column=log_id_column,
    )
    if as_json:
        import json

        click.echo(json.dumps({
            "output": str(result.output), "rows_in": result.rows_in, "rows_out": result.rows_out,
            "rejected": result.rejected, "rejects": str(result.rejects_path) if result.rejects_path else None,
            "seconds": round(result.seconds, 3), "resumed_chunks": result.resumed_chunks,
            "unknown_categories": result.unknown_categories,
            "timings": {k: round(v, 3) for k, v in result.timings.items()},
        }))
        return
    line = f"scored {result.rows_in:,} rows -> {result.output} ({result.rows_out:,} rows, {result.seconds:.1f}s, " \
           f"{result.rows_per_second:,.0f} rows/s)"
    if result.resumed_chunks:
        line += f"; {result.resumed_chunks} chunk(s) reused from the interrupted run"
    click.echo(line)
    if result.rejects_path is not None:
        click.echo(f"{result.rejected:,} row(s) could not be scored; listed in {result.rejects_path}")
    from modelport.batch.score import unknown_summary

    unknown = unknown_summary(result.unknown_categories)
    if unknown is not None:
        click.echo(unknown)
