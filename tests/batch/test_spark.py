"""modelport.spark in real pyspark local mode (one JVM for the module): same answers as local scoring."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import modelport.batch as mb
import modelport.spark as msp
from modelport.errors import InputError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

pyspark = pytest.importorskip("pyspark")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    # what docs/batch.md tells a user who starts their own session from a virtual environment
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]").appName("modelport-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_predict_udf_matches_local(spark, clf_bundle, parquet_file, frame):
    df = spark.read.parquet(str(parquet_file))
    udf = msp.predict_udf(clf_bundle)
    assert udf.input_columns == ["a", "b", "c", "d", "e"]
    got = df.withColumn("pred", udf(*udf.input_columns)).select("id", "pred.*").toPandas()
    want = mb.score(clf_bundle, frame, keep=["id"])
    np.testing.assert_array_equal(got["id"].to_numpy(), want["id"].to_numpy())
    np.testing.assert_array_equal(got["label"].to_numpy(), want["label"].to_numpy())
    np.testing.assert_allclose(got["proba_0"].to_numpy(), want["proba_0"].to_numpy(), atol=1e-6)



def test_bundle_opened_once_per_executor_process(spark, clf_bundle, parquet_file):
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "500")
    df = spark.read.parquet(str(parquet_file)).coalesce(1)
    fn, _ = msp.predict_map(clf_bundle, df.schema, keep=["id"])
    digest = clf_bundle.digest  # the closure must not hold the bundle itself

    def score_then_report(frames):
        import os

        from modelport.batch import spark as s

        batches = sum(1 for _ in fn(frames))
        session = id(s._CACHE[digest].session)
        yield pd.DataFrame({"pid": [os.getpid()], "batches": [batches], "loads": [s.LOADS[digest]],
                            "session": [session]})

    report = "pid long, batches long, loads long, session long"
    runs = [df.mapInPandas(score_then_report, report).toPandas() for _ in range(2)]
    spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    first = runs[0].iloc[0]
    assert first["batches"] == 10  # 5,000 rows in batches of 500, one bundle load for all of them
    assert first["loads"] == 1
    second = runs[1].iloc[0]
    if second["pid"] == first["pid"]:  # the same reused Python worker: still the one load and session
        assert second["loads"] == 1 and second["session"] == first["session"]


def test_map_in_pandas_with_error_column(spark, clf_bundle, frame):
    df = frame.copy()
    df.loc[[7, 2500], "b"] = np.nan
    sdf = spark.createDataFrame(pa.Table.from_pandas(df, preserve_index=False).to_pandas())
    out = msp.predict(clf_bundle, sdf, on_error="null", error_column="why").toPandas().sort_values("id")
    bad = out[out["why"].notna()]
    assert (bad["id"] - 1000).tolist() == [7, 2500]
    assert "'b' has missing values" in bad["why"].iloc[0]
    assert bad["label"].isna().all() and out["label"].notna().sum() == 4998
    assert msp.predict(clf_bundle, sdf, on_error="skip").count() == 4998
    with pytest.raises(Exception, match="cannot be scored"):
        msp.predict(clf_bundle, sdf).count()
    with pytest.raises(InputError, match=r"missing column\(s\)"):
        msp.predict(clf_bundle, sdf.drop("a"))
    with pytest.raises(InputError, match="skip"):
        msp.predict_udf(clf_bundle, on_error="skip")


def test_engine_spark_same_output_as_local(spark, clf_path, frame, tmp_path):
    parts = tmp_path / "in"
    parts.mkdir()
    df = frame.copy()
    df.loc[4100, "e"] = np.nan
    # files of different sizes: Spark would pack them by size; the output must keep input order
    for k, (lo, hi) in enumerate([(0, 800), (800, 3600), (3600, 5000)]):
        pq.write_table(pa.Table.from_pandas(df.iloc[lo:hi], preserve_index=False), parts / f"part-{k}.parquet")
    local = mb.score_file(clf_path, parts, tmp_path / "local.csv", on_error="skip")
    remote = mb.score_file(clf_path, parts, tmp_path / "spark.csv", on_error="skip", engine="spark")
    assert (remote.rows_in, remote.rows_out, remote.rejected) == (5000, 4999, 1)
    a = pd.read_csv(tmp_path / "local.csv")
    b = pd.read_csv(tmp_path / "spark.csv")
    assert list(a.columns) == list(b.columns)
    np.testing.assert_array_equal(a["id"], b["id"])
    np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_allclose(a["proba_2"], b["proba_2"], atol=1e-6)
    assert pd.read_csv(remote.rejects_path).equals(pd.read_csv(local.rejects_path))
    assert pd.read_csv(remote.rejects_path)["row"].tolist() == [4100]
    with pytest.raises(InputError, match=r"row \d+ cannot be scored"):
        mb.score_file(clf_path, parts, tmp_path / "fail.parquet", engine="spark")
    assert not (tmp_path / "fail.parquet").exists()


def test_console_script_engine_spark_from_a_virtual_environment(clf_path, parquet_file, tmp_path):
    """`modelport score --engine spark` as installed: the workers must run this environment's
    interpreter, not the first python3 on PATH (which lacks modelport and pandas)."""
    script = Path(sysconfig.get_path("scripts")) / "modelport"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "JAVA_HOME": os.environ.get("JAVA_HOME", "")}
    env = {k: v for k, v in env.items() if v}
    out = tmp_path / "scored.parquet"
    r = subprocess.run([str(script), "score", str(clf_path), str(parquet_file), "-o", str(out), "--engine", "spark"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert pq.read_table(out).num_rows == pq.read_table(parquet_file).num_rows


def test_workers_without_modelport_get_a_clear_error():
    err = msp_translate(RuntimeError("... ModuleNotFoundError: No module named 'modelport' ..."))
    assert err is not None and "PYSPARK_PYTHON" in str(err)


def msp_translate(exc):
    from modelport.batch.spark import translate

    return translate(exc)
