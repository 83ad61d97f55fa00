"""A killed server loses at most the rows its log documents as unflushed; nothing it wrote is damaged."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest
from tests.serve.conftest import process_server

from modelport.monitor.read import read_log, writers

from .conftest import churn_frame, records

pytestmark = pytest.mark.integration


def _state_when(log, ok, timeout: float = 30.0) -> dict:
    """The writer's state file once ``ok(state)`` holds (it is rewritten every second and at each rotation)."""
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        found = writers(str(log))
        state = found[0] if found else {}
        if state and ok(state):
            return state
        time.sleep(0.1)
    raise AssertionError(f"the writer's state never got there: {state}")


def test_sigkill_loses_only_the_documented_unflushed_rows(tmp_path, churn_path):
    log = tmp_path / "predictions"
    recs = records(churn_frame(400, 9))
    with process_server([str(churn_path), "--log", str(log), "--log-rotate", "2"], tmp_path) as srv, \
            httpx.Client() as client:
        url = f"{srv.http}/v2/models/churn/records"
        for i, rec in enumerate(recs[:200]):  # phase 1: then wait for a rotation
            assert client.post(url, json={"records": [rec]}, headers={"x-request-id": f"a{i}"}).status_code == 200
        state = _state_when(log, lambda s: s["written"] == 200)
        assert state["unflushed"] == 0 and state["unflushed_since"] is None
        for i, rec in enumerate(recs[200:]):  # phase 2: killed before its file is closed
            assert client.post(url, json={"records": [rec]}, headers={"x-request-id": f"b{i}"}).status_code == 200
        before = _state_when(log, lambda s: s["accepted"] == 400)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
    state = writers(str(log))[0]
    table = read_log(str(log))  # every visible file is complete and readable
    got = set(table.column("id").to_pylist())
    lost = 400 - len(got)
    assert {f"a{i}" for i in range(200)} <= got  # rows in files closed before the kill survive
    assert lost == state["unflushed"] and state["accepted"] == 400, (lost, state)
    assert state["written"] == len(got) and not state["stopped"]
    assert state["written"] >= before["written"]  # a rotation may have closed a file after we looked
    if lost:
        assert state["unflushed_since"] is not None
    # nothing half-written is visible; the open file was a hidden temporary, left for no reader
    visible = list(log.rglob("*.parquet"))
    assert visible and all(not p.name.startswith(".") for p in visible)
    assert len(list(log.rglob(".part-*.tmp"))) == (1 if lost else 0)
    assert json.loads((log / "_writers" / f"{state['writer']}.json").read_text())["pid"] == state["pid"]


def test_a_new_server_on_a_killed_servers_log_goes_on(tmp_path, churn_path):
    """The temporary a killed writer left does not stop the next one, nor readers, nor drift."""
    log = tmp_path / "predictions"
    recs = records(churn_frame(60, 10))
    for run in ("k", "t"):
        with process_server([str(churn_path), "--log", str(log), "--log-rotate", "600"], tmp_path) as srv, \
                httpx.Client() as client:
            for i, rec in enumerate(recs):
                r = client.post(f"{srv.http}/v2/models/churn/records", json={"records": [rec]},
                                headers={"x-request-id": f"{run}{i}"})
                assert r.status_code == 200
            _state_when(log, lambda s, run=run: s["accepted"] == 60 and s["pid"] == srv.proc.pid)
            if run == "k":
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait(10)
    # the killed run's rows were all in its open file; the gracefully stopped run's are all there
    ids = set(read_log(str(log)).column("id").to_pylist())
    assert ids == {f"t{i}" for i in range(60)}
    states = {s["pid"]: s for s in writers(str(log))}
    assert len(states) == 2 and sum(s["unflushed"] for s in states.values()) == 60
    assert sum(bool(s["stopped"]) for s in states.values()) == 1
