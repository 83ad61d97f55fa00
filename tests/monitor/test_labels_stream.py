"""Delayed labels from a stream (``modelport feedback``): Redis Streams and JSON lines into the
prediction log, joined by ``modelport perf``; bad messages dead-lettered and acknowledged; labels
acknowledged only once stored; SIGTERM ends the console script cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from sklearn import metrics as skm
from tests.serve.conftest import process_server

import modelport as mp
from modelport.monitor.feedback import perf
from modelport.monitor.labels_stream import LabelConsumer, parse_message, run
from modelport.monitor.log import PredictionLog
from modelport.monitor.read import read_labels, read_log

from .conftest import churn_frame, churn_label, records

pytestmark = pytest.mark.integration


class Streams:
    """A Redis client and a stream name unique to one test (deleted afterwards)."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.r = redis.Redis.from_url(url)
        self.stream = f"mp-labels-{uuid.uuid4().hex[:10]}"
        self.dead = f"{self.stream}:dead-letter"

    def source(self, group: str = "feedback") -> str:
        return f"{self.url}?stream={self.stream}&group={group}"

    def push(self, payloads: list[bytes]) -> None:
        for p in payloads:
            self.r.xadd(self.stream, {"data": p})

    def settled(self, group: str = "feedback") -> bool:
        """Every entry delivered to the group and acknowledged."""
        for g in self.r.xinfo_groups(self.stream):
            if g["name"].decode() == group:
                return int(g.get("lag") or 0) == 0 and int(g["pending"]) == 0 and \
                    g["last-delivered-id"].decode() == self.r.xinfo_stream(self.stream)["last-generated-id"].decode()
        return False

    def wait_settled(self, timeout: float = 60, proc: subprocess.Popen | None = None) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"modelport feedback exited with {proc.returncode}")
            with_group = any(g["name"] == b"feedback" for g in self.r.xinfo_groups(self.stream)) \
                if self.r.exists(self.stream) else False
            if with_group and self.settled():
                return
            time.sleep(0.1)
        raise AssertionError("the labels stream was not consumed and acknowledged in time")

    def dead_letters(self) -> list[dict[str, str]]:
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in self.r.xrange(self.dead)]

    def close(self) -> None:
        self.r.delete(self.stream, self.dead)
        self.r.close()


@pytest.fixture
def streams(redis_url):
    s = Streams(redis_url)
    try:
        yield s
    finally:
        s.close()


def _script() -> str:
    script = Path(sysconfig.get_path("scripts")) / "modelport"
    assert script.exists(), f"the console script {script} is not installed; run `pip install -e .`"
    return str(script)


POISON = [
    (b"not json at all", "malformed"),
    (b'{"id": "x-1"}', "input"),                                   # no label
    (b'{"id": "", "label": 1}', "input"),                          # an empty id
    (b'{"id": "x-2", "label": {"nested": 1}}', "input"),           # a label that is neither a class nor a number
    (b'{"records": [{"id": "x-3", "label": 1}, 7]}', "input"),     # one bad record spoils its batch message
    (b'[{"id": "x-4", "label": 1}]', "input"),                     # a bare list: not the feedback body
    (b'{"id": "x-5", "label": 1, "ts": "yesterday-ish"}', "input"),
]


