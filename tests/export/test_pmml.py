"""``export --target pmml`` (``--format pmml``): the PMML document JPMML-Evaluator (the JVM world's
reference evaluator; AGPL, test-only) scores to the bundle's answers, family by family, on fresh
rows, rows with missing values and rows at the trees' split values; and what PMML cannot express
is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.convert.pmml_support import load_jpmml
from tests.test_entry_points import modelport_script, run

import modelport as mp
from modelport.codegen import lower
from modelport.errors import ExportError
from modelport.export import export
from modelport.export.pmml import to_pmml

jpmml_evaluator = load_jpmml()

#: float32 semantics: the bundle and the document round at the same steps; a last-bit difference
#: in an ensemble's float32 sum order is what remains
TOL = {"rtol": 2e-6, "atol": 2e-7}


def _frame(n: int, seed: int, nan: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    if nan:
        for col in x.columns:
            x.loc[rng.random(n) < 0.15, col] = np.nan
    return x


def _split_rows(bundle: mp.Bundle, base: pd.DataFrame) -> pd.DataFrame:
    """Rows at the bundle's float32 split values and their float32 neighbours."""
    from modelport.codegen.ir import Split, lower

    prog = lower(bundle)
    rows = []
    for ens in prog.ensembles:
        for tree in ens.trees[:5]:
            stack = [tree]
            while stack:
                n = stack.pop()
                if not isinstance(n, Split):
                    continue
                stack.extend((n.true, n.false))
                col = ens.inputs[n.feature]
                idx = getattr(col, "index", None)
                if idx is None:
                    continue
                t = np.float32(n.threshold)
                for v in (t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf))):
                    r = base.iloc[len(rows) % len(base)].copy()
                    r.iloc[idx] = float(v)
                    rows.append(r)
    return pd.DataFrame(rows[:300]).reset_index(drop=True)


def _check(bundle: mp.Bundle, rows: pd.DataFrame, tmp_path: Path) -> None:
    result = export(bundle, "pmml", tmp_path / f"{bundle.name}.pmml")
    assert result.path.exists() and result.target == "pmml"
    ev = jpmml_evaluator.make_evaluator(str(result.path)).verify()
    out = ev.evaluateAll(rows)
    assert len(out) == len(rows), out
    got = bundle.predict(rows)
    if bundle.task == "classification":
        probs = out[[f"probability({c})" for c in bundle.classes]].to_numpy(dtype=np.float64)
        np.testing.assert_allclose(probs, got["probabilities"].astype(np.float64), **TOL)
        labels = np.array([str(v) for v in out["label"].tolist()])
        agree = (labels == np.array([str(v) for v in got["label"].tolist()])).mean()
        assert agree >= 0.995, agree  # a tie of two float32 probabilities may break either way
    else:
        pred = pd.to_numeric(out[out.columns[0]]).to_numpy(dtype=np.float64)
        np.testing.assert_allclose(pred, got["prediction"].astype(np.float64).reshape(-1), **TOL)


def _rows(bundle: mp.Bundle, nan: bool) -> pd.DataFrame:
    fresh = _frame(200, 7, nan=nan)
    return pd.concat([fresh, _split_rows(bundle, fresh)], ignore_index=True)


def _xy(n: int = 400) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    x = _frame(n, 0)
    cls = ((x.a + x.b * x.c) > 0).astype(int).to_numpy()
    reg = (x.a * 2 - x.b ** 2 + np.sin(x.c)).to_numpy()
    return x, cls, reg


def test_sklearn_forest_and_boosting(tmp_path: Path) -> None:
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier

    x, cls, reg = _xy()
    forest = mp.pack(RandomForestClassifier(25, max_depth=7, random_state=0).fit(x, cls), x, name="forest")
    _check(forest, _rows(forest, nan=False), tmp_path)
    gbm = mp.pack(GradientBoostingRegressor(n_estimators=40, random_state=0).fit(x, reg), x, name="gbm")
    _check(gbm, _rows(gbm, nan=False), tmp_path)


