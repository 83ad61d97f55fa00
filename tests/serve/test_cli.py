"""``modelport serve`` as a user runs it: options, exit codes, worker processes, TLS, access log."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from modelport.cli.main import cli
from modelport.cli.serve import parse_size

from .conftest import free_port, process_server

pytestmark = pytest.mark.integration

BODY = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}


def test_parse_size():
    assert parse_size("64MB") == 64 << 20
    assert parse_size("512k") == 512 << 10
    assert parse_size("1048576") == 1 << 20
    assert parse_size("none") is None
    with pytest.raises(Exception, match="cannot read the size"):
        parse_size("lots")


def test_bad_sources_exit_non_zero(tmp_path):
    out = subprocess.run([sys.executable, "-m", "modelport", "serve", str(tmp_path / "missing.mpk")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 8 and "does not exist" in out.stderr
    (tmp_path / "empty").mkdir()
    out = subprocess.run([sys.executable, "-m", "modelport", "serve", str(tmp_path / "empty")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 8 and "no bundles found" in out.stderr
    (tmp_path / "broken.mpk").write_bytes(b"not a zip")
    out = subprocess.run([sys.executable, "-m", "modelport", "serve", str(tmp_path / "broken.mpk")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "broken.mpk" in out.stderr


@pytest.mark.parametrize("flag", ["--port", "--grpc-port"])
def test_a_busy_port_is_a_clear_error_not_a_traceback(bundles, flag):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        ports = {"--port": str(free_port()), "--grpc-port": str(free_port())}
        ports[flag] = str(busy)
        script = shutil.which("modelport", path=str(Path(sys.executable).parent))
        assert script is not None
        out = subprocess.run([script, "serve", str(bundles.iris_v1), "--host", "127.0.0.1",
                              "--port", ports["--port"], "--grpc-port", ports["--grpc-port"]],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 8, out.stderr
    assert "Traceback" not in out.stderr
    assert f"cannot listen for {'gRPC' if flag == '--grpc-port' else 'HTTP'} on 127.0.0.1:{busy}" in out.stderr
    assert flag in out.stderr


def test_help_lists_the_options():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--grpc-port", "--workers", "--version-policy", "--max-batch-size", "--auth-token-env",
                   "--tls-certfile", "--cors-origin", "--poll", "--max-body-size", "--request-timeout",
                   "--max-concurrency", "--drain-timeout"):
        assert option in result.output


def test_bad_option_values(bundles):
    runner = CliRunner()
    result = runner.invoke(cli, ["serve", str(bundles.iris_v1), "--version-policy", "newest"])
    assert result.exit_code == 8 and "unknown version policy" in _text(result)
    result = runner.invoke(cli, ["serve", str(bundles.iris_v1), "--default-version", "iris"])
    assert result.exit_code == 2 and "NAME=VERSION" in _text(result)
    result = runner.invoke(cli, ["serve", str(bundles.iris_v1), "--max-concurrency", "0"])
    assert result.exit_code == 2 and "--max-concurrency" in _text(result)


def _text(result) -> str:
    try:
        err = result.stderr
    except ValueError:
        err = ""
    return result.output + err + str(result.exception)


def test_access_log_is_json_lines(bundles, tmp_path):
    with process_server([str(bundles.iris_v1), "--access-log"], tmp_path) as proc:
        httpx.post(proc.http + "/v2/models/iris/infer", json={**BODY, "id": "log-me"})
        time.sleep(0.3)
        lines = [json.loads(ln) for ln in proc.output().splitlines() if ln.startswith("{")]
    entry = next(e for e in lines if e.get("id") == "log-me")
    assert entry["status"] == 200 and entry["route"] == "/v2/models/{model}/infer" and entry["model"] == "iris"
    assert entry["ms"] > 0


def test_several_workers_share_ports_and_metrics(bundles, tmp_path):
    with process_server([str(bundles.iris_v1), "--workers", "2"], tmp_path) as proc:
        with httpx.Client(base_url=proc.http) as c:
            for _ in range(20):
                with httpx.Client(base_url=proc.http) as fresh:  # new connections spread over workers
                    assert fresh.post("/v2/models/iris/infer", json=BODY).status_code == 200
            time.sleep(2.5)  # workers publish their numbers every second
            text = c.get("/metrics").text
        from .test_http import scrape

        m = scrape(text)
        key = ("modelport_infer_success_total", frozenset({"model": "iris", "version": "1", "protocol": "rest"}.items()))
        assert m[key] == 20
        pids = subprocess.run(["pgrep", "-P", str(proc.proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(pids) >= 2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls(bundles, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert), "-days", "1"], check=True, capture_output=True)
    import ssl

    trust = ssl.create_default_context(cafile=str(cert))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "modelport", "serve", str(bundles.iris_v1), "--port", str(port),
                             "--tls-certfile", str(cert), "--tls-keyfile", str(key), "--log-level", "warning"])
    try:
        deadline = time.time() + 60
        while True:
            try:
                r = httpx.post(f"https://127.0.0.1:{port}/v2/models/iris/infer", json=BODY, verify=trust)
                break
            except httpx.ConnectError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert r.status_code == 200
        assert np.asarray(r.json()["outputs"][0]["data"]).shape == (1,)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=3)
    finally:
        proc.terminate()
        proc.wait(20)
