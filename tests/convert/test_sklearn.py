"""The scikit-learn converter, family by family: pack on training data, then compare the bundle
with the original estimator on fresh rows, NaN rows (where the model takes NaN), values exactly at
and next to split thresholds, a batch of one and an empty batch. Outputs are checked against the
estimator's own predict / predict_proba / decision_function / transform, not only through
``mp.verify`` (which uses the converter's ``reference``)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import (
    cluster,
    decomposition,
    ensemble,
    linear_model,
    naive_bayes,
    neighbors,
    neural_network,
    svm,
    tree,
)
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification, make_regression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelport as mp
from modelport.errors import InputError, UnsupportedModelError

pytestmark = [
    # small, quickly fitted models; convergence is not what these tests are about
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    # SVC(probability=True) is deprecated in scikit-learn 1.9 but still in use; keep covering it
    pytest.mark.filterwarnings("ignore:The `probability` parameter was deprecated:FutureWarning"),
]

N_FEATURES = 6


def _classification(n: int, seed: int, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n, N_FEATURES, n_informative=4, n_redundant=1, n_classes=n_classes, random_state=seed)
    # realistic, unequal scales: precision problems show up where magnitudes differ
    X[:, 0] *= 1000.0
    X[:, 1] += 50.0
    return X, y


def _regression(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_regression(n, N_FEATURES, n_informative=4, noise=3.0, random_state=seed)
    X[:, 0] *= 1000.0
    return X, y + 100.0


def _with_nan(X: np.ndarray, seed: int, rate: float = 0.1) -> np.ndarray:
    X = X.copy()
    X[np.random.default_rng(seed).random(X.shape) < rate] = np.nan
    return X


def _scaled(est):
    return make_pipeline(StandardScaler(), est)


# id -> (factory, task, data kind, train with NaN)
FAMILIES = {
    "LogisticRegression": (lambda: _scaled(linear_model.LogisticRegression(max_iter=500)), "classification", "multi", False),
    "LogisticRegression-binary": (lambda: linear_model.LogisticRegression(max_iter=2000), "classification", "binary", False),
    "SGDClassifier-hinge": (lambda: _scaled(linear_model.SGDClassifier(random_state=0)), "classification", "multi", False),
    "SGDClassifier-log": (lambda: _scaled(linear_model.SGDClassifier(loss="log_loss", random_state=0)), "classification", "multi", False),
    "SGDClassifier-huber-binary": (
        lambda: _scaled(linear_model.SGDClassifier(loss="modified_huber", random_state=0)), "classification", "binary", False),
    "LinearSVC": (lambda: _scaled(svm.LinearSVC()), "classification", "multi", False),
    "LinearSVC-binary": (lambda: _scaled(svm.LinearSVC()), "classification", "binary", False),
    "SVC": (lambda: _scaled(svm.SVC()), "classification", "multi", False),
    "SVC-binary": (lambda: _scaled(svm.SVC()), "classification", "binary", False),
    "SVC-proba": (lambda: _scaled(svm.SVC(probability=True, random_state=0)), "classification", "multi", False),
    # scikit-learn 1.9's replacement for SVC(probability=True)
    "CalibratedClassifierCV-SVC": (
        lambda: _scaled(CalibratedClassifierCV(svm.SVC(), ensemble=False)), "classification", "multi", False),
    "KNeighborsClassifier": (lambda: _scaled(neighbors.KNeighborsClassifier()), "classification", "multi", False),
    "GaussianNB": (lambda: naive_bayes.GaussianNB(), "classification", "multi", False),
    "DecisionTreeClassifier": (lambda: tree.DecisionTreeClassifier(max_depth=6, random_state=0), "classification", "multi", False),
    "DecisionTreeClassifier-nan": (
        lambda: tree.DecisionTreeClassifier(max_depth=6, random_state=0), "classification", "multi", True),
    "RandomForestClassifier": (lambda: ensemble.RandomForestClassifier(10, max_depth=6, random_state=0), "classification", "multi", False),
    "RandomForestClassifier-nan": (
        lambda: ensemble.RandomForestClassifier(10, max_depth=6, random_state=0), "classification", "binary", True),
    "ExtraTreesClassifier": (lambda: ensemble.ExtraTreesClassifier(10, max_depth=6, random_state=0), "classification", "multi", False),
    "GradientBoostingClassifier": (
        lambda: ensemble.GradientBoostingClassifier(n_estimators=10, max_depth=3), "classification", "multi", False),
    "GradientBoostingClassifier-binary": (
        lambda: ensemble.GradientBoostingClassifier(n_estimators=10, max_depth=3), "classification", "binary", False),
    "HistGradientBoostingClassifier": (
        lambda: ensemble.HistGradientBoostingClassifier(max_iter=10), "classification", "multi", False),
    "HistGradientBoostingClassifier-nan-binary": (
        lambda: ensemble.HistGradientBoostingClassifier(max_iter=10), "classification", "binary", True),
    "MLPClassifier": (
        lambda: _scaled(neural_network.MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=0)), "classification", "multi", False),
    "LinearRegression": (lambda: linear_model.LinearRegression(), "regression", "reg", False),
    "Ridge": (lambda: linear_model.Ridge(), "regression", "reg", False),
    "Lasso": (lambda: linear_model.Lasso(), "regression", "reg", False),
    "ElasticNet": (lambda: linear_model.ElasticNet(), "regression", "reg", False),
    "SGDRegressor": (lambda: _scaled(linear_model.SGDRegressor(random_state=0)), "regression", "reg", False),
    "SVR": (lambda: _scaled(svm.SVR(C=10.0)), "regression", "reg", False),
    "SVR-poly": (lambda: _scaled(svm.SVR(kernel="poly", C=10.0)), "regression", "reg", False),
    "KNeighborsRegressor": (lambda: _scaled(neighbors.KNeighborsRegressor()), "regression", "reg", False),
    "DecisionTreeRegressor": (lambda: tree.DecisionTreeRegressor(max_depth=6, random_state=0), "regression", "reg", False),
    "RandomForestRegressor-nan": (
        lambda: ensemble.RandomForestRegressor(10, max_depth=6, random_state=0), "regression", "reg", True),
    "ExtraTreesRegressor": (lambda: ensemble.ExtraTreesRegressor(10, max_depth=6, random_state=0), "regression", "reg", False),
    "GradientBoostingRegressor": (
        lambda: ensemble.GradientBoostingRegressor(n_estimators=10, max_depth=3), "regression", "reg", False),
    "HistGradientBoostingRegressor": (lambda: ensemble.HistGradientBoostingRegressor(max_iter=10), "regression", "reg", False),
    "HistGradientBoostingRegressor-nan": (
        lambda: ensemble.HistGradientBoostingRegressor(max_iter=10), "regression", "reg", True),
    "MLPRegressor": (
        lambda: _scaled(neural_network.MLPRegressor(hidden_layer_sizes=(16,), max_iter=300, random_state=0)), "regression", "reg", False),
    "KMeans": (lambda: cluster.KMeans(4, n_init=2, random_state=0), "clustering", "unsup", False),
    "PCA": (lambda: decomposition.PCA(3), "transform", "unsup", False),
    "IsolationForest-nan": (lambda: ensemble.IsolationForest(n_estimators=10, random_state=0), "anomaly", "unsup", True),
}


def _data(kind: str, seed: int, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    if kind == "reg":
        return _regression(n, seed)
    if kind == "binary":
        return _classification(n, seed, n_classes=2)
    X, y = _classification(n, seed)
    return (X, None) if kind == "unsup" else (X, y)


def _final(model):
    return model.steps[-1][1] if hasattr(model, "steps") else model


def _threshold_rows(model, base: np.ndarray, limit: int = 400) -> np.ndarray:
    """Rows whose one feature sits exactly at a split threshold, or one float step either side
    (in float64 and in float32), the values where a converter's rounding shows."""
    est = _final(model)
    splits: list[tuple[int, float]] = []
    if hasattr(est, "_predictors"):
        for per_iteration in est._predictors:
            for predictor in per_iteration:
                nodes = predictor.nodes[predictor.nodes["is_leaf"] == 0]
                splits += list(zip(nodes["feature_idx"].tolist(), nodes["num_threshold"].tolist()))
    else:
        trees = [est.tree_] if hasattr(est, "tree_") else [e.tree_ for e in np.ravel(getattr(est, "estimators_", []))]
        for t in trees:
            splits += [(f, th) for f, th in zip(t.feature.tolist(), t.threshold.tolist()) if f >= 0]
    rng = np.random.default_rng(0)
    rows = []
    for f, th in splits[:limit]:
        if not np.isfinite(th):
            continue
        t32 = np.float32(th)
        for v in (th, np.nextafter(th, np.inf), np.nextafter(th, -np.inf), float(t32),
                  float(np.nextafter(t32, np.float32(np.inf))), float(np.nextafter(t32, np.float32(-np.inf)))):
            r = base[rng.integers(len(base))].copy()
            r[f] = v
            rows.append(r)
    return np.array(rows).reshape(-1, base.shape[1])


