"""modelport score --log: batch jobs write the serve's prediction log (ids from --log-id, else
<run id>:<row>), from one process or --workers N, and perf / replay read it."""

from __future__ import annotations

import json
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.test_entry_points import clean_env, modelport_script

from modelport.monitor.log import sampled
from modelport.monitor.read import read_log, writers

from .conftest import churn_frame, churn_label

pytestmark = pytest.mark.integration


def _mp(tmp_path, *args: str):
    return subprocess.run([str(modelport_script()), *args], env=clean_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_score_log_ids_outputs_and_perf(tmp_path, churn_path, workers):
    frame = churn_frame(3000, 17)
    frame["cust"] = [f"c{i}" for i in range(len(frame))]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, tmp_path / "in.parquet")
    log = tmp_path / "log"
    r = _mp(tmp_path, "score", str(churn_path), str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet"),
            "--log", str(log), "--log-id", "cust", "--workers", workers, "--chunk-rows", "700", "--json")
    assert r.returncode == 0, r.stderr
    out = pq.read_table(tmp_path / "out.parquet").to_pylist()
    logged = {row["id"]: row for row in read_log(str(log)).to_pylist()}
    assert set(logged) == set(frame.cust) and len(out) == len(frame)
    for o in out:
        row = logged[o["cust"]]
        assert row["out.label"] == o["label"] and row["source"] == "score"
        i = int(o["cust"][1:])  # the output keeps the other columns (--keep rest): the id
        assert (row["in.age"], row["in.plan"], row["in.spend"]) == (frame.age[i], frame.plan[i], frame.spend[i])
    states = writers(str(log))
    assert len(states) == int(workers) and all(s["stopped"] and s["dropped"] == 0 for s in states)
    assert sum(s["written"] for s in states) == len(out)
    labels = tmp_path / "labels.csv"
    truth = churn_label(frame)
    labels.write_text("id,label\n" + "".join(f"c{i},{int(y)}\n" for i, y in enumerate(truth)) + "nobody,1\n")
    perf = _mp(tmp_path, "perf", str(churn_path), str(log), "--labels", str(labels), "--json")
    assert perf.returncode == 0, perf.stderr
    doc = json.loads(perf.stdout)
    assert doc["windows"][0]["labelled"] == len(out) and doc["unmatched_labels"] == 1
    replay = _mp(tmp_path, "replay", str(log), "--model", str(churn_path), "--json")
    assert replay.returncode == 0 and json.loads(replay.stdout)["identical"], replay.stderr


def test_score_log_sample_and_default_ids_and_bad_options(tmp_path, churn_path):
    frame = churn_frame(500, 18)
    frame.to_parquet(tmp_path / "in.parquet")
    r = _mp(tmp_path, "score", str(churn_path), str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out.parquet"),
            "--log", str(tmp_path / "log"), "--log-sample", "0.3")
    assert r.returncode == 0, r.stderr
    ids = read_log(str(tmp_path / "log")).column("id").to_pylist()
    run_id = ids[0].split(":")[0]
    assert sorted(ids) == sorted(f"{run_id}:{i}" for i in range(500) if sampled(f"{run_id}:{i}", 0.3))
    bad = _mp(tmp_path, "score", str(churn_path), str(tmp_path / "in.parquet"), "-o", str(tmp_path / "o2.parquet"),
              "--log", str(tmp_path / "log2"), "--log-id", "nope")
    assert bad.returncode != 0 and "--log-id" in bad.stderr and "Traceback" not in bad.stderr
