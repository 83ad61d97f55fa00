"""PMML bundles against JPMML-Evaluator (the reference PMML evaluator; AGPL, test-only): every
fixture is packed, then the bundle and modelport's own reference evaluation are compared with JPMML
on fresh rows, on every split value and its nearest neighbours, with missing values and with values
outside the DataFields' valid values. The JVM starts once for the module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.convert.pmml_support import (
    DATA,
    assert_same,
    edge_rows,
    jpmml,
    jpmml_answers,
    load_jpmml,
    make_rows,
)

import modelport as mp
from modelport.convert.pmml import read
from modelport.convert.pmml.converter import PMMLConverter
from modelport.errors import InputError

jpmml_evaluator = load_jpmml()

GENERATED = sorted(p.stem for p in DATA.glob("*.pmml"))
HAND = sorted(p.stem for p in (DATA / "hand").glob("*.pmml"))
#: value ranges for hand-written fixtures whose fields have few split values
RANGES = {
    "glm": {"age": (18, 80), "income": (0, 90000)},
    "glm_poisson": {"age": (18, 90)},
    "multinomial": {"age": (18, 80)},
    "naive_bayes": {"tenure": (0, 48)},
    "svm": {"u": (-2, 2), "v": (-2, 2)},
    "scorecard": {"age": (18, 75), "income": (5000, 60000), "delinquencies": (0, 4)},
    "transforms": {"size": (5, 220), "rooms": (0, 8)},
    "old_regression": {"amount": (0, 20000)},
}


def _fixture(name: str) -> Path:
    p = DATA / f"{name}.pmml"
    return p if p.exists() else DATA / "hand" / f"{name}.pmml"


def _sample(name: str, doc) -> pd.DataFrame:
    csv = DATA / f"{name}.csv"
    if csv.exists():
        return pd.read_csv(csv)
    return make_rows(doc, 400, seed=0, ranges=RANGES.get(name))


def _fresh(name: str, doc, sample: pd.DataFrame, bundle) -> pd.DataFrame:
    """Fresh rows, split values and neighbours, and missing values in the columns the bundle takes them in."""
    cols = [f.name for f in doc.active_fields()]
    rng = np.random.default_rng(11)
    if (DATA / f"{name}.csv").exists():
        base = sample[cols].copy()
        fresh = base.sample(200, random_state=3, replace=True).reset_index(drop=True)
        for f in doc.active_fields():  # perturb numbers: rows the model was not trained on
            c = f.name
            if fresh[c].dtype.kind == "f":
                fresh[c] = fresh[c] * rng.uniform(0.8, 1.2, len(fresh))
                for _, lo, hi in f.intervals[:1]:  # inside the valid interval (outside: see below)
                    fresh[c] = fresh[c].clip(lo, hi)
    else:
        fresh = make_rows(doc, 200, seed=5, ranges=RANGES.get(name))
    double = not doc.float_context and all(f.dtype != "float" for f in doc.active_fields())
    edges = edge_rows(doc, fresh, double=double)
    parts = [fresh, edges]
    nullable = {c.name for c in bundle.signature.columns if c.nullable}
    for c in cols:
        if c in nullable:
            m = fresh.iloc[:20].copy()
            m[c] = None
            parts.append(m)
    out = pd.concat(parts, ignore_index=True)
    for c in cols:
        if out[c].map(lambda v: v is None or isinstance(v, (int, float, np.number))).all():
            out[c] = pd.to_numeric(out[c])
    return out


@pytest.fixture(scope="module")
def converter() -> PMMLConverter:
    return PMMLConverter()


@pytest.mark.parametrize("name", GENERATED + HAND)
def test_bundle_and_reference_agree_with_jpmml(name: str, converter: PMMLConverter) -> None:
    path = _fixture(name)
    doc = read(path)
    sample = _sample(name, doc)
    bundle = mp.pack(doc, sample, name=name)
    parity = bundle.manifest["parity"]
    assert parity["pass"], parity
    assert bundle.manifest["source"]["framework"] == "pmml"
    fresh = _fresh(name, doc, sample, bundle)
    classes = [str(c) for c in bundle.classes] if bundle.classes else None
    target = doc.target_field().name if doc.target_field() is not None else None
    with_probs = bundle.task == "classification" and doc.model_kind != "SupportVectorMachineModel"
    ev = jpmml(path, probabilities=classes if with_probs else None)
    expected = jpmml_answers(ev, fresh, target, classes if bundle.task != "clustering" else [])
    got = bundle.predict(fresh)
    reference = converter.reference(doc, fresh)  # not prepare_sample: it refuses invalid rows, JPMML gives none
    tol = {"rtol": 1e-6, "atol": 1e-7} if doc.float_context else {"rtol": 1e-9, "atol": 1e-12}
    keys = [k for k in expected if k in got]
    assert keys, f"nothing to compare: JPMML gave {list(expected)}, the bundle {list(got)}"
    assert_same({k: expected[k] for k in keys}, got, what=f"{name}: bundle vs JPMML", **tol)
    assert_same({k: expected[k] for k in keys}, reference, what=f"{name}: reference vs JPMML", **tol)


def test_scorecard_reason_codes_agree_with_jpmml() -> None:
    path = DATA / "hand" / "scorecard.pmml"
    doc = read(path)
    rows = make_rows(doc, 300, seed=2, ranges=RANGES["scorecard"])
    rows.loc[::7, "income"] = np.nan
    rows.loc[::11, "age"] = np.nan
    bundle = mp.pack(doc, make_rows(doc, 300, seed=1, ranges=RANGES["scorecard"]), name="scorecard")
    assert "reason_code_1" in bundle.signature.output_names
    out = jpmml(path).evaluateAll(rows)
    got = bundle.predict(rows)
    np.testing.assert_allclose(got["prediction"], out["final"].to_numpy(float), rtol=1e-12)
    for k in (1, 2, 3):
        want = ["" if v is None or v != v else str(v) for v in out[f"reason{k}"].tolist()]
        assert got[f"reason_code_{k}"].tolist() == want, f"reason code {k}"


def test_invalid_values_are_refused_like_jpmml() -> None:
    """returnInvalid on a categorical field: JPMML refuses the record, the bundle refuses the row."""
    path = DATA / "sklearn_logistic.pmml"
    doc = read(path)
    sample = pd.read_csv(DATA / "sklearn_logistic.csv")
    bundle = mp.pack(doc, sample, name="logistic")
    bad = sample.iloc[:3].copy()
    bad.loc[1, "city"] = "marseille"
    out = jpmml(path).evaluateAll(bad)
    assert out["errors"].notna().iloc[1] if "errors" in out.columns else True
    with pytest.raises(InputError, match="city"):
        bundle.predict(bad)
    with pytest.raises(InputError, match="city"):
        PMMLConverter().reference(doc, bad)


def test_interval_outside_gives_no_prediction_where_jpmml_refuses() -> None:
    path = DATA / "sklearn_linear_domain.pmml"
    doc = read(path)
    sample = pd.read_csv(DATA / "sklearn_linear_domain.csv")
    bundle = mp.pack(doc, sample, name="domain")
    rows = sample.iloc[:4].copy()
    rows.loc[2, "age"] = 1000.0
    out = jpmml(path).evaluateAll(rows)
    assert out.iloc[2].isna().iloc[0] or ("errors" in out.columns and out["errors"].notna().iloc[2])
    got = bundle.predict(rows)["prediction"]
    assert np.isnan(got[2]) and np.isfinite(got[[0, 1, 3]]).all()
    assert any("no prediction" in n for n in bundle.manifest["parity"]["notes"])


def test_as_missing_treatment_matches_jpmml() -> None:
    """invalidValueTreatment asMissing on a number (out of its Interval: replaced as missing), and a declared
    missing value 'NA' with a missingValueReplacement."""
    path = DATA / "hand" / "old_regression.pmml"
    doc = read(path)
    rows = pd.DataFrame({"amount": [100.0, -5.0, np.nan, 250000.0, 7000.0],
                         "purpose": ["car", "other", "NA", None, "home"]})
    bundle = mp.pack(doc, make_rows(doc, 200, seed=0, ranges=RANGES["old_regression"]), name="old")
    expected = jpmml_answers(jpmml(path, probabilities=["good", "bad"]), rows, "y", ["good", "bad"])
    assert_same(expected, bundle.predict(rows), what="asMissing")
