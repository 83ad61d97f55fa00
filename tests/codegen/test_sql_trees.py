"""Tree ensembles in SQL (modelport.codegen.sql_trees): the float32 bounds behind every split,
the level-by-level walk in DuckDB and PostgreSQL (both node layouts, with and without a CASE
top), every aggregate, and the sizes that made large ensembles unplannable before."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelport as mp
from modelport.codegen import lower
from modelport.codegen import sql_trees as st
from modelport.codegen.check import check
from modelport.codegen.ir import Leaf, Split
from modelport.codegen.sql import sql_script, to_sql

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]


def _probes(t: float) -> list[float]:
    with np.errstate(over="ignore"):
        up = float(np.nextafter(np.float32(t), np.float32(np.inf)))
        down = float(np.nextafter(np.float32(t), np.float32(-np.inf)))
    out = [t, up, down]
    for a, b in ((t, up), (down, t)):
        mid = (a + b) / 2 if math.isfinite(a) and math.isfinite(b) else 2.0**128 - 2.0**103
        out += [mid, float(np.nextafter(mid, -np.inf)), float(np.nextafter(mid, np.inf))]
    return [v for v in out if not math.isnan(v)]


def _f32(v: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(v))


def test_f32_bound_decides_float32_comparisons_exactly() -> None:
    rng = np.random.default_rng(0)
    ts = [_f32(v) for v in rng.normal(0, 100, 300)] + [0.0, -0.0, 1.0, 2.0**-149, -(2.0**-149), 2.0**-126,
                                                         float(np.finfo(np.float32).max), -float(np.finfo(np.float32).max),
                                                         math.inf, -math.inf]
    for t in ts:
        bound = st.f32_bound(t)
        for x in [*_probes(t), 1e39, -1e39, math.inf, -math.inf]:
            assert (_f32(x) <= t) == (x <= bound), (t, x, bound)


@pytest.mark.parametrize("float32", [True, False], ids=["float32-input", "double-input"])
def test_canonical_splits_decide_like_the_operator(float32: bool) -> None:
    """Every numeric mode, missing direction and NaN threshold, as one "x <= bound" comparison."""
    a, b = Leaf({0: 1.0}), Leaf({0: 2.0})
    rng = np.random.default_rng(1)
    thresholds = [float(v) for v in rng.normal(0, 10, 40)] + [_f32(v) for v in rng.normal(0, 10, 40)] + [math.nan, 0.0]
    for mode in st.NUMERIC_MODES:
        for t in thresholds:
            for missing_true in (False, True):
                s = Split(0, mode, t, missing_true, a, b)
                c = st.canonical(s, float32)
                assert c is not None
                for x in [*_probes(t if t == t else 0.0), math.nan]:
                    if x != x:
                        want = a if missing_true else b
                        got = c.a if c.missing_to_a else c.b
                    else:
                        v = _f32(x) if float32 else x
                        want = a if {"LEQ": v <= t, "LT": v < t, "GTE": v >= t, "GT": v > t}[mode] else b
                        got = c.a if x <= c.bound else c.b
                    assert got is want, (mode, t, missing_true, x)


def _data(kind: str, n: int = 300, nan: bool = True, seed: int = 0):
    from sklearn.datasets import make_classification, make_regression

    if kind == "reg":
        X, y = make_regression(n, 6, noise=5.0, random_state=seed)
    else:
        X, y = make_classification(n, 6, n_informative=4, n_classes=3 if kind == "multi" else 2, random_state=seed)
    if nan:
        X = X.copy()
        X[::9, 1] = np.nan
        X[3::11, 0] = np.nan
    return X, y


def _families():
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn import ensemble

    out = {}
    X, y = _data("bin")
    out["rf_nan"] = mp.pack(ensemble.RandomForestClassifier(10, max_depth=6, random_state=0).fit(np.nan_to_num(X), y), X)
    X, y = _data("reg", nan=False)
    out["extra_reg"] = mp.pack(ensemble.ExtraTreesRegressor(6, max_depth=5, random_state=0).fit(X, y), X)
    X, y = _data("multi", nan=False)
    out["gbm_multi"] = mp.pack(ensemble.GradientBoostingClassifier(n_estimators=6, max_depth=3, random_state=0).fit(X, y), X)
    X, y = _data("multi")
    out["hgb_nan"] = mp.pack(ensemble.HistGradientBoostingClassifier(max_iter=6, random_state=0).fit(X, y), X)
    X, y = _data("bin")
    out["xgb_nan"] = mp.pack(xgb.XGBClassifier(n_estimators=8, max_depth=4).fit(X, y), X)
    X, y = _data("reg")
    out["lgb_reg_nan"] = mp.pack(lgb.LGBMRegressor(n_estimators=8, num_leaves=15, min_child_samples=3, verbose=-1).fit(X, y), X)
    return out


_FAMILIES: dict = {}


def family(name: str):
    if not _FAMILIES:
        _FAMILIES.update(_families())
    return _FAMILIES[name]


FAMILY_NAMES = ["rf_nan", "extra_reg", "gbm_multi", "hgb_nan", "xgb_nan", "lgb_reg_nan"]
LAYOUTS = [pytest.param(0, True, id="heap-no-case-top"), pytest.param(2, False, id="child-lists-case-top")]


def _walk_check(b, dialect: str, top: int, heap: bool, monkeypatch, url: str | None = None, **kw):
    monkeypatch.setattr(st, "HEAP_SLACK", 4 if heap else 0)
    script = sql_script(lower(b), dialect=dialect, trees="walk", top_levels=top)
    # node lists: a CTE in DuckDB, constant arrays in each tree's step in PostgreSQL
    assert ("__mp_m AS MATERIALIZED" if dialect == "duckdb" else "::int4[]") in script.query
    assert ("2 * " in script.query or "4 * " in script.query) == heap  # heap: children by arithmetic
    report = check(b, targets=("sql",), dialects=(dialect,), postgres_url=url, sql_trees="walk", sql_top_levels=top, **kw)
    assert report.passed, report.summary()
    assert report.results[0].nan_mismatches == 0 and report.results[0].label_mismatches == 0


@pytest.mark.parametrize("top,heap", LAYOUTS)
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_duckdb_walk_matches_onnx_runtime(name: str, top: int, heap: bool, monkeypatch) -> None:
    _walk_check(family(name), "duckdb", top, heap, monkeypatch)


@pytest.mark.integration
@pytest.mark.parametrize("top,heap", LAYOUTS)
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_postgresql_walk_matches_onnx_runtime(name: str, top: int, heap: bool, monkeypatch, postgres_url) -> None:
    _walk_check(family(name), "postgresql", top, heap, monkeypatch, url=postgres_url)


@pytest.fixture
def v5_bundle():
    from modelport.bundle import npz
    from modelport.bundle.core import MODEL_FILE, REFERENCE_INPUTS
    from modelport.bundle.signature import Column
    from modelport.convert.base import Converted

    def make(aggregate: int):
        import onnx

        from modelport._pack import _assemble, _signature

        node = helper.make_node(
            "TreeEnsemble", ["X"], ["prediction"], domain="ai.onnx.ml", n_targets=2, aggregate_function=aggregate,
            post_transform=0, tree_roots=[0, 2],
            nodes_featureids=[0, 1, 2, 0],
            nodes_modes=numpy_helper.from_array(np.array([0, 3, 1, 2], dtype=np.uint8), "m"),
            nodes_splits=numpy_helper.from_array(np.array([0.5, -1.0, 1.25, 2.0], dtype=np.float32), "s"),
            nodes_truenodeids=[1, 0, 3, 2], nodes_trueleafs=[0, 1, 0, 1],
            nodes_falsenodeids=[1, 1, 4, 3], nodes_falseleafs=[1, 1, 1, 1],
            nodes_missing_value_tracks_true=[1, 0, 0, 1],
            leaf_targetids=[0, 1, 1, 0, 1],
            leaf_weights=numpy_helper.from_array(np.array([0.1, 0.2, -0.3, 0.05, 0.4], dtype=np.float32), "w"),
        )
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                                  [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 2])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 5)])
        model.ir_version = 9
        onnx.checker.check_model(model)
        cols = tuple(Column(f"f{i}", "float64", "X", i) for i in range(3))
        conv = Converted(model, "regression", cols, None, {
            "framework": "onnx", "framework_version": onnx.__version__, "estimator": "hand-built",
            "converter": "test", "converter_version": "0"})
        rng = np.random.default_rng(0)
        X = rng.choice([0.0, 0.5, 1.0, 1.25, 2.0, 3.0, -1.0, np.nan], size=(300, 3))
        meta = {"name": "hand", "version": None, "description": None, "created": None, "metrics": {}, "tags": {},
                "lineage": {"parent": None}, "source": conv.source}
        files = {MODEL_FILE: model.SerializeToString(), REFERENCE_INPUTS: npz.dumps({f"f{i}": X[:, i] for i in range(3)})}
        return _assemble(meta, conv, _signature(conv), files, parity=None, reference=None)

    return make


AGGREGATES = pytest.mark.parametrize("aggregate", [0, 1, 2, 3], ids=["AVERAGE", "SUM", "MIN", "MAX"])


@AGGREGATES
def test_walk_aggregates_duckdb(aggregate: int, v5_bundle) -> None:
    b = v5_bundle(aggregate)
    assert st.numeric_only(lower(b).ensembles[0])
    for top in (0, 1):
        report = check(b, targets=("sql",), dialects=("duckdb",), sql_trees="walk", sql_top_levels=top)
        assert report.passed, report.summary()


@pytest.mark.integration
@AGGREGATES
def test_walk_aggregates_postgresql(aggregate: int, v5_bundle, postgres_url) -> None:
    b = v5_bundle(aggregate)
    for top in (0, 1):
        report = check(b, targets=("sql",), dialects=("postgresql",), postgres_url=postgres_url, sql_trees="walk",
                       sql_top_levels=top)
        assert report.passed, report.summary()


def test_large_forest_sql_is_small_and_walked() -> None:
    """The 100-tree depth-10 forest: node lists instead of a CASE per tree and score column."""
    from sklearn.ensemble import RandomForestClassifier

    X, y = _data("bin", n=6000, nan=False)
    b = mp.pack(RandomForestClassifier(100, max_depth=10, random_state=0, n_jobs=2).fit(X, y), X[:800])
    p = lower(b)
    case = to_sql(p, dialect="duckdb", trees="case")
    for dialect in ("duckdb", "postgresql"):
        script = sql_script(p, dialect=dialect)
        assert ("list_transform(" if dialect == "duckdb" else "::int4[]") in script.query, dialect
        assert len(script.text()) < len(case) / 2, (dialect, len(script.text()), len(case))
        assert script.setup == (["SET jit = off"] if dialect == "postgresql" else [])
    report = check(b, targets=("sql",), dialects=("duckdb",), max_threshold_rows=600)
    assert report.passed, report.summary()


def test_small_ensembles_stay_case_and_keep_jit() -> None:
    b = family("xgb_nan")
    for dialect in ("duckdb", "postgresql", "sqlite"):
        script = sql_script(lower(b), dialect=dialect)
        assert "CASE WHEN" in script.query and "__mp_m" not in script.query
        assert script.setup == []
        splits = st.count_splits(lower(b).ensembles[0])
        assert script.query.count("CASE WHEN") >= splits
        assert script.query.count("COALESCE(") < 10 < splits  # one comparison per split, no NULL wrapper


@pytest.fixture(scope="module")
def many_stumps():
    import xgboost as xgb

    X, y = _data("bin", n=400)
    return mp.pack(xgb.XGBClassifier(n_estimators=1300, max_depth=1, learning_rate=0.05).fit(X, y), X, probe_rows=100)


def test_thousands_of_trees_in_sqlite(many_stumps) -> None:
    """Sums of 1300 trees are balanced: SQLite allows expressions 1000 levels deep."""
    report = check(many_stumps, targets=("sql",), dialects=("sqlite", "duckdb"), max_threshold_rows=300)
    assert report.passed, report.summary()


@pytest.mark.integration
def test_postgresql_walks_more_trees_than_a_select_list_holds(many_stumps, postgres_url) -> None:
    """One column per tree, at most 1664 per SELECT: 1300 trees are walked in two passes."""
    query = sql_script(lower(many_stumps), dialect="postgresql", trees="walk", top_levels=0).query
    assert '"__mp_e0p1x"' in query
    for trees in ("walk", "auto"):
        report = check(many_stumps, targets=("sql",), dialects=("postgresql",), postgres_url=postgres_url, sql_trees=trees,
                       sql_top_levels=0 if trees == "walk" else None, max_threshold_rows=300)
        assert report.passed, report.summary()
