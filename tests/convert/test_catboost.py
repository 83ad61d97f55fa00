"""CatBoost -> bundle: parity with CatBoost itself on fresh data, NaN under nan_mode Min and Max,
borders and their float32 neighbours, multiclass, raw models loaded from .cbm, determinism and
refusal of categorical features."""

from __future__ import annotations

import numpy as np
import pytest

import modelport as mp

cb = pytest.importorskip("catboost")
pd = pytest.importorskip("pandas")

N_FEATURES = 5  # as in conftest.py
FLT_MAX = float(np.finfo(np.float32).max)
PARAMS = {"iterations": 30, "depth": 4, "verbose": 0, "allow_writing_files": False, "thread_count": 1,
          "random_seed": 0}


def _edge_rows(model, base: np.ndarray, limit: int = 120) -> np.ndarray:
    """Rows with one feature exactly at a border CatBoost reports, and at both float32 neighbours."""
    borders = sorted((int(f), float(b)) for f, bs in model.get_borders().items() for b in bs if abs(b) < FLT_MAX)
    rows = []
    step = max(1, len(borders) // limit)
    for k, (f, b) in enumerate(borders[::step]):
        t = np.float32(b)
        for v in (t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf))):
            r = base[k % len(base)].copy()
            r[f] = float(v)
            rows.append(r)
    assert len(rows) > 30
    return np.array(rows)


def _assert_classifier_parity(bundle, model, X):
    got = bundle.predict(X)
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got["label"], np.asarray(model.predict(X)).reshape(-1))
    report = mp.verify(bundle, model, X)
    assert report.passed, report.summary()


@pytest.fixture(scope="module")
def binary(train):
    X, y, _, _ = train
    model = cb.CatBoostClassifier(**PARAMS).fit(X, y)
    return model, mp.pack(model, X, name="cb-binary")


def test_binary_classifier_matches_catboost_on_fresh_data_and_borders(binary, fresh):
    model, bundle = binary
    assert bundle.task == "classification" and bundle.classes == [0, 1]
    _assert_classifier_parity(bundle, model, fresh)
    _assert_classifier_parity(bundle, model, _edge_rows(model, fresh))


def test_batch_of_one_and_empty_batch(binary, fresh):
    model, bundle = binary
    one = bundle.predict(fresh[5:6])
    assert one["probabilities"].shape == (1, 2)
    np.testing.assert_allclose(one["probabilities"], model.predict_proba(fresh[5:6]), atol=1e-5)
    empty = bundle.predict(fresh[:0])
    assert empty["label"].shape == (0,) and empty["probabilities"].shape == (0, 2)


def test_same_model_packed_twice_gives_identical_bytes(binary, train, tmp_path):
    model, bundle = binary
    assert mp.pack(model, train[0], name="cb-binary").to_bytes() == bundle.to_bytes()
    bundle.save(tmp_path / "b.mpk")
    loaded = mp.load(tmp_path / "b.mpk")
    assert loaded.digest == bundle.digest and mp.check(loaded).passed
    source = loaded.manifest["source"]
    assert (source["framework"], source["estimator"], source["converter"]) == ("catboost", "CatBoostClassifier", "modelport")
    assert source["framework_version"] == cb.__version__


@pytest.mark.parametrize("loss", ["MultiClass", "MultiClassOneVsAll"])
def test_multiclass_with_string_labels(train, fresh, loss):
    X, _, y3, _ = train
    labels = np.array(["low", "mid", "high"])[y3]
    model = cb.CatBoostClassifier(loss_function=loss, **PARAMS).fit(X, labels)
    bundle = mp.pack(model, X)
    assert bundle.classes == [str(c) for c in model.classes_]
    _assert_classifier_parity(bundle, model, np.vstack([fresh, _edge_rows(model, fresh, 40)]))


@pytest.mark.parametrize(
    "params", [{}, {"nan_mode": "Max"}, {"loss_function": "Poisson"}, {"loss_function": "MultiRMSE"}],
    ids=["rmse-nan-min", "nan-max", "poisson", "multi-target"],
)
def test_regressor(train, fresh, params):
    X, _, _, target = train
    y = target
    if params.get("loss_function") == "Poisson":
        y = np.abs(np.round(target))
    elif params.get("loss_function") == "MultiRMSE":
        y = np.column_stack([target, np.nan_to_num(X[:, 3])])
    model = cb.CatBoostRegressor(**PARAMS, **params).fit(X, y)
    bundle = mp.pack(model, X)
    rows = np.vstack([fresh, _edge_rows(model, fresh, 60)])
    got = bundle.predict(rows)["prediction"]
    want = model.predict(rows)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).mean())
    assert mp.verify(bundle, model, rows).passed


def test_dataframe_and_model_loaded_from_cbm(train, fresh, tmp_path):
    X, y, _, _ = train
    cols = ["a", "b", "c", "d", "e"]
    model = cb.CatBoostClassifier(**PARAMS).fit(pd.DataFrame(X, columns=cols), y)
    path = tmp_path / "model.cbm"
    model.save_model(str(path))
    raw = cb.CatBoost().load_model(str(path))
    bundle = mp.pack(raw, pd.DataFrame(X, columns=cols))
    assert bundle.signature.column_names == cols and bundle.task == "classification"
    frame = pd.DataFrame(fresh, columns=cols)
    np.testing.assert_allclose(bundle.predict(frame[cols[::-1]])["probabilities"], model.predict_proba(frame), atol=1e-5)


def test_categorical_features_unfitted_model_and_wrong_sample_are_refused(train):
    X, y, _, _ = train
    df = pd.DataFrame({"a": X[:, 0], "city": np.random.default_rng(0).choice(["x", "y"], len(X))})
    model = cb.CatBoostClassifier(cat_features=["city"], **PARAMS).fit(df, y)
    with pytest.raises(mp.UnsupportedModelError, match="categorical features"):
        mp.pack(model, df)
    with pytest.raises(mp.UnsupportedModelError, match="not fitted"):
        mp.pack(cb.CatBoostClassifier(), X)
    numeric = cb.CatBoostClassifier(**{**PARAMS, "iterations": 3}).fit(X, y)
    with pytest.raises(mp.ConversionError, match="3 columns but the CatBoost model was trained on 5"):
        mp.pack(numeric, X[:, :3])
