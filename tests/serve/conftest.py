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
