"""Reading the prediction log and feedback labels (the layout is :mod:`modelport.monitor.log`'s).

    >>> from modelport.monitor.read import read_log, read_labels
    >>> table = read_log("predictions/", model="churn", since="24h")     # a pyarrow Table
    >>> labels = read_labels("predictions/")                             # id, label, value, ts

Only complete files are read (hidden temporary files of open writers never are), partitions
outside the time window are not opened, and only the columns asked for are decoded.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from modelport._deps import require
from modelport.errors import InputError
from modelport.monitor._time import parse_time
from modelport.monitor.log import LABELS_DIR, WRITERS_DIR, Storage


@dataclass(frozen=True)
class LogFile:
    """One complete log file: its path and partition values."""

    path: str
    model: str
    version: str
    date: str


def _value(name: str, key: str) -> str | None:
    prefix = key + "="
    return unquote(name[len(prefix):]) if name.startswith(prefix) else None


def _dates(since: float | None, until: float | None) -> tuple[str | None, str | None]:
    # a file is dated when it was opened: its rows run past that by less than a rotation (< 1 day),
    # but may be older (a row's time can be given: backfills, batch jobs), so only the start prunes
    lo = None if since is None else (datetime.fromtimestamp(since, tz=timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")
    return lo, None


def log_files(url: str | os.PathLike[str] | Storage, *, model: str | None = None,
              versions: Sequence[str] | None = None, since: Any = None, until: Any = None) -> list[LogFile]:
    """The complete prediction files of ``model`` (all models when None) that may hold rows in the window."""
    storage = url if isinstance(url, Storage) else Storage(url)
    lo, hi = _dates(parse_time(since, what="--since"), parse_time(until, what="--until"))
    out: list[LogFile] = []
    for mdir in storage.listdir(storage.root):
        m = _value(mdir, "model")
        if m is None or (model is not None and m != model):
            continue
        for vdir in storage.listdir(storage.join(mdir)):
            v = _value(vdir, "version")
            if v is None or (versions is not None and v not in versions):
                continue
            for ddir in storage.listdir(storage.join(mdir, vdir)):
                d = _value(ddir, "date")
                if d is None or (lo is not None and d < lo) or (hi is not None and d > hi):
                    continue
                for name in storage.listdir(storage.join(mdir, vdir, ddir)):
                    if name.startswith("part-") and name.endswith(".parquet"):
                        out.append(LogFile(storage.join(mdir, vdir, ddir, name), m, v, d))
    return out


def models(url: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Model name -> versions that have log files."""
    storage = Storage(url)
    found: dict[str, list[str]] = {}
    for mdir in storage.listdir(storage.root):
        m = _value(mdir, "model")
        if m is None:
            continue
        found[m] = sorted((v for v in (_value(x, "version") for x in storage.listdir(storage.join(mdir))) if v),
                          key=_version_key)
    return found


def _version_key(v: str) -> tuple[int, Any]:
    return (0, int(v)) if v.isdigit() else (1, v)


def read_log(
    url: str | os.PathLike[str],
    *,
    model: str | None = None,
    versions: Sequence[str] | None = None,
    since: Any = None,
    until: Any = None,
    columns: Sequence[str] | None = None,
    roles: Sequence[str] | None = ("answer",),
    max_rows: int | None = None,
) -> Any:
    """Logged rows as one pyarrow Table (sorted by nothing: files in order, rows as written).

    ``since`` / ``until``: ``24h``, an ISO time, or epoch seconds. ``columns``: the columns to
    decode (default all; ``"in.*"`` names every column with that prefix); names a version lacks are
    left out of its rows (null when mixed).
    ``roles``: which rows (``answer`` by default; None for all, shadows included). ``max_rows``:
    the newest files are read first and reading stops past that many rows.
    """
    pa = require("pyarrow", purpose="reading the prediction log")
    storage = Storage(url)
    if storage.local is not None and not storage.local.exists():
        raise InputError(f"the prediction log {storage.local} does not exist.",
                         hint="give the directory `modelport serve --log` (or score --log) writes")
    t0, t1 = parse_time(since, what="--since"), parse_time(until, what="--until")
    files = log_files(storage, model=model, versions=versions, since=t0, until=t1)
    if max_rows is not None:
        files = sorted(files, key=lambda f: os.path.basename(f.path), reverse=True)
    groups: dict[tuple[str, str], list[str]] = {}
    for f in files:
        groups.setdefault((f.model, f.version), []).append(f.path)
    window = _Window(t0, t1, roles)
    tables = []
    total = 0
    for (_m, _v), paths in groups.items():
        tables.append(_read_files(paths, storage.filesystem(), columns, window))
        total += tables[-1].num_rows
        if max_rows is not None and total >= max_rows:
            break
    if not tables:
        return _empty(pa, columns)
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
    if max_rows is not None and table.num_rows > max_rows:
        table = table.slice(table.num_rows - max_rows)
    return table


