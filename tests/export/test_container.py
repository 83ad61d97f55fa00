"""The container target: the build context, the image's entrypoint run outside a container on the
context's own wheels, and (with podman) the image built, run and asked for predictions."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import modelport as mp
from modelport.export import _vendor, container, export

from .conftest import CHURN_ROWS
from .test_functions import churn_v2_body, expected_records, same


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: bytes | None = None, timeout: float = 5) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(base: str, proc_alive, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc_alive(), "the server exited before it was ready"
        try:
            if get(base + "/v2/health/ready", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{base} was not ready within {timeout} s")


@pytest.fixture(scope="module")
def context(bundles, tmp_path_factory):
    return export(bundles.churn, "container", tmp_path_factory.mktemp("image") / "ctx")


def test_build_context(context):
    root = context.path
    text = (root / "Containerfile").read_text()
    assert text.count("\nFROM ") == 2  # an install stage, and the image that keeps only its result
    assert "ARG BASE=docker.io/library/python:{}.{}-slim".format(*sys.version_info[:2]) in text
    assert "--no-index --no-deps" in text  # offline: everything it installs is in the context
    assert "USER 10001:10001" in text and re.search(r"HEALTHCHECK .*\n.*/v2/health/ready", text)
    assert 'ENTRYPOINT ["/bin/sh", "-c", "exec python3 -m modelport serve /models/churn.mpk' in text
    wheels = sorted(p.name for p in (root / "wheels").iterdir())
    for d in _vendor.closure(_vendor.SERVER_ROOTS):
        assert any(w.lower().startswith(d.name.replace("-", "_") + "-" + d.version) for w in wheels), d.pin
    assert any(w.startswith("modelport-") for w in wheels)
    assert not any(w.startswith(("pandas", "scikit_learn", "scipy", "starlette", "rich", "pip-")) for w in wheels)
    assert next(p.name for p in (root / "tools").iterdir() if p.suffix == ".whl").startswith("pip-")
    assert (root / "model" / "churn.mpk").is_file()
    assert json.loads((root / "export.json").read_text())["details"]["user"] == 10001


def _install_like_the_image(root: Path, site: Path) -> None:
    """The install stage's RUN line, outside a container: pip from the context's wheel, offline."""
    pip = next((root / "tools").glob("pip-*.whl"))
    wheels = sorted(str(p) for p in (root / "wheels").glob("*.whl"))
    subprocess.run([sys.executable, "-I", "-S", f"{pip}/pip", "install", "--no-index", "--no-deps", "--no-cache-dir",
                    "--disable-pip-version-check", "--root-user-action=ignore", "--quiet", "--target", str(site), *wheels], check=True, timeout=600)
    subprocess.run([sys.executable, "-I", "-S", str(root / "tools" / "prune.py"), str(site)], check=True,
                   capture_output=True)


def _entrypoint(text: str) -> str:
    m = re.search(r'^ENTRYPOINT \["/bin/sh", "-c", (".*?"), "modelport"\]$', text, re.M)
    assert m, "no ENTRYPOINT in the Containerfile"
    return json.loads(m.group(1))


def test_the_images_entrypoint_serves_outside_a_container(context, bundles, tmp_path):
    """Proof that the context alone serves, on any machine: its wheels installed as the image's
    install stage does, then the image's ENTRYPOINT run with only those packages importable
    (python -S: no site-packages; PYTHONPATH as the image sets it)."""
    root = context.path
    site = tmp_path / "opt" / "site-packages"
    _install_like_the_image(root, site)
    assert not (site / "tests").exists() and not any(site.glob("numpy/**/tests"))
    command = _entrypoint((root / "Containerfile").read_text())
    # the two things that differ outside a container: where the bundle is, and which python3
    command = command.replace("/models/", f"{root / 'model'}/").replace(
        "exec python3 ", f"exec {shlex.quote(sys.executable)} -S ")
    port = free_port()
    env = {"PYTHONPATH": str(site), "PATH": f"{site / 'bin'}:/usr/bin:/bin", "PORT": str(port),
           "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(tmp_path)}
    proc = subprocess.Popen(["/bin/sh", "-c", command + " --host 127.0.0.1", "modelport"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, lambda: proc.poll() is None)
        status, body = get(base + "/v2/models/churn/records", json.dumps({"records": CHURN_ROWS}).encode())
        assert status == 200
        same(json.loads(body)["predictions"], expected_records(bundles.churn, CHURN_ROWS))
        status, body = get(base + "/v2/models/churn/infer", churn_v2_body())
        assert status == 200 and json.loads(body)["id"] == "r1"
        status, body = get(base + "/metrics")
        assert status == 200 and b"modelport_infer_requests_total" in body
        status, body = get(base + "/v2/models/churn/records", b'{"records": [{"age": 1}]}')
        assert status == 400 and b"missing column" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
    # drained, then (uvicorn re-raises the signal once done) the conventional "terminated by SIGTERM"
    assert proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in out, out[-2000:]
    # what the server could import: the stdlib and the context's packages, nothing of the test environment
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "import modelport.cli.main, modelport.serve.server, uvicorn, sys\n"
         "import importlib.util as u\n"
         "print([m for m in ('pandas', 'sklearn', 'starlette', 'rich', 'pytest') if u.find_spec(m)])"],
        env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"


def _podman_usable() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc)"
    return None


@pytest.mark.slow
@pytest.mark.integration
def test_image_builds_runs_and_answers(bundles, tmp_path):
    reason = _podman_usable()
    if reason:
        pytest.skip(reason)
    tag = f"localhost/modelport-test-churn:{int(time.time())}"
    result = export(bundles.churn, "container", tmp_path / "ctx", build=tag, base="debootstrap")
    name = f"modelport-test-{int(time.time() * 1000)}"
    port = free_port()
    try:
        size = result.sizes["image"]
        print(f"\nimage {tag}: {size / 1e6:.1f} MB (site-packages {result.sizes['site_packages'] / 1e6:.1f} MB)")
        assert size > 0 and result.details["builder"] in ("podman", "buildah")
        run = ["podman", "run", "-d", "--name", name, "--network", "host", "-e", f"PORT={port}",
               *container._ulimits(), tag]
        subprocess.run(run, check=True, capture_output=True, timeout=120)
        alive = lambda: subprocess.run(["podman", "container", "exists", name]).returncode == 0  # noqa: E731
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, alive)
        status, body = get(base + "/v2/models/churn/records", json.dumps({"records": CHURN_ROWS}).encode())
        assert status == 200
        same(json.loads(body)["predictions"], expected_records(bundles.churn, CHURN_ROWS))
        uid = subprocess.run(["podman", "exec", name, "id", "-u"], capture_output=True, text=True, check=True)
        assert uid.stdout.strip() == "10001"
        health = subprocess.run(["podman", "healthcheck", "run", name], capture_output=True, text=True)
        assert health.returncode == 0, health.stderr  # the image's own HEALTHCHECK, on /v2/health/ready
        inspect = subprocess.run(["podman", "image", "inspect", tag, "--format", "{{json .Config}}"],
                                 capture_output=True, text=True, check=True)
        config = json.loads(inspect.stdout)
        assert config["User"] == "10001:10001"
        probe = subprocess.run(["podman", "exec", name, "python3", "-c",
                                "import importlib.util as u; print([m for m in ('pandas', 'sklearn', 'scipy', 'pip', "
                                "'starlette') if u.find_spec(m)])"], capture_output=True, text=True, check=True)
        assert probe.stdout.strip() == "[]"
        stop = subprocess.run(["podman", "stop", "-t", "30", name], capture_output=True, text=True, timeout=90)
        assert stop.returncode == 0
        code = subprocess.run(["podman", "inspect", name, "--format", "{{.State.ExitCode}}"],
                              capture_output=True, text=True)
        assert code.stdout.strip() in ("0", "143")  # SIGTERM drained; 143 = 128 + SIGTERM, re-raised by uvicorn
        logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
        assert "Application shutdown complete" in logs.stdout + logs.stderr
        mp.load(bundles.churn)  # the bundle on disk is untouched by the export
        np.testing.assert_equal(result.details["port"], 8080)
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True)
