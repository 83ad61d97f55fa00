"""Mergeable sketches of a stream of rows, for drift and performance while serving.

One :class:`Sketch` summarises the rows one model version scored in one time bucket (a minute by
default): per numeric column the counts in the reference's histogram bins (outer bins open) and
the missing count; per categorical column the counts of the reference's categories, of everything
else, of unseen values and of missing ones; the same for each output column; the sum of the
predicted class's probability (the uncalibrated CBPE accuracy); and, for rows whose label came
back, the accumulators of the realised metrics. Sketches *add*: merging the buckets of a window,
from every worker process, gives exactly the sketch of all those rows, so the gauges are the same
whether one worker or eight scored the traffic. PSI and the Jensen-Shannon distance of a merged
sketch are the same numbers :mod:`modelport.monitor.drift` computes on those rows (KS and
chi-square need the rows themselves: ``modelport drift`` on the log).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.monitor.drift import OTHER, Reference, Thresholds, psi

AUC_BINS = 200


@dataclass
class ColumnCounts:
    kind: str  # numeric | categorical
    rows: int = 0
    missing: int = 0
    counts: list[float] = field(default_factory=list)  # numeric: per reference bin
    categories: dict[str, int] = field(default_factory=dict)  # categorical: reference categories + OTHER
    unseen: int = 0

    def merge(self, other: ColumnCounts) -> None:
        self.rows += other.rows
        self.missing += other.missing
        self.unseen += other.unseen
        if other.counts:
            if not self.counts:
                self.counts = list(other.counts)
            else:
                self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        for k, v in other.categories.items():
            self.categories[k] = self.categories.get(k, 0) + v

    def to_json(self) -> list[Any]:
        return [self.kind, self.rows, self.missing, self.counts, self.categories, self.unseen]

    @classmethod
    def from_json(cls, d: list[Any]) -> ColumnCounts:
        return cls(str(d[0]), int(d[1]), int(d[2]), [float(x) for x in d[3]], {str(k): int(v) for k, v in d[4].items()},
                   int(d[5]))


def count_column(ref: Reference, values: np.ndarray) -> ColumnCounts:
    """The counts of one column's values (numpy) against its reference."""
    n = int(values.shape[0])
    if ref.kind == "numeric":
        x = values.astype(np.float64, copy=False) if values.dtype.kind in "biuf" else _floats(values)
        nan = np.isnan(x)
        present = x[~nan]
        counts: list[float] = []
        if ref.edges is not None:
            from modelport.monitor.drift import bin_counts

            counts = bin_counts(ref.edges, present).tolist()
        return ColumnCounts("numeric", n, int(nan.sum()), counts)
    texts = [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in values.tolist()]
    cats: dict[str, int] = {}
    missing = unseen = 0
    for t in texts:
        if t is None:
            missing += 1
            continue
        key = t if t in ref.frequencies else OTHER
        cats[key] = cats.get(key, 0) + 1
        if ref.known is not None and t not in ref.known:
            unseen += 1
    return ColumnCounts("categorical", n, missing, [], cats, unseen)


def _floats(values: np.ndarray) -> np.ndarray:
    out = np.empty(values.shape[0], dtype=np.float64)
    for i, v in enumerate(values.tolist()):
        try:
            out[i] = np.nan if v is None else float(v)
        except (TypeError, ValueError):
            out[i] = np.nan
    return out


@dataclass
class Realised:
    """Accumulators of realised metrics over labelled rows (add up across buckets and workers)."""

    n: int = 0
    correct: int = 0
    log_loss_sum: float = 0.0
    tp: list[float] = field(default_factory=list)
    fp: list[float] = field(default_factory=list)
    fn: list[float] = field(default_factory=list)
    pos_hist: list[float] = field(default_factory=list)  # binary: scores of positives
    neg_hist: list[float] = field(default_factory=list)
    sq_err: float = 0.0
    abs_err: float = 0.0
    sum_y: float = 0.0
    sum_y2: float = 0.0

    def merge(self, o: Realised) -> None:
        self.n += o.n
        self.correct += o.correct
        self.log_loss_sum += o.log_loss_sum
        for name in ("tp", "fp", "fn", "pos_hist", "neg_hist"):
            a, b = getattr(self, name), getattr(o, name)
            setattr(self, name, [x + y for x, y in zip(a, b)] if a and b else list(a or b))
        self.sq_err += o.sq_err
        self.abs_err += o.abs_err
        self.sum_y += o.sum_y
        self.sum_y2 += o.sum_y2

    def add_classified(self, y: int, pred: int, proba: list[float] | None, k: int) -> None:
        if not self.tp:
            self.tp, self.fp, self.fn = [0.0] * k, [0.0] * k, [0.0] * k
        self.n += 1
        self.correct += int(y == pred)
        if y == pred:
            self.tp[y] += 1
        else:
            self.fp[pred] += 1
            self.fn[y] += 1
        if proba is not None:
            p = min(max(float(proba[y]), 1e-15), 1 - 1e-15)
            self.log_loss_sum += -math.log(p)
            if k == 2:
                if not self.pos_hist:
                    self.pos_hist, self.neg_hist = [0.0] * AUC_BINS, [0.0] * AUC_BINS
                b = min(int(float(proba[1]) * AUC_BINS), AUC_BINS - 1)
                (self.pos_hist if y == 1 else self.neg_hist)[b] += 1

    def add_regressed(self, y: float, pred: float) -> None:
        self.n += 1
        e = pred - y
        self.sq_err += e * e
        self.abs_err += abs(e)
        self.sum_y += y
        self.sum_y2 += y * y

    def metrics(self, classifier: bool) -> dict[str, float | None]:
        if self.n == 0:
            return {}
        if classifier:
            k = len(self.tp)
            f1s = [2 * self.tp[c] / d for c in range(k) if (d := 2 * self.tp[c] + self.fp[c] + self.fn[c]) > 0]
            f1 = (2 * self.tp[1] / max(2 * self.tp[1] + self.fp[1] + self.fn[1], 1e-300)) if k == 2 else \
                (sum(f1s) / len(f1s) if f1s else None)
            out: dict[str, float | None] = {"accuracy": self.correct / self.n, "f1": f1,
                                            "log_loss": self.log_loss_sum / self.n if self.log_loss_sum else None,
                                            "roc_auc": _hist_auc(self.pos_hist, self.neg_hist)}
            return out
        ss_tot = self.sum_y2 - self.sum_y * self.sum_y / self.n
        return {"rmse": math.sqrt(self.sq_err / self.n), "mae": self.abs_err / self.n,
                "r2": (1 - self.sq_err / ss_tot) if ss_tot > 1e-12 else None}

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Realised:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _hist_auc(pos: list[float], neg: list[float]) -> float | None:
    """ROC AUC from score histograms (ties within a bin count as halves)."""
    if not pos or not neg:
        return None
    p, q = np.asarray(pos), np.asarray(neg)
    if p.sum() == 0 or q.sum() == 0:
        return None
    below = np.cumsum(q) - q  # negatives in lower bins
    return float((np.sum(p * below) + 0.5 * np.sum(p * q)) / (p.sum() * q.sum()))


