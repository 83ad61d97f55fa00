"""Drift: how far a window of inputs (and of predictions) is from the training reference.

    >>> from modelport.monitor.drift import drift_of_log
    >>> report = drift_of_log("churn.mpk", "predictions/", since="24h")
    >>> report.drifted, report.share, [c.name for c in report.columns if c.drifted]

Per column, against the reference the bundle stores (its manifest's ``reference`` statistics of
the *whole* training sample, and the sample rows in ``reference/inputs.npz``) or against any other
window or file (:func:`reference_from_columns`):

* **numeric**: PSI over the reference's histogram bins (its deciles; the outer bins open so that
  values beyond the training range count), and the two-sample Kolmogorov-Smirnov statistic and
  p-value against the stored reference rows (the same numbers as ``scipy.stats.ks_2samp``);
* **categorical**: chi-square (``scipy.stats.chi2_contingency`` without continuity correction)
  and the Jensen-Shannon distance (base 2: 0 same, 1 disjoint) over the reference's categories
  plus one "other" cell, and the share of values outside the reference's categories (unseen);
* **every column**: the missing rate and its change from the reference;
* **the predictions**: the same statistics on the model's outputs against the bundle's own
  answers on the reference rows (``reference/outputs.npz``);
* **drift share**: drifted columns / columns.

A column is *drifted* when PSI >= ``psi`` (numeric), the JS distance >= ``js`` (categorical), the
missing rate moved by ``missing`` or more, or unseen values make ``unseen`` or more of it; and,
if ``p_value`` is set, when a test's p-value falls below it (off by default: with many rows every
test rejects for differences too small to matter). Zero-count bins take a share of ``EPS``
(1e-4) in PSI, as is usual; nothing else is smoothed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport._deps import require
from modelport.bundle.reference import decode_columns, is_missing, statistics
from modelport.errors import InputError

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle

EPS = 1e-4
OTHER = "(other)"
#: above this many rows on each side scipy's ks_2samp uses its asymptotic p-value, and so do we
KS_EXACT_MAX = 10_000


@dataclass(frozen=True)
class Thresholds:
    """When a column counts as drifted (see the module docstring)."""

    psi: float = 0.2
    js: float = 0.1
    missing: float = 0.1
    unseen: float = 0.05
    p_value: float | None = None
    share: float = 0.0  # the window drifts when the drift share is above this (0: any column)

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                  or v < 0):
                raise InputError(f"the drift threshold {k} must be a number >= 0; got {v!r}.")
        if not 0 <= self.share < 1:
            raise InputError(f"the drift share threshold must be from 0 to below 1; got {self.share!r}.")


# ============================================================================ references
@dataclass
class Reference:
    """One column's reference: counts, the histogram (numeric) or frequencies (categorical), and
    the reference rows' values (numeric, sorted, for KS), as drift compares against them."""

    name: str
    kind: str  # numeric | categorical
    count: int
    missing: int
    edges: np.ndarray | None = None
    counts: np.ndarray | None = None
    sample: np.ndarray | None = None
    frequencies: dict[str, int] = field(default_factory=dict)
    known: frozenset[str] | None = None  # every category, where it is known (for the unseen rate)

    @property
    def missing_rate(self) -> float:
        return self.missing / self.count if self.count else 0.0

    @classmethod
    def from_statistics(cls, name: str, stats: Mapping[str, Any], *, sample: np.ndarray | None = None,
                        categories: Sequence[Any] | None = None) -> Reference:
        """From one column's ``bundle.reference.statistics`` entry (a manifest's, checked here
        against what drift needs: a manifest may come from anyone)."""
        kind = stats.get("kind")
        count = int(stats.get("count") or 0)
        missing = int(stats.get("missing") or 0)
        if kind == "numeric":
            hist = stats.get("histogram") or {}
            edges = np.asarray(hist.get("edges") or [], dtype=np.float64)
            counts = np.asarray(hist.get("counts") or [], dtype=np.float64)
            if edges.size == 0:
                edges = counts = None  # type: ignore[assignment]
            elif (edges.size == 1 and counts.size != 1) or (edges.size > 1 and counts.size != edges.size - 1) \
                    or np.any(np.diff(edges) <= 0) or np.any(counts < 0) or not np.all(np.isfinite(edges)):
                raise InputError(
                    f"the reference statistics of column {name!r} have a histogram that is not one: {edges.size} "
                    f"edges (strictly increasing) for {counts.size} counts.",
                    hint="the bundle's manifest was modified; re-pack the model, or compare against a file (--against)",
                )
            s = None if sample is None else np.sort(sample[~np.isnan(sample)])
            return cls(name, "numeric", count, missing, edges, counts, s)
        freq = {str(k): int(v) for k, v in (stats.get("frequencies") or {}).items()}
        known: frozenset[str] | None = None
        if categories is not None:
            known = frozenset(str(c) for c in categories)
        elif stats.get("distinct") is not None and int(stats["distinct"]) == len(freq):
            known = frozenset(freq)
        return cls(name, "categorical", count, missing, frequencies=freq, known=known)


