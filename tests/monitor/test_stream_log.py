"""modelport stream --log on the real Redis: the same log as serve writes (format, ids, sampling),
read back by perf / replay / drift; and the Python API's equivalent (StreamConfig.log)."""

from __future__ import annotations

import json
import signal
import subprocess

import numpy as np
import orjson
import pytest
from tests.stream.conftest import RedisStreams, modelport_script

from modelport.monitor.read import read_log, writers

from .conftest import churn_frame, churn_label, records

pytestmark = pytest.mark.integration

META = ["id", "request_id", "ts", "model", "version", "digest", "source", "role", "arm", "latency_ms", "sample_rate"]


@pytest.fixture
def rds(redis_url):
    helper = RedisStreams(redis_url)
    try:
        yield helper
    finally:
        helper.cleanup()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([modelport_script(), *args], capture_output=True, text=True, timeout=300)


def test_stream_log_is_the_serve_log_and_perf_replay_drift_read_it(tmp_path, churn_path, rds):
    import pyarrow.parquet as pq

    frame = churn_frame(150, 41)
    recs = records(frame)
    truth = dict(zip(range(150), churn_label(frame)))
    singles = [orjson.dumps(r) for r in recs[:100]]
    batches = [orjson.dumps({"records": recs[100 + 5 * k:105 + 5 * k]}) for k in range(10)]
    rds.r.xgroup_create(rds.src, "scorers", id="0", mkstream=True)
    ids = rds.produce(singles + batches + [b'{"age": "old", "plan": "pro", "spend": 1.0}'])  # the last: dead
    log = tmp_path / "predictions"
    out = tmp_path / "stream.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([modelport_script(), "stream", str(churn_path), "--source", rds.source(), "--sink",
                                 rds.sink(), "--log", str(log), "--log-rotate", "0.5", "--batch-size", "64"],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        rds.wait_len(rds.out, 110, timeout=120, procs=[proc])
        rds.wait_len(rds.dead, 1, timeout=30, procs=[proc])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, out.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # one row per scored record; the serve's id rules with message ids; nothing for the dead letter
    table = read_log(str(log))
    assert table.column_names[:len(META)] == META
    assert {c for c in table.column_names if c.startswith("in.")} == {"in.age", "in.plan", "in.spend"}
    want = ids[:100] + [f"{mid}:{i}" for mid in ids[100:110] for i in range(5)]
    assert sorted(table.column("id").to_pylist()) == sorted(want)
    rows = {r["id"]: r for r in table.to_pylist()}
    for mid in ids[100:110]:
        assert {rows[f"{mid}:{i}"]["request_id"] for i in range(5)} == {mid}
    assert {r["source"] for r in rows.values()} == {"stream"} and {r["role"] for r in rows.values()} == {"answer"}
    assert all(r["latency_ms"] > 0 and r["model"] == "churn" and r["version"] == "1" for r in rows.values())
    # what the log says was answered is what the sink got, and the inputs are the records
    answers = {}
    for o in rds.outputs():
        if "predictions" in o:
            answers.update({f"{o['id']}:{i}": p for i, p in enumerate(o["predictions"])})
        else:
            answers[o["id"]] = o
    position = dict(zip(want, range(150)))
    for rid, row in rows.items():
        assert row["out.label"] == answers[rid]["label"]
        assert row["out.proba_1"] == answers[rid]["probabilities"]["1"]
        rec = recs[position[rid]]
        assert (row["in.age"], row["in.plan"], row["in.spend"]) == (rec["age"], rec["plan"], rec["spend"])
    state = writers(str(log))[0]
    assert state["accepted"] == state["written"] == 150 and state["dropped"] == 0 and state["stopped"]
    assert state["source"] == "stream"
    # labels by message id join in perf; replay with the same version reproduces every answer
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": rid, "label": int(truth[position[rid]])}) + "\n" for rid in want))
    perf = _cli("perf", str(churn_path), str(log), "--labels", str(labels), "--json")
    assert perf.returncode == 0, perf.stderr
    w = json.loads(perf.stdout)["windows"][0]
    assert w["predictions"] == 150 and w["labelled"] == 150
    pred = np.array([rows[rid]["out.label"] for rid in want])
    assert w["realised"]["accuracy"] == pytest.approx(float(np.mean(pred == churn_label(frame))), abs=1e-12)
    replay = _cli("replay", str(log), "--model", str(churn_path), "--json")
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["identical"] and json.loads(replay.stdout)["scored"] == 150
    drift = _cli("drift", str(churn_path), str(log), "--json")
    assert drift.returncode in (0, 10), drift.stderr
    assert json.loads(drift.stdout)["rows"] == 150
    assert all(pq.read_metadata(p).num_rows > 0 for p in log.rglob("*.parquet"))


def test_the_python_api_logs_into_a_log_of_its_own_and_samples_by_message_id(tmp_path, churn_path, rds):
    import pyarrow as pa

    import modelport.stream as ms
    from modelport.monitor.log import PredictionLog, sampled

    frame = churn_frame(200, 42)
    recs = records(frame)
    rds.r.xgroup_create(rds.src, "scorers", id="0", mkstream=True)
    sink = pa.BufferOutputStream()
    table = pa.table({"age": frame.age[:7].tolist(), "plan": frame.plan[:7].tolist(), "spend": frame.spend[:7].tolist()})
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    ids = rds.produce([orjson.dumps(r) for r in recs] + [sink.getvalue().to_pybytes()])
    shared = PredictionLog(tmp_path / "log", sample=0.4, rotate_seconds=0.5, source="stream")
    consumer = ms.StreamConsumer(ms.StreamConfig(str(churn_path), source=rds.source(), sink=rds.sink(), log=shared))
    consumer.start()
    try:
        rds.wait_len(rds.out, 201, timeout=120)
    finally:
        stats = consumer.stop()
    assert stats.messages_out == 201 and not shared._closed  # the caller's log stays open
    shared.close()
    got = read_log(str(tmp_path / "log"))
    arrow_id = ids[-1]
    want = [i for i in ids[:200] if sampled(i, 0.4)] + ([f"{arrow_id}:{k}" for k in range(7)] if sampled(arrow_id, 0.4) else [])
    assert sorted(got.column("id").to_pylist()) == sorted(want) and 40 < len(want) < 130
    assert set(got.column("sample_rate").to_pylist()) == {0.4}


def test_bad_log_options_are_clear_errors(tmp_path, churn_path, rds):
    import modelport.stream as ms
    from modelport.errors import InputError
    from modelport.monitor.log import PredictionLog

    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        ms.StreamConsumer(ms.StreamConfig(str(churn_path), source=rds.source(), sink=rds.sink(),
                                          log=str(tmp_path / "file"))).start()
    with pytest.raises(InputError, match="log_sample"):
        ms.StreamConfig(str(churn_path), source=rds.source(), sink=rds.sink(), log="x", log_sample=2.0).check()
    shared = PredictionLog(tmp_path / "log")
    try:
        with pytest.raises(InputError, match="PredictionLog object"):
            ms.run(str(churn_path), source=rds.source(), sink=rds.sink(), log=shared, consumers=2)
    finally:
        shared.close()
    r = _cli("stream", str(churn_path), "--source", rds.source(), "--sink", rds.sink(), "--log", str(tmp_path / "file"))
    assert r.returncode != 0 and "not a directory" in r.stderr and "Traceback" not in r.stderr
