"""Hot reload: directory polling, the repository load endpoint and registry alias following all
swap versions under load without failing a single request."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter

import httpx
import numpy as np
import pytest

from modelport.serve import ServeConfig

from .conftest import thread_server

pytestmark = pytest.mark.integration

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.4, 1.3]], dtype=np.float32)
BODY = {"inputs": [{"name": "X", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}


class Load:
    """Threads posting inference requests until stopped; records statuses and versions seen."""

    def __init__(self, url: str, model: str = "iris", threads: int = 4) -> None:
        self.url = f"{url}/v2/models/{model}/infer"
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as c:
            while not self.stop.is_set():
                try:
                    r = c.post(self.url, json=BODY)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.errors.append(repr(exc))
                    continue
                with self.lock:
                    self.statuses[r.status_code] += 1
                    if r.status_code == 200:
                        self.versions[r.json()["model_version"]] += 1
                    else:
                        self.errors.append(r.text)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def wait_for_version(self, version: str, timeout: float = 20) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                before = self.versions[version]
            time.sleep(0.2)
            with self.lock:
                if self.versions[version] > before:
                    return
        raise AssertionError(f"version {version} never answered; seen {dict(self.versions)}")


def _swap(src, dst) -> None:
    tmp = dst.with_suffix(".part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)  # atomic, as a deployment tool would do it


def test_directory_polling_swaps_under_load(bundles, tmp_path):
    repo = tmp_path / "models"
    repo.mkdir()
    target = repo / "iris.mpk"
    shutil.copyfile(bundles.iris_v1, target)
    # every call goes through the batch queue (models never run on the event loop), so swaps meet
    # queued requests
    config = ServeConfig(sources=[str(repo)], poll_interval=0.1)
    with thread_server(config) as url, Load(url) as load:
        load.wait_for_version("1")
        for version, src in (("2", bundles.iris_v2), ("1", bundles.iris_v1), ("2", bundles.iris_v2)):
            _swap(src, target)
            load.wait_for_version(version)
    assert not load.errors, load.errors[:3]
    assert set(load.statuses) == {200}
    assert load.versions["1"] > 0 and load.versions["2"] > 0
    assert sum(load.statuses.values()) > 20


def test_repository_reload_and_new_version_under_load(bundles, tmp_path):
    repo = tmp_path / "models"
    (repo / "iris").mkdir(parents=True)
    shutil.copyfile(bundles.iris_v1, repo / "iris" / "1.mpk")
    with thread_server(ServeConfig(sources=[str(repo)])) as url, Load(url) as load:
        load.wait_for_version("1")
        shutil.copyfile(bundles.iris_v2, repo / "iris" / "2.mpk")
        for _ in range(3):
            assert httpx.post(url + "/v2/repository/models/iris/load", timeout=30).status_code == 200
        load.wait_for_version("2")
        assert httpx.get(url + "/v2/models/iris").json()["versions"] == ["1", "2"]
    assert set(load.statuses) == {200}, load.errors[:3]


def test_registry_alias_is_followed_under_load(bundles, tmp_path):
    from modelport.registry import open_registry

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    reg = open_registry(url, artifacts=tmp_path / "artifacts")
    v1 = reg.push(str(bundles.iris_v1))
    v2 = reg.push(str(bundles.iris_v2))
    reg.set_alias("iris", "production", v1.version)
    os.environ["MODELPORT_ARTIFACTS"] = str(tmp_path / "artifacts")
    try:
        config = ServeConfig(sources=["models:/iris@production"], registry_url=url, poll_interval=0.1)
        with thread_server(config) as server, Load(server) as load:
            load.wait_for_version(str(v1.version))
            reg.set_alias("iris", "production", v2.version)
            load.wait_for_version(str(v2.version))
            meta = httpx.get(server + "/v2/models/iris").json()
            assert meta["versions"] == [str(v2.version)]
            assert meta["parameters"]["digest"] == v2.digest
    finally:
        os.environ.pop("MODELPORT_ARTIFACTS", None)
    assert set(load.statuses) == {200}, load.errors[:3]


def test_pinned_registry_version(bundles, tmp_path):
    from modelport.registry import open_registry

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    reg = open_registry(url, artifacts=tmp_path / "artifacts")
    reg.push(str(bundles.iris_v1))
    info = reg.push(str(bundles.iris_v2))
    os.environ["MODELPORT_ARTIFACTS"] = str(tmp_path / "artifacts")
    try:
        with thread_server(ServeConfig(sources=[f"flowers=models:/iris/{info.version}"], registry_url=url)) as server:
            meta = httpx.get(server + "/v2/models/flowers").json()
            assert meta["versions"] == [str(info.version)] and meta["parameters"]["digest"] == info.digest
    finally:
        os.environ.pop("MODELPORT_ARTIFACTS", None)
