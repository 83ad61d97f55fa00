"""modelport.dask on a real dask.distributed LocalCluster (2 workers): same answers as local scoring."""

from __future__ import annotations

import numpy as np
import pytest

import modelport.batch as mb
import modelport.dask as mdask
from modelport.errors import InputError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning"),
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning"),
]

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def client():
    # threads in this process: fast to start and reliable under a shared CPU
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def test_predict_matches_local_and_ships_bundle_once_per_worker(client, clf_bundle, parquet_file, frame):
    ddf = dd.read_parquet(str(parquet_file))
    assert ddf.npartitions >= 1
    ddf = ddf.repartition(npartitions=6)
    scored = mdask.predict(clf_bundle, ddf)
    got = scored.compute()
    want = mb.score(clf_bundle, frame)
    np.testing.assert_array_equal(got["label"].to_numpy(), want["label"].to_numpy())
    np.testing.assert_allclose(got["proba_2"].to_numpy(), want["proba_2"].to_numpy(), atol=1e-6)
    assert list(got.columns) == list(want.columns)
    # the bundle is a worker plugin (sent once per worker); partition tasks carry only its digest
    plugins = client.run(lambda dask_worker: sorted(dask_worker.plugins))
    assert len(plugins) == 2
    for names in plugins.values():
        assert f"modelport-bundle-{clf_bundle.digest}" in names
    graph = dict(scored.__dask_graph__())
    assert all(clf_bundle.model_bytes not in repr(v).encode() for v in list(graph.values())[:5])


def test_error_column_and_fail(client, clf_bundle, frame):
    df = frame.copy()
    df.loc[[5, 4000], "a"] = np.nan
    ddf = dd.from_pandas(df, npartitions=4)
    got = mdask.predict(clf_bundle, ddf, on_error="null", error_column="why").compute()
    assert got.index[got["why"].notna()].tolist() == [5, 4000]
    assert got["label"].isna().sum() == 2
    skipped = mdask.predict(clf_bundle, ddf, on_error="skip").compute()
    assert len(skipped) == 4998
    with pytest.raises(InputError, match=r"partition (0: row 5|3: row 250) cannot be scored"):
        mdask.predict(clf_bundle, ddf).compute()


def test_missing_columns_refused_before_running(clf_bundle, frame):
    with pytest.raises(InputError, match=r"missing column\(s\)"):
        mdask.predict(clf_bundle, dd.from_pandas(frame.drop(columns=["c"]), npartitions=2))


def test_engine_dask_gives_the_local_output(client, clf_path, frame, tmp_path):
    df = frame.copy().astype({"d": object})
    df.loc[3333, "d"] = "bad"
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    local = mb.score_file(clf_path, src, tmp_path / "local.parquet", on_error="skip")
    remote = mb.score_file(clf_path, src, tmp_path / "dask.parquet", on_error="skip", engine="dask")
    assert (remote.rows_in, remote.rows_out, remote.rejected) == (5000, 4999, 1)
    a = pd.read_parquet(tmp_path / "local.parquet")
    b = pd.read_parquet(tmp_path / "dask.parquet")
    assert a.dtypes.equals(b.dtypes)
    np.testing.assert_array_equal(a["id"], b["id"])
    np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_allclose(a["proba_1"], b["proba_1"], atol=1e-6)
    assert pd.read_csv(remote.rejects_path).equals(pd.read_csv(local.rejects_path))


def test_real_worker_processes(clf_bundle, parquet_file, frame):
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        got = mdask.predict(clf_bundle, dd.read_parquet(str(parquet_file)).repartition(npartitions=4), client=c).compute()
        pids = c.run(lambda dask_worker: __import__("os").getpid())
        loaded = c.run(lambda: sorted(__import__("modelport.batch.dask", fromlist=["_BUNDLES"])._BUNDLES))
    assert len(set(pids.values())) == 2
    assert all(v == [clf_bundle.digest] for v in loaded.values())
    want = mb.score(clf_bundle, frame)
    np.testing.assert_array_equal(got["label"].to_numpy(), want["label"].to_numpy())
