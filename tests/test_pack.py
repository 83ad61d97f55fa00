"""pack(): conversion, verification against the original, refusal outside tolerance, reference data."""

from __future__ import annotations

import numpy as np
import pytest

import modelport as mp
from modelport.errors import InputError, UnsupportedModelError, VerificationError


def test_pack_records_parity_and_reference(iris_bundle, iris):
    m = iris_bundle.manifest
    assert m["format"] == "modelport/1"
    assert m["task"] == "classification" and m["classes"] == [0, 1, 2]
    assert m["parity"]["pass"] is True and m["parity"]["accepted_mismatch"] is False
    assert m["parity"]["max_abs_error"] <= 1e-5
    # threshold probes were generated from the forest's split values
    assert m["reference"]["probes"] > 10
    assert set(m["files"]) == {"model.onnx", "reference/inputs.npz", "reference/outputs.npz"}
    assert m["metrics"] == {"accuracy": 0.97}
    assert m["created"] is None  # no timestamps unless the user passes one
    assert [c["name"] for c in m["signature"]["columns"]] == ["f0", "f1", "f2", "f3"]


def test_predict_matches_original_on_fresh_rows(iris_bundle, iris_forest):
    rng = np.random.default_rng(1)
    X_new = rng.uniform([4, 2, 1, 0], [8, 4.5, 7, 2.5], size=(200, 4))
    out = iris_bundle.predict(X_new)
    np.testing.assert_array_equal(out["label"], iris_forest.predict(X_new))
    np.testing.assert_allclose(out["probabilities"], iris_forest.predict_proba(X_new), atol=1e-5)
    report = mp.verify(iris_bundle, iris_forest, X_new)
    assert report.passed and report.label_agreement == 1.0


def test_check_reruns_reference_here(iris_bundle):
    report = mp.check(iris_bundle)
    assert report.passed and report.rows == iris_bundle.manifest["reference"]["stored_rows"]


def test_outside_tolerance_is_refused_unless_accepted(iris, iris_forest):
    X, _ = iris
    strict = mp.Tolerance(probability_abs=0.0)
    with pytest.raises(VerificationError, match="does not reproduce the original"):
        mp.pack(iris_forest, X, tolerance=strict)
    b = mp.pack(iris_forest, X, tolerance=strict, accept_mismatch=True)
    assert b.manifest["parity"]["pass"] is False and b.manifest["parity"]["accepted_mismatch"] is True


def test_same_model_and_sample_give_identical_bytes(iris, iris_forest):
    X, _ = iris
    a = mp.pack(iris_forest, X, name="iris").to_bytes()
    b = mp.pack(iris_forest, X, name="iris").to_bytes()
    assert a == b


def test_nan_refused_where_the_original_refuses_it(iris):
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    b = mp.pack(LogisticRegression(max_iter=500).fit(X, y), X)
    assert not any(c["nullable"] for c in b.manifest["signature"]["columns"])
    row = X[:1].copy()
    row[0, 2] = np.nan
    with pytest.raises(InputError, match="'f2' has missing values"):
        b.predict(row)


def test_nan_accepted_where_the_original_accepts_it(iris):
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, y = iris
    X = X.copy()
    X[::7, 1] = np.nan
    model = HistGradientBoostingRegressor(max_iter=10, random_state=0).fit(X, y.astype(float))
    b = mp.pack(model, X)  # a ConversionError here is a converter regression: it fails the test
    cols = {c["name"]: c for c in b.manifest["signature"]["columns"]}
    assert cols["f1"]["nullable"] is True
    row = X[:3].copy()
    row[:, 1] = np.nan
    np.testing.assert_allclose(b.predict(row)["prediction"], model.predict(row), rtol=1e-5)


def test_unsupported_model_and_bad_sample(iris_forest):
    with pytest.raises(UnsupportedModelError, match="cannot convert"):
        mp.pack(object(), np.zeros((2, 2)))
    with pytest.raises(InputError, match="sample"):
        mp.pack(iris_forest, None)


def test_empty_and_single_row_batches(iris_bundle, iris):
    X, _ = iris
    empty = iris_bundle.predict(X[:0])
    assert empty["label"].shape == (0,) and empty["probabilities"].shape == (0, 3)
    one = iris_bundle.predict(X[0])
    assert one["label"].shape == (1,)
