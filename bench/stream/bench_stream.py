"""modelport stream vs a bare hand-written consumer loop, and end-to-end latency (issue 11 targets).

    python bench/stream/bench_stream.py --messages 200000 --repeat 3
    python bench/stream/bench_stream.py --parts redis,nats,latency-redis,latency-nats

Needs the test servers: ``eval "$(bash scripts/services.sh start)"`` (MODELPORT_TEST_REDIS_URL,
MODELPORT_TEST_NATS_URL). Every part uses its own, freshly named streams and deletes them after.

1. Throughput, Redis source and sink, one consumer, 200,000 single-record JSON messages (a
   50-tree depth-8 random forest on 20 float features): ``StreamConsumer`` (the code behind
   ``modelport stream``, here in this process) vs a bare loop written with redis-py for this one
   model: XREADGROUP COUNT 500 -> orjson -> one ``session.run`` -> pipelined XADD -> XACK. Both
   read the same stream (two consumer groups), write the same output fields, and are timed from
   before they connect until the last output is written. Target: ratio >= 0.9.
2. The same for NATS JetStream: a durable pull consumer, fetch(500) -> ``session.run`` ->
   publish_async with Nats-Msg-Id -> wait for the PubAcks -> ack.
3. Latency: a producer sends one message per millisecond (1,000 msg/s, steady) for
   ``--latency-seconds``; ``modelport stream`` runs as its own process; a reader waits on the
   output stream. Reported: p50 / p99 / max from the message's broker timestamp (Redis entry id,
   JetStream timestamp) to the output being readable. Target: p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson

FEATURES = [f"f{i}" for i in range(20)]
BATCH = 500


def make_bundle(workdir: Path) -> Path:
    from sklearn.ensemble import RandomForestClassifier

    import modelport as mp

    path = workdir / "bench-stream.mpk"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, len(FEATURES)))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    model = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0).fit(X, y)
    mp.pack(model, X[:500], name="bench-stream").save(path)
    return path


def payloads(n: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, len(FEATURES))).round(6)
    return [orjson.dumps(dict(zip(FEATURES, row))) for row in X.tolist()]


def ratio_line(what: str, ours: list[float], bare: list[float]) -> None:
    ratios = [o / b for o, b in zip(ours, bare)]
    print(f"{what}: modelport {max(ours):,.0f} msg/s (runs {', '.join(f'{x:,.0f}' for x in ours)}), "
          f"bare loop {max(bare):,.0f} msg/s (runs {', '.join(f'{x:,.0f}' for x in bare)})")
    print(f"{what}: ratio per run {', '.join(f'{r:.2f}' for r in ratios)}; best {max(ratios):.2f}, "
          f"median {statistics.median(ratios):.2f}, spread {max(ratios) - min(ratios):.2f} (target >= 0.9)")


# ----------------------------------------------------------------------------- Redis
def redis_bare(url: str, bundle: Path, stream: str, out: str) -> None:
    """The hand-written loop, what a developer writes for this one model without modelport; runs
    as its own process (``bench_stream.py --bare-redis URL BUNDLE STREAM OUT``) until SIGTERM."""
    import onnxruntime as ort
    import redis

    import modelport as mp

    b = mp.load(bundle)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(b.model_bytes, opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    classes = [str(c) for c in b.classes]
    digest = b.digest
    r = redis.Redis.from_url(url)
    group = "bare"
    while True:
        resp = r.xreadgroup(group, "bare-1", {stream: ">"}, count=BATCH, block=1000)
        if not resp:
            continue
        entries = resp[0][1]
        X = np.array([[rec[f] for f in FEATURES] for rec in (orjson.loads(f[b"data"]) for _, f in entries)],
                     dtype=np.float32)
        label, proba = sess.run(out_names, {"X": X})
        labels, probs = label.tolist(), proba.tolist()
        # the same output fields as modelport's: id, prediction, model name / version / digest, timestamp
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with r.pipeline(transaction=False) as p:
            for (eid, _), lab, pr in zip(entries, labels, probs):
                doc = {"id": eid.decode(), "label": lab, "probabilities": dict(zip(classes, pr)),
                       "model_name": b.name, "model_version": "1", "model_digest": digest, "timestamp": stamp}
                p.xadd(out, {"data": orjson.dumps(doc)})
            p.xack(stream, group, *[eid for eid, _ in entries])
            p.execute()


# one script call appends a whole chunk: its entries appear at once, when the call returns
_APPEND = "for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', 'data', ARGV[i]) end return #ARGV"


def _chunk_seconds(r, stream: str, out: str, chunk: list[bytes]) -> float:
    """Append ``chunk`` to ``stream`` in one step; seconds until its last output is in ``out``."""
    target = r.xlen(out) + len(chunk)
    r.eval(_APPEND, 1, stream, *chunk)
    t0 = time.perf_counter()
    while r.xlen(out) < target:
        time.sleep(0.001)
    return time.perf_counter() - t0


def part_redis(url: str, bundle: Path, n: int, repeat: int, chunks: int) -> None:
    """Both consumers run as their own long-lived processes (``modelport stream`` as a user runs it,
    the bare loop as a script); the same messages reach them in alternating chunks of n / chunks,
    so both see the same machine load over the run, start-up excluded for both."""
    import redis

    r = redis.Redis.from_url(url)
    size = n // chunks
    data = payloads(size)
    ours, bare = [], []
    for _ in range(repeat):
        tag = uuid.uuid4().hex[:8]
        streams = {side: (f"bench-{tag}-{side}", f"bench-{tag}-{side}:out") for side in ("bare", "modelport")}
        r.xgroup_create(streams["bare"][0], "bare", id="0", mkstream=True)
        r.xgroup_create(streams["modelport"][0], "modelport", id="0", mkstream=True)
        procs = {
            "bare": subprocess.Popen([sys.executable, __file__, "--bare-redis", url, str(bundle), *streams["bare"]]),
            "modelport": subprocess.Popen([
                str(Path(sys.executable).with_name("modelport")), "stream", str(bundle),
                "--source", f"{url}?stream={streams['modelport'][0]}&group=modelport",
                "--sink", f"{url}?stream={streams['modelport'][1]}", "--batch-size", str(BATCH),
                "--log-level", "warning"]),
        }
        try:
            for side, (src, out) in streams.items():  # both up and warm: one message each
                r.xadd(src, {"data": data[0]})
                deadline = time.time() + 60
                while r.xlen(out) < 1:
                    assert procs[side].poll() is None and time.time() < deadline, f"the {side} consumer did not start"
                    time.sleep(0.05)
            seconds = {"bare": 0.0, "modelport": 0.0}
            for i in range(chunks):
                order = ("bare", "modelport") if i % 2 == 0 else ("modelport", "bare")
                for side in order:
                    seconds[side] += _chunk_seconds(r, *streams[side], data)
            for side, (src, _) in streams.items():
                assert int(r.xpending(src, side)["pending"]) == 0
            bare.append(size * chunks / seconds["bare"])
            ours.append(size * chunks / seconds["modelport"])
        finally:
            for p in procs.values():
                p.terminate()
                p.wait(60)
            for src, out in streams.values():
                r.delete(src, out, f"{src}:dead-letter")
    ratio_line(f"redis, {size * chunks:,} messages in {chunks} alternating chunks", ours, bare)


# ----------------------------------------------------------------------------- NATS
async def nats_produce(url: str, stream: str, subject: str, data: list[bytes]) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[subject])
    futures = []
    for d in data:
        futures.append(await js.publish_async(subject, d))
        if len(futures) >= 2000:
            await asyncio.gather(*futures)
            futures = []
    await asyncio.gather(*futures)
    await nc.close()


async def _nats_bare(url: str, bundle: Path, stream: str, subject: str, n: int) -> float:
    import nats
    import onnxruntime as ort
    from nats.js.api import AckPolicy, ConsumerConfig

    import modelport as mp

    t0 = time.perf_counter()
    b = mp.load(bundle)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(b.model_bytes, opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    classes = [str(c) for c in b.classes]
    digest = b.digest
    nc = await nats.connect(url)
    js = nc.jetstream()
    out_subject = f"{subject}-out-bare"
    await js.add_stream(name=f"{stream}_OUT_BARE", subjects=[out_subject])
    await js.add_consumer(stream, ConsumerConfig(durable_name="bare", ack_policy=AckPolicy.EXPLICIT,
                                                 max_ack_pending=-1))
    sub = await js.pull_subscribe_bind(durable="bare", stream=stream)
    done = 0
    while done < n:
        try:
            msgs = await sub.fetch(BATCH, timeout=1)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            continue
        X = np.array([[rec[f] for f in FEATURES] for rec in (orjson.loads(m.data) for m in msgs)], dtype=np.float32)
        label, proba = sess.run(out_names, {"X": X})
        futures = []
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for m, lab, pr in zip(msgs, label.tolist(), proba.tolist()):
            seq = str(m.metadata.sequence.stream)
            doc = {"id": seq, "label": lab, "probabilities": dict(zip(classes, pr)),
                   "model_name": b.name, "model_version": "1", "model_digest": digest, "timestamp": stamp}
            futures.append(await js.publish_async(out_subject, orjson.dumps(doc),
                                                  headers={"Nats-Msg-Id": f"{stream}:{seq}"}))
        await asyncio.gather(*futures)
        for m in msgs:
            await m.ack()
        done += len(msgs)
    elapsed = time.perf_counter() - t0
    info = await js.stream_info(f"{stream}_OUT_BARE")
    assert info.state.messages == n, info.state
    await js.delete_stream(f"{stream}_OUT_BARE")
    await nc.close()
    return n / elapsed


def nats_modelport(url: str, bundle: Path, stream: str, subject: str, n: int) -> float:
    from modelport.stream import StreamConfig, StreamConsumer

    out_subject = f"{subject}-out-modelport"
    config = StreamConfig(str(bundle), source=f"{url}?stream={stream}&subject={subject}&durable=modelport",
                          sink=f"{url}?subject={out_subject}&stream={stream}_OUT_MP", batch_size=BATCH,
                          report_lag=False)
    t0 = time.perf_counter()
    consumer = StreamConsumer(config).start()
    while consumer.stats.messages_out < n:
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    stats = consumer.stop()
    assert stats.messages_out == n and not stats.dead, stats

    async def check() -> None:
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        info = await js.stream_info(f"{stream}_OUT_MP")
        assert info.state.messages == n, info.state
        cinfo = await js.consumer_info(stream, "modelport")
        assert cinfo.num_ack_pending == 0 and cinfo.num_pending == 0, cinfo
        await js.delete_stream(f"{stream}_OUT_MP")
        await nc.close()

    asyncio.run(check())
    return n / elapsed


def part_nats(url: str, bundle: Path, n: int, repeat: int) -> None:
    ours, bare = [], []
    for _ in range(repeat):
        tag = uuid.uuid4().hex[:8]
        stream, subject = f"BENCH_{tag.upper()}", f"bench.{tag}"
        asyncio.run(nats_produce(url, stream, subject, payloads(n)))
        try:
            if len(ours) % 2 == 0:
                bare.append(asyncio.run(_nats_bare(url, bundle, stream, subject, n)))
                ours.append(nats_modelport(url, bundle, stream, subject, n))
            else:
                ours.append(nats_modelport(url, bundle, stream, subject, n))
                bare.append(asyncio.run(_nats_bare(url, bundle, stream, subject, n)))
        finally:
            asyncio.run(_delete_stream(url, stream))
    ratio_line(f"nats, {n:,} messages", ours, bare)


async def _delete_stream(url: str, stream: str) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    for name in (stream, f"{stream}_DEAD_LETTER"):
        try:
            await js.delete_stream(name)
        except Exception:
            pass
    await nc.close()


# ----------------------------------------------------------------------------- latency
def _consumer_process(bundle: Path, source: str, sink: str) -> subprocess.Popen[bytes]:
    cmd = [str(Path(sys.executable).with_name("modelport")), "stream", str(bundle), "--source", source,
           "--sink", sink, "--log-level", "warning"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _percentiles(lat_ms: list[float]) -> str:
    a = np.asarray(lat_ms)
    return (f"p50 {np.percentile(a, 50):.2f} ms, p99 {np.percentile(a, 99):.2f} ms, max {a.max():.2f} ms "
            f"over {a.size:,} messages")


def _pace(send, seconds: float, rate: int) -> int:
    """Call ``send(i)`` ``rate`` times a second, on a fixed schedule (no catching up in bursts)."""
    n = int(seconds * rate)
    start = time.perf_counter() + 0.05
    for i in range(n):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(i)
    return n


def part_latency_redis(url: str, bundle: Path, seconds: float, rate: int) -> list[float]:
    import redis

    r = redis.Redis.from_url(url)
    tag = uuid.uuid4().hex[:8]
    stream, out = f"bench-lat-{tag}", f"bench-lat-{tag}:out"
    r.xgroup_create(stream, "lat", id="$", mkstream=True)
    proc = _consumer_process(bundle, f"{url}?stream={stream}&group=lat", f"{url}?stream={out}")
    data = payloads(2000)
    lat: list[float] = []
    try:
        # wait until the consumer is up (it answers a first message)
        r.xadd(stream, {"data": data[0]})
        _wait_len(lambda: r.xlen(out), 1, proc)
        n_expected = 0
        stop = threading.Event()

        def reader() -> None:
            rr = redis.Redis.from_url(url)
            last = r.xinfo_stream(out)["last-generated-id"].decode()
            while not stop.is_set() or len(lat) < n_expected:
                resp = rr.xread({out: last}, count=1000, block=200)
                now_ms = time.time() * 1000
                for _, entries in resp or []:
                    for eid, fields in entries:
                        last = eid.decode()
                        doc = orjson.loads(fields[b"data"])
                        lat.append(now_ms - int(doc["id"].split("-")[0]))
                if stop.is_set() and not resp:
                    break

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        time.sleep(0.2)
        n_expected = _pace(lambda i: r.xadd(stream, {"data": data[i % len(data)]}), seconds, rate)
        deadline = time.time() + 10
        while len(lat) < n_expected and time.time() < deadline:
            time.sleep(0.05)
        stop.set()
        t.join(5)
    finally:
        proc.terminate()
        proc.wait(30)
        r.delete(stream, out, f"{stream}:dead-letter")
    print(f"latency, redis, {rate:,} msg/s for {seconds:g} s: {_percentiles(lat)} (target p99 <= 20 ms)")
    return lat


def part_latency_nats(url: str, bundle: Path, seconds: float, rate: int) -> list[float]:
    import nats

    tag = uuid.uuid4().hex[:8]
    stream, subject, out = f"LAT_{tag.upper()}", f"lat.{tag}", f"lat-out.{tag}"
    lat: list[float] = []
    data = payloads(2000)

    async def main() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        await js.add_stream(name=f"{stream}_OUT", subjects=[out])
        proc = _consumer_process(bundle, f"{url}?stream={stream}&subject={subject}&durable=lat", f"{url}?subject={out}")
        seen = 0
        arrived: dict[int, float] = {}

        async def on_msg(msg) -> None:
            nonlocal seen
            arrived[int(orjson.loads(msg.data)["id"])] = time.time()
            seen += 1

        sent_at: dict[int, float] = {}
        await nc.subscribe(out, cb=on_msg)  # core subscription: sees each output as JetStream stores it
        try:
            ack = await js.publish(subject, data[0])
            sent_at[ack.seq] = time.time()
            t0 = time.time()
            while seen < 1:
                if proc.poll() is not None or time.time() - t0 > 60:
                    raise RuntimeError(f"the consumer did not start: {proc.stderr.read().decode()[-2000:]}")
                await asyncio.sleep(0.05)
            sent_at.clear()
            n = int(seconds * rate)
            start = time.perf_counter() + 0.05
            pending = []
            for i in range(n):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                ts = time.time()
                fut = await js.publish_async(subject, data[i % len(data)])
                pending.append((fut, ts))
                if len(pending) >= 200:
                    for f, s in pending:
                        sent_at[(await f).seq] = s
                    pending = []
            for f, s in pending:
                sent_at[(await f).seq] = s
            deadline = time.time() + 10
            while any(seq not in arrived for seq in sent_at) and time.time() < deadline:
                await asyncio.sleep(0.05)
            lat.extend((arrived[seq] - sent) * 1000 for seq, sent in sent_at.items() if seq in arrived)
        finally:
            proc.terminate()
            proc.wait(30)
            for name in (stream, f"{stream}_OUT", f"{stream}_DEAD_LETTER"):
                try:
                    await js.delete_stream(name)
                except Exception:
                    pass
            await nc.close()

    asyncio.run(main())
    # a publisher's own clock at publish time: JetStream's timestamp is set when it stores the message, microseconds later
    print(f"latency, nats, {rate:,} msg/s for {seconds:g} s: {_percentiles(lat)} (target p99 <= 20 ms)")
    return lat


def _wait_len(fn, n: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    t0 = time.time()
    while fn() < n:
        if proc.poll() is not None or time.time() - t0 > timeout:
            raise RuntimeError(f"the consumer did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parts", default="redis,nats,latency-redis,latency-nats")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--chunks", type=int, default=10, help="alternating chunks of the Redis throughput part")
    ap.add_argument("--bare-redis", nargs=4, metavar=("URL", "BUNDLE", "STREAM", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_redis:
        url, bundle_path, stream, out = args.bare_redis
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        redis_bare(url, Path(bundle_path), stream, out)
        return
    redis_url = os.environ.get("MODELPORT_TEST_REDIS_URL")
    nats_url = os.environ.get("MODELPORT_TEST_NATS_URL")
    if not redis_url or not nats_url:
        sys.exit('start the servers first: eval "$(bash scripts/services.sh start)"')
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-stream-"))
    bundle = make_bundle(workdir)
    print(f"model: {bundle} (50 trees, depth 8, 20 features); load average {os.getloadavg()[0]:.2f}")
    parts = args.parts.split(",")
    if "redis" in parts:
        part_redis(redis_url, bundle, args.messages, args.repeat, args.chunks)
    if "nats" in parts:
        part_nats(nats_url, bundle, args.messages, args.repeat)
    if "latency-redis" in parts:
        part_latency_redis(redis_url, bundle, args.latency_seconds, args.rate)
    if "latency-nats" in parts:
        part_latency_nats(nats_url, bundle, args.latency_seconds, args.rate)


if __name__ == "__main__":
    main()
