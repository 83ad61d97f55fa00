"""LightGBM -> bundle: parity with LightGBM itself on fresh data, NaN under every missing-value mode,
split values and their float32 neighbours, pandas categoricals with unseen and missing values, raw
boosters, determinism and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import modelport as mp

lgb = pytest.importorskip("lightgbm")
pd = pytest.importorskip("pandas")

N_FEATURES = 5
FLT_MAX = float(np.finfo(np.float32).max)
PARAMS = {"n_estimators": 25, "num_leaves": 15, "verbose": -1, "n_jobs": 1}


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[rng.random(X.shape) < 0.15] = np.nan
    X[:, 4] = np.where(rng.random(n) < 0.4, 0.0, X[:, 4])  # many exact zeros: LightGBM's zero bin
    return X


@pytest.fixture(scope="module")
def train():
    X = _data(500, 0)
    rng = np.random.default_rng(1)
    signal = np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 1], nan=1.0) + np.nan_to_num(X[:, 4]) \
        + 0.3 * rng.normal(size=len(X))
    return X, (signal > 0).astype(int), np.digitize(signal, [-0.5, 0.5]), 3 * np.nan_to_num(X[:, 2]) + signal


@pytest.fixture(scope="module")
def fresh():
    X = _data(200, 2)
    X[0] = np.nan
    X[1] = 0.0
    X[2:6, 4] = [1e-36, -1e-36, 1e-35, -1e-35]  # LightGBM reads |x| <= 1e-35 as zero
    return X


def _split_values(booster) -> list[tuple[int, float]]:
    """(feature index, threshold) of numerical splits, from LightGBM's own tree table."""
    df = booster.trees_to_dataframe()
    df = df[df["decision_type"] == "<="]
    names = booster.feature_name()
    return sorted({(names.index(f), float(t)) for f, t in zip(df["split_feature"], df["threshold"], strict=True)})


def _edge_rows(base: np.ndarray, splits: list[tuple[int, float]], limit: int = 120) -> np.ndarray:
    """Rows with one feature at the float32 nearest a threshold and at both its float32 neighbours."""
    rows = []
    step = max(1, len(splits) // limit)
    for k, (f, t) in enumerate(splits[::step]):
        if abs(t) >= FLT_MAX:  # open-ended splits: their float32 neighbours would be infinite
            continue
        t32 = np.float32(t)
        for v in (t32, np.nextafter(t32, np.float32(-np.inf)), np.nextafter(t32, np.float32(np.inf))):
            r = base[k % len(base)].copy()
            r[f] = float(v)
            rows.append(r)
    return np.array(rows)


def _assert_classifier_parity(bundle, model, X):
    got = bundle.predict(X)
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got["label"], model.predict(X))
    report = mp.verify(bundle, model, X)
    assert report.passed, report.summary()


def _assert_regression_parity(bundle, model, X):
    got = bundle.predict(X)["prediction"]
    want = model.predict(X)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).mean())


@pytest.fixture(scope="module")
def binary(train):
    X, y, _, _ = train
    model = lgb.LGBMClassifier(**PARAMS).fit(X, y)
    return model, mp.pack(model, X, name="lgb-binary")


def test_binary_classifier_matches_lightgbm_on_fresh_data(binary, fresh):
    model, bundle = binary
    assert bundle.task == "classification" and bundle.classes == [0, 1]
    _assert_classifier_parity(bundle, model, fresh)


def test_binary_classifier_at_thresholds_and_their_float32_neighbours(binary, fresh):
    model, bundle = binary
    rows = _edge_rows(fresh, _split_values(model.booster_))
    assert len(rows) > 30
    _assert_classifier_parity(bundle, model, rows)


def test_values_lightgbm_reads_as_zero_go_where_zero_goes(train, fresh):
    X, _, y3, _ = train
    model = lgb.LGBMClassifier(**PARAMS).fit(X, y3)
    splits = _split_values(model.booster_)
    assert any(abs(t) <= 2e-35 for _, t in splits)  # LightGBM puts splits right next to zero here
    z = np.float32(1e-35)
    band = [0.0, -0.0, 1e-36, -1e-36, float(z), float(-z), float(np.nextafter(z, np.float32(1))),
            float(np.nextafter(-z, np.float32(-1))), 1e-40, np.nan]
    rows = np.repeat(fresh[:len(band) * 3], 1, axis=0)
    for k in range(len(rows)):
        rows[k, k % N_FEATURES] = band[k % len(band)]
    _assert_classifier_parity(mp.pack(model, X), model, rows)


