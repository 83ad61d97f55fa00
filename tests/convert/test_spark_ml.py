"""Spark ML PipelineModel -> bundle, against Spark's own ``transform`` in local mode (one JVM for the
module): fresh rows, values at split thresholds (tree and Bucketizer) and their neighbours, unseen
categories, nulls and NaN, every stage and handleInvalid option; rows Spark refuses or drops are
refused by the bundle; a directory packs to the same bundle with pyspark unimportable, and in
memory; and the errors a user can cause (unsupported stages, non-prediction outputs, other Spark
versions, corrupt files)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modelport as mp
from modelport.convert._spark_eval import evaluate
from modelport.convert._spark_read import read_pipeline
from modelport.convert.spark import SparkConverter, load
from modelport.errors import ConversionError, InputError, UnsupportedModelError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

pyspark = pytest.importorskip("pyspark")
pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")

CITIES = ["paris", "lyon", "nice", "lille", "brest"]
PLANS = ["basic", "plus", "pro"]
KINDS = ["cat", "dog", "fox"]
COLUMNS = ["city", "plan", "age", "hours", "inc", "flag", "tier", "const", "label", "kind", "label3", "y"]


# ------------------------------------------------------------------------------------ data
def rows(n: int, seed: int, *, nulls: bool = True) -> list[tuple]:
    """Rows of (city, plan, age, hours, inc, flag, tier, const, label, kind, label3, y)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        city = str(rng.choice(CITIES, p=[0.4, 0.25, 0.15, 0.12, 0.08]))
        plan = str(rng.choice(PLANS))
        age = float(np.round(rng.normal(40, 12), 1))
        hours = int(rng.integers(0, 6))
        inc = float(np.round(rng.normal(3, 2.5), 2))
        flag = bool(rng.random() < 0.3)
        tier = int(rng.integers(0, 4))
        signal = (age - 40) / 12 + (city in ("paris", "nice")) - 0.5 * (plan == "basic") + 0.3 * inc - 0.2 * tier
        signal += rng.normal(scale=0.5)
        label = float(signal > 0.5)
        label3 = float(np.digitize(signal, [0.0, 1.2]))
        kind = KINDS[int(label3)]
        y = 2.0 * age + 5.0 * inc - 3.0 * hours + 10.0 * (city == "lyon") + rng.normal()
        if nulls:
            if rng.random() < 0.06:
                city = None
            if rng.random() < 0.08:
                age = None
            if rng.random() < 0.06:
                hours = None
        out.append((city, plan, age, hours, inc, flag, tier, 7.0, label, kind, label3, float(y)))
    return out


def schema():
    from pyspark.sql.types import BooleanType, DoubleType, IntegerType, StringType, StructField, StructType

    types = {"city": StringType(), "plan": StringType(), "age": DoubleType(), "hours": IntegerType(),
             "inc": DoubleType(), "flag": BooleanType(), "tier": IntegerType(), "const": DoubleType(),
             "label": DoubleType(), "kind": StringType(), "label3": DoubleType(), "y": DoubleType()}
    return StructType([StructField(c, types[c], True) for c in COLUMNS])


def frame(data: list[tuple], columns: list[str] | None = None) -> pd.DataFrame:
    """The rows as pandas, integers kept integer (pandas' Int64), None as missing."""
    df = pd.DataFrame(data, columns=COLUMNS)
    for c in ("hours", "tier"):
        df[c] = pd.array([None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v) for v in df[c]],
                         dtype="Int64")
    df["flag"] = df["flag"].astype(object)
    return df[columns] if columns is not None else df


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]").appName("modelport-spark-ml-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("OFF")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spark-ml")


@pytest.fixture(scope="module")
def train_rows() -> list[tuple]:
    return rows(500, 0)


@pytest.fixture(scope="module")
def train(spark, train_rows):
    return spark.createDataFrame(train_rows, schema())


def sdf(spark, data: list[tuple]):
    return spark.createDataFrame(data, schema())


def spark_out(model, df, *extra: str) -> pd.DataFrame:
    """Spark's own answers, in row order (a row id is carried through)."""
    from pyspark.sql import functions as F

    with_id = df.withColumn("_row", F.monotonically_increasing_id())
    cols = ["_row", "prediction", *extra]
    got = model.transform(with_id).select(*cols).toPandas().sort_values("_row")
    return got.reset_index(drop=True)


def probabilities(col: pd.Series) -> np.ndarray:
    return np.array([np.asarray(v.toArray()) for v in col])


def save(model, work: Path, name: str) -> Path:
    path = work / name
    model.write().overwrite().save(str(path))
    return path


