"""Values outside a column's categories: the default policy reproduces the original library, row by
row, on fresh data with unseen categories, typos, numbers sent for string columns and None / NaN;
``missing`` and ``error`` do what they say; every scored unknown value is counted; bundles written
before policies existed behave as they did (missing).

What the libraries do (found by experiment with the installed versions, asserted below):

* LightGBM 4.7: pandas recodes a fresh DataFrame's categories to the training ones, so an unseen
  value (typo, number) is NaN, scored as missing. A numpy array holds codes; LightGBM truncates
  fractions, and a code it does not know goes where missing goes.
* XGBoost 3.2: looks a category up by binary search in its sorted training categories and raises
  "Found a category not in the training set" for a value past the last one; a value that sorts
  between known ones is silently taken for a neighbour. modelport refuses every unseen value
  (the error XGBoost means), never the silent neighbour. A numpy array holds codes, used as given.
* scikit-learn 1.9: OneHotEncoder(handle_unknown="ignore" or "warn") encodes an unknown value,
  including None and a number in a string column, as all zeros; OrdinalEncoder
  (handle_unknown="use_encoded_value") as ``unknown_value``; handle_unknown="error" raises.
* CatBoost: modelport's converter refuses categorical features (cleanly, as tested here).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

import modelport as mp
from modelport.bundle.core import Bundle
from modelport.errors import InputError, UnsupportedModelError

COLORS = ["red", "green", "blue", "black"]
FRESH_COLORS: list[Any] = ["red", "blue", None, "platinum", "Red", "zzz", "aaa", 5, "green", np.nan]


@pytest.fixture(scope="module")
def train():
    rng = np.random.default_rng(11)
    n = 1200
    df = pd.DataFrame({
        "x": rng.normal(size=n),
        "color": pd.Categorical(rng.choice(COLORS, n)),
        "tier": pd.Categorical(rng.choice([1, 2, 3], n)),
    })
    y = ((df.x > 0) ^ (df.color == "red") ^ (df.tier == 2) ^ (df.color == "black")).astype(int)
    return df, y


def _fresh_row(color: Any, tier: Any = 2, x: float = 0.4) -> pd.DataFrame:
    # a user's fresh frame: pandas infers the categories from the fresh values (a missing value
    # alone leaves none, which XGBoost cannot read: it keeps the training ones)
    missing = color is None or (isinstance(color, float) and color != color)
    col = pd.Categorical([None], categories=COLORS) if missing else pd.Series([color], dtype=object).astype("category")
    return pd.DataFrame({"x": [x], "color": col, "tier": pd.Series([tier]).astype("category")})


def _library(fn, frame: pd.DataFrame) -> np.ndarray | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(fn(frame))
    except Exception:  # the library refusing the row is the answer we compare with
        return None


def _bundle(b: Bundle, frame: pd.DataFrame) -> np.ndarray | None:
    try:
        return b.predict(frame)["probabilities"]
    except InputError:
        return None


# ------------------------------------------------------------------------------------- LightGBM
@pytest.fixture(scope="module")
def lgb_model(train):
    lgb = pytest.importorskip("lightgbm")
    df, y = train
    return lgb.LGBMClassifier(n_estimators=25, verbose=-1, min_child_samples=5).fit(df, y)


def test_lightgbm_default_reproduces_lightgbm_row_by_row(train, lgb_model):
    df, _ = train
    bundle = mp.pack(lgb_model, df)
    color = bundle.signature.column("color")
    assert (color.unknown, color.native) == ("native", "missing")
    for value in FRESH_COLORS:
        frame = _fresh_row(value)
        want = _library(lgb_model.predict_proba, frame)
        got = _bundle(bundle, frame)
        assert want is not None and got is not None, value
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=repr(value))
    # unseen tier (a number), and a tier given as text: LightGBM takes neither for a category
    np.testing.assert_allclose(_bundle(bundle, _fresh_row("red", 7)), lgb_model.predict_proba(_fresh_row("red", 7)),
                               atol=1e-6)
    # the unknown ones were counted, per column: platinum, Red, zzz, aaa, 5 and the tier 7
    assert bundle.runtime.unknown_categories == {"color": 5, "tier": 1}


def test_lightgbm_numpy_codes_are_lightgbms_codes(train, lgb_model):
    df, _ = train
    bundle = mp.pack(lgb_model, df)
    X = np.array([[0.4, 3, 1], [0.4, 7, 1], [0.4, -1, 1], [0.4, np.nan, 1], [0.4, 2.7, 1], [0.4, 1, 9]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LightGBM warns that the array has no feature names
        want = lgb_model.predict_proba(X)
    np.testing.assert_allclose(bundle.predict(X)["probabilities"], want, atol=1e-6)
    assert bundle.runtime.unknown_categories == {"color": 3, "tier": 1}  # 7, -1, 2.7; tier 9
    np.testing.assert_allclose(bundle.predict({"X": X})["probabilities"], want, atol=1e-6)


def test_lightgbm_error_policy_refuses_and_missing_policy_counts(train, lgb_model):
    df, _ = train
    strict = mp.pack(lgb_model, df, unknown_categories="error")
    with pytest.raises(InputError, match=r"column 'color' has values outside its categories in row\(s\) 0; got 'Red'"):
        strict.predict(_fresh_row("Red"))
    with pytest.raises(InputError, match=r"column 'color' has category codes outside 0..3"):
        strict.predict(np.array([[0.4, 7, 1]]))
    np.testing.assert_allclose(strict.predict(_fresh_row("red"))["probabilities"],
                               lgb_model.predict_proba(_fresh_row("red")), atol=1e-6)
    # the stored policy is overridden for one runtime without repacking
    from modelport.runtime.session import Runtime

    lenient = Runtime(strict, unknown_categories="missing")
    np.testing.assert_allclose(lenient.predict(_fresh_row("Red"))["probabilities"],
                               lgb_model.predict_proba(_fresh_row("Red")), atol=1e-6)
    assert lenient.unknown_categories == {"color": 1}


# ------------------------------------------------------------------------------------- XGBoost
@pytest.fixture(scope="module")
def xgb_model(train):
    xgb = pytest.importorskip("xgboost")
    df, y = train
    return xgb.XGBClassifier(n_jobs=1, n_estimators=25, max_depth=3, enable_categorical=True).fit(df, y)


def test_xgboost_refuses_unseen_categories_as_xgboost_means_to(train, xgb_model):
    df, _ = train
    bundle = mp.pack(xgb_model, df)
    color = bundle.signature.column("color")
    assert (color.unknown, color.native) == ("native", "error")
    for value in ["red", "blue", None, "green", np.nan]:  # known values and missing ones: the same answers
        frame = _fresh_row(value)
        np.testing.assert_allclose(_bundle(bundle, frame), xgb_model.predict_proba(frame), atol=1e-6, err_msg=repr(value))
    # unseen values past the last category: XGBoost raises, and so does the bundle
    for value in ["zzz", "~x"]:
        assert _library(xgb_model.predict_proba, _fresh_row(value)) is None
        with pytest.raises(InputError, match=rf"column 'color' has values outside its categories.*'{value}'"):
            bundle.predict(_fresh_row(value))
    # unseen values that sort between known ones: XGBoost silently answers for a neighbour ...
    neighbour = xgb_model.predict_proba(_fresh_row("red"))
    np.testing.assert_allclose(xgb_model.predict_proba(_fresh_row("platinum")), neighbour)
    # ... which a bundle never does: it refuses them like the others, and a typo and a number too
    for value in ["platinum", "Red", "aaa", 5]:
        assert _bundle(bundle, _fresh_row(value)) is None, value
    assert bundle.runtime.unknown_categories == {}


def test_xgboost_missing_policy_scores_unseen_as_missing(train, xgb_model):
    df, _ = train
    bundle = mp.pack(xgb_model, df, unknown_categories="missing")
    assert bundle.signature.column("color").unknown == "missing"
    assert any("xgboost" in n.lower() and "refuses them" in n for n in bundle.manifest["parity"]["notes"])
    as_missing = xgb_model.predict_proba(_fresh_row(None))
    for value in ["platinum", "Red", "zzz", 5]:
        np.testing.assert_allclose(bundle.predict(_fresh_row(value))["probabilities"], as_missing, atol=1e-6)
    assert bundle.runtime.unknown_categories == {"color": 4}


def test_xgboost_numpy_codes_are_xgboosts_codes(train, xgb_model):
    df, _ = train
    bundle = mp.pack(xgb_model, df)
    X = np.array([[0.4, 3, 1], [0.4, 0, 2], [0.4, 4, 1], [0.4, -1, 0], [0.4, np.nan, 1], [0.4, 2, 3]])
    want = xgb_model.predict_proba(X)
    # the numpy form is the tensor form: codes, as XGBoost reads a numpy array (issue 9: not values)
    got = bundle.predict(X)["probabilities"]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert len({round(float(p), 6) for p in got[:, 1]}) > 1
    assert bundle.runtime.unknown_categories == {"color": 2, "tier": 1}  # codes 4 and -1, tier 3
    np.testing.assert_allclose(bundle.predict({"X": X})["probabilities"], want, atol=1e-6)
    with pytest.raises(InputError, match=r"column 'color' must hold category codes.*; got 'red'") as err:
        bundle.predict(np.array([[0.4, "red", 1]], dtype=object))
    assert "DataFrame" in (err.value.hint or "")


# ------------------------------------------------------------------------------------- CatBoost
def test_catboost_categorical_features_are_refused_cleanly():
    cb = pytest.importorskip("catboost")
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"x": rng.normal(size=200), "plan": rng.choice(["basic", "pro", "max"], 200)})
    model = cb.CatBoostClassifier(iterations=5, verbose=0, cat_features=["plan"]).fit(df, (df.x > 0).astype(int))
    with pytest.raises(UnsupportedModelError, match="categorical features") as err:
        mp.pack(model, df)
    assert "encode those columns as numbers" in (err.value.hint or "")


# ------------------------------------------------------------------------------------- scikit-learn
def _encoders():
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    return {
        "onehot-ignore": OneHotEncoder(handle_unknown="ignore"),
        "onehot-warn": OneHotEncoder(handle_unknown="warn"),
        "onehot-error": OneHotEncoder(handle_unknown="error"),
        "ordinal-error": OrdinalEncoder(),
        "ordinal-encoded": OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
        "ordinal-nan": OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan),
    }


@pytest.mark.parametrize("kind", list(_encoders()))
def test_sklearn_encoders_default_reproduces_scikit_learn_row_by_row(kind):
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(4)
    n = 300
    df = pd.DataFrame({"a": rng.normal(size=n), "plan": rng.choice(["basic", "pro", "max"], n).astype(object)})
    y = ((df.a > 0) ^ (df.plan == "max")).astype(int)
    # NaN from the encoder needs an estimator that takes it
    est = HistGradientBoostingClassifier(max_iter=10) if kind == "ordinal-nan" else LogisticRegression()
    model = make_pipeline(make_column_transformer((_encoders()[kind], ["plan"]), remainder="passthrough"), est).fit(df, y)
    bundle = mp.pack(model, df)
    plan = bundle.signature.column("plan")
    assert plan.categories == ("basic", "max", "pro")
    refuses = kind in ("onehot-error", "ordinal-error")
    assert plan.native == ("error" if refuses else "encoder")
    accepted = 0
    for value in ["basic", "max", "platinum", "Pro", "", 5, None]:
        frame = pd.DataFrame({"a": [0.3], "plan": pd.Series([value], dtype=object)})
        want = _library(model.predict_proba, frame)
        got = _bundle(bundle, frame)
        assert (want is None) == (got is None), (kind, value, want, got)
        if want is not None:
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"{kind} {value!r}")
            accepted += 1
    assert accepted == (2 if refuses else 7)
    assert bundle.runtime.unknown_categories == ({} if refuses else {"plan": 5})
    if not refuses:
        with pytest.raises(InputError, match="no missing value"):
            mp.pack(model, df, unknown_categories="missing")
        strict = mp.pack(model, df, unknown_categories="error")
        with pytest.raises(InputError, match=r"column 'plan' has values outside its categories.*'Pro'"):
            strict.predict(pd.DataFrame({"a": [0.3], "plan": ["Pro"]}))


# ------------------------------------------------------------------------------------- old bundles
def _without_policies(bundle: Bundle) -> Bundle:
    from modelport.bundle import manifest as mf

    manifest = json.loads(bundle.files["manifest.json"])
    for c in manifest["signature"]["columns"]:
        c.pop("unknown", None)
        c.pop("native", None)
    return Bundle({**bundle.files, "manifest.json": mf.dumps(manifest)}, origin="<old bundle>")


def test_bundles_without_a_policy_score_unknown_as_missing_and_count(train, lgb_model, xgb_model):
    df, _ = train
    for model in (lgb_model, xgb_model):
        old = _without_policies(mp.pack(model, df))
        assert old.signature.column("color").unknown is None
        assert old.signature.column("color").unknown_policy == "missing"
        missing = old.predict(_fresh_row(None))["probabilities"]
        np.testing.assert_allclose(old.predict(_fresh_row("platinum"))["probabilities"], missing, atol=1e-7)
        assert old.runtime.unknown_categories == {"color": 1}
        assert mp.check(old).passed
