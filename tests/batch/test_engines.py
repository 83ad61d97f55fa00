"""score_file on Dask (real worker processes) and Spark (local mode): the very output of local scoring.

Parquet inputs go through the engines' part writers (Dask tasks of chunk runs, Spark ``mapInArrow``
pieces numbered from ``_metadata.row_index``), so these tests compare whole files, byte for byte
where the format allows: output tables equal (schema, order, values, NaN and nulls) and rejects
files identical, for several input files whose row groups do not line up with the chunks.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

import modelport.batch as mb
from modelport.batch import resume
from modelport.batch.score import Rejects
from modelport.errors import InputError, ModelportError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning"),
]

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
distributed = pytest.importorskip("distributed")
pytest.importorskip("pyspark")


# ---------------------------------------------------------------------------- inputs
@pytest.fixture(scope="module")
def nan_path(tmp_path_factory):
    """A model that scores NaN itself (HistGradientBoosting): NaN inputs are predictions, not rejects."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    import modelport as mp

    from .conftest import FEATURES, make_frame

    train = make_frame(800, 5)
    train.loc[train.index[::7], "b"] = np.nan
    y = (train["a"].fillna(0) + train["c"] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=15, random_state=0).fit(train[FEATURES], y)
    path = tmp_path_factory.mktemp("bundles") / "hgb.mpk"
    mp.pack(model, train[FEATURES], name="hgb").save(path)
    return path


def _write_parts(df, folder, bounds, row_group):
    folder.mkdir()
    for k, (lo, hi) in enumerate(bounds):
        pq.write_table(pa.Table.from_pandas(df.iloc[lo:hi], preserve_index=False), folder / f"part-{k}.parquet",
                       row_group_size=row_group)
    return folder


@pytest.fixture(scope="module")
def bad_rows_input(frame, tmp_path_factory):
    """Three files of different sizes; NaN in rows the gradient-boosting model refuses."""
    df = frame.copy()
    df.loc[[0, 799, 800, 3333, 4999], "c"] = np.nan
    return _write_parts(df, tmp_path_factory.mktemp("bad") / "in", [(0, 800), (800, 3600), (3600, 5000)], 333)


@pytest.fixture(scope="module")
def nan_input(frame, tmp_path_factory):
    df = frame.copy()
    df.loc[df.index[::11], "b"] = np.nan
    df.loc[[10, 2000], "a"] = np.nan
    return _write_parts(df, tmp_path_factory.mktemp("nan") / "in", [(0, 2500), (2500, 5000)], 700)


# ---------------------------------------------------------------------------- engines
@pytest.fixture(scope="module")
def dask_client():
    # real worker processes: the session-per-worker counter must be counted in each of them
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]").appName("modelport-engine-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        # small splits: several partitions per file, so pieces meet inside files and across them
        .config("spark.sql.files.maxPartitionBytes", "40000")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _same_files(a, b):
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.schema.equals(tb.schema), (ta.schema, tb.schema)
    assert ta.equals(tb)


@pytest.mark.parametrize("on_error", ["skip", "null"])
def test_engines_write_the_local_output_with_rejects(dask_client, spark, clf_path, bad_rows_input, tmp_path, on_error):
    kw = {"on_error": on_error, "chunk_rows": 450}
    local = mb.score_file(clf_path, bad_rows_input, tmp_path / "local.parquet", **kw)
    assert local.rejected == 5
    for engine in ("dask", "spark"):
        got = mb.score_file(clf_path, bad_rows_input, tmp_path / f"{engine}.parquet", engine=engine, **kw)
        assert (got.rows_in, got.rows_out, got.rejected) == (local.rows_in, local.rows_out, local.rejected), engine
        _same_files(tmp_path / "local.parquet", tmp_path / f"{engine}.parquet")
        assert got.rejects_path.read_bytes() == local.rejects_path.read_bytes(), engine
        assert pd.read_csv(got.rejects_path)["row"].tolist() == [0, 799, 800, 3333, 4999]
        assert set(got.timings) == {"startup", "scoring", "shutdown", "write"}
        assert all(v >= 0 for v in got.timings.values()) and sum(got.timings.values()) <= got.seconds
        assert not any(p.name.endswith(".modelport-partial") for p in tmp_path.iterdir())


def test_engines_score_nan_like_local(dask_client, spark, nan_path, nan_input, tmp_path):
    local = mb.score_file(nan_path, nan_input, tmp_path / "local.parquet", chunk_rows=600)
    assert local.rejected == 0
    for engine in ("dask", "spark"):
        mb.score_file(nan_path, nan_input, tmp_path / f"{engine}.parquet", engine=engine, chunk_rows=600)
        _same_files(tmp_path / "local.parquet", tmp_path / f"{engine}.parquet")
    scored = pq.read_table(tmp_path / "spark.parquet").to_pandas()
    assert scored["proba_1"].notna().all() and len(scored) == 5000


def test_engines_fail_naming_the_global_row(dask_client, spark, clf_path, bad_rows_input, tmp_path):
    for engine in ("dask", "spark"):
        out = tmp_path / f"{engine}.parquet"
        # the global input row, as locally (the engines used to name a partition and a row within it)
        with pytest.raises(InputError, match=r"^row (0|799|800|3333|4999) cannot be scored: .*'c'") as info:
            mb.score_file(clf_path, bad_rows_input, out, engine=engine)
        assert "--on-error skip" in (info.value.hint or "")
        assert not out.exists()