# ------------------------------------------------------------------------------------ pipelines
@pytest.fixture(scope="module")
def churn(spark, train, work):
    """Every feature stage with handleInvalid='keep' before a GBT classifier: indexer, one-hot,
    imputer (double and integer columns), Bucketizer with a split at 0.0, assembler with a boolean
    and a constant column, StandardScaler (zero std) and MinMaxScaler (constant column)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import GBTClassifier
    from pyspark.ml.feature import (
        Bucketizer,
        Imputer,
        MinMaxScaler,
        OneHotEncoder,
        StandardScaler,
        StringIndexer,
        VectorAssembler,
    )

    stages = [
        StringIndexer(inputCols=["city", "plan"], outputCols=["city_i", "plan_i"], handleInvalid="keep"),
        OneHotEncoder(inputCols=["city_i", "plan_i"], outputCols=["city_v", "plan_v"], handleInvalid="keep"),
        Imputer(inputCols=["age", "hours"], outputCols=["age_f", "hours_f"]),
        Bucketizer(inputCol="inc", outputCol="inc_b", splits=[-math.inf, 0.0, 2.0, 5.0, math.inf], handleInvalid="keep"),
        VectorAssembler(inputCols=["city_v", "plan_v", "age_f", "hours_f", "inc_b", "inc", "flag", "const"],
                        outputCol="raw", handleInvalid="keep"),
        StandardScaler(inputCol="raw", outputCol="std", withMean=True, withStd=True),
        MinMaxScaler(inputCol="std", outputCol="features"),
        GBTClassifier(maxIter=20, maxDepth=3, seed=1),
    ]
    model = Pipeline(stages=stages).fit(train)
    return model, save(model, work, "churn")


@pytest.fixture(scope="module")
def churn_bundle(churn, train_rows):
    _, path = churn
    return mp.pack(read_pipeline(path), frame(train_rows), name="churn")


@pytest.fixture(scope="module")
def species(spark, train, work):
    """Trees that split on categories (indexed strings, indexed integers, one-hot slots) read straight
    from the assembler; the label indexed and mapped back by IndexToString; other string orders."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.ml.feature import IndexToString, OneHotEncoder, StringIndexer, VectorAssembler

    label = StringIndexer(inputCol="kind", outputCol="label_i").fit(train)
    stages = [
        label,
        StringIndexer(inputCol="city", outputCol="city_i", handleInvalid="keep", stringOrderType="alphabetDesc"),
        StringIndexer(inputCol="plan", outputCol="plan_i", stringOrderType="frequencyAsc"),
        StringIndexer(inputCol="hours", outputCol="hours_i", handleInvalid="keep", stringOrderType="alphabetAsc"),
        OneHotEncoder(inputCol="tier", outputCol="tier_v", dropLast=False),
        VectorAssembler(inputCols=["city_i", "plan_i", "hours_i", "tier_v", "inc"], outputCol="features"),
        RandomForestClassifier(labelCol="label_i", numTrees=6, maxDepth=5, seed=3),
        IndexToString(inputCol="prediction", outputCol="species", labels=label.labels),
    ]
    model = Pipeline(stages=stages).fit(train)
    return model, save(model, work, "species")


@pytest.fixture(scope="module")
def predictors(spark, train, work):
    """One feature pipeline, fitted once, in front of every predictor: name -> (model, path)."""
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.classification import DecisionTreeClassifier, LogisticRegression
    from pyspark.ml.feature import Imputer, OneHotEncoder, StringIndexer, VectorAssembler
    from pyspark.ml.regression import (
        DecisionTreeRegressor,
        GBTRegressor,
        LinearRegression,
        RandomForestRegressor,
    )

    features = Pipeline(stages=[
        StringIndexer(inputCol="city", outputCol="city_i", handleInvalid="keep"),
        OneHotEncoder(inputCol="city_i", outputCol="city_v", dropLast=False, handleInvalid="keep"),
        Imputer(inputCols=["age", "hours"], outputCols=["age_f", "hours_f"], strategy="median"),
        VectorAssembler(inputCols=["city_v", "age_f", "hours_f", "inc", "flag", "const"], outputCol="features",
                        handleInvalid="keep"),
    ]).fit(train)
    data = features.transform(train).cache()
    fitted = {
        "logistic": LogisticRegression(threshold=0.3, regParam=0.01).fit(data),
        "multinomial": LogisticRegression(labelCol="label3", family="multinomial", regParam=0.01).fit(data),
        "linear": LinearRegression(labelCol="y", regParam=0.1).fit(data),
        "tree_classifier": DecisionTreeClassifier(labelCol="label3", maxDepth=5, seed=2).fit(data),
        "tree_regressor": DecisionTreeRegressor(labelCol="y", maxDepth=6, seed=2).fit(data),
        "forest_regressor": RandomForestRegressor(labelCol="y", numTrees=5, maxDepth=5, seed=2).fit(data),
        "gbt_regressor": GBTRegressor(labelCol="y", maxIter=10, maxDepth=3, seed=2).fit(data),
    }
    out = {}
    for name, m in fitted.items():
        model = PipelineModel(stages=[*features.stages, m])
        out[name] = (model, save(model, work, name))
    data.unpersist()
    return out