def reference_from_columns(columns: Mapping[str, Any], *, categorical: Sequence[str] = ()) -> dict[str, Reference]:
    """References computed from data (another window, a file), with the same statistics as a
    bundle's (``bundle.reference.statistics``: deciles, top-50 frequencies) and every row kept
    for KS. ``categorical`` names columns to treat as categories even if they hold numbers."""
    out: dict[str, Reference] = {}
    arrays = {k: _numpy(v, text=k in categorical) for k, v in columns.items()}
    stats = statistics(arrays, top=1 << 30)["columns"]
    for name, arr in arrays.items():
        st = stats.get(name)
        if st is None:
            continue
        sample = arr.astype(np.float64) if st["kind"] == "numeric" else None
        ref = Reference.from_statistics(name, st, sample=sample)
        if st["kind"] == "categorical":
            ref.known = frozenset(ref.frequencies)
        out[name] = ref
    return out


def reference_from_bundle(bundle: Bundle) -> tuple[dict[str, Reference], dict[str, Reference]]:
    """The input columns' and the output columns' references stored in a bundle.

    Inputs: the manifest's statistics of the whole training sample, with the stored sample rows
    for KS. Outputs: the bundle's answers on the stored sample rows (probes left out)."""
    from modelport.monitor import columns as colmod

    ref = bundle.manifest.get("reference") or {}
    stats = ref.get("columns") or {}
    if not stats:
        raise InputError(
            f"bundle {bundle.name!r} stores no reference statistics to compare against.",
            hint="compare against another window or file instead (--against), or re-pack with a sample",
        )
    n_sample = None
    if ref.get("stored_rows") is not None and ref.get("probes") is not None:
        n_sample = max(0, int(ref["stored_rows"]) - int(ref["probes"]))
    raw = decode_columns(bundle.reference_inputs) if bundle.reference_inputs else {}
    sig = bundle.signature
    cats = {c.name: c.categories for c in (sig.columns or ()) if c.categories is not None}
    kinds = {c.name: c.dtype for c in (sig.columns or ())}
    inputs: dict[str, Reference] = {}
    for name, st in stats.items():
        if not isinstance(st, Mapping):
            continue
        sample = None
        if st.get("kind") == "numeric" and name in raw:
            arr = np.asarray(raw[name])
            arr = arr.reshape(arr.shape[0], -1)[:, 0] if arr.ndim > 1 else arr
            arr = arr[:n_sample] if n_sample is not None else arr
            if arr.dtype.kind in "biuf":
                sample = arr.astype(np.float64)
        inputs[name] = Reference.from_statistics(name, st, sample=sample, categories=cats.get(name))
        if kinds.get(name) in ("category", "str") and inputs[name].kind == "numeric":
            # numeric category values (1, 2, 3): compared as categories, as the model reads them
            vals = raw.get(name)
            if vals is not None:
                r = reference_from_columns({name: np.asarray(vals)[:n_sample].astype(object)}, categorical=[name])
                inputs[name] = r[name]
                inputs[name].known = frozenset(str(c) for c in cats.get(name, ())) or inputs[name].known
    outputs: dict[str, Reference] = {}
    ref_out = bundle.reference_outputs
    if ref_out:
        cut = {k: v[:n_sample] if n_sample is not None else v for k, v in ref_out.items()}
        cols = colmod.outputs(cut, bundle.classes)
        label_text = {"label"} if "label" in cols else set()
        outputs = reference_from_columns(cols, categorical=sorted(label_text))
        if "label" in outputs and bundle.classes is not None:
            outputs["label"].known = frozenset(str(c) for c in bundle.classes)
    return inputs, outputs