def _assert_matches_original(model, bundle, X: np.ndarray, task: str) -> None:
    out = bundle.predict(X)
    n = X.shape[0]
    if task == "classification":
        classes = list(_final(model).classes_)
        assert bundle.classes == [c.item() if hasattr(c, "item") else c for c in classes]
        assert out["label"].shape == (n,)
        assert out["probabilities"].shape == (n, len(classes))
        expected = model.predict(X)
        if hasattr(model, "predict_proba"):
            proba = model.predict_proba(X)
            np.testing.assert_allclose(out["probabilities"], proba, atol=1e-5, rtol=0)
            # a label may differ only where the original's top two classes tie
            top2 = np.sort(proba, axis=1)[:, -2:]
            decided = (top2[:, 1] - top2[:, 0]) > 1e-5
            np.testing.assert_array_equal(out["label"][decided], expected[decided])
        else:
            np.testing.assert_array_equal(out["label"], expected)
            one_hot = (expected[:, None] == np.asarray(classes)[None, :]).astype(float)
            np.testing.assert_array_equal(out["probabilities"], one_hot)
            decision = model.decision_function(X)
            np.testing.assert_allclose(out["decision_function"], decision, atol=1e-5, rtol=1e-6)
    elif task == "regression":
        expected = model.predict(X)
        assert out["prediction"].shape == expected.shape
        scale = max(float(np.mean(np.abs(expected))) if n else 1.0, 1e-12)
        np.testing.assert_allclose(out["prediction"], expected, rtol=1e-5, atol=1e-5 * scale)
    elif task == "clustering":
        np.testing.assert_array_equal(out["label"], model.predict(X))
        np.testing.assert_allclose(out["distances"], model.transform(X), rtol=1e-7, atol=1e-7)
    elif task == "anomaly":
        np.testing.assert_array_equal(out["label"], model.predict(X))
        np.testing.assert_allclose(out["score"], model.decision_function(X), atol=1e-5, rtol=0)
    else:
        np.testing.assert_allclose(out["transformed"], model.transform(X), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_matches_original_on_fresh_and_edge_rows(family: str) -> None:
    factory, task, kind, train_nan = FAMILIES[family]
    X, y = _data(kind, seed=0, n=300)
    if train_nan:
        X = _with_nan(X, seed=1)
    model = factory()
    model.fit(X, y) if y is not None else model.fit(X)

    bundle = mp.pack(model, X, name=family.lower())
    assert bundle.task == task
    assert bundle.manifest["parity"]["pass"] is True

    fresh, _ = _data(kind, seed=7, n=120)
    edge = _threshold_rows(model, fresh)
    rows = np.vstack([fresh, edge])
    nullable = [c.nullable for c in bundle.signature.columns]
    if train_nan or family.startswith(("DecisionTree", "RandomForest", "ExtraTrees", "HistGradient", "Isolation")):
        # every sklearn tree since 1.4 takes NaN at predict time (trained with NaN or not)
        assert all(nullable), f"{family}: the bundle refuses NaN the original accepts: {nullable}"
    if all(nullable):
        rows = np.vstack([rows, _with_nan(fresh[:60], seed=3, rate=0.3)])
    else:
        with pytest.raises(InputError, match="missing values"):
            bundle.predict(_with_nan(fresh[:5], seed=3, rate=0.5))

    report = mp.verify(bundle, model, rows)
    assert report.passed, f"{family}: {report.summary()} worst rows {report.worst_rows}"
    _assert_matches_original(model, bundle, rows, task)
    _assert_matches_original(model, bundle, rows[:1], task)  # a batch of one

    empty = bundle.predict(rows[:0])
    assert set(empty) == set(bundle.signature.output_names)
    assert all(v.shape[0] == 0 for v in empty.values())
    if task == "classification":
        assert empty["probabilities"].shape == (0, len(bundle.classes))


def test_column_transformer_over_pandas_frame_with_string_columns() -> None:
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder

    def frame(n: int, seed: int):
        rng = np.random.default_rng(seed)
        df = pd.DataFrame({
            "age": rng.normal(40, 12, n),
            "income": rng.lognormal(10, 1, n),
            "visits": rng.integers(0, 30, n),
            "city": rng.choice(["paris", "lyon", "nice", "lille"], n),
            "plan": rng.choice(["free", "pro", "team"], n),
        })
        df.loc[df.index[::9], "age"] = np.nan
        return df

    df = frame(400, 0)
    assert str(df["city"].dtype) == "str" or df["city"].dtype == object  # pandas 3 string dtype, or 2.x object
    y = ((df["income"] > 25000) ^ (df["city"] == "nice")).to_numpy()
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
        ("count", MinMaxScaler(), ["visits"]),
        ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ("plan", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["plan"]),
    ])
    for est in (linear_model.LogisticRegression(max_iter=1000), ensemble.HistGradientBoostingClassifier(max_iter=10),
                ensemble.RandomForestClassifier(10, random_state=0)):
        model = make_pipeline(pre, est).fit(df, y)
        bundle = mp.pack(model, df)
        inputs = {t.name: t.dtype for t in bundle.signature.inputs}
        assert inputs == {"age": "float64", "income": "float64", "visits": "int64", "city": "str", "plan": "str"}
        by_name = {c.name: c for c in bundle.signature.columns}
        assert by_name["age"].nullable
        # the encoders' categories are known, so unseen values are seen (and counted) before the graph
        assert by_name["city"].categories == ("lille", "lyon", "nice", "paris")
        assert (by_name["city"].unknown, by_name["city"].native) == ("native", "encoder")

        fresh = frame(150, 5)
        fresh.loc[fresh.index[:4], "city"] = "berlin"  # unseen category: OneHotEncoder ignores it
        fresh.loc[fresh.index[4:8], "plan"] = "enterprise"  # unseen: OrdinalEncoder maps it to -1
        reordered = fresh[["plan", "visits", "city", "income", "age"]]
        report = mp.verify(bundle, model, reordered)
        assert report.passed, report.summary()
        out = bundle.predict(reordered)
        np.testing.assert_allclose(out["probabilities"], model.predict_proba(fresh), atol=1e-5)
        np.testing.assert_array_equal(bundle.predict(fresh.iloc[:1])["label"], model.predict(fresh.iloc[:1]))
        assert bundle.predict(fresh.iloc[:0])["probabilities"].shape == (0, 2)

    with pytest.raises(InputError, match=r"missing column.*visits") as missing:
        bundle.predict(fresh.drop(columns=["visits"]))
    assert "The model expects columns" in str(missing.value)
    with pytest.raises(InputError, match=r"unexpected column.*extra"):
        bundle.predict(fresh.assign(extra=1.0))


