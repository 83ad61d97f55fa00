"""Replay (time travel): re-score a logged window with any bundle and diff against what was answered.

    >>> from modelport.monitor.replay import replay
    >>> r = replay("predictions/", "models:/churn/4", since="7d")
    >>> r.label_disagreement, [v.to_dict() for v in r.versions]

The logged input columns go through the replaying bundle's own input rules
(:class:`~modelport.runtime.coerce.FeedBuilder`) exactly as a request would, so the same version
reproduces every logged output bit for bit, and another version answers what it would have
answered. Rows the replaying bundle refuses (a column it lacks, a category it refuses) are counted
with the reason, never silently skipped. Outputs are compared per logged version: labels that
differ (classifiers), and the largest difference of a probability or prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport._deps import require
from modelport.errors import InputError
from modelport.monitor import columns as colmod
from modelport.monitor._time import iso, parse_time

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle

CHUNK_ROWS = 65_536


@dataclass
class VersionDiff:
    """How the replaying bundle's answers differ from one logged version's."""

    version: str
    rows: int = 0
    scored: int = 0
    refused: int = 0
    labels_differ: int = 0
    rows_differ: int = 0  # any output value not identical
    max_abs_diff: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def label_disagreement(self) -> float:
        return self.labels_differ / self.scored if self.scored else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "rows": self.rows, "scored": self.scored, "refused": self.refused,
                "labels_differ": self.labels_differ, "label_disagreement": self.label_disagreement,
                "rows_differ": self.rows_differ, "max_abs_diff": self.max_abs_diff,
                "refusals": dict(sorted(self.reasons.items(), key=lambda kv: -kv[1])[:20])}


@dataclass
class ReplayReport:
    model: str
    replayed_with: dict[str, Any]
    since: float | None
    until: float | None
    versions: list[VersionDiff]
    output: str | None = None

    @property
    def rows(self) -> int:
        return sum(v.rows for v in self.versions)

    @property
    def scored(self) -> int:
        return sum(v.scored for v in self.versions)

    @property
    def label_disagreement(self) -> float:
        s = self.scored
        return sum(v.labels_differ for v in self.versions) / s if s else 0.0

    @property
    def identical(self) -> bool:
        return all(v.rows_differ == 0 and v.refused == 0 for v in self.versions)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "replayed_with": self.replayed_with, "since": iso(self.since),
                "until": iso(self.until), "rows": self.rows, "scored": self.scored,
                "label_disagreement": self.label_disagreement, "identical": self.identical,
                "output": self.output, "versions": [v.to_dict() for v in self.versions]}


def replay(
    log: str,
    bundle: Bundle | str,
    *,
    model: str | None = None,
    versions: Sequence[str] | None = None,
    since: Any = None,
    until: Any = None,
    output: str | None = None,
    max_rows: int | None = None,
) -> ReplayReport:
    """Re-score the logged rows of ``model`` (default: the bundle's name) in the window with
    ``bundle`` and compare. ``output``: a Parquet file of every replayed row (id, ts, logged
    version, logged and replayed label / prediction, whether they differ)."""
    pa = require("pyarrow", purpose="replay")
    from modelport._uri import load
    from modelport.monitor.read import read_log
    from modelport.runtime.coerce import FeedBuilder

    b = load(bundle) if isinstance(bundle, str) else bundle
    name = model or b.name
    t0, t1 = parse_time(since, what="--since"), parse_time(until, what="--until")
    table = read_log(log, model=name, versions=versions, since=t0, until=t1, max_rows=max_rows)
    if table.num_rows == 0:
        raise InputError(f"the prediction log {log} holds no rows of model {name!r} in that window.",
                         hint="widen --since / --until, or name the logged model with --name")
    plan = colmod.plan(b.signature)
    missing = [c.name for c in plan if colmod.IN + c.name not in table.column_names]
    if missing:
        raise InputError(
            f"the logged rows of {name!r} have no column(s) {', '.join(missing[:20])}, which the replaying "
            f"bundle {b.name!r} needs.", hint="replay with a version that reads the logged columns",
        )
    builder = FeedBuilder(b.signature)
    runtime = b.runtime
    diffs: dict[str, VersionDiff] = {}
    writer = None
    pq = require("pyarrow.parquet", purpose="replay")
    for start in range(0, table.num_rows, CHUNK_ROWS):
        part = table.slice(start, CHUNK_ROWS)
        cols = {c.name: _column(part.column(colmod.IN + c.name), c) for c in plan}
        data, form = colmod.to_feeds_data(b.signature, cols)
        checked = builder.check(data, form=form)
        ok = checked.ok
        vers = np.asarray(part.column("version").to_pylist(), dtype=object)
        result = runtime.run(checked.feeds) if ok.any() else runtime.empty_outputs()
        new = colmod.outputs(result, b.classes)
        old = {k[len(colmod.OUT):]: part.column(k) for k in part.column_names if k.startswith(colmod.OUT)}
        idx = np.flatnonzero(ok)
        differ = np.zeros(idx.size, dtype=bool)
        label_differ = np.zeros(idx.size, dtype=bool)
        worst = np.zeros(idx.size, dtype=np.float64)
        for key, values in new.items():
            if key not in old:
                differ[:] = True
                continue
            before = old[key].take(pa.array(idx, pa.int64()))
            if values.dtype.kind in "OUS" or key == "label":
                a = np.asarray([None if v is None else str(v) for v in before.to_pylist()], dtype=object)
                bb = np.asarray([str(v) for v in values.tolist()], dtype=object)
                neq = a != bb
                differ |= neq
                if key == "label":
                    label_differ |= neq
            else:
                a = before.to_numpy(zero_copy_only=False).astype(np.float64)
                bb = values.astype(np.float64)
                d = np.abs(a - bb)
                both_nan = np.isnan(a) & np.isnan(bb)
                d[both_nan] = 0.0
                neq = ~(a == bb) & ~both_nan
                differ |= neq
                worst = np.maximum(worst, np.where(np.isnan(d), np.inf, d))
        for v in np.unique(vers).tolist():
            dv = diffs.setdefault(str(v), VersionDiff(str(v)))
            vm = vers == v
            dv.rows += int(vm.sum())
            sel = vm[idx]
            dv.scored += int(sel.sum())
            dv.refused += int((vm & ~ok).sum())
            dv.labels_differ += int(label_differ[sel].sum())
            dv.rows_differ += int(differ[sel].sum())
            if sel.any():
                dv.max_abs_diff = max(dv.max_abs_diff, float(worst[sel].max()))
            for i in np.flatnonzero(vm & ~ok).tolist():
                why = checked.reasons.get(i, "refused")
                dv.reasons[why] = dv.reasons.get(why, 0) + 1
        if output is not None:
            out_cols = {"id": part.column("id").take(pa.array(idx, pa.int64())),
                        "ts": part.column("ts").take(pa.array(idx, pa.int64())),
                        "logged_version": pa.array(vers[idx].tolist(), pa.string())}
            for key, values in new.items():
                if key in old:
                    out_cols[f"logged_{key}"] = old[key].take(pa.array(idx, pa.int64()))
                out_cols[f"replayed_{key}"] = pa.array(values.tolist() if values.dtype.kind in "OUS" else values)
            out_cols["differs"] = pa.array(differ)
            t = pa.table(out_cols)
            if writer is None:
                writer = pq.ParquetWriter(output, t.schema)
            writer.write_table(t)
    if writer is not None:
        writer.close()
    info = {"name": b.name, "version": b.version, "digest": b.digest,
            "source": bundle if isinstance(bundle, str) else b.origin}
    ordered = sorted(diffs.values(), key=lambda d: (0, int(d.version)) if d.version.isdigit() else (1, d.version))
    return ReplayReport(name, info, t0, t1, ordered, output)


def _column(col: Any, c: colmod.LoggedColumn) -> Any:
    if c.kind == "list":
        return np.asarray(col.to_pylist(), dtype=object)
    if c.text:
        return np.asarray(col.to_pylist(), dtype=object)
    if c.kind == "float":
        return col.to_numpy(zero_copy_only=False).astype(np.float64)
    arr = col.to_numpy(zero_copy_only=False)
    return arr
