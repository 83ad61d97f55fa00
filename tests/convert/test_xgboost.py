"""XGBoost -> bundle: parity with XGBoost itself on fresh data, NaN, split values and their float32
neighbours, categorical splits, raw boosters, determinism and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import modelport as mp

xgb = pytest.importorskip("xgboost")
pd = pytest.importorskip("pandas")

N_FEATURES = 5  # as in conftest.py


def _split_values(booster) -> list[tuple[int, float]]:
    """(feature index, split value) from XGBoost's own tree table, not from modelport."""
    df = booster.trees_to_dataframe()
    df = df[df["Feature"] != "Leaf"]
    names = booster.feature_names or [f"f{i}" for i in range(booster.num_features())]
    return sorted({(names.index(f), float(s)) for f, s in zip(df["Feature"], df["Split"], strict=True)})


def _edge_rows(base: np.ndarray, splits: list[tuple[int, float]], limit: int = 120) -> np.ndarray:
    """Rows with one feature exactly at a split value and at both float32 neighbours."""
    rows = []
    step = max(1, len(splits) // limit)
    for k, (f, s) in enumerate(splits[::step]):
        t = np.float32(s)
        for v in (t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf))):
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


@pytest.fixture(scope="module")
def binary(train):
    X, y, _, _ = train
    model = xgb.XGBClassifier(n_jobs=1, n_estimators=25, max_depth=3, random_state=0).fit(X, y)
    return model, mp.pack(model, X, name="xgb-binary")


def test_binary_classifier_matches_xgboost_on_fresh_data(binary, fresh):
    model, bundle = binary
    assert bundle.task == "classification" and bundle.classes == [0, 1]
    assert bundle.predict(fresh)["probabilities"].shape == (len(fresh), 2)
    _assert_classifier_parity(bundle, model, fresh)


def test_binary_classifier_at_split_values_and_their_neighbours(binary, fresh):
    model, bundle = binary
    rows = _edge_rows(fresh, _split_values(model.get_booster()))
    assert len(rows) > 30
    _assert_classifier_parity(bundle, model, rows)
    # and with NaN in every other column, so the default directions are exercised next to the splits
    rows[:, 1:] = np.where(np.arange(len(rows))[:, None] % 2 == 0, np.nan, rows[:, 1:])
    _assert_classifier_parity(bundle, model, rows)


def test_batch_of_one_and_empty_batch(binary, fresh):
    model, bundle = binary
    one = bundle.predict(fresh[3:4])
    assert one["label"].shape == (1,) and one["probabilities"].shape == (1, 2)
    np.testing.assert_allclose(one["probabilities"], model.predict_proba(fresh[3:4]), atol=1e-5)
    empty = bundle.predict(fresh[:0])
    assert empty["label"].shape == (0,) and empty["probabilities"].shape == (0, 2)


def test_manifest_records_source_nullable_columns_and_parity(binary):
    _, bundle = binary
    source = bundle.manifest["source"]
    assert source["framework"] == "xgboost" and source["framework_version"] == xgb.__version__
    assert source["estimator"] == "XGBClassifier" and source["converter"] == "modelport"
    assert [c.name for c in bundle.signature.columns] == [f"f{i}" for i in range(N_FEATURES)]
    assert all(c.nullable for c in bundle.signature.columns)
    parity = bundle.manifest["parity"]
    assert parity["pass"] and parity["samples"] > 400  # sample rows plus NaN and threshold probes


def test_same_model_packed_twice_gives_identical_bytes(binary, train, tmp_path):
    model, bundle = binary
    again = mp.pack(model, train[0], name="xgb-binary")
    assert again.to_bytes() == bundle.to_bytes()
    bundle.save(tmp_path / "b.mpk")
    loaded = mp.load(tmp_path / "b.mpk")
    assert loaded.digest == bundle.digest
    assert mp.check(loaded).passed


def test_multiclass(train, fresh):
    X, _, y3, _ = train
    model = xgb.XGBClassifier(n_jobs=1, n_estimators=15, max_depth=3, random_state=0).fit(X, y3)
    bundle = mp.pack(model, X)
    assert bundle.classes == [0, 1, 2]
    _assert_classifier_parity(bundle, model, fresh)
    _assert_classifier_parity(bundle, model, _edge_rows(fresh, _split_values(model.get_booster()), limit=60))