def test_labels_from_redis_join_the_predictions_of_a_real_server(tmp_path, churn_path, streams):
    """serve --log answers; labels come on a Redis stream to the console script; perf joins them."""
    log = tmp_path / "predictions"
    frame = churn_frame(60, 31)
    truth = churn_label(frame)
    with process_server([str(churn_path), "--log", str(log), "--log-rotate", "0.5"], tmp_path) as srv:
        ids = []
        for rec in records(frame):
            r = httpx.post(f"{srv.http}/v2/models/churn/records", json={"records": [rec]})
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
    # 20 single labels, 40 in two batches, one label sent twice (a redelivery), the poison in between
    labels = [{"id": rid, "label": int(y)} for rid, y in zip(ids, truth)]
    payloads = [orjson.dumps(x) for x in labels[:20]] + [p for p, _ in POISON] + \
        [orjson.dumps({"records": labels[20:40]}), orjson.dumps(labels[5]), orjson.dumps({"records": labels[40:]})]
    streams.push(payloads)
    proc = subprocess.Popen([_script(), "feedback", "--source", streams.source(), "--log", str(log), "--model", "churn",
                             "--batch-size", "4", "--max-wait-ms", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        streams.wait_settled(proc=proc)
        time.sleep(0.3)
        streams.push([orjson.dumps({"id": "late-1", "label": 0})])  # comes while it runs
        streams.wait_settled(proc=proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["labels"] == 62 and summary["dead_letters"] == len(POISON), summary
    # the consumer left its group on a clean stop
    assert [c for g in streams.r.xinfo_groups(streams.stream) for c in streams.r.xinfo_consumers(streams.stream, g["name"])] == []
    dead = streams.dead_letters()
    assert [d["reason"] for d in dead] == [reason for _, reason in POISON]
    assert [d["data"].encode() for d in dead] == [p for p, _ in POISON]  # the original payloads, to send again
    assert all(d["error"] and d["model_name"] == "churn" for d in dead)
    # perf (the CLI) joins every label: accuracy equals scikit-learn's on what the server answered
    done = subprocess.run([sys.executable, "-m", "modelport", "perf", str(churn_path), str(log), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["labels"] == 61 and doc["unmatched_labels"] == 1  # the duplicate counts once; late-1 matches nothing
    w = doc["windows"][0]
    assert w["predictions"] == 60 and w["labelled"] == 60
    table = read_log(str(log))
    by_id = dict(zip(table.column("id").to_pylist(), table.column("out.label").to_pylist()))
    assert w["realised"]["accuracy"] == pytest.approx(skm.accuracy_score(truth, [by_id[i] for i in ids]), abs=1e-12)
    stored = read_labels(str(log))
    assert set(stored.column("id").to_pylist()) == set(ids) | {"late-1"}


def test_labels_join_predictions_written_with_the_log_api_and_a_correction_wins(tmp_path, churn_path, streams):
    bundle = mp.load(churn_path)
    frame = churn_frame(50, 7)
    truth = churn_label(frame)
    url = tmp_path / "log"
    with PredictionLog(url) as plog:
        plog.model(bundle).write("req", len(frame), data=frame, outputs=bundle.predict(frame))
    ids = [f"req:{i}" for i in range(50)]
    streams.push([orjson.dumps({"records": [{"id": i, "label": int(y)} for i, y in zip(ids, truth)]})])
    wrong = 1 - int(truth[0])
    streams.push([orjson.dumps({"id": ids[0], "label": wrong, "ts": "2026-01-01T00:00:00Z"})])  # a correction
    consumer = LabelConsumer(streams.source(), url, model="churn", batch_size=1)
    t = threading.Thread(target=consumer.run)
    t.start()
    try:
        streams.wait_settled()
    finally:
        consumer.stop()
        t.join(30)
        consumer.close()
    assert not t.is_alive() and consumer.stats.labels == 51 and consumer.stats.batches == 2
    report = perf(str(url), model="churn", bundle=bundle)
    (w,) = report.windows
    assert w.labelled == 50 and report.labels == 50 and report.unmatched == 0
    logged = dict(zip(*(read_log(str(url)).column(c).to_pylist() for c in ("id", "out.label"))))
    expected = truth.copy()
    expected[0] = wrong  # the last label of an id counts
    assert w.realised["accuracy"] == pytest.approx(skm.accuracy_score(expected, [logged[i] for i in ids]), abs=1e-12)
    lab = read_labels(str(url)).to_pylist()
    assert {x["id"]: x["label"] for x in lab}[ids[0]] == str(wrong)


def test_nothing_is_acknowledged_when_the_labels_cannot_be_stored(tmp_path, streams):
    plog = PredictionLog(tmp_path / "log")
    plog.close()  # a log that can no longer write: flush() says so
    streams.push([orjson.dumps({"id": "a", "label": 1}), b"poison"])
    consumer = LabelConsumer(streams.source(), plog, batch_size=10, redeliver_after=60)
    t = threading.Thread(target=consumer.run)
    t.start()
    try:
        deadline = time.time() + 30
        while consumer.stats.retried == 0 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        consumer.stop()
        t.join(30)
        consumer.close()
    assert consumer.stats.retried >= 1 and consumer.stats.labels == 0 and consumer.stats.batches == 0
    pending = streams.r.xpending(streams.stream, "feedback")
    assert pending["pending"] == 2  # both wait for a redelivery (the poison with its batch)
    assert streams.r.exists(streams.dead) == 0


def test_a_json_lines_file_of_labels(tmp_path, churn_path):
    bundle = mp.load(churn_path)
    frame = churn_frame(30, 3)
    truth = churn_label(frame)
    url = tmp_path / "log"
    with PredictionLog(url) as plog:
        plog.model(bundle).write("f", len(frame), data=frame, outputs=bundle.predict(frame))
    labels = tmp_path / "labels.jsonl"
    lines = [json.dumps({"id": f"f:{i}", "label": int(y)}) for i, y in enumerate(truth)]
    lines.insert(3, "{broken")
    lines.insert(10, json.dumps({"records": [{"id": "f:0", "label": int(truth[0])}, {"id": "f:5"}]}))
    labels.write_text("\n".join(lines) + "\n")
    dead = tmp_path / "dead.jsonl"
    stats = run(str(labels), url, dead_letter=str(dead), batch_size=7)
    assert stats.labels == 30 and stats.dead_letters == 2 and stats.messages == 32
    letters = [json.loads(x) for x in dead.read_text().splitlines()]
    assert [x["reason"] for x in letters] == ["malformed", "input"] and [x["id"] for x in letters] == ["4", "11"]
    assert "record 1" in letters[1]["error"] and "label" in letters[1]["error"]
    report = perf(str(url), model="churn", bundle=bundle)
    assert report.windows[0].labelled == 30


def test_the_console_script_reads_stdin_and_refuses_bad_options(tmp_path):
    url = tmp_path / "log"
    done = subprocess.run([_script(), "feedback", "--source", "-", "--log", str(url), "--log-format", "text"],
                          input='{"id": "s-1", "label": "yes"}\n{"id": "s-2", "label": 2.5}\n',
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["labels"] == 2
    got = {r["id"]: (r["label"], r["value"]) for r in read_labels(str(url)).to_pylist()}
    assert got == {"s-1": ("yes", None), "s-2": ("2.5", 2.5)}
    bad = subprocess.run([_script(), "feedback", "--source", "kafka://x:1?topic=t", "--log", str(url)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "kafka" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run([_script(), "feedback", "--source", "-", "--log", str(url), "--max-message-bytes", "lots"],
                         capture_output=True, text=True, timeout=120, input="")
    assert bad.returncode != 0 and "size" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("payload", [p for p, _ in POISON])
def test_parse_message_refuses_with_a_modelport_error(payload):
    from modelport.errors import InputError

    with pytest.raises(InputError):
        parse_message(payload)


def test_parse_message_takes_a_record_or_a_batch():
    assert parse_message(b'{"id": "a", "label": "no"}') == [("a", "no", None)]
    assert parse_message(b'{"records": [{"id": "a", "label": 1, "ts": 1700000000}, {"id": "b", "value": 0.5}]}') == \
        [("a", 1, 1700000000.0), ("b", 0.5, None)]
    assert np.isclose(parse_message(b'{"id": "a", "label": 1, "ts": "2023-11-14T22:13:20Z"}')[0][2], 1700000000.0)


def test_options_are_checked(tmp_path):
    from modelport.errors import InputError

    for bad in ({"batch_size": 0}, {"max_wait": -1}, {"max_message_bytes": 0}):
        with pytest.raises(InputError):
            LabelConsumer("-", tmp_path / "log", **bad)
    assert not (tmp_path / "log").exists()  # refused before anything was opened


def test_labels_from_nats_jetstream(tmp_path, churn_path, nats_url):
    from tests.stream.conftest import NatsStreams

    nts = NatsStreams(nats_url)
    try:
        bundle = mp.load(churn_path)
        frame = churn_frame(20, 9)
        truth = churn_label(frame)
        url = tmp_path / "log"
        with PredictionLog(url) as plog:
            plog.model(bundle).write("n", len(frame), data=frame, outputs=bundle.predict(frame))
        nts.create()
        nts.produce([orjson.dumps({"id": f"n:{i}", "label": int(y)}) for i, y in enumerate(truth)] + [b"{oops"])
        consumer = LabelConsumer(nts.source("feedback"), url, batch_size=8, max_wait=0.05)
        t = threading.Thread(target=consumer.run)
        t.start()
        try:
            deadline = time.time() + 60
            while consumer.stats.labels + consumer.stats.dead_letters < 21 and time.time() < deadline:
                time.sleep(0.05)
        finally:
            consumer.stop()
            t.join(30)
            consumer.close()
        assert consumer.stats.labels == 20 and consumer.stats.dead_letters == 1
        info = nts.consumer("feedback")
        assert int(info.num_ack_pending or 0) == 0 and int(info.num_pending or 0) == 0  # all acknowledged
        (dead,) = nts.messages(f"{nts.stream}_DEAD_LETTER")
        assert dead[0] == b"{oops" and dead[1]["Modelport-Reason"] == "malformed"
        assert perf(str(url), model="churn", bundle=bundle).windows[0].labelled == 20
    finally:
        nts.cleanup()