@pytest.fixture(scope="module")
def strict(spark, train_rows, work):
    """handleInvalid='error' everywhere, an Imputer with missingValue=-1 on an integer column, and a
    StandardScaler without mean; fitted on rows without nulls where Spark would refuse them."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import DecisionTreeClassifier
    from pyspark.ml.feature import Bucketizer, Imputer, StandardScaler, StringIndexer, VectorAssembler

    clean = [r for r in train_rows if r[0] is not None and r[2] is not None]
    clean = [(*r[:3], -1 if i % 7 == 0 else r[3], *r[4:]) for i, r in enumerate(clean)]
    stages = [
        StringIndexer(inputCol="city", outputCol="city_i"),
        Imputer(inputCols=["hours"], outputCols=["hours_f"], missingValue=-1.0, strategy="mode"),
        Bucketizer(inputCol="inc", outputCol="inc_b", splits=[-math.inf, 1.0, 4.0, math.inf]),
        VectorAssembler(inputCols=["city_i", "hours_f", "age", "inc_b"], outputCol="raw"),
        StandardScaler(inputCol="raw", outputCol="features", withMean=False, withStd=True),
        DecisionTreeClassifier(maxDepth=4, seed=5),
    ]
    model = Pipeline(stages=stages).fit(sdf(spark, clean))
    return model, save(model, work, "strict"), clean


@pytest.fixture(scope="module")
def skipping(spark, train, work):
    """handleInvalid='skip': Spark drops rows with an unseen or null city, a null or NaN income or age."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import Bucketizer, StringIndexer, VectorAssembler

    stages = [
        StringIndexer(inputCol="city", outputCol="city_i", handleInvalid="skip"),
        Bucketizer(inputCol="inc", outputCol="inc_b", splits=[-math.inf, 2.0, math.inf], handleInvalid="skip"),
        VectorAssembler(inputCols=["city_i", "inc_b", "age"], outputCol="features", handleInvalid="skip"),
        LogisticRegression(regParam=0.01),
    ]
    model = Pipeline(stages=stages).fit(train)
    return model, save(model, work, "skipping")


# ------------------------------------------------------------------------------------ helpers
def fresh(n: int = 120, seed: int = 11) -> list[tuple]:
    data = rows(n, seed)
    data[0] = ("zurich", "gold", None, None, None, None, 2, 7.0, 0.0, "cat", 0.0, 0.0)  # unseen, all null
    data[1] = (None, None, 40.0, 3, 0.0, True, 1, 7.0, 0.0, "cat", 0.0, 0.0)
    data[2] = ("paris", "pro", 1e6, 1000, -1e6, False, 0, 7.0, 0.0, "cat", 0.0, 0.0)  # far outside training
    data[3] = ("nice", "plus", 35.5, 2, -0.0, True, 3, 7.0, 0.0, "cat", 0.0, 0.0)  # -0.0 at the 0.0 split
    data[4] = ("lyon", "basic", 41.0, 0, math.inf, False, 1, 7.0, 0.0, "cat", 0.0, 0.0)
    return data


def assert_classifier(bundle, spark_model, spark, data: list[tuple], inputs, *, label_col: str = "prediction"):
    """The bundle's probabilities and labels are Spark's on ``data`` (labels where the two best
    classes are not tied)."""
    got_spark = spark_out(spark_model, sdf(spark, data), "probability", *([label_col] if label_col != "prediction" else []))
    assert len(got_spark) == len(data)
    got = bundle.predict(frame(data, inputs))
    want = probabilities(got_spark["probability"])
    np.testing.assert_allclose(got["probabilities"], want, atol=2e-6, rtol=0)
    expected = got_spark[label_col].to_numpy()
    if label_col == "prediction":
        expected = expected.astype(np.int64)
    top = np.sort(want, axis=1)
    clear = (top[:, -1] - top[:, -2]) >= 1e-6
    np.testing.assert_array_equal(np.asarray(got["label"])[clear], expected[clear])


def assert_regressor(bundle, spark_model, spark, data: list[tuple], inputs):
    got_spark = spark_out(spark_model, sdf(spark, data))
    assert len(got_spark) == len(data)
    got = bundle.predict(frame(data, inputs))["prediction"]
    want = got_spark["prediction"].to_numpy(dtype=np.float64)
    scale = np.abs(want[np.isfinite(want)]).mean()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * scale, equal_nan=True)


def tree_splits(path: Path, stage_prefix: str) -> list[tuple[int, float]]:
    """(feature, threshold) of continuous splits, read from the saved Parquet with pyarrow alone."""
    stage = next((path / "stages").glob(f"*_{stage_prefix}*"))
    nodes = pq.read_table(stage / "data").to_pylist()
    out = set()
    for n in nodes:
        node = n.get("nodeData", n)
        split = node["split"]
        if node["leftChild"] >= 0 and split["numCategories"] == -1:
            out.add((split["featureIndex"], split["leftCategoriesOrThreshold"][0]))
    return sorted(out)


def categorical_splits(path: Path, stage_prefix: str) -> int:
    stage = next((path / "stages").glob(f"*_{stage_prefix}*"))
    nodes = pq.read_table(stage / "data").to_pylist()
    return sum(1 for n in nodes if n.get("nodeData", n)["leftChild"] >= 0 and n.get("nodeData", n)["split"]["numCategories"] > 0)


