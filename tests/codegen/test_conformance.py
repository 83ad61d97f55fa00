"""Conformance of every codegen target with ONNX Runtime, over every model family that packs.

For each family and target: labels identical to ONNX Runtime and scores within 1e-6 (relative
to the output column's magnitude) on the bundle's reference rows, random rows, rows with
NaN/NULL in each column, and rows holding exactly each split threshold and its float32
neighbours (see modelport.codegen.check). Java and JavaScript run every family through one
javac + one JVM and one node process (a module-scoped fixture), not one per test.
"""

from __future__ import annotations

import numpy as np
import pytest

import modelport as mp
from modelport.codegen import lower
from modelport.codegen.check import check, check_many
from modelport.errors import CodegenError, ModelportError

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*ConvergenceWarning.*"),
]


def _data(kind: str, seed: int = 0, n: int = 240, nan: bool = False):
    from sklearn.datasets import make_classification, make_regression

    if kind == "reg":
        X, y = make_regression(n, 5, noise=5.0, random_state=seed)
    else:
        X, y = make_classification(n, 6, n_informative=4, n_classes=3 if kind == "multi" else 2, random_state=seed)
    if nan:
        X = X.copy()
        X[::9, 1] = np.nan
        X[3::11, 0] = np.nan
    return X, y


def _sk(name: str):
    from sklearn import ensemble, linear_model, neural_network, tree
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    if name == "sk_tree":
        X, y = _data("multi")
        return tree.DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y), X
    if name == "sk_forest_nan":
        X, y = _data("bin", nan=True)
        return ensemble.RandomForestClassifier(8, max_depth=5, random_state=0).fit(X, y), X
    if name == "sk_extra_trees_reg":
        X, y = _data("reg")
        return ensemble.ExtraTreesRegressor(6, max_depth=5, random_state=0).fit(X, y), X
    if name == "sk_gbm_multi":
        X, y = _data("multi")
        return ensemble.GradientBoostingClassifier(n_estimators=8, max_depth=3, random_state=0).fit(X, y), X
    if name == "sk_gbm_reg":
        X, y = _data("reg")
        return ensemble.GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0).fit(X, y), X
    if name == "sk_hgb_nan":
        X, y = _data("multi", nan=True)
        return ensemble.HistGradientBoostingClassifier(max_iter=6, random_state=0).fit(X, y), X
    if name == "sk_hgb_reg":
        X, y = _data("reg")
        return ensemble.HistGradientBoostingRegressor(max_iter=8, random_state=0).fit(X, y), X
    if name == "sk_logreg_multi":
        X, y = _data("multi")
        return linear_model.LogisticRegression(max_iter=500).fit(X, y), X
    if name == "sk_logreg_bin":
        X, y = _data("bin")
        return linear_model.LogisticRegression(max_iter=500).fit(X, y), X
    if name == "sk_ridge":
        X, y = _data("reg")
        return linear_model.Ridge().fit(X, y), X
    if name == "sk_mlp":
        X, y = _data("multi")
        return neural_network.MLPClassifier(hidden_layer_sizes=(8, 6), max_iter=300, random_state=0).fit(X, y), X
    if name == "sk_mlp_reg":
        X, y = _data("reg")
        Xs = StandardScaler().fit_transform(X)
        return neural_network.MLPRegressor(hidden_layer_sizes=(10,), activation="tanh", max_iter=300, random_state=0).fit(Xs, y / 100), Xs
    if name == "sk_pipeline_nan":
        X, y = _data("multi", nan=True)
        pipe = make_pipeline(SimpleImputer(), MinMaxScaler(), linear_model.LogisticRegression(max_iter=500))
        return pipe.fit(X, y), X
    if name == "sk_svc_rbf_proba":
        from sklearn.svm import SVC

        X, y = _data("multi", n=60)
        return SVC(probability=True, random_state=0).fit(X[:, :4], y), X[:, :4]
    if name == "sk_svc_linear_bin":
        from sklearn.svm import SVC

        X, y = _data("bin", n=60)
        return SVC(kernel="linear").fit(X[:, :4], y), X[:, :4]
    if name == "sk_svr_rbf":
        from sklearn.svm import SVR

        X, y = _data("reg", n=60)
        return SVR(kernel="rbf").fit(X, y / 100), X
    if name == "sk_onehot_strings":
        import pandas as pd
        from sklearn.compose import make_column_transformer
        from sklearn.preprocessing import OneHotEncoder

        X, y = _data("multi")
        df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "color": np.array(["red", "green", "blue"])[(X[:, 2] > 0).astype(int) + (X[:, 3] > 0)]})
        ct = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["color"]), (StandardScaler(), ["a", "b"]))
        return make_pipeline(ct, linear_model.LogisticRegression(max_iter=500)).fit(df, y), df
    raise KeyError(name)


def _xgb(name: str):
    import xgboost as xgb

    if name == "xgb_bin_nan":
        X, y = _data("bin", nan=True)
        return xgb.XGBClassifier(n_estimators=6, max_depth=3).fit(X, y), X
    if name == "xgb_multi":
        X, y = _data("multi")
        return xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(X, y), X
    X, y = _data("reg", nan=True)
    return xgb.XGBRegressor(n_estimators=8, max_depth=3).fit(X, y), X