def test_regressor_relative_parity_and_early_stopping(train, fresh):
    X, _, _, target = train
    model = xgb.XGBRegressor(n_jobs=1, n_estimators=60, max_depth=3, early_stopping_rounds=3, random_state=0)
    model.fit(X[:300], target[:300], eval_set=[(X[300:], target[300:])], verbose=False)
    assert model.best_iteration < 59  # predict() stops at the best iteration; so must the bundle
    bundle = mp.pack(model, X)
    rows = np.vstack([fresh, _edge_rows(fresh, _split_values(model.get_booster()), limit=60)])
    got = bundle.predict(rows)["prediction"]
    want = model.predict(rows)
    assert got.shape == (len(rows),)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).mean())


def test_raw_boosters_take_their_task_from_the_objective(train, fresh):
    X, y, y3, target = train
    binary = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(X, label=y), 10)
    bundle = mp.pack(binary, X)
    p = binary.predict(xgb.DMatrix(fresh))
    got = bundle.predict(fresh)
    np.testing.assert_allclose(got["probabilities"][:, 1], p, atol=1e-5)
    np.testing.assert_array_equal(got["label"], (p > 0.5).astype(int))

    multi = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1}, xgb.DMatrix(X, label=y3), 8)
    bundle = mp.pack(multi, X)
    np.testing.assert_allclose(bundle.predict(fresh)["probabilities"], multi.predict(xgb.DMatrix(fresh)), atol=1e-5)

    poisson = xgb.train({"objective": "count:poisson", "max_depth": 3, "nthread": 1},
                        xgb.DMatrix(X, label=np.abs(np.round(target))), 10)
    bundle = mp.pack(poisson, X)
    assert bundle.task == "regression"
    np.testing.assert_allclose(bundle.predict(fresh)["prediction"], poisson.predict(xgb.DMatrix(fresh)), rtol=1e-5)


def test_booster_loaded_from_json_file(train, fresh, tmp_path):
    X, y, _, _ = train
    model = xgb.XGBClassifier(n_jobs=1, n_estimators=10, max_depth=3).fit(X, y)
    path = tmp_path / "model.json"
    model.save_model(path)
    booster = xgb.Booster(model_file=str(path))
    bundle = mp.pack(booster, X)
    np.testing.assert_allclose(bundle.predict(fresh)["probabilities"], model.predict_proba(fresh), atol=1e-5)


def test_dataframe_columns_keep_names_and_any_order(train, fresh):
    X, y, _, _ = train
    cols = ["age", "income", "tenure", "score", "visits"]
    df = pd.DataFrame(X, columns=cols)
    model = xgb.XGBClassifier(n_jobs=1, n_estimators=10, max_depth=3).fit(df, y)
    bundle = mp.pack(model, df)
    assert bundle.signature.column_names == cols
    fresh_df = pd.DataFrame(fresh, columns=cols)
    shuffled = fresh_df[cols[::-1]]
    np.testing.assert_allclose(bundle.predict(shuffled)["probabilities"], model.predict_proba(fresh_df), atol=1e-5)
    with pytest.raises(mp.InputError, match="income"):
        bundle.predict(fresh_df.drop(columns=["income"]))