def _numpy(values: Any, *, text: bool = False) -> np.ndarray:
    if type(values).__module__.startswith("pyarrow"):
        pa = require("pyarrow")
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if text or pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            return np.asarray(values.to_pylist(), dtype=object)
        if pa.types.is_boolean(values.type) or values.null_count:
            return np.asarray(values.to_pandas(), dtype=np.float64) if values.null_count else \
                values.to_numpy(zero_copy_only=False).astype(np.float64)
        return _fixed_width(pa, values)
    arr = np.asarray(values)
    if text and arr.dtype != object:
        arr = np.array([None if is_missing(v) else str(v) for v in arr.tolist()], dtype=object)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float64)
    return arr


def _fixed_width(pa: Any, values: Any) -> np.ndarray:
    """A pyarrow array without nulls as numpy: integers and floats as a view of the data buffer
    (what ``to_numpy`` gives; it imports pandas, a third of ``modelport drift``'s start-up), other
    types through ``to_numpy``."""
    t = values.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        kind = "f" if pa.types.is_floating(t) else "i" if pa.types.is_signed_integer(t) else "u"
        dtype = np.dtype(f"<{kind}{t.bit_width // 8}")
        return np.frombuffer(values.buffers()[1], dtype=dtype, count=len(values), offset=values.offset * dtype.itemsize)
    return values.to_numpy(zero_copy_only=False)


# ============================================================================ statistics
@dataclass
class ColumnDrift:
    """One column's drift. ``plot`` holds what a distribution plot needs: bin ``edges`` (numeric)
    or ``categories``, and the ``reference`` and ``current`` shares per bin."""

    name: str
    kind: str
    rows: int
    missing_rate: float
    reference_missing_rate: float
    psi: float | None = None
    ks: float | None = None
    ks_p_value: float | None = None
    chi2: float | None = None
    chi2_p_value: float | None = None
    js: float | None = None
    unseen_rate: float | None = None
    drifted: bool = False
    reasons: list[str] = field(default_factory=list)
    plot: dict[str, Any] = field(default_factory=dict)

    @property
    def missing_change(self) -> float:
        return self.missing_rate - self.reference_missing_rate

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["missing_change"] = self.missing_change
        return _finite(d)


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins (EPS for empty bins)."""
    p = np.asarray(reference_counts, dtype=np.float64)
    q = np.asarray(current_counts, dtype=np.float64)
    p = np.maximum(p / p.sum(), EPS)
    q = np.maximum(q / q.sum(), EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def bin_counts(edges: np.ndarray, values: np.ndarray, *, values_sorted: bool = False) -> np.ndarray:
    """Counts of ``values`` (no NaN) in the reference's bins: ``np.histogram``'s bins, with the
    outer ones open (below the first edge -> the first bin, above the last -> the last). A
    reference of one value (one edge) has three bins: below, equal, above."""
    if edges.size == 1:
        v = edges[0]
        return np.array([np.count_nonzero(values < v), np.count_nonzero(values == v), np.count_nonzero(values > v)],
                        dtype=np.float64)
    if values_sorted:  # a binary search of each edge in the values: no pass over them
        cut = np.searchsorted(values, edges[1:-1], side="left")  # values below each inner edge
        return np.diff(np.concatenate([[0], cut, [values.size]])).astype(np.float64)
    idx = np.searchsorted(edges[1:-1], values, side="right")
    return np.bincount(idx, minlength=edges.size - 1).astype(np.float64)


def ks_2samp(reference_sorted: np.ndarray, current: np.ndarray, *, current_sorted: bool = False) -> tuple[float, float]:
    """The two-sample KS statistic and two-sided p-value, equal to ``scipy.stats.ks_2samp``'s
    (method ``auto``): exact below KS_EXACT_MAX rows a side (scipy computes it), otherwise the
    statistic from counts of the large side at the reference's points (binary searches of those
    points in the sorted large side; ``current_sorted``: it is sorted already) and scipy's asymptotic p-value (``kstwo.sf(D, round(m n / (m + n)))``)."""
    stats = require("scipy.stats", purpose="drift statistics (pip install 'modelport[monitor]')")
    m, n = reference_sorted.size, current.size
    if m == 0 or n == 0:
        return math.nan, math.nan
    if max(m, n) <= KS_EXACT_MAX:
        r = stats.ks_2samp(reference_sorted, current)
        return float(r.statistic), float(r.pvalue)
    a, ref_le = np.unique(reference_sorted, return_counts=True)
    ref_le = np.cumsum(ref_le)  # reference rows <= a_j
    # the current rows <= and < each reference point: sorting the large side once (numpy's sort is
    # vectorised) and searching the reference points in it costs a tenth of searching every row
    cur = current if current_sorted else np.sort(current)
    at_or_below = np.searchsorted(cur, a, side="right")
    below = np.searchsorted(cur, a, side="left")
    f1 = ref_le / m
    d = 0.0
    # at each reference point, and just before the next one (the last current row in between)
    d = max(d, float(np.max(np.abs(f1 - at_or_below / n))))
    nxt = below[1:] / n  # current rows < a_{j+1}
    if nxt.size:
        d = max(d, float(np.max(np.abs(f1[:-1] - nxt))))
    d = max(d, float(below[0] / n))  # before the first reference point
    big, small = sorted([float(m), float(n)], reverse=True)
    en = big * small / (big + small)
    p = float(np.clip(stats.distributions.kstwo.sf(d, np.round(en)), 0, 1))
    return d, p