def test_numeric_frame_keeps_column_names_and_accepts_any_order() -> None:
    pd = pytest.importorskip("pandas")
    X, y = _classification(200, 0)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(N_FEATURES)])
    model = ensemble.RandomForestClassifier(5, random_state=0).fit(df, y)
    bundle = mp.pack(model, df)
    assert bundle.signature.column_names == list(df.columns)
    assert [t.name for t in bundle.signature.inputs] == ["X"]
    shuffled = df[list(reversed(df.columns))]
    np.testing.assert_array_equal(bundle.predict(shuffled)["label"], model.predict(df))
    with pytest.raises(InputError, match=r"missing column.*x3"):
        bundle.predict(df.drop(columns=["x3"]))


def test_unfitted_model_is_refused() -> None:
    X, _ = _classification(20, 0)
    with pytest.raises(UnsupportedModelError, match="not fitted"):
        mp.pack(ensemble.RandomForestClassifier(), X)
    with pytest.raises(UnsupportedModelError, match="not fitted"):
        mp.pack(make_pipeline(StandardScaler(), linear_model.LogisticRegression()), X)


def test_unsupported_estimator_is_refused_with_its_name() -> None:
    from sklearn.preprocessing import SplineTransformer

    X, _ = _classification(50, 0)
    with pytest.raises(UnsupportedModelError, match="SplineTransformer"):
        mp.pack(SplineTransformer().fit(X), X)
    with pytest.raises(UnsupportedModelError, match="LocalOutlierFactor"):
        mp.pack(neighbors.LocalOutlierFactor(novelty=True).fit(X), X)