@dataclass(frozen=True)
class _Window:
    """The row filter of a read: ``ts`` in [since, until) (epoch seconds, None: open) and ``role`` in roles."""

    since: float | None
    until: float | None
    roles: Sequence[str] | None

    def columns(self) -> list[str]:
        return ([] if self.since is None and self.until is None else ["ts"]) + ([] if self.roles is None else ["role"])

    def select(self, table: Any) -> Any:
        """The rows of ``table`` inside the window (a null ``ts`` or ``role`` is outside)."""
        pa = require("pyarrow")
        pc = require("pyarrow.compute")
        if table.num_rows == 0:
            return table
        # whole files are inside (or outside) the window far more often than not: decide that from
        # the column's range / distinct values, and build a per-row mask only for a file the window
        # cuts (pyarrow imports pandas the first time it converts a Python value, as for a scalar)
        mixed = False
        if self.since is not None or self.until is not None:
            if "ts" not in table.column_names:
                return table.slice(0, 0)
            ts = table.column("ts").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
            lo_hi = pc.min_max(ts).as_py()
            lo, hi = lo_hi["min"], lo_hi["max"]
            since = None if self.since is None else int(self.since * 1e6)
            until = None if self.until is None else int(self.until * 1e6)
            if lo is None or (since is not None and hi < since) or (until is not None and lo >= until):
                return table.slice(0, 0)
            mixed = ts.null_count > 0 or (since is not None and lo < since) or (until is not None and hi >= until)
        if self.roles is not None:
            if "role" not in table.column_names:
                return table.slice(0, 0)
            role = table.column("role")
            found = set(pc.unique(role).to_pylist())
            if not found & set(self.roles):
                return table.slice(0, 0)
            mixed = mixed or role.null_count > 0 or not found <= set(self.roles)
        if not mixed:
            return table
        ts_type = pa.timestamp("us", tz="UTC")
        mask = None
        conds = []
        for bound, op in ((self.since, pc.greater_equal), (self.until, pc.less)):
            if bound is not None:
                conds.append(op(table.column("ts"), pa.scalar(int(bound * 1e6), ts_type)))
        if self.roles is not None:
            conds.append(pc.is_in(table.column("role"), value_set=pa.array(list(self.roles), pa.string())))
        for c in conds:
            mask = c if mask is None else pc.and_kleene(mask, c)
        return table.filter(mask)  # null: dropped


def _read_files(paths: Sequence[str], filesystem: Any, columns: Sequence[str] | None, window: _Window) -> Any:
    """The rows of one model version's files inside ``window``, in the first file's schema (a
    column a later file lacks is null there; one of another type is cast), files in order.

    Each file is read with ``pyarrow.parquet`` and filtered here: ``pyarrow.dataset`` would do the
    same but costs a second of CPU (its import pulls in pandas, and its scanner's reads about a
    second of system time on a million rows), most of ``modelport drift``'s start-up."""
    pa = require("pyarrow", purpose="reading the prediction log")
    pq = require("pyarrow.parquet", purpose="reading the prediction log")
    schema = None
    wanted: list[str] = []
    parts = []
    for path in paths:
        f = pq.ParquetFile(path, filesystem=filesystem)
        names = f.schema_arrow.names
        if schema is None:
            wanted = list(names) if columns is None else _select(names, columns)
            schema = pa.schema([f.schema_arrow.field(n) for n in wanted], metadata=f.schema_arrow.metadata)
        extra = [c for c in window.columns() if c not in wanted]
        t = f.read(columns=[c for c in [*wanted, *extra] if c in names])
        t = window.select(t)
        arrays = []
        for field in schema:
            if field.name not in t.column_names:
                arrays.append(pa.nulls(t.num_rows, field.type))
            else:
                col = t.column(field.name)
                arrays.append(col if col.type == field.type else col.cast(field.type))
        parts.append(pa.Table.from_arrays(arrays, schema=schema))
    assert schema is not None  # a group has at least one file
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


def _select(names: Sequence[str], columns: Sequence[str]) -> list[str]:
    """The file's column ``names`` that ``columns`` asks for (exact names, or ``prefix*``), in the asked order."""
    out: list[str] = []
    for c in columns:
        if c.endswith("*"):
            out.extend(n for n in names if n.startswith(c[:-1]) and n not in out)
        elif c in names and c not in out:
            out.append(c)
    return out


def _empty(pa: Any, columns: Sequence[str] | None) -> Any:
    base = {"id": pa.string(), "request_id": pa.string(), "ts": pa.timestamp("us", tz="UTC"), "model": pa.string(),
            "version": pa.string(), "digest": pa.string(), "source": pa.string(), "role": pa.string(),
            "arm": pa.string(), "latency_ms": pa.float64(), "sample_rate": pa.float64()}
    names = list(base) if columns is None else _select(list(base), columns)
    return pa.table({n: pa.array([], base[n]) for n in names})


