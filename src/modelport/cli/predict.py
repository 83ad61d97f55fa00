"""``modelport predict BUNDLE INPUT [-o OUTPUT]``: score a CSV, Parquet or JSON-lines file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from modelport.errors import InputError
from modelport.tables import FORMATS


@click.command("predict")
@click.argument("bundle")
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "output", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the predictions here (format from the extension); default: stdout.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format (default: from OUTPUT's extension; csv on stdout). json is one array of records.")
@click.option("--input-format", type=click.Choice(FORMATS), default=None,
              help="Input format, when INPUT's extension does not tell (json/jsonl: JSON lines or an array).")
@click.option("--keep", "keep", multiple=True, metavar="COLUMN",
              help="Copy this input column into the output, before the predictions (repeatable).")
@click.option("--keep-all", is_flag=True, help="Copy every input column into the output, before the predictions.")
@click.option("--overwrite/--no-overwrite", default=True, show_default=True, help="Replace OUTPUT if it exists.")
def predict(
    bundle: str,
    input_file: Path,
    output: Path | None,
    fmt: str | None,
    input_format: str | None,
    keep: tuple[str, ...],
    keep_all: bool,
    overwrite: bool,
) -> None:
    """Score INPUT (CSV, Parquet or JSON lines) with BUNDLE and write one row of predictions per input row.

    BUNDLE is a bundle directory, an .mpk file or a registry URI (models:/NAME@ALIAS).
    The output holds `label` and `proba_<class>` for classifiers, `prediction` for
    regressors, the graph's outputs otherwise. Input columns the model does not use are
    ignored unless kept with --keep / --keep-all.
    """
    from modelport import load
    from modelport.tables import detect_format, read_table, write_table

    if output is not None:
        out_fmt = detect_format(output, fmt)
        if output.exists() and not overwrite:
            raise InputError(f"{output} already exists.", hint="choose another path or pass --overwrite")
    else:
        out_fmt = fmt or "csv"
    b = load(bundle)
    frame = read_table(input_file, format=input_format)  # type: ignore[arg-type]
    missing_keep = [c for c in keep if c not in frame.columns]
    if missing_keep:
        raise InputError(
            f"--keep names column(s) that {input_file} does not have: {', '.join(missing_keep)}; "
            f"its columns are: {', '.join(map(str, frame.columns))}."
        )
    predictions = b.predict_frame(_model_columns(frame, b))
    kept = list(frame.columns) if keep_all else list(dict.fromkeys(keep))
    result = _join(frame, kept, predictions)
    write_table(result, output if output is not None else _stdout(), format=out_fmt)  # type: ignore[arg-type]


def _model_columns(frame: Any, bundle: Any) -> Any:
    """The columns the model reads; with any of them missing, the whole frame, so that the
    error lists both the missing and the unexpected columns."""
    wanted = bundle.signature.column_names or [t.name for t in bundle.signature.inputs]
    if all(c in frame.columns for c in wanted):
        return frame[wanted]
    return frame


def _join(frame: Any, kept: list[Any], predictions: Any) -> Any:
    import pandas as pd

    if not kept:
        return predictions.reset_index(drop=True)
    left = frame[kept].reset_index(drop=True)
    # an input column may share a name with a prediction column (say "label"); the input one is renamed
    left.columns = [f"input_{c}" if str(c) in predictions.columns else c for c in left.columns]
    return pd.concat([left, predictions.reset_index(drop=True)], axis=1)


def _stdout() -> Any:
    return sys.stdout.buffer
