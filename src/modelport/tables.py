"""Reading and writing tables of rows (CSV, Parquet, JSON lines) for the CLI and batch scoring.

``read_table`` turns a file into a pandas DataFrame and says clearly when the file is missing,
empty, truncated or not what its name claims. ``write_table`` writes a DataFrame atomically
(temporary sibling, then a rename) or to a stream such as stdout.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from modelport._deps import require
from modelport._fs import atomic_file
from modelport.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

TableFormat = Literal["csv", "parquet", "jsonl", "json"]
FORMATS: tuple[str, ...] = ("csv", "parquet", "jsonl", "json")
#: file extension -> format
EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_PARQUET_MAGIC = b"PAR1"


def detect_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The table format of ``path``: ``format`` when given, else from the extension."""
    if format is not None:
        if format not in FORMATS:
            raise InputError(f"unknown table format {format!r}; expected one of {', '.join(FORMATS)}.")
        return format
    suffix = Path(path).suffix.lower()
    fmt = EXTENSIONS.get(suffix)
    if fmt is None:
        raise InputError(
            f"{path}: cannot tell the table format from the extension {suffix or '(none)'!r}; "
            f"expected one of {', '.join(sorted(EXTENSIONS))}.",
            hint="rename the file or pass the format explicitly (--format csv|parquet|jsonl|json)",
        )
    return fmt