def test_batch_of_one_and_empty_batch(binary, fresh):
    model, bundle = binary
    one = bundle.predict(fresh[7:8])
    assert one["label"].shape == (1,) and one["probabilities"].shape == (1, 2)
    np.testing.assert_allclose(one["probabilities"], model.predict_proba(fresh[7:8]), atol=1e-5)
    empty = bundle.predict(fresh[:0])
    assert empty["label"].shape == (0,) and empty["probabilities"].shape == (0, 2)


def test_same_model_packed_twice_gives_identical_bytes(binary, train, tmp_path):
    model, bundle = binary
    assert mp.pack(model, train[0], name="lgb-binary").to_bytes() == bundle.to_bytes()
    bundle.save(tmp_path / "b.mpk")
    loaded = mp.load(tmp_path / "b.mpk")
    assert loaded.digest == bundle.digest and mp.check(loaded).passed
    source = loaded.manifest["source"]
    assert (source["framework"], source["estimator"], source["converter"]) == ("lightgbm", "LGBMClassifier", "modelport")
    assert all(c.nullable for c in loaded.signature.columns)


@pytest.mark.parametrize("objective", ["multiclass", "multiclassova"])
def test_multiclass(train, fresh, objective):
    X, _, y3, _ = train
    model = lgb.LGBMClassifier(objective=objective, **PARAMS).fit(X, y3)
    bundle = mp.pack(model, X)
    assert bundle.classes == [0, 1, 2]
    _assert_classifier_parity(bundle, model, np.vstack([fresh, _edge_rows(fresh, _split_values(model.booster_), 40)]))


@pytest.mark.parametrize(
    "params",
    [{}, {"zero_as_missing": True}, {"use_missing": False}, {"objective": "poisson"}],
    ids=["nan-missing", "zero-as-missing", "no-missing", "poisson"],
)
def test_regressor_under_each_missing_value_mode(train, fresh, params):
    X, _, _, target = train
    y = np.abs(np.round(target)) if params.get("objective") == "poisson" else target
    model = lgb.LGBMRegressor(**PARAMS, **params).fit(X, y)
    bundle = mp.pack(model, X)
    _assert_regression_parity(bundle, model, np.vstack([fresh, _edge_rows(fresh, _split_values(model.booster_), 60)]))


def test_string_class_labels(train, fresh):
    X, y, _, _ = train
    labels = np.array(["churned", "stayed"])[y]
    model = lgb.LGBMClassifier(**PARAMS).fit(X, labels)
    bundle = mp.pack(model, X)
    assert bundle.classes == ["churned", "stayed"]
    _assert_classifier_parity(bundle, model, fresh)


@pytest.fixture(scope="module")
def categorical():
    rng = np.random.default_rng(4)
    n = 600
    df = pd.DataFrame({
        "amount": rng.normal(size=n),
        "city": pd.Categorical(rng.choice(["berlin", "paris", "rome", "oslo", "lima"], n)),
        "visits": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        "tier": pd.Categorical(rng.choice([3, 1, 2], n)),
    })
    df.loc[df.index[:30], "city"] = np.nan
    y = ((df["amount"] + (df["city"] == "paris") - (df["city"] == "rome") + (df["tier"] == 2)) > 0.3).astype(int)
    model = lgb.LGBMClassifier(min_data_per_group=5, cat_smooth=1, min_child_samples=5, **PARAMS).fit(df, y)
    return df, model, mp.pack(model, df)


def test_pandas_categoricals_keep_training_categories(categorical):
    _, model, bundle = categorical
    city = bundle.signature.column("city")
    assert city.dtype == "category" and city.categories == ("berlin", "lima", "oslo", "paris", "rome")
    assert bundle.signature.column("tier").categories == (1, 2, 3)
    assert "==" in str(model.booster_.dump_model())  # the model really has categorical splits