def _lgb(name: str):
    import lightgbm as lgb

    kw = dict(n_estimators=6, num_leaves=7, min_child_samples=5, verbose=-1)
    if name == "lgb_bin_nan":
        X, y = _data("bin", nan=True)
        return lgb.LGBMClassifier(**kw).fit(X, y), X
    if name == "lgb_multi":
        X, y = _data("multi")
        return lgb.LGBMClassifier(**kw).fit(X, y), X
    if name == "lgb_categorical":
        import pandas as pd

        X, y = _data("multi")
        df = pd.DataFrame(X[:, :4], columns=list("abcd"))
        df["kind"] = pd.Categorical(np.array(["x", "y", "z"])[y])
        return lgb.LGBMClassifier(**kw, min_data_per_group=5, cat_smooth=1).fit(df, y), df
    X, y = _data("reg", nan=True)
    return lgb.LGBMRegressor(**kw).fit(X, y), X


FAMILIES = {
    **{n: _sk for n in (
        "sk_tree", "sk_forest_nan", "sk_extra_trees_reg", "sk_gbm_multi", "sk_gbm_reg", "sk_hgb_nan", "sk_hgb_reg",
        "sk_logreg_multi", "sk_logreg_bin", "sk_ridge", "sk_mlp", "sk_mlp_reg", "sk_pipeline_nan", "sk_onehot_strings",
        "sk_svc_rbf_proba", "sk_svc_linear_bin", "sk_svr_rbf",
    )},
    **{n: _xgb for n in ("xgb_bin_nan", "xgb_multi", "xgb_reg_nan")},
    **{n: _lgb for n in ("lgb_bin_nan", "lgb_multi", "lgb_reg_nan", "lgb_categorical")},
}
TREES = {n for n in FAMILIES if not any(k in n for k in ("logreg", "ridge", "mlp", "pipeline", "onehot", "sv"))}
#: SQL cannot express the iterative pairwise coupling of SVM probabilities: a documented refusal
SQL_REFUSED = {"sk_svc_rbf_proba"}
_cache: dict[str, object] = {}


def bundle_of(name: str):
    if name not in _cache:
        try:
            model, X = FAMILIES[name](name)
            _cache[name] = mp.pack(model, X, name=name)
        except (ImportError, ModelportError) as exc:  # packed once; every target's test then fails with it
            _cache[name] = exc
    b = _cache[name]
    if isinstance(b, Exception):
        # every family here packs on a supported setup: a failure to pack is a converter regression
        pytest.fail(f"{name} does not pack: {type(b).__name__}: {str(b).splitlines()[0][:200]}")
    return b


TARGETS = [
    ("c", None),
    ("python", None),
    ("java", None),
    ("javascript", None),
    ("sql", "sqlite"),
    ("sql", "duckdb"),
    pytest.param("sql", "postgresql", marks=pytest.mark.integration, id="sql-postgresql"),
]
#: targets that take a float matrix and refuse string columns
MATRIX_TARGETS = ("c", "java", "javascript")


@pytest.fixture(scope="module")
def batched() -> dict[tuple[str, str], object]:
    """Java and JavaScript checks of every family that packs, each target in one tool run."""
    names = sorted(FAMILIES)
    packed = []
    for n in names:
        b = _try_bundle(n)  # a family that does not pack fails in its own tests (bundle_of)
        if b is not None:
            packed.append((n, b))
    out: dict[tuple[str, str], object] = {}
    for target in ("java", "javascript"):
        reports = check_many([b for _, b in packed], targets=(target,))
        out.update({(n, target): r for (n, _), r in zip(packed, reports)})
    return out


def _try_bundle(name: str):
    if name not in _cache:
        try:
            model, X = FAMILIES[name](name)
            _cache[name] = mp.pack(model, X, name=name)
        except (ImportError, ModelportError) as exc:
            _cache[name] = exc
    b = _cache[name]
    return None if isinstance(b, Exception) else b


@pytest.mark.parametrize("target,dialect", TARGETS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_target_matches_onnx_runtime(family: str, target: str, dialect: str | None, request) -> None:
    b = bundle_of(family)
    program = lower(b)
    if target in MATRIX_TARGETS and any(c.kind == "s" for c in program.columns):
        with pytest.raises(CodegenError, match="strings"):
            from modelport.codegen import compile_bundle

            compile_bundle(b, target, program=program)  # type: ignore[arg-type]
        return
    if target in ("java", "javascript"):
        report = request.getfixturevalue("batched")[(family, target)]
    else:
        url = request.getfixturevalue("postgres_url") if dialect == "postgresql" else None
        report = check(b, targets=(target,), dialects=(dialect,) if dialect else (), postgres_url=url, program=program)
    (result,) = report.results
    if target == "sql" and family in SQL_REFUSED:
        assert result.skipped and "coupling" in result.skipped
        return
    assert result.skipped is None, result.skipped
    assert result.passed, report.summary()
    assert result.label_mismatches == 0 and result.nan_mismatches == 0
    assert result.max_rel_error <= 1e-6
    assert report.rows["missing"] > 0
    if family in TREES:
        # every split threshold that reads an input column is probed with its float32 neighbours
        assert report.rows["threshold"] >= 3 * 4, report.rows
