"""The consumer loop: hot swap under load, backpressure, graceful SIGTERM, metrics."""

from __future__ import annotations

import re
import threading
import time
import urllib.request

import numpy as np
import orjson
import pytest

from modelport.stream import StreamConfig, StreamConsumer
from modelport.stream.base import Sink

pytestmark = pytest.mark.integration


def test_alias_move_under_load_switches_versions_and_loses_nothing(iris_versions, rds, tmp_path):
    from modelport.registry import open_registry

    v1, v2 = iris_versions
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    reg = open_registry(url)  # artifacts next to the database, where the consumer's registry looks too
    i1, i2 = reg.push(v1.path), reg.push(v2.path)
    reg.set_alias("iris", "production", i1.version)
    records = v1.records(20_000, 31)
    config = StreamConfig("models:/iris@production", source=rds.source(), sink=rds.sink(), registry_url=url,
                          poll=0.1, batch_size=50)
    consumer = StreamConsumer(config).start()
    sent: list[str] = []
    stop = threading.Event()

    def produce() -> None:  # about 1,500 messages a second, until told to stop
        for i in range(0, len(records), 15):
            if stop.is_set():
                return
            sent.extend(rds.produce([orjson.dumps(r) for r in records[i:i + 15]]))
            time.sleep(0.01)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        rds.wait_len(rds.out, 600)
        reg.set_alias("iris", "production", i2.version)  # the alias moves while messages flow
        deadline = time.time() + 60
        while rds.outputs()[-1]["model_version"] != str(i2.version):
            assert time.time() < deadline, "the consumer never switched"
            time.sleep(0.1)
        n = rds.r.xlen(rds.out)
        rds.wait_len(rds.out, n + 500)  # and messages go on flowing after the switch
        stop.set()
        producer.join()
        rds.wait_len(rds.out, len(sent))
    finally:
        stop.set()
        producer.join()
        stats = consumer.stop()
    outs = rds.outputs()
    assert sorted(o["id"] for o in outs) == sorted(sent), "every message has exactly one output"
    versions = [o["model_version"] for o in outs]
    switch = versions.index(str(i2.version))
    assert set(versions[:switch]) == {str(i1.version)} and set(versions[switch:]) == {str(i2.version)}
    assert 600 <= switch <= len(outs) - 500, "the switch happened under load"
    assert stats.model_versions == [str(i1.version), str(i2.version)]
    # each output is the answer of the version it names
    by_id = dict(zip(sent, records))
    for version, model in ((str(i1.version), v1), (str(i2.version), v2)):
        mine = [o for o in outs if o["model_version"] == version]
        assert {o["model_digest"] for o in mine} == {model.bundle.digest}
        want = model.bundle.predict([by_id[o["id"]] for o in mine])
        assert [o["label"] for o in mine] == want["label"].tolist()
        got = np.array([[o["probabilities"][str(c)] for c in model.bundle.classes] for o in mine])
        np.testing.assert_allclose(got, want["probabilities"], rtol=1e-5, atol=1e-6)
    assert rds.pending() == 0


class SlowSink(Sink):
    """A sink that takes its time: the consumer must stop reading, not pile messages up."""

    name = "slow"

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, messages) -> None:
        time.sleep(0.15)
        self.written += [m.payload for m in messages]


def test_backpressure_stops_reading_while_the_sink_is_slow(reg_model, rds):
    ids = rds.produce([orjson.dumps(r) for r in reg_model.records(400, 32)])
    sink = SlowSink()
    config = StreamConfig(str(reg_model.path), source=rds.source(), sink=sink, batch_size=10, max_in_flight=3)
    consumer = StreamConsumer(config).start()
    delivered_ahead = []
    try:
        deadline = time.time() + 2.0
        while time.time() < deadline:
            group = rds.r.xinfo_groups(rds.src)[0]
            delivered_ahead.append(int(group["pending"]))  # delivered to the consumer, not yet acknowledged
            time.sleep(0.02)
    finally:
        stats = consumer.stop()
    assert max(delivered_ahead) <= 3 * 10, f"read {max(delivered_ahead)} messages ahead of the sink"
    assert max(delivered_ahead) > 0
    assert 40 <= stats.messages_out < len(ids), "it kept scoring at the sink's pace"
    assert len(sink.written) == stats.messages_out
    assert rds.pending() == 0, "stop() committed every batch it had read"
    assert int(rds.r.xinfo_groups(rds.src)[0]["lag"]) == len(ids) - stats.messages_in


def test_sigterm_finishes_acknowledges_and_exits_0(reg_model, rds, consumers):
    rds.produce([orjson.dumps(r) for r in reg_model.records(30_000, 33)])
    c = consumers(str(reg_model.path), "--source", rds.source(), "--sink", rds.sink(), "--batch-size", "200")
    rds.wait_len(rds.out, 2000, procs=[c.proc])
    assert c.stop() == 0, c.output()
    assert "received SIGTERM" in c.output()
    group = rds.r.xinfo_groups(rds.src)[0]
    assert int(group["pending"]) == 0, "everything it read was acknowledged"
    read = int(group["entries-read"])
    outs = rds.outputs()
    assert len(outs) == read and len({o["id"] for o in outs}) == read, "and has its output, once"
    assert read < 30_000, "it stopped before the end of the stream"
    assert group["consumers"] == 0, "it left the group"


def test_metrics_endpoint(cat_model, rds):
    rds.produce([orjson.dumps(r) for r in cat_model.records(50, 34)] + [b"{"])
    config = StreamConfig(str(cat_model.path), source=rds.source(), sink=rds.sink(), metrics_port=0)
    consumer = StreamConsumer(config).start()
    try:
        rds.wait_len(rds.out, 50)
        rds.wait_len(rds.dead, 1)
        time.sleep(5.5)  # the group lag is read every 5 s
        port = consumer._server.port
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
    finally:
        consumer.stop()
    assert health == b'{"live":true}'

    def value(pattern: str) -> float:
        m = re.search(pattern + r" ([0-9.e+]+)", body)
        assert m, f"{pattern} not in /metrics:\n{body[:3000]}"
        return float(m.group(1))

    assert value(r'modelport_stream_messages_in_total\{source="[^"]+"\}') == 51
    assert value(r'modelport_stream_messages_out_total\{model="churn",version="1"\}') == 50
    assert value(r'modelport_stream_dead_letters_total\{reason="malformed"\}') == 1
    assert value(r'modelport_stream_end_to_end_seconds_count') == 51
    assert value(r'modelport_stream_score_seconds_count\{model="churn",version="1"\}') >= 1
    assert value(r'modelport_stream_model\{digest="[^"]+",model="churn",version="1"\}') == 1
    assert value(r'modelport_stream_group_lag\{source="[^"]+"\}') == 0
    assert value(r'modelport_stream_group_pending\{source="[^"]+"\}') == 0
