"""The Redis adapter on the real server: taking over a dead consumer's entries safely."""

from __future__ import annotations

import time

import orjson
import pytest

from modelport.errors import InputError
from modelport.stream.base import Fenced, OutMessage, PartlyCommitted, SourceOptions, open_sink, open_source

pytestmark = pytest.mark.integration


def _outs(msgs):
    return [OutMessage(f"k:{m.id}", orjson.dumps({"id": m.id})) for m in msgs]


def test_a_consumer_presumed_dead_cannot_commit_what_another_took_over(rds):
    ids = rds.produce([b"{}"] * 3)
    a = open_source(rds.source(), SourceOptions("a", redeliver_after=0.05))
    b = open_source(rds.source(), SourceOptions("b", redeliver_after=0.05))
    sink = open_sink(rds.sink())
    read = a.read(10, 0.5)
    assert [m.id for m in read] == ids
    time.sleep(0.1)  # a is silent for longer than redeliver_after
    claimed = b.reclaim(10)
    assert [m.id for m in claimed] == ids and {m.deliveries for m in claimed} == {2}
    with pytest.raises(Fenced):  # a comes back: its commit is refused, nothing of it is written
        a.commit(read, [(sink, _outs(read))])
    assert rds.r.xlen(rds.out) == 0 and rds.pending() == 3
    mine = b.confirm(claimed)
    b.commit(mine, [(sink, _outs(mine))])
    assert rds.r.xlen(rds.out) == 3 and rds.pending() == 0
    # a goes on under a new name; what it read before is stale
    a.rename("a2")
    assert a.stale(read)
    more = rds.produce([b"{}"])
    fresh = a.read(10, 0.5)
    assert [m.id for m in fresh] == more and not a.stale(fresh)
    a.commit(fresh, [(sink, _outs(fresh))])
    assert rds.r.xlen(rds.out) == 4


def test_confirm_drops_what_the_previous_owner_committed_meanwhile(rds):
    rds.produce([b"{}"] * 2)
    a = open_source(rds.source(), SourceOptions("a", redeliver_after=0.05))
    b = open_source(rds.source(), SourceOptions("b", redeliver_after=0.05))
    read = a.read(10, 0.5)
    time.sleep(0.1)
    claimed = b.reclaim(10)
    rds.r.xack(rds.src, "scorers", read[0].id)  # a's commit landed between b's claim and its fence
    assert [m.id for m in b.confirm(claimed)] == [read[1].id]


def test_a_consumer_does_not_take_over_live_work(rds):
    rds.produce([b"{}"] * 2)
    a = open_source(rds.source(), SourceOptions("a", redeliver_after=30))
    b = open_source(rds.source(), SourceOptions("b", redeliver_after=30))
    read = a.read(10, 0.5)
    assert b.reclaim(10) == []
    a.commit(read, [(open_sink(rds.sink()), _outs(read))])
    assert rds.pending() == 0


def test_a_sink_key_of_another_type_is_refused_at_start(rds):
    rds.r.set(rds.out, "not a stream")
    with pytest.raises(InputError, match="holds a string, not a stream"):
        open_sink(rds.sink())


def test_an_output_that_fails_inside_exec_is_reported(rds):
    """EXEC runs the XACK even when an XADD fails (Redis does not roll back): the adapter says which."""
    rds.produce([b"{}"] * 2)
    a = open_source(rds.source(), SourceOptions("a"))
    sink, other = open_sink(rds.sink()), open_sink(rds.sink(f"{rds.tag}:other"))
    read = a.read(10, 0.5)
    rds.r.set(rds.out, "not a stream any more")  # changed while running
    with pytest.raises(PartlyCommitted) as info:
        a.commit(read, [(sink, _outs(read[:1])), (other, _outs(read[1:]))])
    ((failed_sink, out, error),) = info.value.failed
    assert failed_sink is sink and out.key == f"k:{read[0].id}" and "WRONGTYPE" in error
    assert rds.r.xlen(f"{rds.tag}:other") == 1 and rds.pending() == 0


def test_the_consumer_dead_letters_inputs_whose_output_failed(reg_model, rds):
    from modelport.stream import StreamConfig, StreamConsumer

    consumer = StreamConsumer(StreamConfig(str(reg_model.path), source=rds.source(), sink=rds.sink())).start()
    try:
        rds.r.set(rds.out, "not a stream any more")
        (mid,) = rds.produce([orjson.dumps(reg_model.records(1, 5)[0])])
        rds.wait_len(rds.dead, 1)
    finally:
        stats = consumer.stop()
    ((_, f),) = rds.entries(rds.dead)
    assert f[b"id"].decode() == mid and f[b"reason"] == b"error" and b"WRONGTYPE" in f[b"error"]
    assert stats.dead_letters == {"error": 1} and stats.messages_out == 0


def test_clean_close_leaves_the_group(rds):
    rds.produce([b"{}"])
    a = open_source(rds.source(), SourceOptions("a"))
    a.ack(a.read(10, 0.5))
    a.close()
    assert rds.r.xinfo_groups(rds.src)[0]["consumers"] == 0
