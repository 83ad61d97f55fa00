"""Fixtures for streaming: real models packed into bundles, the real Redis and NATS servers
(scripts/services.sh), unique stream / subject names per test, and ``modelport stream`` run as the
installed console script."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sysconfig
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

pd = pytest.importorskip("pandas")

BIN = Path(sysconfig.get_path("scripts"))


def modelport_script() -> str:
    script = BIN / "modelport"
    assert script.exists(), f"the console script {script} is not installed; run `pip install -e .`"
    return str(script)


# ----------------------------------------------------------------------------- models
@dataclass
class Model:
    bundle: Any
    path: Path
    records: Callable[[int, int], list[dict[str, Any]]]


def _cat_records(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append({
            "amount": round(float(rng.normal()), 6),
            "city": None if rng.random() < 0.1 else str(rng.choice(["berlin", "paris", "rome", "oslo", "lima"])),
            "visits": None if rng.random() < 0.1 else round(float(rng.normal()), 6),
            "tier": int(rng.choice([1, 2, 3])),
        })
    return out


@pytest.fixture(scope="session")
def cat_model(tmp_path_factory) -> Model:
    """A LightGBM classifier with pandas categorical columns (string and integer categories) and missing values."""
    import lightgbm as lgb

    import modelport as mp

    rng = np.random.default_rng(4)
    n = 600
    df = pd.DataFrame({
        "amount": rng.normal(size=n),
        "city": pd.Categorical(rng.choice(["berlin", "paris", "rome", "oslo", "lima"], n)),
        "visits": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        "tier": pd.Categorical(rng.choice([3, 1, 2], n)),
    })
    df.loc[df.index[:30], "city"] = np.nan
    y = np.where((df["amount"] + (df["city"] == "paris") - (df["city"] == "rome") + (df["tier"] == 2)) > 0.3,
                 "churn", "stay")
    model = lgb.LGBMClassifier(n_estimators=25, num_leaves=15, min_data_per_group=5, cat_smooth=1,
                               min_child_samples=5, verbose=-1, n_jobs=1).fit(df, y)
    bundle = mp.pack(model, df, name="churn", version="1")
    assert bundle.signature.column("city").dtype == "category"
    path = tmp_path_factory.mktemp("stream-bundles") / "churn.mpk"
    bundle.save(path)
    return Model(bundle, path, _cat_records)


def _reg_records(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [{f"x{j}": round(float(v), 6) for j, v in enumerate(row)} for row in rng.normal(size=(n, 5))]


@pytest.fixture(scope="session")
def reg_model(tmp_path_factory) -> Model:
    from sklearn.ensemble import GradientBoostingRegressor

    import modelport as mp

    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(400, 5)), columns=[f"x{j}" for j in range(5)])
    y = 2 * X["x0"] - X["x3"] + 0.5 * X["x4"] ** 2
    model = GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0).fit(X, y)
    bundle = mp.pack(model, X, name="spend", version="1")
    path = tmp_path_factory.mktemp("stream-bundles") / "spend.mpk"
    bundle.save(path)
    return Model(bundle, path, _reg_records)


def iris_records(n: int, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=[5.8, 3.0, 3.7, 1.2], scale=[0.8, 0.4, 1.7, 0.7], size=(n, 4)).round(3)
    return [{f"f{j}": float(v) for j, v in enumerate(row)} for row in X]


@pytest.fixture(scope="session")
def iris_versions(tmp_path_factory, iris) -> tuple[Model, Model]:
    """Two versions of an iris classifier that answer differently."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    import modelport as mp

    X, y = iris
    root = tmp_path_factory.mktemp("stream-iris")
    v1 = mp.pack(RandomForestClassifier(n_estimators=8, max_depth=3, random_state=0).fit(X, y), X, name="iris", version="1")
    v2 = mp.pack(LogisticRegression(max_iter=500).fit(X, y), X, name="iris", version="2")
    v1.save(root / "1.mpk")
    v2.save(root / "2.mpk")
    return Model(v1, root / "1.mpk", iris_records), Model(v2, root / "2.mpk", iris_records)


