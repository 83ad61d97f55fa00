"""score_file and `modelport score`: formats, chunking, atomic output, rejects, resume after kill -9, workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import modelport.batch as mb
from modelport.batch.io import open_source
from modelport.cli.main import cli
from modelport.errors import InputError

from .conftest import FEATURES

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def expected(clf_bundle, frame):
    return mb.score(clf_bundle, frame)


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    np.testing.assert_array_equal(got["id"].to_numpy(), want["id"].to_numpy())
    np.testing.assert_array_equal(got["label"].to_numpy(), want["label"].to_numpy())
    for c in ("proba_0", "proba_1", "proba_2"):
        np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), atol=1e-6)


def test_chunks_have_exact_sizes_across_row_groups(parquet_file, frame):
    src = open_source(parquet_file)
    assert src.num_rows == len(frame)
    sizes = [(i, b.num_rows) for i, b in src.batches(1000)]
    assert sizes == [(0, 1000), (1, 1000), (2, 1000), (3, 1000), (4, 1000)]
    # starting at chunk 3 gives the same rows as the third chunk of a full pass
    (i, b), *_ = list(src.batches(1000, start_chunk=3))
    assert i == 3 and b.column("id")[0].as_py() == frame["id"][3000]


@pytest.mark.parametrize("chunk_rows", [300, 700, 1000, 1234, 5000, 9000])
def test_one_chunk_read_alone_equals_that_chunk_of_a_full_pass(parquet_file, tmp_path, frame, chunk_rows):
    # several files and row groups that the chunks straddle (a worker reads only its own chunk)
    pieces = []
    for k, (a, b) in enumerate([(0, 1500), (1500, 1600), (1600, 5000)]):
        path = tmp_path / f"part-{k}.parquet"
        pq.write_table(pa.Table.from_pandas(frame.iloc[a:b], preserve_index=False), path, row_group_size=450)
        pieces.append(path)
    for src in (open_source(parquet_file), open_source(tmp_path)):
        full = dict(src.batches(chunk_rows, columns=["id", "a"]))
        for i, want in full.items():
            # one chunk alone: Parquet reads only the row groups it spans
            (index, got), = src.batches(chunk_rows, columns=["id", "a"], start_chunk=i, stop_chunk=i + 1)
            assert index == i and got.equals(want), (i, chunk_rows)
        assert list(src.batches(chunk_rows, start_chunk=len(full), stop_chunk=len(full) + 1)) == []


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_parquet_to_each_format(clf_path, parquet_file, expected, tmp_path, suffix):
    out = tmp_path / f"scored{suffix}"
    result = mb.score_file(clf_path, parquet_file, out, chunk_rows=1_000)
    assert result.rows_in == result.rows_out == 5_000
    got = {".parquet": pd.read_parquet, ".csv": pd.read_csv, ".jsonl": lambda p: pd.read_json(p, lines=True)}[suffix](out)
    _same(got, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary or work files left


def test_csv_input_and_directory_of_parquet(clf_path, csv_file, frame, expected, tmp_path):
    out = tmp_path / "from_csv.parquet"
    mb.score_file(clf_path, csv_file, out, chunk_rows=1_234)
    _same(pd.read_parquet(out), expected)
    parts = tmp_path / "parts"
    parts.mkdir()
    for k in range(3):  # part-10 sorts after part-2 by name: the order is the files' sorted order
        pq.write_table(pa.Table.from_pandas(frame.iloc[k * 2000:(k + 1) * 2000], preserve_index=False),
                       parts / f"part-{k}.parquet")
    out2 = tmp_path / "from_dir.parquet"
    mb.score_file(clf_path, parts, out2, chunk_rows=1_500)
    _same(pd.read_parquet(out2), expected)
    out3 = tmp_path / "from_glob.parquet"
    mb.score_file(clf_path, str(parts / "part-*.parquet"), out3, chunk_rows=1_500)
    _same(pd.read_parquet(out3), expected)


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_values_in_a_late_csv_block_are_rejected_by_row(clf_path, frame, tmp_path, workers):
    df = frame.copy().astype({"c": object})
    df.loc[4321, "c"] = "oops"
    df.loc[17, "a"] = np.nan
    src = tmp_path / "bad.csv"
    df.to_csv(src, index=False)
    out = tmp_path / "out.csv"
    result = mb.score_file(clf_path, src, out, on_error="skip", chunk_rows=1_000, workers=workers)
    assert (result.rows_in, result.rows_out, result.rejected) == (5_000, 4_998, 2)
    rejects = pd.read_csv(result.rejects_path)
    assert rejects["row"].tolist() == [17, 4321]
    assert "'a' has missing values" in rejects["reason"][0] and "'oops'" in rejects["reason"][1]
    got = pd.read_csv(out)
    assert not got["id"].isin(frame["id"][[17, 4321]]).any()
    with pytest.raises(InputError, match="row 17 cannot be scored"):
        mb.score_file(clf_path, src, tmp_path / "fail.csv", chunk_rows=1_000, workers=workers)
    assert not (tmp_path / "fail.csv").exists()


def test_null_policy_keeps_rows(clf_path, frame, tmp_path):
    df = frame.copy()
    df.loc[[10, 4999], "e"] = np.nan
    src = tmp_path / "in.parquet"
    df.to_parquet(src, index=False)
    out = tmp_path / "out.parquet"
    rej = tmp_path / "why.jsonl"
    result = mb.score_file(clf_path, src, out, on_error="null", rejects=rej)
    got = pd.read_parquet(out)
    assert len(got) == 5_000 and got["label"].isna().sum() == 2 and np.isnan(got["proba_0"][4999])
    assert pd.read_json(rej, lines=True)["row"].tolist() == [10, 4999]
    assert result.rejected == 2


def test_output_exists_is_refused_without_overwrite(clf_path, parquet_file, tmp_path):
    out = tmp_path / "o.parquet"
    out.write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        mb.score_file(clf_path, parquet_file, out)
    assert out.read_bytes() == b"precious"
    mb.score_file(clf_path, parquet_file, out, overwrite=True)
    assert pq.read_metadata(out).num_rows == 5_000


def test_missing_columns_in_file(clf_path, frame, tmp_path):
    src = tmp_path / "in.parquet"
    frame.rename(columns={"b": "B"}).to_parquet(src, index=False)
    with pytest.raises(InputError, match=r"missing column\(s\): b .*'B'"):
        mb.score_file(clf_path, src, tmp_path / "o.parquet")


def test_truncated_and_unreadable_files(clf_path, parquet_file, tmp_path):
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(parquet_file.read_bytes()[: parquet_file.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.parquet: cannot read this Parquet file") as info:
        mb.score_file(clf_path, cut, tmp_path / "o.parquet")
    assert "truncated" in (info.value.hint or "")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("id,a,b,c,d,e,note\n" + "1,0,0,0,0,0,x\n" * 10 + "2,0,0\n")
    with pytest.raises(InputError, match=r"ragged\.csv: cannot read this CSV file"):
        mb.score_file(clf_path, ragged, tmp_path / "o2.parquet")
    assert not (tmp_path / "o2.parquet").exists()
    with pytest.raises(InputError, match="no such file"):
        mb.score_file(clf_path, tmp_path / "nope.parquet", tmp_path / "o3.parquet")
    with pytest.raises(InputError, match="cannot tell the output format"):
        mb.score_file(clf_path, parquet_file, tmp_path / "o.xlsx")


def test_workers_match_one_process(clf_path, parquet_file, csv_file, expected, tmp_path):
    # Parquet: workers read their own chunks; CSV: the parent reads and ships them
    for src in (parquet_file, csv_file):
        out = tmp_path / f"w2-{src.suffix[1:]}.parquet"
        result = mb.score_file(clf_path, src, out, workers=2, chunk_rows=600)
        assert result.rows_out == 5_000
        _same(pd.read_parquet(out), expected)


def test_parent_and_worker_processes_share_the_chunks(clf_path, parquet_file, csv_file, expected, tmp_path,
                                                    monkeypatch):
    """The parent scores while the worker processes start; both must contribute, in order."""
    from modelport.batch.worker import ChunkWorker

    for src in (parquet_file, csv_file):
        in_parent: list[int] = []
        score = ChunkWorker.score_chunk

        def slow(self, chunk, score=score, seen=in_parent):
            time.sleep(0.3)  # only in this process: the worker processes run the real method
            seen.append(chunk[0])
            return score(self, chunk)

        monkeypatch.setattr(ChunkWorker, "score_chunk", slow)
        out = tmp_path / f"shared-{src.suffix[1:]}.parquet"
        result = mb.score_file(clf_path, src, out, workers=2, chunk_rows=250)
        n_chunks = 5_000 // 250
        assert result.rows_out == 5_000
        assert 0 < len(in_parent) < n_chunks, in_parent  # the worker process scored the rest
        _same(pd.read_parquet(out), expected)


def test_ranges_cover_every_chunk_once_shrinking_and_never_across_a_gap():
    from modelport.batch.parallel import Ranges

    todo = [i for i in range(100) if i not in (7, 8, 50)]  # chunks done before a resume
    ranges = list(Ranges(todo, scorers=2))
    covered = [i for a, b in ranges for i in range(a, b)]
    assert covered == todo  # each once, in order, none that was done
    sizes = [b - a for a, b in ranges]
    assert sizes[0] == 7 and sizes[-1] == 1  # cut short at the gap at 7; single chunks at the end
    assert max(sizes) <= len(todo) // 4
    assert list(Ranges([], scorers=2)) == []


def test_workers_on_parquet_with_row_groups_much_larger_than_a_chunk(clf_path, frame, expected, tmp_path):
    # one 5,000-row group and 200-row chunks: the parent reads it in one pass and ships the chunks
    src = tmp_path / "one-group.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), src, row_group_size=10_000)
    out = tmp_path / "one-group-out.parquet"
    result = mb.score_file(clf_path, src, out, workers=2, chunk_rows=200)
    assert result.rows_out == 5_000
    _same(pd.read_parquet(out), expected)


def test_a_script_without_main_guard_can_use_workers(clf_path, parquet_file, expected, tmp_path):
    """Worker processes never re-import the caller's __main__ (unlike multiprocessing's spawn)."""
    out = tmp_path / "guardless.parquet"
    script = tmp_path / "guardless.py"
    script.write_text(
        "import modelport.batch as mb\n"
        f"r = mb.score_file({str(clf_path)!r}, {str(parquet_file)!r}, {str(out)!r}, workers=2, chunk_rows=500)\n"
        "print('rows', r.rows_out)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["rows", "5000"]  # the script ran once, not once per worker
    _same(pd.read_parquet(out), expected)


def _worker_pids() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"modelport.batch.worker" in cmd and ppid == os.getpid():
            pids.append(int(d.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker process through /proc")
def test_a_killed_worker_process_fails_the_job_clearly_and_resume_finishes_it(
    clf_path, parquet_file, expected, tmp_path, monkeypatch
):
    import threading

    from modelport.batch.worker import ChunkWorker
    from modelport.errors import ModelportError

    score = ChunkWorker.score_chunk

    def slow(self, chunk):
        time.sleep(0.2)  # keeps the job running (in this process) until the worker is killed
        return score(self, chunk)

    monkeypatch.setattr(ChunkWorker, "score_chunk", slow)
    out = tmp_path / "killed-worker.parquet"
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            mb.score_file(clf_path, parquet_file, out, workers=2, chunk_rows=100)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    job = threading.Thread(target=run)
    job.start()
    deadline = time.monotonic() + 60
    parts = tmp_path / f".{out.name}.modelport-partial" / "parts"
    while time.monotonic() < deadline and not (_worker_pids() and parts.exists() and any(parts.glob("*.arrow"))):
        time.sleep(0.02)
    pids = _worker_pids()
    assert pids, "no worker process found"
    os.kill(pids[0], signal.SIGKILL)
    job.join(timeout=120)
    assert not job.is_alive(), "the job hung after its worker was killed"
    assert isinstance(outcome[0], ModelportError), outcome
    assert "worker process 1 stopped unexpectedly" in str(outcome[0])
    assert not out.exists()
    monkeypatch.undo()
    result = mb.score_file(clf_path, parquet_file, out, workers=2, chunk_rows=100, resume=True)
    assert result.resumed_chunks > 0
    _same(pd.read_parquet(out), expected)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "modelport", *args]


def test_kill_9_then_resume_gives_every_row_once(clf_path, csv_file, expected, tmp_path):
    out = tmp_path / "killed.parquet"
    parts = tmp_path / f".{out.name}.modelport-partial" / "parts"
    args = ["score", str(clf_path), str(csv_file), "-o", str(out), "--chunk-rows", "50", "--no-progress"]
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.exists() and len(list(parts.glob("*.arrow"))) >= 8:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the job ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    leftovers = list(tmp_path.glob(f".{out.name}.tmp-*"))
    assert leftovers, "the killed job had an output in progress"
    done_before = len([p for p in parts.glob("*.arrow") if p.name.count(".") == 1])
    assert 8 <= done_before < 100

    again = subprocess.run(_cli(*args), capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr

    changed = subprocess.run(_cli(*args[:-1], "--keep", "id", "--resume", "--no-progress"), capture_output=True, text=True)
    assert changed.returncode == 2 and "different keep" in changed.stderr

    resumed = subprocess.run(_cli(*args, "--resume", "--json"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f'"resumed_chunks": {done_before}' in resumed.stdout
    got = pd.read_parquet(out)
    _same(got, expected)
    assert got["id"].is_unique
    assert not parts.parent.exists()
    assert not any(p.exists() for p in leftovers), "the killed job's temporary output outlived the resume"
    assert not list(tmp_path.glob(f".{out.name}.tmp-*"))


def test_cli_score(clf_path, parquet_file, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.csv"
    res = runner.invoke(cli, ["score", str(clf_path), str(parquet_file), "-o", str(out), "--keep", "id",
                              "--prefix", "p_", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "scored 5,000 rows" in res.output
    got = pd.read_csv(out)
    assert list(got.columns) == ["id", "p_label", "p_proba_0", "p_proba_1", "p_proba_2"]
    res = runner.invoke(cli, ["score", str(clf_path), str(parquet_file), "-o", str(out)])
    assert res.exit_code != 0


def test_cli_exit_code_on_bad_input(clf_path, tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    proc = subprocess.run(_cli("score", str(clf_path), str(bad), "-o", str(tmp_path / "o.parquet")),
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "bad.parquet" in proc.stderr


def test_regression_file(reg_bundle, regressor, tmp_path, frame):
    model, _ = regressor
    src = tmp_path / "r.parquet"
    frame.to_parquet(src, index=False)
    out = tmp_path / "r_out.parquet"
    mb.score_file(reg_bundle, src, out, keep="none", chunk_rows=999)
    got = pd.read_parquet(out)
    assert list(got.columns) == ["prediction"]
    np.testing.assert_allclose(got["prediction"], model.predict(frame[FEATURES]), rtol=1e-4, atol=1e-4)


def test_empty_input_writes_an_empty_output(clf_path, frame, tmp_path):
    src = tmp_path / "empty.parquet"
    frame.head(0).to_parquet(src, index=False)
    out = tmp_path / "empty_out.parquet"
    result = mb.score_file(clf_path, src, out)
    assert result.rows_out == 0
    assert pq.read_schema(out).names == ["id", "note", "label", "proba_0", "proba_1", "proba_2"]


def test_resume_without_interruption_is_a_plain_run(clf_path, parquet_file, expected, tmp_path):
    out = tmp_path / "r.parquet"
    result = mb.score_file(clf_path, parquet_file, out, resume=True)
    assert result.resumed_chunks == 0
    _same(pd.read_parquet(out), expected)


def test_module_is_importable_lazily():
    code = "import modelport, sys; import modelport.cli.main; print('pyarrow' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_path_types(clf_path, parquet_file, tmp_path):
    assert isinstance(mb.score_file(str(clf_path), str(parquet_file), str(tmp_path / "x.parquet")).output, Path)


def test_allocator_settings_apply_only_where_modelport_owns_the_process():
    from modelport.batch.memory import child_env

    assert child_env({})["MIMALLOC_PURGE_DELAY"] == "-1"
    assert child_env({"MIMALLOC_PURGE_DELAY": "5"})["MIMALLOC_PURGE_DELAY"] == "5"  # the user's wins
    # importing modelport (and scoring from a library call) changes nothing process-wide
    code = ("import os, modelport, modelport.batch; "
            "print(os.environ.get('MIMALLOC_PURGE_DELAY'))")
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_PURGE_DELAY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "None", out.stderr
    # the score command sets it before pyarrow loads
    code = ("import os, sys; from modelport.batch.memory import tune_this_process; tune_this_process(); "
            "print(os.environ.get('MIMALLOC_PURGE_DELAY'), 'pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.split() == ["-1", "False"], out.stderr