def test_one_session_per_dask_worker_process(dask_client, clf_path, clf_bundle, bad_rows_input, tmp_path):
    # 5,000 rows in chunks of 100: 50 chunks, run as many tasks on two worker processes
    mb.score_file(clf_path, bad_rows_input, tmp_path / "out.parquet", on_error="skip", chunk_rows=100, engine="dask")
    mb.score_file(clf_path, bad_rows_input, tmp_path / "again.parquet", on_error="skip", chunk_rows=100,
                  engine="dask", overwrite=True)
    loads = dask_client.run(lambda: dict(__import__("modelport.batch.dask", fromlist=["LOADS"]).LOADS))
    pids = dask_client.run(os.getpid)
    assert len(set(pids.values())) == 2
    assert [v.get(clf_bundle.digest) for v in loads.values()] == [1, 1]
    jobs = dask_client.run(lambda: len(__import__("modelport.batch.dask", fromlist=["_JOBS"])._JOBS))
    assert all(n >= 1 for n in jobs.values())  # both workers took tasks


def test_one_session_per_spark_python_worker(spark, clf_path, clf_bundle, bad_rows_input, tmp_path):
    # batches of 100 rows (chunk_rows sets Spark's Arrow batch size): 50+ pieces, one open per worker
    mb.score_file(clf_path, bad_rows_input, tmp_path / "out.parquet", on_error="skip", chunk_rows=100, engine="spark")
    digest = clf_bundle.digest

    def report(batches):
        from modelport.batch import spark as s

        for _ in batches:
            pass
        yield pa.record_batch({"pid": [os.getpid()], "loads": [s.LOADS.get(digest, 0)],
                               "jobs": [len(s._JOBS)]})

    got = spark.range(0, 8, numPartitions=4).mapInArrow(report, "pid long, loads long, jobs long").toPandas()
    assert set(got["loads"]) <= {0, 1}  # a worker that never scored has 0; none opened the bundle twice
    assert (got["loads"] == 1).any()


# ---------------------------------------------------------------------------- pieces
def test_runs_number_rows_across_files():
    from modelport.batch.spark import _runs

    job = {"row_column": "i", "file_column": "f", "offsets": {"/d/a.parquet": 0, "/d/b.parquet": 10}}
    batch = pa.record_batch({
        "x": pa.array(np.arange(9, dtype=np.float64)),
        "i": pa.array([7, 8, 9, 0, 1, 5, 6, 2, 3], pa.int64()),
        "f": pa.array(["file:///d/a.parquet"] * 3 + ["file:/d/b.parquet"] * 2 + ["/d/b.parquet"] * 4),
    })
    runs = [(first, piece.column("x").to_pylist()) for first, piece in _runs(pa, batch, job)]
    # a.parquet's rows 7-9 and b.parquet's 0-1 are global rows 7-11: one run; then 15-16 and 12-13
    assert runs == [(7, [0.0, 1.0, 2.0, 3.0, 4.0]), (15, [5.0, 6.0]), (12, [7.0, 8.0])]
    with pytest.raises(ModelportError, match="not one of the job's input files"):
        list(_runs(pa, batch.set_column(2, "f", pa.array(["file:///elsewhere.parquet"] * 9)), job))


def test_assembler_puts_pieces_in_row_order(tmp_path):
    work = resume.WorkDir(tmp_path / "w", durable=False)
    work.create({"job": 1})
    schema = pa.schema([pa.field("id", pa.int64())])
    pieces = {0: [0, 1, 2], 3: [3, 4], 5: [5, 6, 7, 8]}
    for first, ids in pieces.items():
        rej = Rejects()
        if first == 3:
            rej.add(4, "bad")
        work.write_part(first, pa.record_batch({"id": pa.array(ids, pa.int64())}), rej, rows=len(ids))
    assert work.pieces() == {0: 3, 3: 2, 5: 4}
    asm = resume.Assembler(work, tmp_path / "out.parquet", "parquet", schema, rejects_path=tmp_path / "r.csv")
    for first in (5, 3, 0):  # as they happen to finish
        asm.done(first, len(pieces[first]))
    assert asm.finish(9) == (9, 1)
    assert pq.read_table(tmp_path / "out.parquet").column("id").to_pylist() == list(range(9))
    assert pd.read_csv(tmp_path / "r.csv")["row"].tolist() == [4]

    short = resume.Assembler(work, tmp_path / "short.parquet", "parquet", schema, rejects_path=None)
    short.done(0, 3)
    with pytest.raises(InputError, match="input row 3 has no results"):
        short.finish(9)
    assert not (tmp_path / "short.parquet").exists()


def test_timings_in_the_result_and_the_json(clf_path, parquet_file, tmp_path):
    from click.testing import CliRunner

    from modelport.cli.main import cli as main

    r = mb.score_file(clf_path, parquet_file, tmp_path / "a.parquet")
    assert set(r.timings) == {"startup", "scoring", "write"}
    assert sum(r.timings.values()) <= r.seconds + 1e-6
    res = CliRunner().invoke(main, ["score", str(clf_path), str(parquet_file), "-o", str(tmp_path / "b.parquet"),
                                    "--json", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.output.strip().splitlines()[-1])["timings"]) == {"startup", "scoring", "write"}
