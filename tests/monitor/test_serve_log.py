"""serve --log -> feedback -> perf through a real server (REST and gRPC), replay, hostile feedback, gauges."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from sklearn import metrics as skm
from tests.serve.conftest import process_server

from modelport.monitor.read import read_labels, read_log, writers

from .conftest import churn_frame, churn_label, records

pytestmark = pytest.mark.integration


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelport", *args], capture_output=True, text=True, timeout=300)


def _gauge(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_serve_log_feedback_perf_round_trip(tmp_path, churn_path, churn_v2_path):
    import grpc

    from modelport.serve.proto import monitor_feedback_pb2 as pb

    log = tmp_path / "predictions"
    frame = churn_frame(120, 21)
    truth = churn_label(frame)
    recs = records(frame)
    with process_server([str(churn_path), "--log", str(log), "--log-rotate", "0.5", "--drift-window", "10m"],
                        tmp_path) as srv:
        ids, answered = [], []
        for i, rec in enumerate(recs[:80]):  # records endpoint, our own ids in a header for half of them
            headers = {"x-request-id": f"cust-{i}"} if i % 2 == 0 else {}
            r = httpx.post(f"{srv.http}/v2/models/churn/records", json={"records": [rec]}, headers=headers)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["id"] == r.headers["x-request-id"]
            if i % 2 == 0:
                assert body["id"] == f"cust-{i}"
            ids.append(body["id"])
            answered.append(body["predictions"][0])
        # V2 column form, 40 rows in one request: row ids are <id>:<i>
        cols = {"age": frame.age[80:].tolist(), "plan": frame.plan[80:].tolist(), "spend": frame.spend[80:].tolist()}
        v2 = {"id": "batch-1", "inputs": [
            {"name": "age", "shape": [40], "datatype": "FP64", "data": cols["age"]},
            {"name": "plan", "shape": [40], "datatype": "BYTES", "data": cols["plan"]},
            {"name": "spend", "shape": [40], "datatype": "FP64", "data": cols["spend"]}]}
        r = httpx.post(f"{srv.http}/v2/models/churn/infer", json=v2)
        assert r.status_code == 200 and r.json()["id"] == "batch-1" == r.headers["x-request-id"]
        ids += [f"batch-1:{i}" for i in range(40)]
        # labels: 60 over REST, the other 60 over gRPC
        labels = [{"id": rid, "label": int(y)} for rid, y in zip(ids, truth)]
        r = httpx.post(f"{srv.http}/v2/models/churn/feedback", json={"records": labels[:60]})
        assert r.status_code == 200, r.text
        assert r.json()["received"] == 60
        with grpc.insecure_channel(srv.grpc) as ch:
            call = ch.unary_unary("/modelport.monitor.v1.FeedbackService/Feedback",
                                  request_serializer=pb.FeedbackRequest.SerializeToString,
                                  response_deserializer=pb.FeedbackResponse.FromString)
            resp = call(pb.FeedbackRequest(model_name="churn", records=[
                pb.FeedbackRecord(id=x["id"], label=str(x["label"])) for x in labels[60:]]), timeout=30)
            assert resp.received == 60
            with pytest.raises(grpc.RpcError) as err:
                call(pb.FeedbackRequest(model_name="churn", records=[pb.FeedbackRecord(id="")]), timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # hostile feedback: every one a 4xx, the server keeps serving
        for bad in (b"not json", b"[]", b'{"records": {}}', b'{"records": [5]}', b'{"records": [{"id": "x"}]}',
                    json.dumps({"records": [{"id": "x" * 300, "label": 1}]}).encode(),
                    json.dumps({"records": [{"id": "x", "label": {"a": 1}}]}).encode(),
                    json.dumps({"records": [{"id": "x", "label": 1, "ts": "yesterday-ish"}]}).encode()):
            r = httpx.post(f"{srv.http}/v2/models/churn/feedback", content=bad)
            assert r.status_code == 400, (bad, r.status_code, r.text)
        assert httpx.post(f"{srv.http}/v2/models/nope/feedback", json={"records": []}).status_code == 404
        assert httpx.get(f"{srv.http}/v2/models/churn/feedback").status_code == 405
        r = httpx.post(f"{srv.http}/v2/models/churn/records", json={"records": [recs[0]]},
                       headers={"x-request-id": "bad id\u00e9".encode()})
        assert r.status_code == 400
        time.sleep(2.5)  # a second for the monitor to merge its buckets
        metrics = httpx.get(f"{srv.http}/metrics").text
        assert _gauge(metrics, "modelport_drift_window_rows", model="churn", version="1") == 120
        acc = _gauge(metrics, "modelport_realised_accuracy", model="churn", version="1")
    # after SIGTERM: every row in complete files, the labels too
    table = read_log(str(log))
    assert table.num_rows == 120 and sorted(table.column("id").to_pylist()) == sorted(ids)
    assert writers(str(log))[0]["unflushed"] == 0
    assert read_labels(str(log)).num_rows == 120
    # the realised metrics, from the CLI, equal scikit-learn's on what the server answered
    out = _cli("perf", str(churn_path), str(log), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    w = doc["windows"][0]
    assert w["predictions"] == 120 and w["labelled"] == 120 and doc["unmatched_labels"] == 0
    by_id = dict(zip(table.column("id").to_pylist(), table.column("out.label").to_pylist()))
    pred = np.array([by_id[i] for i in ids])
    assert w["realised"]["accuracy"] == pytest.approx(skm.accuracy_score(truth, pred), abs=1e-12)
    assert acc == pytest.approx(w["realised"]["accuracy"], abs=1e-12)  # the live gauge says the same
    assert [p["label"] for p in answered] == pred[:80].tolist()
    assert w["estimated"]["accuracy"] is not None
    # replay with the same version reproduces every logged answer exactly; another version differs
    same = _cli("replay", str(log), "--model", str(churn_path), "--json")
    assert same.returncode == 0, same.stderr
    r = json.loads(same.stdout)
    assert r["identical"] and r["scored"] == 120 and r["versions"][0]["max_abs_diff"] == 0.0
    other = _cli("replay", str(log), "--model", str(churn_v2_path), "--name", "churn", "--fail-if-labels-disagree",
                 "0%", "-o", str(tmp_path / "diff.parquet"))
    assert other.returncode in (0, 10), other.stderr
    import pyarrow.parquet as pq

    diff = pq.read_table(tmp_path / "diff.parquet")
    assert diff.num_rows == 120 and "replayed_label" in diff.column_names
    changed = sum(diff.column("differs").to_pylist())
    assert changed > 0  # another model: at least its probabilities differ
    assert (other.returncode == 10) == (sum(a != b for a, b in zip(diff.column("logged_label").to_pylist(),
                                                                 diff.column("replayed_label").to_pylist())) > 0)


def test_sampling_and_two_workers_agree(tmp_path, churn_path):
    """--workers 2: the gauges add both workers' rows (every /metrics says 200), and sampling keeps
    the same requests whichever worker answered."""
    log = tmp_path / "predictions"
    frame = churn_frame(200, 5)
    with process_server([str(churn_path), "--log", str(log), "--workers", "2", "--log-rotate", "0.5",
                         "--drift-window", "10m"], tmp_path) as srv:
        with httpx.Client() as client:  # new connections: both workers answer
            for i, rec in enumerate(records(frame)):
                r = client.post(f"{srv.http}/v2/models/churn/records", json={"records": [rec]},
                                headers={"x-request-id": f"r{i}", "connection": "close"})
                assert r.status_code == 200
        deadline = time.time() + 20
        seen = set()
        while time.time() < deadline:
            text = httpx.get(f"{srv.http}/metrics", headers={"connection": "close"}).text
            seen.add(_gauge(text, "modelport_drift_window_rows", model="churn", version="1"))
            if seen == {200.0} or (200.0 in seen and len(seen) > 3):
                break
            time.sleep(0.5)
        assert 200.0 in seen
        pids = {w["pid"] for w in writers(str(log))}
        assert len(pids) == 2  # both workers answered, and each wrote its own files
    assert read_log(str(log)).num_rows == 200
    sampled = tmp_path / "sampled"
    with process_server([str(churn_path), "--log", str(sampled), "--log-sample", "0.3"], tmp_path) as srv:
        for i, rec in enumerate(records(frame)):
            httpx.post(f"{srv.http}/v2/models/churn/records", json={"records": [rec]}, headers={"x-request-id": f"r{i}"})
    from modelport.monitor.log import sampled as in_sample

    got = sorted(read_log(str(sampled)).column("id").to_pylist())
    assert got == sorted(f"r{i}" for i in range(200) if in_sample(f"r{i}", 0.3)) and 30 < len(got) < 90