# ----------------------------------------------------------------------------- Redis
class RedisStreams:
    """A Redis client plus names unique to one test; everything named here is deleted afterwards."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.r = redis.Redis.from_url(url)
        self.tag = f"mpt-{uuid.uuid4().hex[:10]}"
        self.src = f"{self.tag}:in"
        self.out = f"{self.tag}:out"
        self.dead = f"{self.src}:dead-letter"

    def source(self, group: str = "scorers", stream: str | None = None) -> str:
        return f"{self.url}?stream={stream or self.src}&group={group}"

    def sink(self, stream: str | None = None) -> str:
        return f"{self.url}?stream={stream or self.out}"

    def produce(self, payloads: list[bytes], stream: str | None = None) -> list[str]:
        ids: list[str] = []
        for i in range(0, len(payloads), 5000):
            with self.r.pipeline(transaction=False) as p:
                for d in payloads[i:i + 5000]:
                    p.xadd(stream or self.src, {"data": d})
                ids += [x.decode() for x in p.execute()]
        return ids

    def entries(self, stream: str) -> list[tuple[str, dict[bytes, bytes]]]:
        out: list[tuple[str, dict[bytes, bytes]]] = []
        start = "-"
        while True:
            chunk = self.r.xrange(stream, min=start, count=10_000)
            if not chunk:
                return out
            out += [(eid.decode(), f) for eid, f in chunk]
            last = chunk[-1][0].decode()
            ms, seq = last.split("-")
            start = f"{ms}-{int(seq) + 1}"

    def outputs(self, stream: str | None = None) -> list[dict[str, Any]]:
        return [orjson.loads(f[b"data"]) for _, f in self.entries(stream or self.out)]

    def pending(self, group: str = "scorers") -> int:
        return int(self.r.xpending(self.src, group)["pending"])

    def wait_len(self, stream: str, n: int, timeout: float = 60, procs: list[Any] = ()) -> None:
        deadline = time.time() + timeout
        while self.r.xlen(stream) < n:
            for p in procs:
                assert p.poll() is None, f"a consumer exited early with {p.returncode}"
            assert time.time() < deadline, f"{stream} has {self.r.xlen(stream)} of {n} entries after {timeout} s"
            time.sleep(0.05)

    def cleanup(self) -> None:
        keys = list(self.r.scan_iter(f"{self.tag}*")) + list(self.r.scan_iter(f"modelport:fence:{self.tag}*"))
        if keys:
            self.r.delete(*keys)
        self.r.close()


@pytest.fixture
def rds(redis_url) -> Iterator[RedisStreams]:
    helper = RedisStreams(redis_url)
    try:
        yield helper
    finally:
        helper.cleanup()


# ----------------------------------------------------------------------------- NATS
class NatsStreams:
    """JetStream helpers for one test (each call its own short connection); streams made here are deleted after."""

    def __init__(self, url: str) -> None:
        self.url = url
        tag = uuid.uuid4().hex[:10]
        self.tag = tag
        self.stream = f"MPT_{tag.upper()}"
        self.subject = f"mpt.{tag}.in"
        self.out_subject = f"mpt.{tag}.out"
        self.out_stream = f"MPT_{tag.upper()}_OUT"
        self.streams = [self.stream, self.out_stream, f"{self.stream}_DEAD_LETTER"]

    def source(self, durable: str = "scorers") -> str:
        return f"{self.url}?stream={self.stream}&subject={self.subject}&durable={durable}"

    def sink(self) -> str:
        return f"{self.url}?subject={self.out_subject}&stream={self.out_stream}"

    def run(self, fn: Callable[[Any, Any], Any]) -> Any:
        import nats

        async def main() -> Any:
            nc = await nats.connect(self.url)
            try:
                return await fn(nc, nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(main())

    def create(self) -> None:
        async def go(nc: Any, js: Any) -> None:
            await js.add_stream(name=self.stream, subjects=[self.subject])

        self.run(go)

    def produce(self, payloads: list[bytes]) -> list[str]:
        async def go(nc: Any, js: Any) -> list[str]:
            seqs: list[str] = []
            futures = []
            for d in payloads:
                futures.append(await js.publish_async(self.subject, d))
                if len(futures) >= 2000:
                    seqs += [str(a.seq) for a in await asyncio.gather(*futures)]
                    futures = []
            seqs += [str(a.seq) for a in await asyncio.gather(*futures)]
            return seqs

        return self.run(go)

    def messages(self, stream: str) -> list[Any]:
        """Every message of ``stream`` (data, headers), in order."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        async def go(nc: Any, js: Any) -> list[Any]:
            info = await js.stream_info(stream)
            total = info.state.messages
            sub = await js.pull_subscribe(
                "", stream=stream, durable=f"read-{uuid.uuid4().hex[:6]}",
                config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                                      filter_subject=None),
            )
            got: list[Any] = []
            while len(got) < total:
                got += await sub.fetch(min(1000, total - len(got)), timeout=5)
            return [(m.data, dict(m.headers or {})) for m in got]

        return self.run(go)

    def outputs(self) -> list[dict[str, Any]]:
        return [orjson.loads(d) for d, _ in self.messages(self.out_stream)]

    def count(self, stream: str) -> int:
        async def go(nc: Any, js: Any) -> int:
            try:
                return int((await js.stream_info(stream)).state.messages)
            except Exception:
                return 0

        return self.run(go)

    def consumer(self, durable: str = "scorers") -> Any:
        async def go(nc: Any, js: Any) -> Any:
            return await js.consumer_info(self.stream, durable)

        return self.run(go)

    def wait_count(self, stream: str, n: int, timeout: float = 60, procs: list[Any] = ()) -> None:
        deadline = time.time() + timeout
        while (got := self.count(stream)) < n:
            for p in procs:
                assert p.poll() is None, f"a consumer exited early with {p.returncode}"
            assert time.time() < deadline, f"{stream} has {got} of {n} messages after {timeout} s"
            time.sleep(0.1)

    def cleanup(self) -> None:
        async def go(nc: Any, js: Any) -> None:
            for name in self.streams:
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)

        self.run(go)


@pytest.fixture
def nts(nats_url) -> Iterator[NatsStreams]:
    helper = NatsStreams(nats_url)
    try:
        yield helper
    finally:
        helper.cleanup()


# ----------------------------------------------------------------------------- consumer processes
@dataclass
class Consumer:
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the consumer did not stop within {timeout} s:\n{self.output()[-3000:]}") from None


@pytest.fixture
def consumers(tmp_path) -> Iterator[Callable[..., Consumer]]:
    """Start ``modelport stream ARGS`` (the installed console script); every one still running is killed at the end."""
    started: list[Consumer] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Consumer:
        log = tmp_path / f"consumer-{len(started)}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen([modelport_script(), "stream", *args], stdout=fh, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})}, cwd=tmp_path)
        c = Consumer(proc, log)
        started.append(c)
        return c

    yield start
    for c in started:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()


def dumps_all(records: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(r) for r in records]