def test_linear_and_logistic_with_scaler(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, _, reg = _xy()
    three = np.digitize(x.a + x.d, [-0.5, 0.5])
    logit = mp.pack(make_pipeline(StandardScaler(), LogisticRegression()).fit(x, three), x, name="logit")
    _check(logit, _frame(300, 3), tmp_path)
    linear = mp.pack(make_pipeline(StandardScaler(), LinearRegression()).fit(x, reg), x, name="linear")
    _check(linear, _frame(300, 4), tmp_path)


def test_xgboost_with_missing_values(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    _, cls, reg = _xy()
    xn = _frame(400, 0, nan=True)
    clf = mp.pack(xgb.XGBClassifier(n_estimators=30, max_depth=4).fit(xn, cls), xn, name="xgb_clf")
    _check(clf, _rows(clf, nan=True), tmp_path)
    rgr = mp.pack(xgb.XGBRegressor(n_estimators=30, max_depth=4).fit(xn, reg), xn, name="xgb_reg")
    _check(rgr, _rows(rgr, nan=True), tmp_path)


def test_lightgbm_multiclass_and_regression_with_missing_values(tmp_path: Path) -> None:
    lgb = pytest.importorskip("lightgbm")
    x, _, reg = _xy()
    xn = _frame(400, 0, nan=True)
    three = np.digitize(x.a + x.d, [-0.5, 0.5])
    clf = mp.pack(lgb.LGBMClassifier(n_estimators=20, num_leaves=15, verbose=-1).fit(xn, three), xn, name="lgb_clf")
    _check(clf, _rows(clf, nan=True), tmp_path)
    rgr = mp.pack(lgb.LGBMRegressor(n_estimators=20, num_leaves=15, verbose=-1).fit(xn, reg), xn, name="lgb_reg")
    _check(rgr, _rows(rgr, nan=True), tmp_path)


def test_what_pmml_cannot_express_is_refused(tmp_path: Path) -> None:
    from sklearn.cluster import KMeans

    x, _, _ = _xy()
    km = mp.pack(KMeans(3, n_init=2, random_state=0).fit(x), x, name="km")
    with pytest.raises(ExportError, match="PMML") as info:
        export(km, "pmml", tmp_path / "km.pmml")
    assert info.value.hint
    assert not (tmp_path / "km.pmml").exists()


def test_an_existing_file_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x, _, reg = _xy()
    b = mp.pack(LinearRegression().fit(x, reg), x, name="lin")
    target = tmp_path / "lin.pmml"
    target.write_text("keep me")
    with pytest.raises(ExportError, match="exists"):
        export(b, "pmml", target)
    assert target.read_text() == "keep me"
    export(b, "pmml", target, overwrite=True)
    assert "<PMML" in target.read_text()
    assert to_pmml(lower(b), name="lin") == target.read_text()


def test_cli_export_format_pmml(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestRegressor

    x, _, reg = _xy()
    b = mp.pack(RandomForestRegressor(10, max_depth=5, random_state=0).fit(x, reg), x, name="rfr")
    src = tmp_path / "rfr.mpk"
    b.save(src)
    out = tmp_path / "rfr.pmml"
    proc = run([str(modelport_script()), "export", str(src), "--format", "pmml", "-o", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and "exported" in proc.stdout
    ev = jpmml_evaluator.make_evaluator(str(out)).verify()
    rows = _frame(50, 9)
    np.testing.assert_allclose(pd.to_numeric(ev.evaluateAll(rows).iloc[:, 0]).to_numpy(float),
                               b.predict(rows)["prediction"].astype(float), **TOL)


def test_one_hot_encoder_and_scaler_in_front_of_a_logistic_model(tmp_path: Path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 400
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "city": rng.choice(["paris", "lyon", "nice"], n)})
    y = ((x.a > 0) ^ (x.city == "lyon")).astype(int)
    pre = ColumnTransformer([("num", StandardScaler(), ["a", "b"]),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])])
    b = mp.pack(make_pipeline(pre, LogisticRegression()).fit(x, y), x, name="ohe")
    rows = x.sample(150, random_state=1).reset_index(drop=True)
    rows.loc[::10, "city"] = "marseille"  # unseen: the encoder ignores it, and so does the document
    _check(b, rows, tmp_path)


def test_catboost(tmp_path: Path) -> None:
    catboost = pytest.importorskip("catboost")
    x, cls, reg = _xy()
    rgr = mp.pack(catboost.CatBoostRegressor(iterations=40, depth=4, verbose=0).fit(x, reg), x, name="cb_reg")
    _check(rgr, _rows(rgr, nan=False), tmp_path)
    clf = mp.pack(catboost.CatBoostClassifier(iterations=40, depth=4, verbose=0).fit(x, cls), x, name="cb_clf")
    _check(clf, _rows(clf, nan=False), tmp_path)


def test_imputer_scaler_ordinal_encoder_and_more_sklearn_families(tmp_path: Path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import SGDRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, OrdinalEncoder
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    n = 400
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "city": rng.choice(["paris", "lyon", "nice"], n)})
    x.loc[rng.random(n) < 0.1, "a"] = np.nan
    cls = ((x.a.fillna(0) > 0) ^ (x.city == "lyon")).astype(int)
    reg = x.a.fillna(0) * 2 + x.b
    pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(), MinMaxScaler()), ["a", "b"]),
                             ("cat", OrdinalEncoder(), ["city"])])
    raw = ColumnTransformer([("num", "passthrough", ["a", "b"]), ("cat", OrdinalEncoder(), ["city"])])
    rows = x.sample(200, random_state=2).reset_index(drop=True)
    for name, model, y in [
        ("hgb", make_pipeline(raw, HistGradientBoostingClassifier(max_iter=30)), cls),  # NaN routed by the trees
        ("extra", make_pipeline(pre, ExtraTreesRegressor(20, max_depth=6, random_state=0)), reg),
        ("tree", make_pipeline(pre, DecisionTreeClassifier(max_depth=5, random_state=0)), cls),
        ("sgd", make_pipeline(pre, SGDRegressor(random_state=0)), reg),
    ]:
        _check(mp.pack(model.fit(x, y), x, name=name), rows, tmp_path)


