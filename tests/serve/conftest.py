"""Fixtures for the serving tests: real bundles on disk, and real servers.

* ``thread_server(config)``: uvicorn in a thread on a free loopback port (HTTP only: the gRPC
  modules register the ``inference`` protobuf package, which collides with tritonclient's copy in
  one process);
* ``process_server(args)``: ``python -m modelport serve ...`` in a subprocess, with gRPC.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import modelport as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Bundles:
    iris_v1: Path
    iris_v2: Path
    churn: Path
    lin: Path
    tiers: Path  # string class labels
    repo: Path  # iris/1.mpk, iris/2.mpk, churn.mpk, lin.mpk, tiers.mpk


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, iris) -> Bundles:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    root = tmp_path_factory.mktemp("serve-bundles")
    X, y = iris
    f1 = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X, y)
    f2 = RandomForestClassifier(n_estimators=12, max_depth=3, random_state=1).fit(X, y)
    rng = np.random.default_rng(3)
    df = pd.DataFrame({
        "age": rng.integers(18, 80, 300),
        "plan": rng.choice(["basic", "pro", "max"], 300),
        "spend": rng.normal(50, 10, 300),
    })
    churned = ((df.spend > 50) ^ (df.plan == "max")).astype(int)
    churn = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan"]), remainder="passthrough"),
        LogisticRegression(max_iter=500),
    ).fit(df, churned)
    Xr = rng.normal(size=(200, 5))
    lin = LinearRegression().fit(Xr, Xr @ np.array([1.5, -2.0, 0.5, 0.0, 3.0]))

    repo = root / "repo"
    (repo / "iris").mkdir(parents=True)
    b = Bundles(
        iris_v1=repo / "iris" / "1.mpk", iris_v2=repo / "iris" / "2.mpk", churn=repo / "churn.mpk",
        lin=repo / "lin.mpk", tiers=repo / "tiers.mpk", repo=repo,
    )
    tiers = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(
        X, np.array(["gold", "silver", "bronze"])[y]
    )
    mp.pack(tiers, X, name="tiers", version="1").save(b.tiers)
    mp.pack(f1, X, name="iris", version="1").save(b.iris_v1)
    mp.pack(f2, X, name="iris", version="2").save(b.iris_v2)
    mp.pack(churn, df, name="churn", version="1").save(b.churn)
    mp.pack(lin, Xr, name="lin", version="1").save(b.lin)
    return b


def spin_model():
    """An ONNX graph whose cost the request chooses: a Loop runs ``max(X)`` times (about a
    microsecond each), so X = 1 is instant, 3e6 takes seconds and 1e18 never ends. Built with
    onnx.helper: Y = X, computed after the loop."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Add", ["v_in", "one"], ["v_out"])],
        "spin_body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("v_in", T.FLOAT, [1])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, [1])],
        [h.make_tensor("one", T.FLOAT, [1], [1.0])],
    )
    graph = h.make_graph(
        [
            h.make_node("ReduceMax", ["X"], ["xmax"], keepdims=0),
            h.make_node("Cast", ["xmax"], ["trips"], to=T.INT64),
            h.make_node("Loop", ["trips", "always", "zero"], ["v_final"], body=body),
            h.make_node("Mul", ["v_final", "zero"], ["nothing"]),
            h.make_node("Add", ["X", "nothing"], ["Y"]),
        ],
        "spin",
        [h.make_tensor_value_info("X", T.FLOAT, [None, 1])],
        [h.make_tensor_value_info("Y", T.FLOAT, [None, 1])],
        [h.make_tensor("always", T.BOOL, [], [True]), h.make_tensor("zero", T.FLOAT, [1], [0.0])],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="session")
def spin_bundle(tmp_path_factory) -> Path:
    """``spin.mpk``: the bundle of :func:`spin_model` (its reference data is small: packing is quick)."""
    path = tmp_path_factory.mktemp("spin") / "spin.mpk"
    mp.pack(spin_model(), np.array([[1.0], [2.0], [3.0]], dtype=np.float32), name="spin", version="1").save(path)
    return path


def spin_body(x: float) -> dict:
    """A V2 request for the spin model: ``x`` loop iterations."""
    return {"inputs": [{"name": "X", "shape": [1, 1], "datatype": "FP32", "data": [x]}]}


def rss_kb(pid: int, field: str = "VmHWM") -> int:
    """A process's memory from /proc (VmHWM: the peak resident set so far; VmRSS: now), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@contextlib.contextmanager
def thread_server(config) -> Iterator[str]:
    """Run a modelport server (HTTP) in a thread; yields its base URL."""
    import uvicorn

    from modelport.serve.server import Server, uvicorn_config

    config.port = free_port()
    config.grpc_port = None
    config.log_level = "warning"
    server = Server(config)
    server.load()
    userver = uvicorn.Server(uvicorn_config(config, server.app))
    thread = threading.Thread(target=userver.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not userver.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        userver.should_exit = True
        thread.join(15)


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    http: str
    grpc: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def process_server(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[Proc]:
    """``python -m modelport serve ARGS`` with HTTP and gRPC ports; waits until ready."""
    import httpx

    http_port, grpc_port = free_port(), free_port()
    log = tmp_path / f"server-{http_port}.log"
    cmd = [sys.executable, "-m", "modelport", "serve", *args, "--port", str(http_port),
           "--grpc-port", str(grpc_port), "--log-level", "warning"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    p = Proc(proc, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log)
    deadline = time.time() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}:\n{p.output()}")
            try:
                if httpx.get(p.http + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"the server did not become ready:\n{p.output()}")
            time.sleep(0.1)
        yield p
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
