"""``modelport serve --require-signature --trusted-key ... --ca ...`` (ServeConfig / DataPlane):
bad signatures stop the server at startup with the file and the reason, and on hot reload (directory
polling, the repository load endpoint, a registry alias move) a refused version never replaces the one
being served, and the server keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

import modelport as mp
from modelport.bundle.signing import SIGNATURE_FILE
from modelport.errors import InputError, SignatureError
from modelport.serve import ServeConfig
from modelport.serve.dataplane import DataPlane
from modelport.signing import SignaturePolicy

from .conftest import edit_manifest, save

pytestmark = pytest.mark.integration


def _bad(small_bundle, other_bundle, pki, case: str) -> dict[str, bytes]:
    """Version 2 of model iris, made bad in one way (other_bundle is version 2 of small_bundle's model)."""
    signed = mp.sign(other_bundle, key=pki.key)
    raw = signed.files[SIGNATURE_FILE]
    return {
        "unsigned": lambda: dict(other_bundle.files),
        "untrusted-key": lambda: dict(mp.sign(other_bundle, key=pki.other_key).files),
        "untrusted-ca": lambda: dict(mp.sign(other_bundle, key=pki.other_leaf_key, certificate=pki.other_leaf,
                                             certificate_chain=[pki.other_root]).files),
        "copied": lambda: {**other_bundle.files,
                           SIGNATURE_FILE: mp.sign(small_bundle, key=pki.key).files[SIGNATURE_FILE]},
        "truncated": lambda: {**signed.files, SIGNATURE_FILE: raw[:200]},
        "edited-metric": lambda: edit_manifest(dict(signed.files), lambda m: m["metrics"].update(auc=0.99)),
    }[case]()


CASES = [
    ("unsigned", "the bundle is not signed"),
    ("untrusted-key", "not a trusted key"),
    ("untrusted-ca", "does not chain to a trusted CA"),
    ("copied", "made for another bundle"),
    ("truncated", "not a valid signature"),
    ("edited-metric", "manifest.json was changed after signing"),
]


def _config(sources: list[str], pki, **kw) -> ServeConfig:
    return ServeConfig(sources=sources, require_signature=True, trusted_keys=[str(pki.pub)],
                       trusted_cas=[str(pki.root)], **kw)


@pytest.mark.parametrize(("case", "reason"), CASES)
def test_startup_refuses_each_bad_signature(small_bundle, other_bundle, pki, tmp_path, case, reason):
    from modelport.serve.server import Server

    path = save(_bad(small_bundle, other_bundle, pki, case), tmp_path / "iris.mpk")
    server = Server(_config([str(path)], pki))
    with pytest.raises(SignatureError) as err:
        server.load()
    assert str(path) in str(err.value) and SIGNATURE_FILE in str(err.value) and reason in str(err.value)
    server.dataplane.close()


def test_startup_accepts_trusted_signatures_and_refuses_bad_options(small_bundle, pki, tmp_path):
    from modelport.serve.server import Server

    key = save(mp.sign(small_bundle, key=pki.key), tmp_path / "a.mpk")
    cert = save(mp.sign(small_bundle, key=pki.leaf_key, certificate=pki.leaf, certificate_chain=[pki.intermediate]),
                tmp_path / "b")
    server = Server(_config([f"a={key}", f"b={cert}"], pki))
    server.load()
    assert server.dataplane.repository.names() == ["a", "b"]
    server.dataplane.close()
    with pytest.raises(InputError, match="only used together with --require-signature"):
        Server(ServeConfig(sources=[str(key)], trusted_keys=[str(pki.pub)]))
    with pytest.raises(InputError, match="it is a private key"):
        Server(ServeConfig(sources=[str(key)], require_signature=True, trusted_keys=[str(pki.key)]))
    # the policy travels to worker processes through the JSON form of the config
    cfg = ServeConfig.from_json(_config([str(key)], pki).to_json())
    assert cfg.signature_policy() is not None and cfg.trusted_keys == [str(pki.pub)]


def test_serve_command_refuses_an_unsigned_bundle(small_bundle, pki, tmp_path):
    path = save(small_bundle, tmp_path / "iris.mpk")
    r = subprocess.run([sys.executable, "-m", "modelport", "serve", str(path), "--port", str(_free_port()),
                        "--require-signature", "--trusted-key", str(pki.pub)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert r.returncode == 5, r.stdout + r.stderr
    assert f"{path}: the bundle is not signed" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(("case", "reason"), CASES)
def test_directory_reload_keeps_serving_the_verified_version(small_bundle, other_bundle, pki, tmp_path, case,
                                                             reason, caplog):
    repo = tmp_path / "models"
    (repo / "iris").mkdir(parents=True)
    save(mp.sign(small_bundle, key=pki.key), repo / "iris" / "1.mpk")
    dp = DataPlane([str(repo)], signature_policy=SignaturePolicy(trusted_keys=[pki.pub], cas=[pki.root]))
    dp.load()
    before = dp.model("iris")
    save(_bad(small_bundle, other_bundle, pki, case), repo / "iris" / "2.mpk")
    with caplog.at_level("ERROR", logger="modelport.serve"):
        assert asyncio.run(dp.repository.refresh()) == []
    assert dp.repository.versions("iris") == ["1"] and dp.model("iris") is before
    assert reason in caplog.text
    # the repository load endpoint's path refuses it too (an unreadable file is skipped), and still serves 1
    if case == "truncated":
        assert asyncio.run(dp.repository.load("iris")) == ["1"]
    else:
        with pytest.raises(SignatureError, match=reason):
            asyncio.run(dp.repository.load("iris"))
    assert dp.repository.versions("iris") == ["1"] and dp.model("iris") is before
    # once version 2 is signed by a trusted key it is taken
    save(mp.sign(other_bundle, key=pki.key), repo / "iris" / "2.mpk")
    assert asyncio.run(dp.repository.refresh()) == ["iris"]
    assert dp.repository.versions("iris") == ["1", "2"]
    dp.close()


@pytest.mark.parametrize(("case", "reason"), [c for c in CASES if c[0] != "truncated"])
def test_registry_alias_move_to_a_bad_version_is_refused(small_bundle, other_bundle, pki, tmp_path, case, reason,
                                                          caplog):
    from modelport.registry import open_registry

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    reg = open_registry(url)
    v1 = reg.push(mp.sign(small_bundle, key=pki.key))
    v2 = reg.push(mp.Bundle(_bad(small_bundle, other_bundle, pki, case), origin="<v2>"))  # no policy on this push
    reg.set_alias("iris", "production", v1.version)
    dp = DataPlane(["models:/iris@production"], registry_url=url,
                   signature_policy=SignaturePolicy(trusted_keys=[pki.pub], cas=[pki.root]))
    dp.load()
    assert dp.repository.versions("iris") == [str(v1.version)]
    reg.set_alias("iris", "production", v2.version)
    with caplog.at_level("ERROR", logger="modelport.serve"):
        assert asyncio.run(dp.repository.follow_once()) == []
    assert dp.repository.versions("iris") == [str(v1.version)]
    assert reason in caplog.text and f"models:/iris/{v2.version}" in caplog.text
    if case == "unsigned":
        # signing version 2 and pushing it again adds the signature to the stored version: now it is taken
        reg.push(mp.sign(other_bundle, key=pki.key))
        assert asyncio.run(dp.repository.follow_once()) == ["iris"]
        assert dp.repository.versions("iris") == [str(v2.version)]
    dp.close()


# ----------------------------------------------------------------------------- a real server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _thread_server(config: ServeConfig) -> Iterator[str]:
    import uvicorn

    from modelport.serve.server import Server, uvicorn_config

    config.port, config.grpc_port, config.log_level = _free_port(), None, "warning"
    server = Server(config)
    server.load()
    userver = uvicorn.Server(uvicorn_config(config, server.app))
    thread = threading.Thread(target=userver.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not userver.started:
        assert time.time() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        userver.should_exit = True
        thread.join(15)


def test_http_server_keeps_serving_when_a_reload_is_refused(small_bundle, other_bundle, pki, tmp_path):
    repo = tmp_path / "models"
    target = repo / "iris.mpk"
    repo.mkdir()
    save(mp.sign(small_bundle, key=pki.key), target)
    body = {"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32",
                        "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]}
    with _thread_server(_config([str(repo)], pki, poll_interval=0.1)) as url, httpx.Client(timeout=30) as c:
        assert c.post(f"{url}/v2/models/iris/infer", json=body).json()["model_version"] == "1"
        # an edited-after-signing version 2 replaces the file on disk
        tmp = tmp_path / "next.mpk"  # written outside the watched directory, then moved in at once
        save(_bad(small_bundle, other_bundle, pki, "edited-metric"), tmp)
        os.replace(tmp, target)
        time.sleep(1.0)  # several polls
        for _ in range(5):
            r = c.post(f"{url}/v2/models/iris/infer", json=body)
            assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
        assert c.get(f"{url}/v2/health/ready").status_code == 200
        r = c.post(f"{url}/v2/repository/models/iris/load")
        assert r.status_code == 422 and "manifest.json was changed after signing" in r.json()["error"], r.text
        assert c.post(f"{url}/v2/models/iris/infer", json=body).json()["model_version"] == "1"
        # a properly signed version 2 is swapped in by the poller
        save(mp.sign(other_bundle, key=pki.key), tmp)
        os.replace(tmp, target)
        deadline = time.time() + 20
        while c.post(f"{url}/v2/models/iris/infer", json=body).json()["model_version"] != "2":
            assert time.time() < deadline, "the signed version 2 was never served"
            time.sleep(0.1)


def test_serve_cli_has_the_policy_options():
    from click.testing import CliRunner

    from modelport.cli.main import cli

    r = CliRunner().invoke(cli, ["serve", "--help"])
    for option in ("--require-signature", "--trusted-key", "--ca", "--trusted-certificate"):
        assert option in r.output
