"""Unknown categories in batch scoring: counted per column in ScoreResult whatever runs the job (one
process, worker processes, a resumed run, Dask, Spark); refused as rejects under ``error``; the
bundle's policy overridden per job; the same counts as the runtime's own check."""

from __future__ import annotations

import numpy as np
import pytest

import modelport as mp
import modelport.batch as mb
from modelport.errors import InputError

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
lgb = pytest.importorskip("lightgbm")

COLORS = ["red", "green", "blue", "black"]


@pytest.fixture(scope="module")
def lgb_path(tmp_path_factory):
    rng = np.random.default_rng(1)
    n = 1000
    df = pd.DataFrame({"x": rng.normal(size=n), "color": pd.Categorical(rng.choice(COLORS, n))})
    y = ((df.x > 0) ^ (df.color == "red")).astype(int)
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(df, y)
    path = tmp_path_factory.mktemp("lgb") / "lgb.mpk"
    mp.pack(model, df, name="lgb").save(path)
    return path


@pytest.fixture(scope="module")
def parquet_in(tmp_path_factory):
    rng = np.random.default_rng(2)
    n = 5000
    colors = rng.choice(COLORS, n).astype(object)
    colors[::100] = "purple"  # 50 unseen values
    colors[7::250] = "Red"  # 20 typos
    df = pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "color": colors})
    path = tmp_path_factory.mktemp("in") / "in.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=700)
    return path, df


@pytest.mark.parametrize("workers", [1, 2])
def test_counts_across_chunks_and_workers(lgb_path, parquet_in, tmp_path, workers):
    src, df = parquet_in
    result = mb.score_file(lgb_path, src, tmp_path / "out.parquet", chunk_rows=600, workers=workers)
    assert result.unknown_categories == {"color": 70}
    assert result.rows_out == len(df)
    # the answers are those of missing values, as LightGBM gives them
    out = pd.read_parquet(tmp_path / "out.parquet")
    as_missing = mb.score(lgb_path, df.assign(color=np.where(df.color.isin(COLORS), df.color, None)), keep="none")
    np.testing.assert_allclose(out["proba_1"].to_numpy(), as_missing["proba_1"].to_numpy(), atol=1e-7)


def test_counts_survive_a_resume(lgb_path, parquet_in, tmp_path, monkeypatch):
    import modelport.batch.job as job

    src, _ = parquet_in
    out = tmp_path / "out.parquet"
    real = job._pipeline
    calls = {"n": 0}

    def crash_after_some(chunks, scorer, work, assembler, bar, scorers=1):
        def limited():
            for c in chunks:
                calls["n"] += 1
                if calls["n"] > 4:
                    raise KeyboardInterrupt
                yield c

        return real(limited(), scorer, work, assembler, bar, scorers=1)

    monkeypatch.setattr(job, "_pipeline", crash_after_some)
    with pytest.raises(KeyboardInterrupt):
        mb.score_file(lgb_path, src, out, chunk_rows=600)
    monkeypatch.setattr(job, "_pipeline", real)
    result = mb.score_file(lgb_path, src, out, chunk_rows=600, resume=True)
    assert result.resumed_chunks > 0
    assert result.unknown_categories == {"color": 70}


def test_error_policy_per_job_makes_rejects(lgb_path, parquet_in, tmp_path):
    src, df = parquet_in
    result = mb.score_file(lgb_path, src, tmp_path / "out.csv", on_error="skip", unknown_categories="error")
    assert result.rejected == 70 and result.unknown_categories == {}
    rejects = pd.read_csv(result.rejects_path)
    assert rejects["row"].tolist() == sorted(np.flatnonzero(~df.color.isin(COLORS).to_numpy()).tolist())
    assert rejects["reason"].str.contains("column 'color' has values outside its categories").all()
    with pytest.raises(InputError, match=r"row 0 cannot be scored: column 'color' has values outside"):
        mb.score_file(lgb_path, src, tmp_path / "fail.csv", unknown_categories="error")
    with pytest.raises(InputError, match="unknown_categories must be one of native, missing, error"):
        mb.score_file(lgb_path, src, tmp_path / "x.csv", unknown_categories="ignore")


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")
def test_dask_engine_counts(lgb_path, parquet_in, tmp_path):
    pytest.importorskip("distributed")
    src, _ = parquet_in
    result = mb.score_file(lgb_path, src, tmp_path / "dask.parquet", engine="dask", on_error="skip")
    assert result.unknown_categories == {"color": 70}
    assert "__modelport_unknown" not in pq.read_schema(tmp_path / "dask.parquet").names


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_spark_engine_counts(lgb_path, parquet_in, tmp_path):
    pytest.importorskip("pyspark")
    src, _ = parquet_in
    result = mb.score_file(lgb_path, src, tmp_path / "spark.parquet", engine="spark", on_error="skip")
    assert result.unknown_categories == {"color": 70}
    assert "__modelport_unknown" not in pq.read_schema(tmp_path / "spark.parquet").names