def read_labels(source: str | os.PathLike[str], *, since: Any = None, until: Any = None) -> Any:
    """Labels as a pyarrow Table of ``id`` (string), ``label`` (string), ``value`` (float, the label
    as a number where it is one), ``ts``: from a prediction log's ``_labels/`` (the feedback
    endpoint's), or a Parquet / CSV / JSON-lines file with an ``id`` column and a ``label`` column.
    Where an id has several labels, the last one received counts (a correction)."""
    pa = require("pyarrow", purpose="reading labels")
    pc = require("pyarrow.compute", purpose="reading labels")
    path = os.fspath(source)
    local = "://" not in path or path.startswith("file://")
    local_path = path[7:] if path.startswith("file://") else path
    if local and not os.path.exists(local_path):
        raise InputError(f"the labels {path} do not exist (neither a prediction log nor a labels file).",
                         hint="give a Parquet / CSV / JSON-lines file with id and label columns, or a log directory")
    is_log = not (local and os.path.isfile(local_path))
    if is_log:
        storage = Storage(path)
        files = []
        base = storage.join(LABELS_DIR)
        for ddir in storage.listdir(base):
            for name in storage.listdir(storage.join(LABELS_DIR, ddir)):
                if name.startswith("labels-") and name.endswith(".parquet"):
                    files.append(storage.join(LABELS_DIR, ddir, name))
        if not files:
            return _labels_table(pa, [], [], [], [])
        ds = require("pyarrow.dataset", purpose="reading labels")
        table = ds.dataset(files, format="parquet", filesystem=storage.filesystem()).to_table()
    else:
        table = _label_file(path)
    t0, t1 = parse_time(since, what="--since"), parse_time(until, what="--until")
    if "received" in table.column_names:
        order = pc.sort_indices(table, sort_keys=[("received", "ascending")])
        table = table.take(order)
    ids = table.column("id").to_pylist()
    labels = table.column("label").to_pylist() if "label" in table.column_names else [None] * len(ids)
    values = table.column("value").to_pylist() if "value" in table.column_names else [_num(v) for v in labels]
    ts = table.column("ts").to_pylist() if "ts" in table.column_names else [None] * len(ids)
    last: dict[str, int] = {}
    for i, rid in enumerate(ids):
        if rid is not None:
            last[str(rid)] = i
    keep = sorted(last.values())
    out_ts = [_epoch(ts[i]) for i in keep]
    def within(t: float | None) -> bool:
        return t is None or ((t0 is None or t >= t0) and (t1 is None or t < t1))

    rows = [(str(ids[i]), labels[i], values[i], out_ts[j]) for j, i in enumerate(keep) if within(out_ts[j])]
    return _labels_table(pa, [r[0] for r in rows], [None if r[1] is None else str(r[1]) for r in rows],
                         [r[2] for r in rows], [r[3] for r in rows])


def _labels_table(pa: Any, ids: list[str], labels: list[Any], values: list[Any], ts: list[Any]) -> Any:
    return pa.table({"id": pa.array(ids, pa.string()), "label": pa.array(labels, pa.string()),
                     "value": pa.array(values, pa.float64()), "ts": pa.array(ts, pa.float64())})


def _label_file(path: str) -> Any:
    pa = require("pyarrow", purpose="reading labels")
    if not os.path.exists(path):
        raise InputError(f"the labels file {path} does not exist.")
    lower = path.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            table = require("pyarrow.parquet").read_table(path)
        elif lower.endswith((".csv", ".csv.gz")):
            csv = require("pyarrow.csv")
            table = csv.read_csv(path, convert_options=csv.ConvertOptions(column_types={"id": pa.string(),
                                                                                        "label": pa.string()}))
        elif lower.endswith((".jsonl", ".ndjson", ".json")):
            rows = []
            with open(path, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except ValueError as exc:
                            raise InputError(f"{path}, line {n}: not valid JSON ({exc}).") from None
            table = pa.Table.from_pylist([{"id": None if r.get("id") is None else str(r.get("id")),
                                           "label": None if r.get("label") is None else str(r.get("label"))}
                                          for r in rows if isinstance(r, dict)])
        else:
            raise InputError(f"cannot tell the format of the labels file {path}.",
                             hint="use .parquet, .csv or .jsonl, with columns id and label")
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputError(f"cannot read the labels file {path}: {exc}.") from None
    missing = [c for c in ("id", "label") if c not in table.column_names]
    if missing:
        raise InputError(f"the labels file {path} has no {' or '.join(missing)} column; it has "
                         f"{', '.join(table.column_names[:20])}.", hint="give columns id and label")
    cols = {"id": table.column("id").cast(pa.string()), "label": table.column("label").cast(pa.string())}
    if "ts" in table.column_names:
        cols["ts"] = table.column("ts")
    return pa.table(cols)


def _num(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _epoch(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return parse_time(str(v))
    except InputError:
        return None


def writers(url: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The state of every writer of a log (``_writers/*.json``), newest first."""
    storage = Storage(url)
    out = []
    for name in storage.listdir(storage.join(WRITERS_DIR)):
        if name.endswith(".json") and not name.startswith("."):
            try:
                out.append(json.loads(storage.read_bytes(storage.join(WRITERS_DIR, name))))
            except (OSError, ValueError):
                continue
    return sorted(out, key=lambda d: -float(d.get("updated") or 0))


def now() -> float:
    return time.time()