def read_table(path: str | os.PathLike[str], *, format: TableFormat | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or JSON-lines file into a DataFrame.

    ``.json`` files may hold JSON lines (one object per line) or one JSON array of objects.
    Missing, empty, truncated or malformed files raise InputError naming the file and the problem.
    """
    require("pandas", purpose="reading tables")
    p = Path(path)
    fmt = detect_format(p, format)
    if not p.exists():
        raise InputError(f"{p}: no such file.")
    if p.is_dir():
        raise InputError(f"{p} is a directory; expected a {fmt} file.")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: the file is empty; expected a {fmt} table with a header row or records.")
    if fmt == "csv":
        return _read_csv(p)
    if fmt == "parquet":
        return _read_parquet(p)
    return _read_json(p)


def _read_csv(p: Path) -> pd.DataFrame:
    import pandas as pd

    sep = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(p, sep=sep)
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); is this really a CSV file?") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{p}: the CSV file has no header row or data.") from exc
    except pd.errors.ParserError as exc:
        raise InputError(f"{p}: malformed CSV: {str(exc).strip().splitlines()[-1]}") from exc
    _check_csv_tail(p, sep, n_columns=len(df.columns))
    return df


def _check_csv_tail(p: Path, sep: str, *, n_columns: int) -> None:
    """A file cut off in the middle of its last row: pandas would fill the gap with NaN silently."""
    with p.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - 65536))
        tail = fh.read()
    if tail.endswith((b"\n", b"\r")):
        return
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")
    try:
        fields = next(csv.reader([last], delimiter=sep), [])
    except csv.Error:
        return
    if 0 < len(fields) < n_columns:
        raise InputError(
            f"{p}: the last row has {len(fields)} of {n_columns} fields and no line end; the file looks truncated.",
            hint="write the file again completely",
        )


def _read_parquet(p: Path) -> pd.DataFrame:
    pq = require("pyarrow.parquet", purpose="reading Parquet files")
    import pyarrow as pa

    with p.open("rb") as fh:
        head = fh.read(4)
        fh.seek(max(0, p.stat().st_size - 4))
        tail = fh.read(4)
    if head != _PARQUET_MAGIC:
        raise InputError(f"{p}: not a Parquet file (it does not start with the Parquet magic bytes).")
    if tail != _PARQUET_MAGIC:
        raise InputError(f"{p}: the Parquet file is truncated (it does not end with the Parquet footer).")
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read the Parquet file: {exc}") from exc
    return table.to_pandas()


def _read_json(p: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected JSON lines.") from exc
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{p}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from exc
        if not all(isinstance(r, dict) for r in records):
            raise InputError(f"{p}: a JSON array of records must hold only objects ({{\"column\": value, ...}}).")
    else:
        records = []
        lines = text.splitlines()
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                where = "the last line" if lineno == len(lines) else f"line {lineno}"
                extra = " (the file looks truncated)" if lineno == len(lines) and not text.endswith("\n") else ""
                raise InputError(f"{p}: invalid JSON on {where}{extra}: {exc.msg}.") from exc
            if not isinstance(rec, dict):
                raise InputError(
                    f"{p}: line {lineno} holds a JSON {type(rec).__name__}, not an object; "
                    "JSON lines must hold one object per line."
                )
            records.append(rec)
    if not records:
        raise InputError(f"{p}: the file holds no records.")
    columns: dict[str, None] = {}
    for rec in records:
        columns.update(dict.fromkeys(rec))
    return pd.DataFrame.from_records(records, columns=list(columns))


def write_table(
    df: pd.DataFrame,
    path_or_stdout: str | os.PathLike[str] | IO[Any] | None,
    *,
    format: TableFormat | None = None,
) -> None:
    """Write ``df`` as CSV, Parquet, JSON lines (``jsonl``) or a JSON array of records (``json``).

    ``path_or_stdout`` is a path (written atomically: a temporary sibling, then a rename), ``"-"``
    or None for stdout, or an open stream (text or binary). Without ``format`` the path's
    extension decides; streams default to CSV.
    """
    require("pandas", purpose="writing tables")
    if path_or_stdout is None or path_or_stdout == "-":
        _write_stream(df, sys.stdout, format or "csv")
        return
    if hasattr(path_or_stdout, "write"):
        _write_stream(df, path_or_stdout, format or "csv")  # type: ignore[arg-type]
        return
    target = Path(path_or_stdout)
    fmt = detect_format(target, format)
    if target.is_dir():
        raise InputError(f"{target} is a directory; expected a file path for the output table.")
    with atomic_file(target) as fh:
        _write_binary(df, fh, fmt)


def _write_stream(df: pd.DataFrame, stream: IO[Any], fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError(f"unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}.")
    if isinstance(stream, io.TextIOBase) or not _is_binary(stream):
        binary = getattr(stream, "buffer", None)
        if binary is not None:
            stream.flush()
            _write_binary(df, binary, fmt)
            binary.flush()
            return
        if fmt == "parquet":
            raise InputError("Parquet is binary and cannot be written to a text stream; write it to a file (-o).")
        buf = io.BytesIO()
        _write_binary(df, buf, fmt)
        stream.write(buf.getvalue().decode("utf-8"))
        return
    _write_binary(df, stream, fmt)


def _is_binary(stream: IO[Any]) -> bool:
    mode = getattr(stream, "mode", "")
    return isinstance(stream, (io.RawIOBase, io.BufferedIOBase)) or "b" in str(mode)


def _write_binary(df: pd.DataFrame, fh: IO[bytes], fmt: str) -> None:
    if fmt == "csv":
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="", write_through=True)
        try:
            df.to_csv(text, index=False, lineterminator="\n")
            text.flush()
        finally:
            text.detach()
    elif fmt == "parquet":
        require("pyarrow", purpose="writing Parquet files")
        df.to_parquet(fh, index=False)
    elif fmt == "jsonl":
        for rec in _records(df):
            fh.write(json.dumps(rec, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n")
    elif fmt == "json":
        fh.write(b"[")
        for i, rec in enumerate(_records(df)):
            fh.write((b",\n" if i else b"\n") + json.dumps(rec, ensure_ascii=False, allow_nan=False).encode("utf-8"))
        fh.write(b"\n]\n")
    else:
        raise InputError(f"unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}.")


def _records(df: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """Rows as JSON-ready dicts: Python scalars, NaN/NA as null, full float precision."""
    names = [str(c) for c in df.columns]
    columns = [_json_values(df.iloc[:, i]) for i in range(df.shape[1])]
    for i in range(len(df)):
        yield {n: col[i] for n, col in zip(names, columns, strict=False)}


def _json_values(series: Any) -> list[Any]:
    values = series.astype(object).tolist() if str(series.dtype) == "category" else series.tolist()
    out: list[Any] = []
    for v in values:
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):
            with contextlib.suppress(ValueError, TypeError):
                v = v.item()
        if v is None or (isinstance(v, float) and not math.isfinite(v)) or _is_na(v):
            out.append(None)
        elif isinstance(v, (str, int, float, bool)):
            out.append(v)
        else:
            out.append(str(v))
    return out


def _is_na(v: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(v)) if not isinstance(v, (list, tuple, dict)) else False
    except (TypeError, ValueError):
        return False