def categorical_tests(reference: Reference, counts: Mapping[str, int]) -> dict[str, Any]:
    """chi-square, JS distance, unseen rate and the plot cells of current category ``counts``."""
    stats = require("scipy.stats", purpose="drift statistics (pip install 'modelport[monitor]')")
    distance = require("scipy.spatial.distance", purpose="drift statistics (pip install 'modelport[monitor]')")
    cats = sorted(reference.frequencies, key=lambda k: (-reference.frequencies[k], k))
    ref_counts = [float(reference.frequencies[k]) for k in cats]
    ref_other = max(0.0, reference.count - reference.missing - sum(ref_counts))
    cur_counts = [float(counts.get(k, 0)) for k in cats]
    cur_total = float(sum(counts.values()))
    cur_other = cur_total - sum(cur_counts)
    labels = [*cats, OTHER]
    rc = np.array([*ref_counts, ref_other])
    cc = np.array([*cur_counts, cur_other])
    keep = (rc + cc) > 0
    out: dict[str, Any] = {"chi2": None, "chi2_p_value": None, "js": None, "unseen_rate": None}
    if reference.known is not None and cur_total > 0:
        out["unseen_rate"] = float(sum(v for k, v in counts.items() if k not in reference.known)) / cur_total
    if cur_total > 0 and rc.sum() > 0:
        if keep.sum() >= 2:
            r = stats.chi2_contingency(np.vstack([rc[keep], cc[keep]]), correction=False)
            out["chi2"], out["chi2_p_value"] = float(r.statistic), float(r.pvalue)
        out["js"] = float(distance.jensenshannon(rc / rc.sum(), cc / cc.sum(), base=2))
    shown = [i for i in range(len(labels)) if keep[i]][:60]
    out["plot"] = {"categories": [labels[i] for i in shown],
                   "reference": [float(rc[i] / rc.sum()) if rc.sum() else 0.0 for i in shown],
                   "current": [float(cc[i] / cur_total) if cur_total else 0.0 for i in shown]}
    return out


def value_counts(values: Any) -> tuple[dict[str, int], int, int]:
    """Counts of the non-missing values as text, the missing count and the row count."""
    if type(values).__module__.startswith("pyarrow"):
        pa = require("pyarrow")
        pc = require("pyarrow.compute")
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        n = len(values)
        nulls = values.null_count
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = values.cast(pa.string())
        vc = pc.value_counts(values.drop_null())
        counts = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))
        return {str(k): int(v) for k, v in counts.items()}, int(nulls), n
    arr = np.asarray(values, dtype=object)
    missing = np.fromiter((is_missing(v) for v in arr.tolist()), dtype=bool, count=arr.size)
    present = np.array([str(v) for v in arr[~missing].tolist()], dtype=object)
    if present.size:
        u, c = np.unique(present.astype(str), return_counts=True)
        counts = {str(k): int(v) for k, v in zip(u.tolist(), c.tolist())}
    else:
        counts = {}
    return counts, int(missing.sum()), int(arr.size)


