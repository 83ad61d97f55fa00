"""Reliability of the registry under real processes, on SQLite and on the real PostgreSQL:

- 8 processes pushing 50 different bundles each, plus 2 pushing duplicates, all at once:
  every distinct bundle kept exactly once, version numbers unique and gapless per model,
  no orphan blobs;
- a push killed with SIGKILL at three points leaves no half-visible version, gc removes what
  it left in the store, and the retry succeeds with the next version number.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from modelport.registry import open_registry

from .conftest import rebuild, variant

WORKER = str(Path(__file__).with_name("_push_worker.py"))
N_WORKERS, PER_WORKER, N_MODELS = 8, 50, 4


@pytest.fixture(scope="module")
def bundle_files(base_bundle, tmp_path_factory):
    """400 distinct bundles (4 models) as files, and 5 with a known digest but other manifest bytes."""
    root = tmp_path_factory.mktemp("bundles")
    distinct = []
    for i in range(N_WORKERS * PER_WORKER):
        b = variant(base_bundle, i)
        distinct.append((str(b.save(root / f"b{i}.mpk")), f"model-{i % N_MODELS}", b.digest))
    reworded = []
    for i in range(5):
        b = rebuild(variant(base_bundle, i), description=f"reworded {i}")
        reworded.append((str(b.save(root / f"r{i}.mpk")), f"model-{i % N_MODELS}", b.digest))
    return distinct, reworded


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, WORKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.mark.slow
def test_concurrent_pushes_keep_every_bundle_once_with_gapless_versions(any_url, tmp_path, bundle_files):
    distinct, reworded = bundle_files
    artifacts = str(tmp_path / "artifacts")
    go = tmp_path / "go"
    rng = random.Random(0)
    jobs = [distinct[w * PER_WORKER:(w + 1) * PER_WORKER] for w in range(N_WORKERS)]
    jobs.append(rng.sample(distinct, PER_WORKER))  # duplicates of what the others push
    jobs.append(rng.sample(distinct, PER_WORKER - len(reworded)) + reworded)
    procs = []
    for w, job in enumerate(jobs):
        result = tmp_path / f"result{w}.json"
        # every worker opens the fresh registry at once: creating the schema races as well
        procs.append((_spawn("push", any_url, artifacts, str(go), str(result), *[f"{p}={n}" for p, n, _ in job]),
                      result))
    time.sleep(1.0)
    go.touch()
    for proc, _ in procs:
        _out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    results = [r for _, path in procs for r in json.loads(path.read_text())]
    assert len(results) == sum(len(j) for j in jobs)

    reg = open_registry(any_url, artifacts=artifacts)
    listed = {m.name: reg.versions(m.name) for m in reg.models()}
    assert sorted(listed) == [f"model-{i}" for i in range(N_MODELS)]
    seen = {}
    for name, vs in listed.items():
        assert [v.version for v in vs] == list(range(1, len(vs) + 1)), f"{name}: versions not gapless"
        assert len({v.digest for v in vs}) == len(vs), f"{name}: a digest stored twice"
        seen.update({(name, v.digest): v.version for v in vs})
    assert set(seen) == {(n, d) for _, n, d in distinct}  # every distinct bundle, exactly once
    # every push of a digest, from any process, was told the same version; exactly one was "new"
    new_count: dict[tuple[str, str], int] = defaultdict(int)
    for r in results:
        assert seen[(r["name"], r["digest"])] == r["version"]
        new_count[(r["name"], r["digest"])] += r["new"]
    assert set(new_count.values()) == {1}
    # no orphan blobs, nothing for gc to do; and stored bundles load with verified digests
    blobs = {v.blob for vs in listed.values() for v in vs}
    assert set(reg.store.blobs()) == blobs and len(blobs) == len(distinct)
    assert reg.gc() == []
    for name, vs in listed.items():
        v = vs[len(vs) // 2]
        assert reg.load(v.uri).digest == v.digest, name


@pytest.mark.parametrize("point", ["after_tmp", "after_blob", "after_insert"])
def test_kill_9_during_push_leaves_no_half_visible_version(any_url, tmp_path, base_bundle, point):
    artifacts = str(tmp_path / "artifacts")
    reg = open_registry(any_url, artifacts=artifacts)
    first = reg.push(base_bundle)
    second = variant(base_bundle, 1)
    path = second.save(tmp_path / "second.mpk")
    proc = _spawn("hang", any_url, artifacts, point, f"{path}=iris")
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "PAUSED", proc.stderr.read()  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # nothing of the killed push is visible
    assert [v.version for v in reg.versions("iris", include_deleted=True)] == [1]
    assert reg.resolve("models:/iris").digest == first.digest
    assert reg.search(where=f"digest = '{second.digest}'") == []
    # what it left in the store is garbage that gc removes (waiting for no one: the pusher is dead)
    left = set(reg.store.blobs()) - {first.blob}
    if point == "after_tmp":
        assert not left and reg.store.stale_temporaries()
    else:
        assert len(left) == 1
    assert sorted(reg.gc()) == sorted(left)
    assert set(reg.store.blobs()) == {first.blob} and reg.store.stale_temporaries() == []
    # and the retry succeeds with the next number: no gap
    retry = reg.push(path)
    assert (retry.version, retry.is_new, retry.digest) == (2, True, second.digest)
    assert [v.version for v in reg.versions("iris")] == [1, 2]
    assert reg.load("models:/iris/2").digest == second.digest
    assert reg.gc() == []



def _open_at_once(url: str, artifacts: list[str | None]) -> tuple[dict[int, str], list[BaseException]]:
    """Open the registry at ``url`` from one thread per entry of ``artifacts``, all released at once."""
    import threading

    from modelport.registry.sql import SQLRegistry

    barrier = threading.Barrier(len(artifacts))
    stores: dict[int, str] = {}
    errors: list[BaseException] = []

    def client(i: int) -> None:
        barrier.wait()
        try:
            reg = SQLRegistry(url, artifacts=artifacts[i])
            stores[i] = reg.store.url
            reg.close()
        except BaseException as exc:  # collected and reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(artifacts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return stores, errors


@pytest.mark.integration
def test_many_clients_opening_a_fresh_postgresql_registry_at_once_all_succeed(postgres_url, tmp_path):
    """Creating the schema and recording the artifact location race when clients start together;
    every client must open the registry and all must agree on where the artifacts are."""
    import uuid

    import psycopg

    from modelport.registry.sql import SQLRegistry

    n_clients = 8
    for round_ in range(4):
        schema = f"mp_open_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{postgres_url}{'&' if '?' in postgres_url else '?'}options=-csearch_path%3D{schema}"
        try:
            # client 0 names a location, the others name none and read back whichever was recorded
            stores, errors = _open_at_once(url, [str(tmp_path / f"a{round_}")] + [None] * (n_clients - 1))
            assert not errors, errors[0]
            assert len(stores) == n_clients
            recorded = {stores[i] for i in range(1, n_clients)}
            assert len(recorded) == 1
            reg = SQLRegistry(url)
            assert reg.store.url in recorded
            reg.close()
        finally:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
