"""Crashes and stalls: real ``modelport stream`` processes in one consumer group, one of them killed
with SIGKILL in the middle of a batch (or frozen with SIGSTOP past the redelivery time); at the end
every input has exactly one output and nothing is pending.

Redis: the same-server path (outputs and XACK in one MULTI/EXEC; a dead consumer's entries are
taken over with XAUTOCLAIM after its fence). NATS: the Nats-Msg-Id path (a re-publish after a
crash is dropped by the output stream's duplicate window).
"""

from __future__ import annotations

import re
import signal
import socket
import time
import urllib.request

import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 100_000


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _in_flight(port: int) -> int:
    """Messages a consumer has read and not committed, from its /metrics."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}_total\{{[^}}]*\}} ([0-9.e+]+)$", body, re.M))

    return int(total("modelport_stream_messages_in") - total("modelport_stream_messages_out")
               - total("modelport_stream_dead_letters"))


def _payloads(model, n: int) -> list[bytes]:
    return [orjson.dumps(r) for r in model.records(n, 41)]


def _wait(cond, timeout: float, what: str, procs=()) -> None:
    deadline = time.time() + timeout
    while not cond():
        for p in procs:
            assert p.proc.poll() is None, f"a consumer exited with {p.proc.returncode}:\n{p.output()[-3000:]}"
        assert time.time() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


# ----------------------------------------------------------------------------- Redis
def _redis_consumer(consumers, model, rds, name: str, *extra: str):
    return consumers(str(model.path), "--source", rds.source(), "--sink", rds.sink(), "--name", name,
                     "--redeliver-after", "2", "--log-level", "warning", "--log-format", "text", *extra)


def _victim_pending(rds, prefix: str) -> int:
    for c in rds.r.xinfo_consumers(rds.src, "scorers"):
        if c["name"].decode().startswith(prefix + "-"):
            return int(c["pending"])
    return 0


def _assert_exactly_once_redis(rds, ids, group="scorers") -> None:
    outs = rds.outputs()
    seen: dict[str, int] = {}
    for o in outs:
        seen[o["id"]] = seen.get(o["id"], 0) + 1
    dupes = {k: v for k, v in seen.items() if v > 1}
    assert not dupes, f"{len(dupes)} input(s) have more than one output, e.g. {list(dupes.items())[:5]}"
    assert set(seen) == set(ids), f"{len(set(ids) - set(seen))} input(s) have no output"
    info = rds.r.xinfo_groups(rds.src)[0]
    assert int(info["pending"]) == 0 and int(info["lag"]) == 0, info
    assert not rds.r.exists(rds.dead)


def test_redis_kill_9_mid_batch(reg_model, rds, consumers):
    ids = rds.produce(_payloads(reg_model, N))
    rds.r.xgroup_create(rds.src, "scorers", id="0")
    victim = _redis_consumer(consumers, reg_model, rds, "victim")
    others = [_redis_consumer(consumers, reg_model, rds, f"c{i}") for i in (1, 2)]
    _wait(lambda: rds.r.xlen(rds.out) >= 15_000, 90, "15,000 outputs", [victim, *others])
    # SIGKILL while the victim holds messages it read and has not committed: mid-batch
    _wait(lambda: _victim_pending(rds, "victim") > 0, 30, "the victim to hold a batch", [victim])
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    held = _victim_pending(rds, "victim")
    assert held > 0, "the victim died holding messages"
    others.append(_redis_consumer(consumers, reg_model, rds, "c3"))  # and a new one starts
    _wait(lambda: rds.r.xlen(rds.out) >= N and rds.pending() == 0, 150, "every output", others)
    for c in others:
        assert c.stop() == 0, c.output()[-3000:]
    _assert_exactly_once_redis(rds, ids)
    logs = "".join(c.output() for c in others)
    assert "took over" in logs and "victim-" in logs, "the survivors took the victim's messages over"


def test_redis_frozen_consumer_is_fenced(reg_model, rds, consumers):
    n = 30_000
    ids = rds.produce(_payloads(reg_model, n))
    rds.r.xgroup_create(rds.src, "scorers", id="0")
    frozen = _redis_consumer(consumers, reg_model, rds, "frozen", "--batch-size", "200")
    other = _redis_consumer(consumers, reg_model, rds, "c1", "--batch-size", "200")
    _wait(lambda: rds.r.xlen(rds.out) >= 3000, 90, "3,000 outputs", [frozen, other])
    _wait(lambda: _victim_pending(rds, "frozen") > 0, 30, "the frozen one to hold a batch", [frozen])
    frozen.proc.send_signal(signal.SIGSTOP)  # alive but silent for longer than --redeliver-after
    try:
        _wait(lambda: _victim_pending(rds, "frozen") == 0, 60, "its messages to be taken over", [other])
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    _wait(lambda: rds.r.xlen(rds.out) >= n and rds.pending() == 0, 120, "every output", [frozen, other])
    assert frozen.stop() == 0 and other.stop() == 0
    _assert_exactly_once_redis(rds, ids)
    assert "another consumer took over the messages of frozen-" in frozen.output(), frozen.output()[-3000:]


# ----------------------------------------------------------------------------- NATS
def _nats_consumer(consumers, model, nts, name: str, *extra: str):
    return consumers(str(model.path), "--source", nts.source(), "--sink", nts.sink(), "--name", name,
                     "--redeliver-after", "2", "--log-level", "warning", "--log-format", "text", *extra)


def _assert_exactly_once_nats(nts, seqs) -> None:
    msgs = nts.messages(nts.out_stream)
    ids = [orjson.loads(d)["id"] for d, _ in msgs]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicate output(s)"
    assert set(ids) == set(seqs), f"{len(set(seqs) - set(ids))} input(s) have no output"
    info = nts.consumer()
    assert info.num_ack_pending == 0 and info.num_pending == 0, info
    assert nts.count(f"{nts.stream}_DEAD_LETTER") == 0


def test_nats_kill_9_mid_batch(reg_model, nts, consumers):
    nts.create()
    seqs = nts.produce(_payloads(reg_model, N))
    port = _port()
    victim = _nats_consumer(consumers, reg_model, nts, "victim", "--metrics-port", str(port))
    _wait(lambda: nts.count(nts.out_stream) > 0, 60, "the first consumer to start", [victim])
    others = [_nats_consumer(consumers, reg_model, nts, f"c{i}") for i in (1, 2)]
    _wait(lambda: nts.count(nts.out_stream) >= 15_000, 90, "15,000 outputs", [victim, *others])
    _wait(lambda: _in_flight(port) > 0, 30, "the victim to hold a batch", [victim])
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    others.append(_nats_consumer(consumers, reg_model, nts, "c3"))
    done = lambda: nts.count(nts.out_stream) >= N and nts.consumer().num_ack_pending == 0  # noqa: E731
    _wait(done, 150, "every output", others)
    for c in others:
        assert c.stop() == 0, c.output()[-3000:]
    _assert_exactly_once_nats(nts, seqs)


def test_nats_frozen_consumer_republishes_are_dropped(reg_model, nts, consumers):
    n = 30_000
    nts.create()
    seqs = nts.produce(_payloads(reg_model, n))
    port = _port()
    frozen = _nats_consumer(consumers, reg_model, nts, "frozen", "--metrics-port", str(port), "--batch-size", "200")
    _wait(lambda: nts.count(nts.out_stream) > 0, 60, "the first consumer to start", [frozen])
    other = _nats_consumer(consumers, reg_model, nts, "c1", "--batch-size", "200")
    _wait(lambda: nts.count(nts.out_stream) >= 3000, 90, "3,000 outputs", [frozen, other])
    _wait(lambda: _in_flight(port) > 0, 30, "the frozen one to hold a batch", [frozen])
    frozen.proc.send_signal(signal.SIGSTOP)
    time.sleep(4)  # past ack_wait (2 s): its messages are delivered to the other consumer
    frozen.proc.send_signal(signal.SIGCONT)  # it publishes them again: same Nats-Msg-Id, dropped
    done = lambda: nts.count(nts.out_stream) >= n and nts.consumer().num_ack_pending == 0  # noqa: E731
    _wait(done, 120, "every output", [frozen, other])
    assert frozen.stop() == 0 and other.stop() == 0
    _assert_exactly_once_nats(nts, seqs)