def test_categorical_feature_with_unseen_and_missing_values():
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame({
        "a": rng.normal(size=n),
        "color": pd.Categorical(rng.choice(["red", "green", "blue", "black"], n)),
    })
    y = ((df["a"] + (df["color"] == "green") - (df["color"] == "red")) > 0.2).astype(int)
    model = xgb.XGBClassifier(n_jobs=1, n_estimators=15, max_depth=3, enable_categorical=True).fit(df, y)
    bundle = mp.pack(model, df)
    column = bundle.signature.column("color")
    assert column.dtype == "category" and column.categories == ("black", "blue", "green", "red")
    assert (column.unknown, column.native) == ("native", "error")  # XGBoost refuses unseen categories
    # fresh rows: missing and unseen categories, and categories listed in another order
    colors = np.array(["green", "red", None, "purple", "blue", "black"] * 10, dtype=object)
    fresh = pd.DataFrame({"a": rng.normal(size=len(colors)),
                          "color": pd.Categorical(colors, categories=["red", "purple", "green", "blue", "black"])})
    with pytest.raises(mp.InputError, match=r"column 'color' has values outside its categories .*'purple'"):
        bundle.predict(fresh)
    # scored as missing when asked to: the answer XGBoost gives for a missing value, counted
    as_missing = mp.pack(model, df, unknown_categories="missing")
    expected = model.predict_proba(fresh.assign(color=fresh["color"].cat.set_categories(["black", "blue", "green", "red"])))
    np.testing.assert_allclose(as_missing.predict(fresh)["probabilities"], expected, atol=1e-5)
    assert as_missing.runtime.unknown_categories == {"color": 10}
    known = fresh[fresh["color"] != "purple"]
    np.testing.assert_allclose(bundle.predict(known)["probabilities"], model.predict_proba(known), atol=1e-5)
    records = [{"a": 0.1, "color": "green"}, {"a": 0.1, "color": None}]
    np.testing.assert_allclose(
        bundle.predict(records)["probabilities"],
        model.predict_proba(pd.DataFrame({"a": [0.1, 0.1], "color": pd.Categorical(["green", None],
                                                                                    categories=column.categories)})),
        atol=1e-5,
    )


def test_custom_missing_value_and_dart(train, fresh):
    X, y, _, target = train
    X0 = np.nan_to_num(X)  # zeros stand for missing in this model
    model = xgb.XGBRegressor(n_jobs=1, n_estimators=15, max_depth=3, missing=0.0).fit(X0, target)
    bundle = mp.pack(model, X0)
    rows = np.nan_to_num(fresh)
    np.testing.assert_allclose(bundle.predict(rows)["prediction"], model.predict(rows), rtol=1e-5, atol=1e-6)
    dart = xgb.XGBClassifier(n_jobs=1, n_estimators=10, max_depth=3, booster="dart", rate_drop=0.3, random_state=0).fit(X, y)
    _assert_classifier_parity(mp.pack(dart, X), dart, fresh)


def test_unfitted_model_and_wrong_sample_are_refused(train):
    X, y, _, _ = train
    with pytest.raises(mp.UnsupportedModelError, match="not fitted"):
        mp.pack(xgb.XGBClassifier(), X)
    model = xgb.XGBClassifier(n_jobs=1, n_estimators=3).fit(X, y)
    with pytest.raises(mp.ConversionError, match="3 columns but the XGBoost model was trained on 5"):
        mp.pack(model, X[:, :3])
    linear = xgb.XGBRegressor(n_jobs=1, booster="gblinear", n_estimators=3).fit(np.nan_to_num(X), y)
    with pytest.raises(mp.UnsupportedModelError, match="gblinear"):
        mp.pack(linear, np.nan_to_num(X))


def test_multi_target_and_multi_quantile_regression(train, fresh):
    X, _, _, target = train
    Y = np.column_stack([target, np.nan_to_num(X[:, 3])])
    model = xgb.XGBRegressor(n_jobs=1, n_estimators=10, max_depth=3).fit(X, Y)
    got = mp.pack(model, X).predict(fresh)["prediction"]
    assert got.shape == (len(fresh), 2)
    np.testing.assert_allclose(got, model.predict(fresh), rtol=1e-5, atol=1e-5)
    quantiles = xgb.XGBRegressor(n_jobs=1, n_estimators=10, max_depth=3, objective="reg:quantileerror",
                                 quantile_alpha=np.array([0.1, 0.5, 0.9])).fit(X, target)
    got = mp.pack(quantiles, X).predict(fresh)["prediction"]
    assert got.shape == (len(fresh), 3)
    np.testing.assert_allclose(got, quantiles.predict(fresh), rtol=1e-5, atol=1e-5)
    vector_leaves = xgb.XGBRegressor(n_jobs=1, n_estimators=3, multi_strategy="multi_output_tree").fit(X, Y)
    with pytest.raises(mp.UnsupportedModelError, match="multi_output_tree"):
        mp.pack(vector_leaves, X)
