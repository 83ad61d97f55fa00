"""The outputs of a stream are bundle.predict's answers on the same records, through every broker,
for single-record messages, JSON batches and Arrow tables."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelport.stream import StreamConfig, StreamConsumer

pytestmark = pytest.mark.integration




def _check(model, records, outputs):
    """Each output against bundle.predict of the whole list, by position. The tolerance is float32's:
    ONNX Runtime adds up trees in another order with another thread count (the stream's session
    runs one thread, bundle.predict's one per core)."""
    want = model.bundle.predict(records)
    assert len(outputs) == len(records)
    if model.bundle.classes is not None:
        assert [o["label"] for o in outputs] == want["label"].tolist()
        names = [str(c) for c in model.bundle.classes]
        got = np.array([[o["probabilities"][c] for c in names] for o in outputs])
        np.testing.assert_allclose(got, want["probabilities"], rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose([o["prediction"] for o in outputs], want["prediction"], rtol=1e-6, atol=1e-6)


def _consume(config, until, timeout=60):
    import time

    consumer = StreamConsumer(config).start()
    try:
        deadline = time.time() + timeout
        while not until():
            assert time.time() < deadline, f"timed out; stats {consumer.stats}"
            time.sleep(0.05)
    finally:
        stats = consumer.stop()
    return stats


@pytest.mark.parametrize("which", ["cat_model", "reg_model"])
def test_redis_outputs_equal_predict(which, request, rds):
    model = request.getfixturevalue(which)
    records = model.records(700, 11)
    # single records, each with an entity key the model does not read (passed through, --keep rest)
    singles = [{**r, "customer": i} for i, r in enumerate(records[:500])]
    ids = rds.produce([orjson.dumps(r) for r in singles])
    # the rest as JSON batches of 50: the records endpoint's shape and a bare list
    batches = [records[500 + i:550 + i] for i in range(0, 200, 50)]
    batch_ids = rds.produce([orjson.dumps({"records": b}) if k % 2 else orjson.dumps(b) for k, b in enumerate(batches)])
    config = StreamConfig(str(model.path), source=rds.source(), sink=rds.sink(), batch_size=128)
    stats = _consume(config, lambda: rds.r.xlen(rds.out) >= len(ids) + len(batch_ids))
    assert stats.messages_out == len(ids) + len(batch_ids) and not stats.dead_letters, stats
    outs = {o["id"]: o for o in rds.outputs()}
    assert set(outs) == set(ids) | set(batch_ids)
    single_outs = [outs[i] for i in ids]
    _check(model, records[:500], single_outs)
    assert [o["customer"] for o in single_outs] == list(range(500))
    b = model.bundle
    for o in single_outs:
        assert (o["model_name"], o["model_version"], o["model_digest"]) == (b.name, b.version, b.digest)
        assert o["timestamp"].endswith("Z")
    batch_preds = [p for i in batch_ids for p in outs[i]["predictions"]]
    _check(model, records[500:], batch_preds)
    assert rds.pending() == 0


@pytest.mark.parametrize("which", ["cat_model", "reg_model"])
def test_nats_outputs_equal_predict(which, request, nts):
    model = request.getfixturevalue(which)
    records = model.records(400, 12)
    nts.create()
    seqs = nts.produce([orjson.dumps(r) for r in records])
    config = StreamConfig(str(model.path), source=nts.source(), sink=nts.sink(), batch_size=100)
    stats = _consume(config, lambda: nts.count(nts.out_stream) >= len(seqs))
    assert stats.messages_out == len(seqs) and not stats.dead_letters, stats
    msgs = nts.messages(nts.out_stream)
    outs = {orjson.loads(d)["id"]: orjson.loads(d) for d, _ in msgs}
    assert sorted(outs, key=int) == seqs
    _check(model, records, [outs[s] for s in seqs])
    # every output's message id is derived from the input's: a re-publish is a duplicate
    assert sorted(h["Nats-Msg-Id"] for _, h in msgs) == sorted(f"{nts.stream}:{s}" for s in seqs)
    info = nts.consumer()
    assert info.num_ack_pending == 0 and info.num_pending == 0


def test_arrow_table_message(cat_model, rds):
    import pyarrow as pa
    import pyarrow.ipc as ipc

    records = cat_model.records(300, 13)
    table = pa.Table.from_pylist([{**r, "customer": i} for i, r in enumerate(records)])
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (mid,) = rds.produce([sink.getvalue().to_pybytes()])
    stats = _consume(StreamConfig(str(cat_model.path), source=rds.source(), sink=rds.sink()),
                     lambda: rds.r.xlen(rds.out) >= 1)
    assert stats.messages_out == 1, stats
    ((_, fields),) = rds.entries(rds.out)
    assert fields[b"content_type"] == b"application/vnd.apache.arrow.stream"
    out = ipc.open_stream(pa.py_buffer(fields[b"data"])).read_all()
    meta = {k.decode(): v.decode() for k, v in out.schema.metadata.items()}
    assert meta["id"] == mid and meta["model_digest"] == cat_model.bundle.digest
    assert out.column("customer").to_pylist() == list(range(300))
    want = cat_model.bundle.predict(records)
    assert out.column("label").to_pylist() == want["label"].tolist()
    for j, c in enumerate(cat_model.bundle.classes):
        np.testing.assert_allclose(out.column(f"proba_{c}").to_numpy(), want["probabilities"][:, j], rtol=1e-6, atol=1e-6)


def test_keep_names_and_prefix(reg_model, rds):
    records = reg_model.records(20, 14)
    ids = rds.produce([orjson.dumps({**r, "customer": i, "noise": "x"}) for i, r in enumerate(records)])
    config = StreamConfig(str(reg_model.path), source=rds.source(), sink=rds.sink(), keep=["customer"], prefix="pred_")
    _consume(config, lambda: rds.r.xlen(rds.out) >= len(ids))
    outs = rds.outputs()
    assert set(outs[0]) == {"id", "customer", "pred_prediction", "model_name", "model_version", "model_digest",
                            "timestamp"}
    np.testing.assert_allclose([o["pred_prediction"] for o in outs], reg_model.bundle.predict(records)["prediction"],
                               rtol=1e-6)