INPUTS_CHURN = ["city", "plan", "age", "hours", "inc", "flag", "const"]


# ------------------------------------------------------------------------------------ parity
def test_churn_matches_spark_on_fresh_rows_nulls_and_unseen(spark, churn, churn_bundle):
    model, _ = churn
    assert churn_bundle.signature.column_names == INPUTS_CHURN
    cols = {c.name: c for c in churn_bundle.signature.columns}
    assert cols["city"].dtype == "str" and cols["city"].categories[:2] == ("paris", "lyon")  # frequencyDesc
    assert cols["hours"].dtype == "int64" and cols["flag"].dtype == "bool" and cols["age"].dtype == "float64"
    assert all(c.nullable for c in cols.values())  # keep everywhere: Spark scores every null
    assert churn_bundle.classes == [0, 1]
    assert churn_bundle.manifest["source"]["framework"] == "spark"
    assert churn_bundle.manifest["parity"]["pass"]
    assert_classifier(churn_bundle, model, spark, fresh(), INPUTS_CHURN)


def test_churn_matches_spark_at_split_values_through_the_scalers(spark, churn, churn_bundle):
    """The GBT splits the scaled vector; rows put each input value exactly where a split lands after
    StandardScaler and MinMaxScaler (and one double step either side), and the bundle's own
    reference rows (threshold probes) go to Spark too."""
    model, path = churn
    pipeline = read_pipeline(path)
    ss, mm = pipeline.stages[5], pipeline.stages[6]
    std, mean = ss.data["std"], ss.data["mean"]
    lo, hi = mm.data["original_min"], mm.data["original_max"]
    off = sum(model.stages[1].categorySizes)  # keep + dropLast: one slot per category, 'unknown' included
    slots = {off: ("age", 2), off + 1: ("hours", 3), off + 3: ("inc", 4)}  # vector slot -> (column, row position)
    base = list(rows(1, 5)[0])
    base[0], base[1] = "paris", "pro"
    edge = []
    for f, t in tree_splits(path, "GBT"):
        if f not in slots:
            continue
        # invert MinMax ((s - lo) * scale + 0) and StandardScaler ((x - mean) / std)
        s = t * (hi[f] - lo[f]) + lo[f]
        x = s * std[f] + mean[f]
        name, pos = slots[f]
        for v in (x, np.nextafter(x, -np.inf), np.nextafter(x, np.inf)):
            r = list(base)
            r[pos] = round(v) if name == "hours" else float(v)
            edge.append(tuple(r))
    assert len(edge) >= 9
    assert_classifier(churn_bundle, model, spark, edge, INPUTS_CHURN)
    # the probes pack made (threshold values and their float32 neighbours, NaN, unseen) through Spark
    from modelport.bundle.reference import decode_columns

    ref = decode_columns(churn_bundle.reference_inputs)
    n = len(ref["city"])
    probe_rows = []
    for i in range(n):
        r = {c: ref[c][i] for c in INPUTS_CHURN}
        vals = {c: (None if r[c] is None or (isinstance(r[c], float) and math.isnan(r[c])) else r[c]) for c in r}
        num = {c: None if vals[c] is None else float(vals[c]) for c in ("age", "inc", "const")}
        probe_rows.append((vals["city"], vals["plan"], num["age"],
                           None if vals["hours"] is None else int(vals["hours"]), num["inc"],
                           None if vals["flag"] is None else bool(vals["flag"]), 2, num["const"], 0.0, "cat", 0.0, 0.0))
    assert_classifier(churn_bundle, model, spark, probe_rows, INPUTS_CHURN)


def test_bucketizer_edges_and_nan_follow_spark(spark, churn, churn_bundle):
    """Each split of the Bucketizer and its double neighbours, -0.0 against the 0.0 split (Java orders
    -0.0 below 0.0), infinities; NaN takes the 'keep' bucket in Spark, which the evaluator
    reproduces, while a missing value (null) stays missing through the Bucketizer."""
    model, path = churn
    base = ("lille", "plus", 50.0, 2, 1.0, False, 1, 7.0, 0.0, "cat", 0.0, 0.0)
    values = [float(v) for v in (-0.0, 0.0, np.nextafter(0.0, -1), np.nextafter(0.0, 1), 2.0, np.nextafter(2.0, 0),
                                 np.nextafter(2.0, 3), 5.0, np.nextafter(5.0, 0), -math.inf, math.inf)] + [None]
    data = [(*base[:4], v, *base[5:]) for v in values]
    assert_classifier(churn_bundle, model, spark, data, INPUTS_CHURN)
    # NaN (not null): Spark's bucket 4, reproduced by the evaluator reading NaN as NaN
    nan_rows = [(*base[:4], math.nan, *base[5:]), (base[0], base[1], math.nan, *base[3:])]
    want = spark_out(model, sdf(spark, nan_rows), "probability")
    p = SparkConverter().prepare_model(read_pipeline(path), frame(nan_rows, INPUTS_CHURN))
    from modelport.convert._spark_plan import plan

    pl = plan(p, p.schema)
    cols = {c: frame(nan_rows, INPUTS_CHURN)[c].to_numpy(dtype=object) for c in INPUTS_CHURN}
    cols["inc"] = np.array([math.nan, 1.0])
    cols["age"] = np.array([50.0, math.nan])
    out = evaluate(pl, cols, nan_is_null=False)
    np.testing.assert_allclose(out.outputs["probabilities"], probabilities(want["probability"]), atol=1e-12)
    # and a missing income is not NaN's bucket: the bundle follows null
    null_rows = [(*base[:4], None, *base[5:])]
    assert_classifier(churn_bundle, model, spark, null_rows, INPUTS_CHURN)