def compare_column(reference: Reference, values: Any, thresholds: Thresholds = Thresholds()) -> ColumnDrift:
    """One column of the current window against its reference."""
    if reference.kind == "numeric":
        x = _as_float(values)
        nan = np.isnan(x)
        rows = int(x.size)
        present = x[~nan] if nan.any() else x
        out = ColumnDrift(reference.name, "numeric", rows, float(nan.sum()) / rows if rows else 0.0,
                          reference.missing_rate)
        if present.size:
            present = np.sort(present)  # once: the bins and KS then search the reference's points in it
        if present.size and reference.edges is not None and reference.counts is not None:
            cur = bin_counts(reference.edges, present, values_sorted=True)
            ref_counts = reference.counts if reference.edges.size > 1 else np.array([0.0, reference.counts[0], 0.0])
            if ref_counts.sum() > 0:
                out.psi = psi(ref_counts, cur)
            edges = reference.edges.tolist() if reference.edges.size > 1 else [reference.edges[0]] * 2
            out.plot = {"edges": edges, "reference": (ref_counts / max(ref_counts.sum(), 1)).tolist(),
                        "current": (cur / cur.sum()).tolist()}
        if present.size and reference.sample is not None and reference.sample.size:
            out.ks, out.ks_p_value = ks_2samp(reference.sample, present, current_sorted=True)
    else:
        counts, missing, rows = value_counts(values)
        out = ColumnDrift(reference.name, "categorical", rows, missing / rows if rows else 0.0, reference.missing_rate)
        t = categorical_tests(reference, counts)
        out.chi2, out.chi2_p_value, out.js, out.unseen_rate = t["chi2"], t["chi2_p_value"], t["js"], t["unseen_rate"]
        out.plot = t["plot"]
    _judge(out, thresholds)
    return out


def _judge(c: ColumnDrift, t: Thresholds) -> None:
    if c.rows == 0:
        return
    if c.psi is not None and c.psi >= t.psi:
        c.reasons.append(f"PSI {c.psi:.3f} >= {t.psi:g}")
    if c.js is not None and c.js >= t.js:
        c.reasons.append(f"JS distance {c.js:.3f} >= {t.js:g}")
    if abs(c.missing_change) >= t.missing and t.missing > 0:
        c.reasons.append(f"missing rate {c.reference_missing_rate:.1%} -> {c.missing_rate:.1%}")
    if c.unseen_rate is not None and c.unseen_rate >= t.unseen and c.unseen_rate > 0:
        c.reasons.append(f"{c.unseen_rate:.1%} unseen values")
    if t.p_value is not None:
        for name, p in (("KS", c.ks_p_value), ("chi-square", c.chi2_p_value)):
            if p is not None and p < t.p_value:
                c.reasons.append(f"{name} p-value {p:.2g} < {t.p_value:g}")
    c.drifted = bool(c.reasons)


def _as_float(values: Any) -> np.ndarray:
    arr = _numpy(values)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64, copy=False)
    out = np.empty(arr.size, dtype=np.float64)
    for i, v in enumerate(arr.tolist()):
        try:
            out[i] = np.nan if is_missing(v) else float(v)
        except (TypeError, ValueError):
            out[i] = np.nan
    return out


# ============================================================================ reports
@dataclass
class DriftReport:
    """Drift of one window: per input column, per output column, and the share."""

    model: str
    versions: list[str]
    since: float | None
    until: float | None
    rows: int
    reference: str
    columns: list[ColumnDrift]
    predictions: list[ColumnDrift]
    thresholds: Thresholds
    skipped: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        judged = [c for c in self.columns if c.rows]
        return sum(c.drifted for c in judged) / len(judged) if judged else 0.0

    @property
    def drifted(self) -> bool:
        if self.rows == 0:
            return False
        return self.share > self.thresholds.share or (self.thresholds.share == 0 and any(c.drifted for c in self.predictions))

    @property
    def exit_code(self) -> int:
        return 10 if self.drifted else 0

    def to_dict(self) -> dict[str, Any]:
        from modelport.monitor._time import iso

        return _finite({
            "model": self.model, "versions": self.versions, "since": iso(self.since), "until": iso(self.until),
            "rows": self.rows, "reference": self.reference, "drifted": self.drifted, "share": self.share,
            "drifted_columns": [c.name for c in self.columns if c.drifted],
            "thresholds": asdict(self.thresholds),
            "columns": [c.to_dict() for c in self.columns],
            "predictions": [c.to_dict() for c in self.predictions],
            "skipped": self.skipped,
        })


def compare(references: Mapping[str, Reference], current: Mapping[str, Any], *,
            thresholds: Thresholds = Thresholds()) -> list[ColumnDrift]:
    """Every column that has both a reference and current values, in the references' order."""
    return [compare_column(ref, current[name], thresholds) for name, ref in references.items() if name in current]


