"""Parity between an original model's outputs and a bundle's: the numbers and the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """How close the bundle must be to the original.

    ``probability_abs``: largest allowed absolute difference of class probabilities.
    ``regression_rel``: largest allowed difference of every other numeric output (regression
    values, decision values, distances, raw tensors) relative to ``max(|expected|, mean |expected|)``,
    which keeps values near zero from making the relative error meaningless. ``score_rel``: the
    same for a classifier's auxiliary scores (decision values), which ONNX-ML's SVMClassifier
    computes in float32; the label and probabilities still meet the bounds above. Labels must agree wherever the original's
    two best classes are further apart than ``probability_abs`` (genuine ties can go either way).
    """

    probability_abs: float = 1e-5
    regression_rel: float = 1e-5
    score_rel: float = 1e-4

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class ParityReport:
    samples: int
    passed: bool
    max_abs_error: float
    max_rel_error: float
    label_agreement: float | None
    tolerance: Tolerance
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    worst_rows: list[int] = field(default_factory=list)
    accepted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "pass": self.passed,
            "accepted_mismatch": self.accepted,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
            "label_agreement": self.label_agreement,
            "tolerance": self.tolerance.to_dict(),
            "outputs": self.outputs,
            "worst_rows": self.worst_rows,
        }

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        parts = [f"{verdict} on {self.samples} rows", f"max abs error {self.max_abs_error:.3g}"]
        parts.append(f"max rel error {self.max_rel_error:.3g}")
        if self.label_agreement is not None:
            parts.append(f"label agreement {self.label_agreement:.4%}")
        return ", ".join(parts)


def compare(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    *,
    task: str,
    tolerance: Tolerance | None = None,
) -> ParityReport:
    tol = tolerance or Tolerance()
    n = 0
    max_abs = 0.0
    max_rel = 0.0
    agreement: float | None = None
    passed = True
    details: dict[str, dict[str, Any]] = {}
    worst: list[int] = []
    for name, exp in expected.items():
        if name not in actual:
            details[name] = {"error": "missing from the bundle's outputs"}
            passed = False
            continue
        e = np.asarray(exp)
        a = np.asarray(actual[name])
        n = max(n, e.shape[0] if e.ndim else 1)
        if e.shape != a.shape:
            if e.size == a.size:
                a = a.reshape(e.shape)
            else:
                details[name] = {"error": f"shape {a.shape} differs from the original's {e.shape}"}
                passed = False
                continue
        if name == "label" or e.dtype.kind in "OUSb" or (task == "classification" and e.dtype.kind in "iu"):
            same = _labels_equal(e, a)
            if task == "classification" and "probabilities" in expected:
                margin = _top2_margin(np.asarray(expected["probabilities"], dtype=np.float64))
                excused = margin <= tol.probability_abs
                ok = same | excused
            else:
                ok = same
            agreement = float(same.mean()) if same.size else 1.0
            if not ok.all():
                passed = False
                worst.extend(np.flatnonzero(~ok)[:10].tolist())
            details[name] = {"agreement": agreement, "mismatches": int((~same).sum())}
            continue
        e64 = e.astype(np.float64)
        a64 = a.astype(np.float64)
        both_nan = np.isnan(e64) & np.isnan(a64)
        with np.errstate(invalid="ignore"):  # inf - inf: equal infinities are the same answer, not NaN
            diff = np.where(both_nan | (e64 == a64), 0.0, np.abs(e64 - a64))
        diff = np.where(np.isnan(diff), np.inf, diff)
        out_abs = float(diff.max()) if diff.size else 0.0
        scale = np.abs(e64)
        finite = scale[np.isfinite(scale)]  # one infinite answer must not make every relative error 0
        floor = float(finite.mean()) if finite.size else 1.0
        with np.errstate(invalid="ignore"):  # inf / inf (opposite infinities): as far apart as can be
            rel = diff / np.maximum(np.where(np.isnan(scale), 0.0, scale), max(floor, 1e-12))
        rel = np.where(np.isnan(rel), np.inf, rel)
        out_rel = float(rel.max()) if rel.size else 0.0
        max_abs = max(max_abs, out_abs)
        max_rel = max(max_rel, out_rel)
        # probabilities live in [0, 1]: an absolute bound; every other value is unbounded: a relative one
        if name == "probabilities":
            ok_elem = diff <= tol.probability_abs
        elif task == "classification":  # auxiliary scores (decision values) beside label + probabilities
            ok_elem = rel <= tol.score_rel
        else:
            ok_elem = rel <= tol.regression_rel
        if not ok_elem.all():
            passed = False
            bad_rows = np.flatnonzero(~ok_elem.reshape(ok_elem.shape[0], -1).all(axis=1))
            worst.extend(bad_rows[:10].tolist())
        details[name] = {"max_abs_error": out_abs, "max_rel_error": out_rel}
    return ParityReport(
        samples=n,
        passed=passed,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        label_agreement=agreement,
        tolerance=tol,
        outputs=details,
        worst_rows=sorted(set(worst))[:20],
    )


def _labels_equal(e: np.ndarray, a: np.ndarray) -> np.ndarray:
    if e.dtype.kind in "OUS" or a.dtype.kind in "OUS":
        return np.array([str(x) == str(y) for x, y in zip(e.reshape(-1), a.reshape(-1))], dtype=bool).reshape(e.shape[:1] if e.ndim else (1,))
    return (e == a).reshape(e.shape[0], -1).all(axis=1) if e.ndim else np.array([e == a])


def _top2_margin(p: np.ndarray) -> np.ndarray:
    if p.ndim != 2 or p.shape[1] < 2:
        return np.full(p.shape[0] if p.ndim else 1, np.inf)
    s = np.sort(p, axis=1)
    return s[:, -1] - s[:, -2]