def test_pandas_categorical_unseen_missing_and_reordered_categories(categorical):
    _, model, bundle = categorical
    rng = np.random.default_rng(5)
    cities = np.array(["paris", "rome", None, "tokyo", "berlin", "lima", "oslo"] * 12, dtype=object)
    fresh = pd.DataFrame({
        "amount": rng.normal(size=len(cities)),
        # categories in another order and with a value training never saw: LightGBM recodes them
        "city": pd.Categorical(cities, categories=["tokyo", "rome", "paris", "oslo", "lima", "berlin"]),
        "visits": np.where(rng.random(len(cities)) < 0.2, np.nan, rng.normal(size=len(cities))),
        "tier": pd.Categorical(rng.choice([1, 2, 3], len(cities)), categories=[1, 2, 3]),
    })
    _assert_classifier_parity(bundle, model, fresh)
    assert bundle.predict(fresh.iloc[:1])["probabilities"].shape == (1, 2)
    assert bundle.predict(fresh.iloc[:0])["label"].shape == (0,)
    # records: plain strings, None and an unseen value
    records = [{"amount": 0.2, "city": c, "visits": None, "tier": 2} for c in ("paris", None, "tokyo")]
    as_frame = pd.DataFrame({"amount": [0.2] * 3,
                             "city": pd.Categorical(["paris", None, None], categories=bundle.signature.column("city").categories),
                             "visits": [np.nan] * 3, "tier": pd.Categorical([2, 2, 2], categories=[1, 2, 3])})
    np.testing.assert_allclose(bundle.predict(records)["probabilities"], model.predict_proba(as_frame), atol=1e-5)


def test_raw_booster_with_integer_categorical_feature(train, fresh):
    X = train[0]
    rng = np.random.default_rng(6)
    Xc = np.column_stack([X[:, :2], rng.integers(0, 6, len(X))]).astype(float)
    y = np.digitize(np.nan_to_num(Xc[:, 0]) + (Xc[:, 2] == 3) - (Xc[:, 2] == 1), [-0.5, 0.5])
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1,
                         "min_data_per_group": 5, "cat_smooth": 1},
                        lgb.Dataset(Xc, label=y, categorical_feature=[2]), 15)
    bundle = mp.pack(booster, Xc)
    # codes LightGBM truncates toward zero, negative codes, codes never seen, NaN
    codes = np.array([0, 1, 2, 3, 4, 5, 6, -1, 2.5, 0.99, -0.5, np.nan] * 10)
    rows = np.column_stack([fresh[: len(codes), :2], codes])
    got = bundle.predict(rows)
    want = booster.predict(rows)
    np.testing.assert_allclose(got["probabilities"], want, atol=1e-5)
    np.testing.assert_array_equal(got["label"], np.argmax(want, axis=1))


def test_raw_booster_from_model_file_and_regression(train, fresh, tmp_path):
    X, _, _, target = train
    model = lgb.LGBMRegressor(**PARAMS).fit(X, target)
    path = tmp_path / "model.txt"
    model.booster_.save_model(str(path))
    booster = lgb.Booster(model_file=str(path))
    bundle = mp.pack(booster, X)
    assert bundle.task == "regression"
    _assert_regression_parity(bundle, booster, fresh)


def test_early_stopping_uses_the_best_iteration(train, fresh):
    X, y, _, _ = train
    model = lgb.LGBMClassifier(**{**PARAMS, "n_estimators": 200, "learning_rate": 0.3})
    model.fit(X[:350], y[:350], eval_X=(X[350:],), eval_y=(y[350:],), callbacks=[lgb.early_stopping(3, verbose=False)])
    assert 0 < model.best_iteration_ < 200
    _assert_classifier_parity(mp.pack(model, X), model, fresh)


def test_unfitted_model_wrong_sample_and_linear_trees_are_refused(train):
    X, y, _, target = train
    with pytest.raises(mp.UnsupportedModelError, match="not fitted"):
        mp.pack(lgb.LGBMClassifier(), X)
    model = lgb.LGBMClassifier(**PARAMS).fit(X, y)
    with pytest.raises(mp.ConversionError, match="3 columns but the LightGBM model was trained on 5"):
        mp.pack(model, X[:, :3])
    linear = lgb.LGBMRegressor(linear_tree=True, **PARAMS).fit(np.nan_to_num(X), target)
    with pytest.raises(mp.UnsupportedModelError, match="linear trees"):
        mp.pack(linear, np.nan_to_num(X))