def test_categorical_native_hgb_and_category_dtype_are_refused_with_a_hint() -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=100), "c": pd.Categorical(rng.choice(["x", "y"], 100))})
    y = rng.integers(0, 2, 100)
    model = ensemble.HistGradientBoostingClassifier(max_iter=3).fit(df, y)
    with pytest.raises(UnsupportedModelError, match="'category' dtype") as exc:
        mp.pack(model, df)
    assert "astype(str)" in str(exc.value)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: ensemble.RandomForestClassifier(5, random_state=0),
        lambda: _scaled(neighbors.KNeighborsClassifier()),  # skl2onnx names KNN tensors from a global counter
        lambda: ensemble.HistGradientBoostingClassifier(max_iter=5),
    ],
    ids=["forest", "knn", "hgb"],
)
def test_same_model_and_sample_give_identical_bytes(factory) -> None:
    X, y = _classification(150, 0)
    model = factory().fit(X, y)
    assert mp.pack(model, X).to_bytes() == mp.pack(model, X).to_bytes()


def test_hard_classifier_outputs_are_documented_shapes() -> None:
    X, y = _classification(200, 0, n_classes=2)
    model = _scaled(svm.LinearSVC()).fit(X, np.where(y == 1, "yes", "no"))
    bundle = mp.pack(model, X)
    assert bundle.signature.output_names == ["label", "probabilities", "decision_function"]
    out = bundle.predict(X[:10])
    assert out["probabilities"].shape == (10, 2)
    assert out["decision_function"].shape == (10,)
    assert list(out["label"]) == list(model.predict(X[:10]))