def test_categorical_splits_and_index_to_string(spark, species, train_rows):
    model, path = species
    assert categorical_splits(path, "RandomForest") > 0, "the forest should split on categories"
    inputs = ["city", "plan", "hours", "tier", "inc"]
    sample = frame([r for r in train_rows], inputs)
    bundle = mp.pack(read_pipeline(path), sample)
    assert bundle.classes == list(model.stages[0].labels)  # IndexToString's labels, in index order
    cols = {c.name: c for c in bundle.signature.columns}
    assert cols["city"].categories == tuple(sorted({r[0] for r in train_rows if r[0]}, reverse=True))  # alphabetDesc
    assert cols["hours"].dtype == "category" and cols["hours"].categories == (0, 1, 2, 3, 4, 5)  # alphabetAsc of "0".."5"
    assert cols["tier"].dtype == "category" and cols["tier"].categories == (0, 1, 2, 3)  # OneHotEncoder(error) codes
    assert cols["plan"].unknown == "native" and cols["plan"].native == "error"  # StringIndexer(error)
    assert not cols["plan"].nullable and not cols["inc"].nullable  # VectorAssembler(error) refuses nulls
    ok = [r for r in fresh(150, 21)[5:] if r[1] is not None and r[4] is not None]
    assert_classifier(bundle, model, spark, ok, inputs, label_col="species")
    # values at every continuous split of income (read raw from the assembler), exactly and a double step off
    edge = []
    for f, t in tree_splits(path, "RandomForest"):
        if f == 3 + 4:  # city_i, plan_i, hours_i, tier_v (4 slots), inc
            for v in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)):
                edge.append(("nice", "pro", 30.0, 4, float(v), True, 2, 7.0, 0.0, "cat", 0.0, 0.0))
    assert edge
    assert_classifier(bundle, model, spark, edge, inputs, label_col="species")
    # unseen and null city (keep), unseen hour (keep), a city in every category
    odd = [("zurich", "pro", 1.0, 9, 1.0, True, 0, 7.0, 0.0, "cat", 0.0, 0.0),
           (None, "basic", 1.0, None, 1.0, True, 3, 7.0, 0.0, "cat", 0.0, 0.0)]
    odd += [(c, "plus", 1.0, 2, 2.5, True, 1, 7.0, 0.0, "cat", 0.0, 0.0) for c in CITIES]
    assert_classifier(bundle, model, spark, odd, inputs, label_col="species")


@pytest.mark.parametrize("name", ["logistic", "multinomial", "tree_classifier"])
def test_classifiers_match_spark(spark, predictors, train_rows, name):
    model, path = predictors[name]
    inputs = ["city", "age", "hours", "inc", "flag", "const"]
    bundle = mp.pack(read_pipeline(path), frame(train_rows, inputs))
    assert bundle.manifest["parity"]["pass"]
    assert bundle.classes == ([0, 1] if name == "logistic" else [0, 1, 2])
    data = fresh()
    if name == "multinomial":
        # an infinite input gives infinite margins: Spark's code gives the first +inf class all the
        # probability (so does the bundle), but Spark 4.3 was seen to give NaN to the other classes
        data = [r for r in data if r[4] is None or math.isfinite(r[4])]
    assert_classifier(bundle, model, spark, data, inputs)


def test_logistic_threshold_decides_the_label(spark, predictors, train_rows):
    """threshold=0.3: Spark labels 1 from a probability above 0.3, not 0.5."""
    model, path = predictors["logistic"]
    inputs = ["city", "age", "hours", "inc", "flag", "const"]
    bundle = mp.pack(read_pipeline(path), frame(train_rows, inputs))
    data = fresh(300, 4)
    got = bundle.predict(frame(data, inputs))
    between = (got["probabilities"][:, 1] > 0.3) & (got["probabilities"][:, 1] < 0.5)
    assert between.sum() >= 5
    assert (got["label"][between] == 1).all()
    want = spark_out(model, sdf(spark, [r for r, b in zip(data, between) if b]))
    assert (want["prediction"] == 1.0).all()


