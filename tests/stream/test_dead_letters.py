"""Bad messages never block the stream: each goes to the dead-letter destination with its reason,
its error and its original payload, is acknowledged, and the messages after it are scored."""

from __future__ import annotations

import time

import orjson
import pytest

from modelport.stream import StreamConfig, StreamConsumer

pytestmark = pytest.mark.integration

LIMIT = 4096


def poison(good: dict) -> list[tuple[bytes, str, str]]:
    """(payload, reason, a phrase its error must contain): one of each kind of bad message."""
    missing = {k: v for k, v in good.items() if k != "amount"}
    return [
        (b'{"amount": 1.0, "city": ', "malformed", "not valid JSON"),
        (b"\xff\xfe not even text", "malformed", "not valid JSON"),
        (b"42", "malformed", "got a JSON number"),
        (b'["a", "b"]', "malformed", "record 0 of the message is a JSON string"),
        (b'{"records": []}', "malformed", "empty"),
        (orjson.dumps(missing), "input", "missing column(s): amount"),
        (orjson.dumps({"amountt": 1.0, "cty": "paris", "visits": 1.0, "tier": 1}), "input", "missing column(s): amount, city"),
        (orjson.dumps({**good, "amount": "lots"}), "input", "'amount' must be numeric"),
        (orjson.dumps({"records": [good, {**good, "visits": "x"}]}), "input", "record 1: column 'visits'"),
        (orjson.dumps({**good, "label": "churn"}), "input", "would be overwritten"),
        (orjson.dumps({**good, "pad": "x" * LIMIT}), "too_large", f"the limit is {LIMIT:,}"),
    ]


def _run(config, until, timeout=60):
    consumer = StreamConsumer(config).start()
    deadline = time.time() + timeout
    try:
        while not until():
            assert time.time() < deadline, f"timed out: {consumer.stats}"
            time.sleep(0.05)
    finally:
        stats = consumer.stop()
    return stats


def test_redis_poison_messages_reach_the_dead_letter_stream(cat_model, rds):
    records = cat_model.records(60, 21)
    bad = poison(records[0])
    payloads = [orjson.dumps(r) for r in records[:30]] + [p for p, _, _ in bad] + [orjson.dumps(r) for r in records[30:]]
    ids = rds.produce(payloads)
    bad_ids = ids[30:30 + len(bad)]
    good_ids = ids[:30] + ids[30 + len(bad):]
    config = StreamConfig(str(cat_model.path), source=rds.source(), sink=rds.sink(), batch_size=16,
                          max_message_bytes=LIMIT)
    stats = _run(config, lambda: rds.r.xlen(rds.out) >= len(good_ids) and rds.r.xlen(rds.dead) >= len(bad))
    assert stats.messages_out == len(good_ids)
    # every good message, also those after the poison ones, has its output
    assert sorted(o["id"] for o in rds.outputs()) == sorted(good_ids)
    dead = {f[b"id"].decode(): f for _, f in rds.entries(rds.dead)}
    assert sorted(dead) == sorted(bad_ids)
    for mid, (payload, reason, phrase) in zip(bad_ids, bad):
        f = dead[mid]
        assert f[b"data"] == payload, "the dead letter keeps the original payload"
        assert f[b"reason"].decode() == reason, (payload[:60], f[b"error"])
        assert phrase in f[b"error"].decode(), (phrase, f[b"error"])
        assert f[b"deliveries"] == b"1" and f[b"model_version"] == b"1"
    assert stats.dead_letters == {r: sum(1 for _, x, _ in bad if x == r) for r in {x for _, x, _ in bad}}
    assert rds.pending() == 0, "dead letters are acknowledged too"


def test_redis_entry_without_the_payload_field(cat_model, rds):
    rds.r.xadd(rds.src, {"amount": "1.0", "city": "paris"})
    (good_id,) = rds.produce([orjson.dumps(cat_model.records(1, 3)[0])])
    _run(StreamConfig(str(cat_model.path), source=rds.source(), sink=rds.sink()),
         lambda: rds.r.xlen(rds.out) >= 1 and rds.r.xlen(rds.dead) >= 1)
    ((_, f),) = rds.entries(rds.dead)
    assert f[b"reason"] == b"malformed" and b"no 'data' field" in f[b"error"]
    assert orjson.loads(f[b"data"]) == {"amount": "1.0", "city": "paris"}
    assert [o["id"] for o in rds.outputs()] == [good_id]