@dataclass
class Sketch:
    """One model version's rows in one time bucket."""

    rows: int = 0
    inputs: dict[str, ColumnCounts] = field(default_factory=dict)
    outputs: dict[str, ColumnCounts] = field(default_factory=dict)
    confidence_sum: float = 0.0  # sum over rows of the answered class's probability
    confidence_rows: int = 0
    realised: Realised = field(default_factory=Realised)
    latency_sum: float = 0.0
    latency_rows: int = 0

    def merge(self, o: Sketch) -> None:
        self.rows += o.rows
        for mine, theirs in ((self.inputs, o.inputs), (self.outputs, o.outputs)):
            for k, v in theirs.items():
                if k in mine:
                    mine[k].merge(v)
                else:
                    mine[k] = ColumnCounts.from_json(v.to_json())
        self.confidence_sum += o.confidence_sum
        self.confidence_rows += o.confidence_rows
        self.realised.merge(o.realised)
        self.latency_sum += o.latency_sum
        self.latency_rows += o.latency_rows

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "inputs": {k: v.to_json() for k, v in self.inputs.items()},
                "outputs": {k: v.to_json() for k, v in self.outputs.items()},
                "confidence": [self.confidence_sum, self.confidence_rows], "realised": self.realised.to_json(),
                "latency": [self.latency_sum, self.latency_rows]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Sketch:
        s = cls(int(d["rows"]), {k: ColumnCounts.from_json(v) for k, v in d["inputs"].items()},
                {k: ColumnCounts.from_json(v) for k, v in d["outputs"].items()})
        s.confidence_sum, s.confidence_rows = float(d["confidence"][0]), int(d["confidence"][1])
        s.realised = Realised.from_json(d.get("realised") or {})
        s.latency_sum, s.latency_rows = (float(x) for x in d.get("latency", [0.0, 0]))  # type: ignore[assignment]
        s.latency_rows = int(s.latency_rows)
        return s


def column_drift(ref: Reference, c: ColumnCounts, thresholds: Thresholds) -> dict[str, Any]:
    """PSI / JS, missing and unseen rates of merged counts, judged like ``modelport drift`` judges."""
    from modelport.monitor.drift import ColumnDrift, _judge

    out = ColumnDrift(ref.name, ref.kind, c.rows, c.missing / c.rows if c.rows else 0.0, ref.missing_rate)
    if ref.kind == "numeric" and ref.edges is not None and ref.counts is not None and c.counts:
        ref_counts = ref.counts if ref.edges.size > 1 else np.array([0.0, ref.counts[0], 0.0])
        cur = np.asarray(c.counts)
        if cur.sum() > 0 and ref_counts.sum() > 0:
            out.psi = psi(ref_counts, cur)
        edges = ref.edges.tolist() if ref.edges.size > 1 else [ref.edges[0]] * 2
        out.plot = {"edges": edges, "reference": (ref_counts / max(ref_counts.sum(), 1)).tolist(),
                    "current": (cur / max(cur.sum(), 1)).tolist()}
    elif ref.kind == "categorical":
        from scipy.spatial import distance

        cats = sorted(ref.frequencies, key=lambda k: (-ref.frequencies[k], k))
        rc = np.array([*[float(ref.frequencies[k]) for k in cats],
                       max(0.0, ref.count - ref.missing - sum(ref.frequencies.values()))])
        cc = np.array([*[float(c.categories.get(k, 0)) for k in cats], float(c.categories.get(OTHER, 0))])
        present = c.rows - c.missing
        if present > 0 and rc.sum() > 0:
            out.js = float(distance.jensenshannon(rc / rc.sum(), cc / cc.sum(), base=2))
        if ref.known is not None and present > 0:
            out.unseen_rate = c.unseen / present
        keep = (rc + cc) > 0
        labels = [*cats, OTHER]
        shown = [i for i in range(len(labels)) if keep[i]][:60]
        out.plot = {"categories": [labels[i] for i in shown],
                    "reference": [float(rc[i] / rc.sum()) if rc.sum() else 0.0 for i in shown],
                    "current": [float(cc[i] / cc.sum()) if cc.sum() else 0.0 for i in shown]}
    _judge(out, thresholds)
    return out.to_dict()