@pytest.mark.parametrize("name", ["linear", "tree_regressor", "forest_regressor", "gbt_regressor"])
def test_regressors_match_spark(spark, predictors, train_rows, name):
    model, path = predictors[name]
    inputs = ["city", "age", "hours", "inc", "flag", "const"]
    bundle = mp.pack(read_pipeline(path), frame(train_rows, inputs))
    assert bundle.task == "regression" and bundle.manifest["parity"]["pass"]
    assert_regressor(bundle, model, spark, fresh(), inputs)
    if name != "linear":
        edge = []
        for f, t in tree_splits(path, {"tree_regressor": "DecisionTree", "forest_regressor": "RandomForest",
                                        "gbt_regressor": "GBT"}[name]):
            if f == model.stages[1].categorySizes[0] + 1 + 2:  # city_v (keep, no dropLast: size + 1), age_f, hours_f, inc
                for v in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)):
                    edge.append(("lyon", "pro", 30.0, 4, float(v), True, 2, 7.0, 0.0, "cat", 0.0, 0.0))
        assert edge
        assert_regressor(bundle, model, spark, edge, inputs)


# ------------------------------------------------------------------------------------ refusals
def spark_refuses(model, spark, row) -> bool:
    """Whether Spark fails on the one-row frame (error) or drops the row (skip)."""
    try:  # the prediction must be computed (count() alone would not run the stages)
        return len(model.transform(sdf(spark, [row])).select("prediction").collect()) == 0
    except Exception:  # Spark's SparkException through py4j
        return True


def test_error_modes_refuse_what_spark_refuses(spark, strict, work):
    model, path, clean = strict
    inputs = ["city", "hours", "age", "inc"]
    bundle = mp.pack(read_pipeline(path), frame(clean, inputs))
    cols = {c.name: c for c in bundle.signature.columns}
    assert cols["city"].native == "error" and not cols["city"].nullable
    assert cols["hours"].nullable  # the Imputer fills null and -1
    assert not cols["age"].nullable and not cols["inc"].nullable
    base = ("paris", "pro", 33.0, 2, 1.5, True, 1, 7.0, 0.0, "cat", 0.0, 0.0)
    cases = [
        ("zurich", *base[1:]),  # unseen label
        (None, *base[1:]),  # null label
        (*base[:2], None, *base[3:]),  # null age into the assembler
        (*base[:4], None, *base[5:]),  # null income: Bucketizer passes null, the assembler fails
        (*base[:3], None, *base[4:]),  # null hours: imputed
        (*base[:3], -1, *base[4:]),  # the missingValue: imputed
        base,
    ]
    checked = bundle.runtime.check(frame(cases, inputs))
    refused = checked.bad if checked.bad is not None else np.zeros(len(cases), dtype=bool)
    assert refused.tolist() == [spark_refuses(model, spark, r) for r in cases] == [True, True, True, True, False, False, False]
    assert "outside its categories" in checked.reasons[0] and "missing" in checked.reasons[2]
    # a sample with a row Spark's transform fails on: a clear error naming the row (its number in the
    # sample as given, also when rows before it are ones Spark drops) and the stage
    with pytest.raises(InputError, match=r"row 3: VectorAssembler .*handleInvalid='error'.* a null in 'age'"):
        mp.pack(read_pipeline(path), frame([*clean[:3], cases[2], *clean[3:]], inputs))
    skipping = copy(path, work, "strict-skip-city")
    edit_metadata(stage_dir(skipping, "StringIndexer"), lambda m: m["paramMap"].update(handleInvalid="skip"))
    with pytest.raises(InputError, match=r"1 row\(s\) on which .*: row 3: VectorAssembler .* a null in 'age'"):
        mp.pack(read_pipeline(skipping), frame([clean[0], cases[0], clean[1], cases[2], *clean[2:]], inputs))
    ok = [r for r, bad in zip(cases, refused) if not bad] + [r for r in fresh(80, 8) if r[0] in CITIES and r[2] is not None]
    ok = [r for r in ok if r[4] is not None]
    assert_classifier(bundle, model, spark, ok, inputs)


def test_skip_modes_refuse_the_rows_spark_drops(spark, skipping, train_rows):
    model, path = skipping
    inputs = ["city", "inc", "age"]
    bundle = mp.pack(read_pipeline(path), frame(train_rows, inputs))  # the sample holds rows Spark drops
    notes = " ".join(bundle.manifest["parity"]["notes"])
    assert "handleInvalid='skip'" in notes and "refuses those rows" in notes and "left out of the sample" in notes
    # each note names the input columns whose missing values reach the stage (not the stage's own
    # inputs: the indexed city is never null, the bucketed income is null when the income is)
    assert "drops rows whose 'city' is null or not one of its labels" in notes
    assert "drops rows whose 'inc' is null or NaN" in notes
    assert "drops rows whose 'inc' or 'age' is null or NaN" in notes and "city_i" not in notes and "inc_b" not in notes
    data = fresh(60, 9)
    data[5] = (None, *data[5][1:])
    checked = bundle.runtime.check(frame(data, inputs))
    refused = checked.bad if checked.bad is not None else np.zeros(len(data), dtype=bool)
    kept = spark_out(model, sdf(spark, data))
    # Spark drops exactly the rows the bundle refuses; the others get Spark's answers
    assert len(kept) == int((~refused).sum()) and refused[0] and refused[5]
    got = bundle.predict(frame([r for r, bad in zip(data, refused) if not bad], inputs))
    np.testing.assert_array_equal(got["label"], kept["prediction"].to_numpy().astype(np.int64))