@pytest.fixture(scope="module")
def spark_session():
    import os
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (SparkSession.builder.master("local[1]").appName("modelport-pmml-export")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1").getOrCreate())
    session.sparkContext.setLogLevel("OFF")
    yield session
    session.stop()


@pytest.mark.parametrize("family", ["gbt", "random_forest", "logistic"])
def test_spark_pipelines_export_to_pmml_that_jpmml_scores_alike(spark_session, family, tmp_path):
    """Spark ML's indexer, one-hot encoder and assembler in front of trees and a linear model: the
    exported document scores fresh rows, split values and an unseen category as the bundle does."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import GBTClassifier, LogisticRegression, RandomForestClassifier
    from pyspark.ml.feature import OneHotEncoder, StringIndexer, VectorAssembler

    rng = np.random.default_rng(11)
    train = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400),
                          "city": rng.choice(["paris", "lyon", "nice"], 400)})
    train["y"] = ((train.a + (train.city == "paris") - 0.5 * train.b) > 0.3).astype(float)
    estimator = {"gbt": GBTClassifier(featuresCol="f", labelCol="y", maxIter=10, maxDepth=3),
                 "random_forest": RandomForestClassifier(featuresCol="f", labelCol="y", numTrees=10, maxDepth=4),
                 "logistic": LogisticRegression(featuresCol="f", labelCol="y")}[family]
    stages = [StringIndexer(inputCol="city", outputCol="ci", handleInvalid="keep"),
              OneHotEncoder(inputCol="ci", outputCol="co"), VectorAssembler(inputCols=["a", "b", "co"], outputCol="f")]
    # rows, not a pandas frame: pyspark warns about pandas 3 on the pandas path
    frame = spark_session.createDataFrame([tuple(r) for r in train.itertuples(index=False)], list(train.columns))
    model = Pipeline(stages=[*stages, estimator]).fit(frame)
    saved = tmp_path / "pipeline"
    model.write().overwrite().save(str(saved))
    features = train[["a", "b", "city"]]
    bundle = mp.pack(str(saved), features, name=f"spark-{family}")
    fresh = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200),
                          "city": rng.choice(["paris", "lyon", "nice", "marseille"], 200)})
    rows = pd.concat([fresh, _split_rows(bundle, fresh) if family != "logistic" else fresh.iloc[:0]],
                     ignore_index=True)
    assert (rows.city == "marseille").any()  # a category the indexer never saw ("keep": its own bucket)
    _check(bundle, rows, tmp_path)