def test_tree_thresholds_are_exact_in_float32() -> None:
    # a float32 input equal to the threshold rounded *up* must still go right, as in sklearn
    X, y = _classification(300, 3)
    model = tree.DecisionTreeClassifier(random_state=0).fit(X, y)
    bundle = mp.pack(model, X)
    rows = _threshold_rows(model, X, limit=10_000)
    np.testing.assert_array_equal(bundle.predict(rows)["label"], model.predict(rows))
    np.testing.assert_array_equal(bundle.predict(rows)["probabilities"], model.predict_proba(rows).astype(np.float32))


@pytest.mark.parametrize("kernel", ["linear", "rbf", "poly"])
@pytest.mark.parametrize("labels", [None, ("no", "yes")])
def test_bare_svc_without_probabilities_packs(kernel, labels):
    # a lone SVC graph from skl2onnx declares opset 9; the label/one-hot nodes added after it need more
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)
    if labels is not None:
        y = np.asarray(labels)[y]
    model = svm.SVC(kernel=kernel).fit(X, y)
    bundle = mp.pack(model, X)
    X_new = rng.normal(size=(60, 4))
    out = bundle.predict(X_new)
    np.testing.assert_array_equal(out["label"], model.predict(X_new))
    np.testing.assert_allclose(out["decision_function"], model.decision_function(X_new), rtol=1e-5, atol=1e-6)
    assert mp.verify(bundle, model, X_new).passed
