"""Performance estimated before the labels arrive: confidence-based performance estimation (CBPE,
as NannyML does it) from a classifier's predicted probabilities.

If a classifier's probabilities are calibrated, the expected confusion matrix of a window follows
from them alone: a row predicted positive with probability p is a true positive with chance p and
a false positive with chance 1 - p. Expected accuracy, F1 and the expected ROC curve (hence AUC)
follow. Probabilities are first calibrated on rows whose labels did come back (isotonic regression
per class, fitted where at least ``MIN_CALIBRATION`` labelled rows with every class exist), which
is what makes the estimate track the realised value when the model's confidence is off.

    >>> est = estimate(proba, calibration=Calibration.fit(proba_labelled, y_labelled))
    >>> est["accuracy"], est["roc_auc"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_CALIBRATION = 100


def _pava(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic (non-decreasing) regression of y on x: the knots (x, fitted y), for interpolation."""
    order = np.argsort(x, kind="mergesort")
    xs, ys = x[order], y[order].astype(np.float64)
    # merge equal x first (their mean), then pool adjacent violators
    ux, start = np.unique(xs, return_index=True)
    sums = np.add.reduceat(ys, start)
    counts = np.diff(np.append(start, xs.size)).astype(np.float64)
    vals: list[float] = []
    wts: list[float] = []
    lo: list[int] = []
    for i in range(ux.size):
        vals.append(sums[i] / counts[i])
        wts.append(counts[i])
        lo.append(i)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
            vals[-2:] = [v]
            wts[-2:] = [w]
            lo.pop()
    fitted = np.empty(ux.size)
    bounds = [*lo, ux.size]
    for j in range(len(vals)):
        fitted[bounds[j]:bounds[j + 1]] = vals[j]
    return ux, fitted


@dataclass
class Calibration:
    """Isotonic maps from each class's predicted probability to its observed frequency."""

    knots: list[tuple[np.ndarray, np.ndarray]]

    @classmethod
    def fit(cls, proba: np.ndarray, y: np.ndarray) -> Calibration | None:
        """From labelled rows (``y``: class indices); None when there are too few, or a class is absent."""
        proba = np.asarray(proba, dtype=np.float64)
        y = np.asarray(y)
        if proba.ndim != 2 or y.size < MIN_CALIBRATION or proba.shape[0] != y.size:
            return None
        k = proba.shape[1]
        if np.unique(y).size < min(k, 2):
            return None
        return cls([_pava(proba[:, c], (y == c).astype(np.float64)) for c in range(k)])

    def apply(self, proba: np.ndarray) -> np.ndarray:
        proba = np.asarray(proba, dtype=np.float64)
        out = np.column_stack([np.interp(proba[:, c], kx, ky) for c, (kx, ky) in enumerate(self.knots)])
        if out.shape[1] > 2:
            s = out.sum(axis=1, keepdims=True)
            out = np.divide(out, s, out=np.full_like(out, 1.0 / out.shape[1]), where=s > 0)
        elif out.shape[1] == 2:
            out[:, 0] = 1.0 - out[:, 1]
        return out


def _expected_auc(score: np.ndarray, p: np.ndarray) -> float | None:
    """AUC of the expected ROC curve: rows ranked by ``score``, each a positive with chance ``p``."""
    pos, neg = p.sum(), (1.0 - p).sum()
    if pos <= 0 or neg <= 0:
        return None
    order = np.argsort(-score, kind="mergesort")
    s, q = score[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last row of each distinct score
    tp = np.cumsum(q)[last] / pos
    fp = np.cumsum(1.0 - q)[last] / neg
    tpr = np.r_[0.0, tp]
    fpr = np.r_[0.0, fp]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def estimate(proba: np.ndarray, *, calibration: Calibration | None = None) -> dict[str, Any]:
    """Estimated accuracy, F1 and ROC AUC of one window from its probabilities (N, classes)."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] == 0 or proba.shape[1] < 2:
        return {"rows": int(proba.shape[0]) if proba.ndim else 0, "accuracy": None, "f1": None, "roc_auc": None,
                "calibrated": calibration is not None}
    pred = np.argmax(proba, axis=1)  # the label the model answered
    p = calibration.apply(proba) if calibration is not None else proba
    n, k = p.shape
    accuracy = float(np.mean(p[np.arange(n), pred]))
    if k == 2:
        q = p[:, 1]
        tp = q[pred == 1].sum()
        fp = (1.0 - q[pred == 1]).sum()
        fn = q[pred == 0].sum()
        f1 = float(2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) > 0 else None
        auc = _expected_auc(proba[:, 1], q)
    else:
        f1s, aucs = [], []
        for c in range(k):
            q = p[:, c]
            mine = pred == c
            tp, fp, fn = q[mine].sum(), (1.0 - q[mine]).sum(), q[~mine].sum()
            if (2 * tp + fp + fn) > 0:
                f1s.append(2 * tp / (2 * tp + fp + fn))
            a = _expected_auc(proba[:, c], q)
            if a is not None:
                aucs.append(a)
        f1 = float(np.mean(f1s)) if f1s else None
        auc = float(np.mean(aucs)) if aucs else None
    return {"rows": n, "accuracy": accuracy, "f1": f1, "roc_auc": auc, "calibrated": calibration is not None}