def drift_of_log(
    bundle: Bundle | str,
    log: str,
    *,
    model: str | None = None,
    versions: Sequence[str] | None = None,
    since: Any = None,
    until: Any = None,
    against: str | None = None,
    against_since: Any = None,
    against_until: Any = None,
    thresholds: Thresholds = Thresholds(),
) -> DriftReport:
    """Drift of the logged window of ``model`` (default: the bundle's name) against the bundle's
    reference, or against ``against``: another log window (a log directory with ``against_since``
    / ``against_until``) or a data file (Parquet / CSV / JSON lines with the model's columns)."""
    from modelport._uri import load
    from modelport.monitor._time import parse_time
    from modelport.monitor.log import INPUT_PREFIX, OUTPUT_PREFIX
    from modelport.monitor.read import read_log

    b = load(bundle) if isinstance(bundle, str) else bundle
    name = model or b.name
    t0, t1 = parse_time(since, what="--since"), parse_time(until, what="--until")
    # only what drift reads: the ids and the meta columns are most of the decoding work otherwise
    table = read_log(log, model=name, versions=versions, since=t0, until=t1,
                     columns=["version", INPUT_PREFIX + "*", OUTPUT_PREFIX + "*"])
    found = sorted(set(table.column("version").to_pylist())) if "version" in table.column_names else []
    inputs = {c[len(INPUT_PREFIX):]: table.column(c) for c in table.column_names if c.startswith(INPUT_PREFIX)}
    outputs = {c[len(OUTPUT_PREFIX):]: table.column(c) for c in table.column_names if c.startswith(OUTPUT_PREFIX)}
    if against is None:
        ref_in, ref_out = reference_from_bundle(b)
        described = f"the training sample of {b.name} ({b.digest[:19]})"
    else:
        ref_in, ref_out, described = _reference_from(against, b, name, against_since, against_until)
    if "label" in outputs:
        outputs["label"] = _text(outputs["label"])
    skipped = [n for n in ref_in if n not in inputs] if table.num_rows else []
    cats = {c.name for c in (b.signature.columns or ()) if c.dtype in ("category", "str")}
    for n in list(inputs):
        if n in cats:
            inputs[n] = _text(inputs[n])
    return DriftReport(
        name, found, t0, t1, table.num_rows, described,
        compare(ref_in, inputs, thresholds=thresholds) if table.num_rows else [],
        compare(ref_out, outputs, thresholds=thresholds) if table.num_rows else [],
        thresholds, skipped,
    )


def _text(col: Any) -> Any:
    pa = require("pyarrow")
    if isinstance(col, (pa.Array, pa.ChunkedArray)) and not pa.types.is_string(col.type):
        return col.cast(pa.string())
    return col


def _reference_from(against: str, bundle: Bundle, name: str, since: Any, until: Any
                    ) -> tuple[dict[str, Reference], dict[str, Reference], str]:
    import os

    from modelport.monitor.log import INPUT_PREFIX, OUTPUT_PREFIX
    from modelport.monitor.read import read_log

    cats = [c.name for c in (bundle.signature.columns or ()) if c.dtype in ("category", "str")]
    if os.path.isdir(against) or "://" in against:
        t = read_log(against, model=name, since=since, until=until)
        if t.num_rows == 0:
            raise InputError(f"the reference window of {against} holds no rows of model {name!r}.",
                             hint="widen --against-since / --against-until, or check the model name")
        ins = {c[len(INPUT_PREFIX):]: t.column(c) for c in t.column_names if c.startswith(INPUT_PREFIX)}
        outs = {c[len(OUTPUT_PREFIX):]: t.column(c) for c in t.column_names if c.startswith(OUTPUT_PREFIX)}
        return (reference_from_columns(ins, categorical=cats), reference_from_columns(outs, categorical=["label"]),
                f"the log window of {against} ({t.num_rows} rows)")
    from modelport.batch.io import open_source

    source = open_source(against)
    names = [c for c in (bundle.signature.column_names or []) if c in source.column_names] or source.column_names
    pa = require("pyarrow")
    batches = [b for _, b in source.batches(1 << 20, columns=names)]
    table = pa.Table.from_batches(batches) if batches else None
    if table is None or table.num_rows == 0:
        raise InputError(f"the reference file {against} holds no rows.")
    cols = {n: table.column(n) for n in names}
    return reference_from_columns(cols, categorical=cats), {}, f"the file {against} ({table.num_rows} rows)"


def _finite(obj: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    if isinstance(obj, frozenset):
        return sorted(obj)
    return obj