def test_nats_poison_messages_reach_the_dead_letter_subject(cat_model, nts):
    records = cat_model.records(40, 22)
    bad = poison(records[0])
    nts.create()
    payloads = [orjson.dumps(r) for r in records[:20]] + [p for p, _, _ in bad] + [orjson.dumps(r) for r in records[20:]]
    seqs = nts.produce(payloads)
    bad_seqs = seqs[20:20 + len(bad)]
    config = StreamConfig(str(cat_model.path), source=nts.source(), sink=nts.sink(), batch_size=16,
                          max_message_bytes=LIMIT)
    dead_stream = f"{nts.stream}_DEAD_LETTER"
    stats = _run(config, lambda: nts.count(nts.out_stream) >= 40 and nts.count(dead_stream) >= len(bad))
    assert stats.messages_out == 40
    dead = {h["Modelport-Id"]: (d, h) for d, h in nts.messages(dead_stream)}
    assert sorted(dead, key=int) == bad_seqs
    for seq, (payload, reason, phrase) in zip(bad_seqs, bad):
        data, headers = dead[seq]
        assert data == payload
        assert headers["Modelport-Reason"] == reason
        assert phrase in headers["Modelport-Error"]
        assert headers["Nats-Msg-Id"] == f"{nts.stream}:{seq}:dead-letter"
    info = nts.consumer()
    assert info.num_ack_pending == 0 and info.num_pending == 0


def test_redis_max_deliveries(cat_model, rds):
    good = [orjson.dumps(r) for r in cat_model.records(2, 23)]
    ids = rds.produce(good)
    rds.r.xgroup_create(rds.src, "scorers", id="0")
    # a consumer received both and died; the first had already been delivered 5 times before
    rds.r.xreadgroup("scorers", "ghost", {rds.src: ">"}, count=2)
    rds.r.xclaim(rds.src, "scorers", "ghost", 0, [ids[0]], retrycount=5)
    config = StreamConfig(str(cat_model.path), source=rds.source(), sink=rds.sink(), max_deliveries=5,
                          redeliver_after=0.2)
    stats = _run(config, lambda: rds.r.xlen(rds.out) >= 1 and rds.r.xlen(rds.dead) >= 1)
    ((_, f),) = rds.entries(rds.dead)
    assert f[b"id"].decode() == ids[0] and f[b"reason"] == b"max_deliveries"
    assert f[b"deliveries"] == b"6" and b"--max-deliveries 5" in f[b"error"] and f[b"data"] == good[0]
    assert [o["id"] for o in rds.outputs()] == [ids[1]]  # its second delivery: still within the limit
    assert stats.redelivered == 2
    assert rds.pending() == 0
    assert rds.r.exists(f"modelport:fence:{rds.src}:scorers:ghost"), "the dead consumer was fenced"


def test_nats_max_deliveries(cat_model, nts):
    import asyncio

    from nats.js.api import AckPolicy, ConsumerConfig

    nts.create()
    good = [orjson.dumps(r) for r in cat_model.records(1, 24)]
    (seq,) = nts.produce(good)

    async def redeliver(nc, js):
        await js.add_consumer(nts.stream, ConsumerConfig(durable_name="scorers", filter_subject=nts.subject,
                                                         ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_deliver=-1))
        sub = await js.pull_subscribe_bind(durable="scorers", stream=nts.stream)
        for _ in range(4):  # four consumers received it and gave up (nak)
            (msg,) = await sub.fetch(1, timeout=5)
            await msg.nak()
            await asyncio.sleep(0.05)

    nts.run(redeliver)
    config = StreamConfig(str(cat_model.path), source=nts.source(), sink=nts.sink(), max_deliveries=4)
    dead_stream = f"{nts.stream}_DEAD_LETTER"
    _run(config, lambda: nts.count(dead_stream) >= 1)
    ((data, headers),) = nts.messages(dead_stream)
    assert headers["Modelport-Reason"] == "max_deliveries" and headers["Modelport-Deliveries"] == "5"
    assert data == good[0] and headers["Modelport-Id"] == seq
    assert nts.count(nts.out_stream) == 0
    assert nts.consumer().num_ack_pending == 0


def test_explicit_dead_letter_destination(reg_model, rds, tmp_path):
    rds.produce([b"{", orjson.dumps(reg_model.records(1, 4)[0])])
    path = tmp_path / "dead.jsonl"
    _run(StreamConfig(str(reg_model.path), source=rds.source(), sink=rds.sink(), dead_letter=str(path)),
         lambda: rds.r.xlen(rds.out) >= 1 and path.exists() and path.read_text().count("\n") >= 1)
    (line,) = path.read_text().splitlines()
    doc = orjson.loads(line)
    assert doc["reason"] == "malformed" and doc["payload"] == "{"
    assert not rds.r.exists(rds.dead)