# ------------------------------------------------------------------------------------ no JVM needed
_BLOCK_PYSPARK = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'pyspark' or name.startswith('pyspark.'):\n"
    "            raise ImportError('pyspark is blocked in this test')\n"
    "sys.meta_path.insert(0, _Block())\n"
    "sys.modules['pyspark'] = None\n"
)


def test_directory_packs_without_pyspark_to_the_same_bundle(spark, churn, churn_bundle, train_rows, train, work):
    _, path = churn
    sample = work / "churn_sample.parquet"
    frame(train_rows, INPUTS_CHURN).to_parquet(sample)
    code = _BLOCK_PYSPARK + (
        "import modelport as mp, pandas as pd\n"
        "from modelport.convert.files import load_model_file\n"
        "try:\n    import pyspark\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('pyspark importable')\n"
        f"b = mp.pack(load_model_file({str(path)!r}), pd.read_parquet({str(sample)!r}), name='churn')\n"
        "assert 'pyspark' not in sys.modules or sys.modules['pyspark'] is None\n"
        "print(b.digest)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == churn_bundle.digest
    # the in-memory PipelineModel with a Spark DataFrame sample: saved, read, the same bundle
    model, _ = churn
    in_memory = mp.pack(model, train.select(*INPUTS_CHURN), name="churn")
    assert in_memory.digest == churn_bundle.digest
    assert in_memory.to_bytes() == churn_bundle.to_bytes()


def test_cli_packs_a_pipeline_directory(churn, train_rows, work):
    from click.testing import CliRunner

    from modelport.cli.main import cli

    _, path = churn
    sample = work / "cli_sample.parquet"
    frame(train_rows, INPUTS_CHURN).to_parquet(sample)
    out = work / "churn.mpk"
    r = CliRunner().invoke(cli, ["pack", str(path), str(sample), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["parity"]["pass"] and summary["source"]["framework"] == "spark"
    assert mp.load(out).predict(frame(fresh(5), INPUTS_CHURN))["probabilities"].shape == (5, 2)


def test_verify_against_the_in_memory_model(spark, churn, churn_bundle):
    model, _ = churn
    report = mp.verify(churn_bundle, model, frame(fresh(60, 13), INPUTS_CHURN))
    assert report.passed, report.summary()


# ------------------------------------------------------------------------------------ bad input
def copy(path: Path, work: Path, name: str) -> Path:
    target = work / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(path, target)
    return target


def stage_dir(path: Path, kind: str) -> Path:
    return next(p for p in (path / "stages").iterdir() if kind in p.name)


def edit_metadata(directory: Path, change) -> None:
    part = next(p for p in (directory / "metadata").iterdir() if p.name.startswith("part-"))
    meta = json.loads(part.read_text())
    change(meta)
    part.write_text(json.dumps(meta) + "\n")


def cli_pack(path: Path, sample: Path, out: Path):
    from click.testing import CliRunner

    from modelport.cli.main import cli

    return CliRunner().invoke(cli, ["pack", str(path), str(sample), "-o", str(out)])


@pytest.fixture(scope="module")
def churn_sample(work, train_rows) -> Path:
    p = work / "bad_sample.parquet"
    frame(train_rows, INPUTS_CHURN).to_parquet(p)
    return p


@pytest.mark.parametrize("version", ["2.4.8", "5.0.0", "banana"])
def test_other_spark_versions_are_refused(churn, work, churn_sample, version):
    _, path = churn
    bad = copy(path, work, f"version-{version}")
    edit_metadata(stage_dir(bad, "StringIndexer"), lambda m: m.update(sparkVersion=version))
    with pytest.raises(ConversionError, match=version) as info:
        read_pipeline(bad)
    if version != "banana":
        assert isinstance(info.value, UnsupportedModelError) and "3.0 to 4.x" in str(info.value)
    out = work / f"version-{version}.mpk"
    r = cli_pack(bad, churn_sample, out)
    assert r.exit_code != 0 and version in r.output and not out.exists()


def test_corrupt_files_are_clear_errors(churn, work, churn_sample):
    _, path = churn
    cases = {}
    a = copy(path, work, "cut-metadata")
    part = next(p for p in (stage_dir(a, "OneHot") / "metadata").iterdir() if p.name.startswith("part-"))
    part.write_text(part.read_text()[:40])
    cases[a] = "not valid JSON"
    b = copy(path, work, "cut-parquet")
    data = next(p for p in (stage_dir(b, "GBT") / "data").iterdir() if p.suffix == ".parquet")
    data.write_bytes(data.read_bytes()[:100])
    cases[b] = "cannot read"
    c = copy(path, work, "other-layout")
    data = next(p for p in (stage_dir(c, "StandardScaler") / "data").iterdir() if p.suffix == ".parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"stdev": [[1.0]]}), data)
    cases[c] = "lacks the column"
    d = copy(path, work, "no-stage")
    shutil.rmtree(stage_dir(d, "Imputer"))
    cases[d] = "has no directory"
    for bad, words in cases.items():
        with pytest.raises(ConversionError, match=words):
            read_pipeline(bad)
        out = work / f"{bad.name}.mpk"
        r = cli_pack(bad, churn_sample, out)
        assert r.exit_code != 0 and not out.exists(), r.output


def test_unsupported_stage_is_named_with_its_class(spark, churn, work, train):
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import Normalizer

    model, _ = churn
    odd = PipelineModel(stages=[*model.stages[:5], Normalizer(inputCol="raw", outputCol="norm"), *model.stages[5:]])
    path = save(odd, work, "with-normalizer")
    with pytest.raises(UnsupportedModelError, match=r"stage 5 \(Normalizer .*org\.apache\.spark\.ml\.feature\.Normalizer"):
        read_pipeline(path)


def test_outputs_that_are_not_predictions_are_refused(spark, churn, work, churn_sample):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import IndexToString, VectorAssembler

    model, _ = churn
    features_only = save(PipelineModel(stages=model.stages[:5]), work, "features-only")
    with pytest.raises(UnsupportedModelError, match=r"no predictor.*'raw'"):
        mp.pack(read_pipeline(features_only), pd.read_parquet(churn_sample))
    after = PipelineModel(stages=[*model.stages, VectorAssembler(inputCols=["prediction", "age_f"], outputCol="x")])
    with pytest.raises(UnsupportedModelError, match=r"not a prediction.*'x'"):
        mp.pack(read_pipeline(save(after, work, "after")), pd.read_parquet(churn_sample))
    no_labels = PipelineModel(stages=[*model.stages, IndexToString(inputCol="prediction", outputCol="p")])
    with pytest.raises(UnsupportedModelError, match="no labels"):
        mp.pack(read_pipeline(save(no_labels, work, "no-labels")), pd.read_parquet(churn_sample))
    with pytest.raises(UnsupportedModelError, match="unfitted"):
        mp.pack(Pipeline(stages=[]), pd.read_parquet(churn_sample))
    # a bare model in memory (saved, then read): its features vector has no column names to give a bundle
    with pytest.raises(UnsupportedModelError, match=r"(?s)GBTClassificationModel .*not a PipelineModel.*VectorAssembler"):
        mp.pack(model.stages[-1], pd.read_parquet(churn_sample))
    out = work / "features-only.mpk"
    r = cli_pack(features_only, churn_sample, out)
    assert r.exit_code != 0 and "not a prediction" in r.output and not out.exists()


def test_finite_bucketizer_splits_and_missing_columns_are_refused(spark, churn, work, churn_sample):
    _, path = churn
    bad = copy(path, work, "finite-splits")
    edit_metadata(stage_dir(bad, "Bucketizer"), lambda m: m["paramMap"].update(splits=[-10.0, 0.0, 2.0, 5.0, 50.0]))
    with pytest.raises(UnsupportedModelError, match="cannot refuse a number by its range"):
        mp.pack(read_pipeline(bad), pd.read_parquet(churn_sample))
    with pytest.raises(ConversionError, match=r"lacks the column.*'inc'"):
        mp.pack(read_pipeline(path), pd.read_parquet(churn_sample).drop(columns=["inc"]))
    with pytest.raises(InputError, match="directory"):
        load(str(churn_sample))


def test_stage_order_width_and_nested_pipelines(spark, predictors, train_rows, work):
    """A pipeline inside a pipeline is flattened; stage directories of 10+ stages are zero-padded."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import VectorAssembler

    model, _ = predictors["linear"]
    inner = PipelineModel(stages=model.stages[:3])
    extra = [VectorAssembler(inputCols=["inc"], outputCol=f"unused{i}") for i in range(7)]
    nested = PipelineModel(stages=[inner, *extra, *model.stages[3:]])  # 10 stages: directories 00_ .. 09_
    path = save(nested, work, "nested")
    assert sorted(p.name[:3] for p in (path / "stages").iterdir())[:2] == ["00_", "01_"]
    pipeline = read_pipeline(path)
    assert [s.name for s in pipeline.stages] == [s.__class__.__name__ for s in [*model.stages[:3], *extra, *model.stages[3:]]]
    inputs = ["city", "age", "hours", "inc", "flag", "const"]
    a = mp.pack(pipeline, frame(train_rows, inputs), name="n")
    b = mp.pack(read_pipeline(predictors["linear"][1]), frame(train_rows, inputs), name="n")
    assert a.digest == b.digest  # the unused stages are left out, and said so
    assert sum("the bundle leaves it out" in n for n in a.manifest["parity"]["notes"]) == 7
