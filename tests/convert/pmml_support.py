"""Helpers of the PMML tests: the JPMML-Evaluator reference (AGPL, test-only: the package never
imports it), data made from a document's DataDictionary, and comparing answers."""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "pmml"


def load_jpmml() -> Any:
    """``jpmml_evaluator``, with JPype's import hook fenced to the Java domains (org, com, java ...).

    JPype's hook answers any top-level import that names a package on the JVM's classpath once
    the JVM runs: ``import dill`` (not installed) then gives a Java package instead of an
    ImportError, and libraries that probe for optional modules (torch) break in later tests."""
    jp = pytest.importorskip("jpmml_evaluator")
    import sys

    import jpype.imports as jimports

    for i, finder in enumerate(sys.meta_path):
        if type(finder).__name__ == "_JImportLoader":
            sys.meta_path[i] = _JavaDomainsOnly(finder, jimports._JDOMAINS)  # type: ignore[assignment]
    return jp


class _JavaDomainsOnly:
    def __init__(self, inner: Any, domains: dict[str, str]) -> None:
        self.inner = inner
        self.domains = domains

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name.partition(".")[0] not in self.domains:
            return None
        return self.inner.find_spec(name, path, target)


def jpmml(path: Path | str, *, probabilities: list[str] | None = None) -> Any:
    """A JPMML-Evaluator for the file; ``probabilities`` adds probability OutputFields when the
    document declares none (JPMML only returns what Output asks for)."""
    jp = load_jpmml()
    text = Path(path).read_text()
    if probabilities and 'feature="probability"' not in text:
        fields = "".join(
            f'<OutputField name="probability({c})" optype="continuous" dataType="double" feature="probability" '
            f'value="{c}"/>' for c in probabilities
        )
        if "<Output>" in text:
            text = text.replace("<Output>", f"<Output>{fields}", 1)
        else:
            text = text.replace("</MiningSchema>", f"</MiningSchema><Output>{fields}</Output>", 1)
        tmp = Path(tempfile.mkdtemp()) / Path(path).name
        tmp.write_text(text)
        path = tmp
    return jp.make_evaluator(str(path)).verify()


def jpmml_answers(evaluator: Any, frame: pd.DataFrame, target: str | None, classes: list[str] | None
                  ) -> dict[str, np.ndarray]:
    """JPMML's answers in modelport's names (label / probabilities or prediction); no prediction
    is NaN (and the label "")."""
    out = evaluator.evaluateAll(frame)
    if len(out) != len(frame):
        # JPMML names a selectFirst / modelChain answer after the chosen segment's target, which
        # may be unnamed (None): the Python wrapper then drops every row; read them one by one
        out = pd.DataFrame([_named(evaluator.evaluate(_record(r)), target) for r in frame.to_dict("records")])
    cols = [str(c) for c in out.columns]
    out.columns = cols
    tname = target if target in cols else cols[0]
    if classes is None:
        return {"prediction": pd.to_numeric(out[tname], errors="coerce").to_numpy(dtype=np.float64)}
    labels = np.array(["" if _absent(v) else _text(v) for v in out[tname].tolist()], dtype=object)
    result = {"label": labels}
    pcols = [f"probability({c})" for c in classes]
    if all(c in cols for c in pcols):
        result["probabilities"] = out[pcols].to_numpy(dtype=np.float64)
    return result


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if _absent(v) else v for k, v in row.items()}


def _named(result: dict[Any, Any], target: str | None) -> dict[str, Any]:
    return {(target if k is None else str(k)): v for k, v in result.items()}


def _absent(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def assert_same(expected: dict[str, np.ndarray], got: dict[str, np.ndarray], *, rtol: float = 1e-9,
                atol: float = 1e-12, what: str = "") -> None:
    for key, e in expected.items():
        g = np.asarray(got[key])
        if key == "label" or e.dtype == object:
            gs = np.array([_text(v) for v in g.tolist()], dtype=object)
            bad = np.flatnonzero(np.asarray(e, dtype=object) != gs)
            assert bad.size == 0, f"{what} {key}: rows {bad[:10].tolist()} differ: {e[bad[:5]]} vs {gs[bad[:5]]}"
            continue
        e64 = np.asarray(e, dtype=np.float64)
        g64 = g.astype(np.float64).reshape(e64.shape)
        assert (np.isnan(e64) == np.isnan(g64)).all(), (
            f"{what} {key}: no prediction in rows {np.flatnonzero(np.isnan(e64) != np.isnan(g64))[:10].tolist()} "
            "on one side only")
        np.testing.assert_allclose(g64, e64, rtol=rtol, atol=atol, err_msg=f"{what} {key}")


def thresholds(text: str) -> dict[str, list[float]]:
    """Split values per field: every SimplePredicate comparing a field with a number."""
    out: dict[str, set[float]] = {}
    for m in re.finditer(r'<SimplePredicate field="([^"]+)" operator="(?:less|greater)\w*" value="([^"]+)"', text):
        try:
            out.setdefault(m.group(1), set()).add(float(m.group(2)))
        except ValueError:
            continue
    return {k: sorted(v) for k, v in out.items()}


def make_rows(doc: Any, n: int, seed: int, *, ranges: dict[str, tuple[float, float]] | None = None,
              missing: float = 0.0, integer: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows for every active field: numbers across the field's split values (or ``ranges``), valid
    categories; a share ``missing`` of missing values."""
    rng = np.random.default_rng(seed)
    text = Path(doc.path).read_text() if doc.path else ""
    splits = thresholds(text)
    data: dict[str, Any] = {}
    for f in doc.active_fields():
        if f.optype == "continuous" and f.dtype != "string":
            if ranges and f.name in ranges:
                lo, hi = ranges[f.name]
            elif f.name in splits:
                ts = splits[f.name]
                span = max(ts[-1] - ts[0], 1.0)
                lo, hi = ts[0] - 0.3 * span, ts[-1] + 0.3 * span
            else:
                lo, hi = -3.0, 3.0
            v = rng.uniform(lo, hi, n)
            if f.dtype == "integer" or f.name in integer:
                v = np.round(v)
            data[f.name] = v
        else:
            values = list(f.values) or ["a", "b"]
            data[f.name] = [values[i] for i in rng.integers(0, len(values), n)]
    frame = pd.DataFrame(data)
    if missing:
        for c in frame.columns:
            mask = rng.random(n) < missing
            frame[c] = frame[c].astype(object).where(~mask, None)
            if all(isinstance(v, (int, float)) or v is None for v in frame[c]):
                frame[c] = pd.to_numeric(frame[c])
    return frame


def edge_rows(doc: Any, base: pd.DataFrame, *, double: bool) -> pd.DataFrame:
    """Rows at every split value of the document and at its nearest neighbours (float32 or double)."""
    text = Path(doc.path).read_text() if doc.path else ""
    rows = []
    i = 0
    for name, ts in thresholds(text).items():
        if name not in base.columns:
            continue
        for t in ts:
            if double:
                vals = [t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)]
            else:
                t32 = np.float32(t)
                vals = [float(t32), float(np.nextafter(t32, np.float32(-np.inf))),
                        float(np.nextafter(t32, np.float32(np.inf)))]
            for v in vals:
                r = base.iloc[i % len(base)].to_dict()
                r[name] = v
                rows.append(r)
                i += 1
    return pd.DataFrame(rows, columns=base.columns) if rows else base.iloc[:0]
