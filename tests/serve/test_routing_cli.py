"""``modelport serve --routing`` as installed (the console script, in a subprocess): V2, TF Serving
and MLflow clients on one port through one route, shadows and arms in the prediction log
(``--log``), feedback reaching both the log and the route's tallies, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import free_port
from .routing_models import with_graph

pytestmark = pytest.mark.integration

ROW = [5.1, 3.5, 1.4, 0.2]


def v2(row: list[float] = ROW) -> dict:
    return {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": row}]}


def test_console_script_serves_a_route_to_every_protocol_and_logs_arms_and_shadows(bundles, tmp_path):
    import modelport as mp
    from modelport.monitor.read import read_log

    v2_graph = mp.load(bundles.iris_v2)
    shadow_path = tmp_path / "iris3.mpk"
    with_graph(v2_graph, v2_graph.onnx_model, version="3").save(shadow_path)
    exe = Path(sys.executable).with_name("modelport")
    assert exe.exists(), exe
    routing = tmp_path / "routing.toml"
    routing.write_text(f"""
[iris]
production = {{ model = "{bundles.iris_v1}", weight = 50 }}
canary     = {{ model = "{bundles.iris_v2}", weight = 50, sticky = "customer_id" }}
shadow     = ["{shadow_path}"]
[iris.bandit]
policy = "thompson"
min_labels = 1000
""")
    logdir = tmp_path / "predictions"
    port = free_port()
    out = tmp_path / "server.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([str(exe), "serve", "--routing", str(routing), "--log", str(logdir), "--log-rotate", "0.5",
                                 "--port", str(port), "--grpc-port", str(free_port()), "--log-level", "warning"],
                                stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, out.read_text()
            try:
                if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, out.read_text()
            time.sleep(0.1)
        with httpx.Client(timeout=30) as c:
            answers = []
            for i in range(30):
                r = c.post(f"{url}/v2/models/iris/infer", json={**v2(), "parameters": {"customer_id": f"c{i}"}})
                assert r.status_code == 200, r.text
                answers.append((r.headers["x-request-id"], r.headers["x-model-arm"], r.headers["x-model-version"]))
            tfs = c.post(f"{url}/v1/models/iris:predict", json={"instances": [ROW]})
            mlf = c.post(f"{url}/invocations", json={"instances": [ROW]})
            labelled = c.post(f"{url}/v1/models/iris/labels/canary:predict", json={"instances": [ROW]})
            for r in (tfs, mlf):
                assert r.status_code == 200 and r.headers["x-model-arm"] in ("production", "canary"), r.text
            assert labelled.headers["x-model-version"] == "2"
            fb = c.post(f"{url}/v2/models/iris/feedback",
                        json={"records": [{"id": rid, "label": 0} for rid, _, _ in answers]})
            assert fb.status_code == 200, fb.text
            doc = fb.json()
            assert doc["received"] == 30 and doc["routing"] == {"joined": 30, "unknown_ids": 0}
            bad = c.post(f"{url}/v2/models/iris/feedback", json={"records": [{"id": answers[0][0], "label": "purple"}]})
            assert bad.status_code == 400 and "not one of the model's classes" in bad.json()["error"]
            # shadows run after the answers: wait until each routed request was shadowed or dropped (counted)
            want = len(answers)  # at least the /infer answers (the TF Serving and MLflow ones may add to it)
            deadline = time.time() + 60
            while _shadow_total(c.get(f"{url}/metrics").text) < want:
                assert time.time() < deadline, c.get(f"{url}/metrics").text[-3000:]
                time.sleep(0.1)
            dropped = _shadow_total(c.get(f"{url}/metrics").text, "modelport_shadow_dropped")
            time.sleep(1.0)  # log files rotate
            route = c.get(f"{url}/v2/repository/models/iris/route").json()
        assert sum(a["realised"].get("accuracy") is not None for a in route["arms"]) >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    # uvicorn re-raises the signal it drained on, so a clean stop reads as -SIGTERM
    assert proc.returncode in (0, -signal.SIGTERM), out.read_text()
    assert "Traceback" not in out.read_text()
    table = read_log(logdir, model="iris", roles=None).to_pydict()
    by_role: dict[str, list[int]] = {}
    for i, role in enumerate(table["role"]):
        by_role.setdefault(role, []).append(i)
    answered = {table["request_id"][i]: (table["arm"][i], table["version"][i]) for i in by_role["answer"]}
    for rid, arm, version in answers:
        assert answered[rid] == (arm, version)
    shadowed = {table["request_id"][i] for i in by_role["shadow"]}
    assert shadowed <= {*answered}  # a shadow's rows carry the id of the answer they shadowed
    assert {table["version"][i] for i in by_role["shadow"]} == {"3"}
    # every routed answer was shadowed, but for those dropped (a busy shadow never delays an answer; counted)
    assert len({rid for rid, _, _ in answers} - shadowed) <= dropped, (dropped, len(shadowed))


def _shadow_total(metrics: str, name: str = "modelport_shadow") -> int:
    """Requests shadowed plus dropped (``modelport_shadow``), or one of the two families, summed over labels."""
    families = ("modelport_shadow_requests", "modelport_shadow_dropped") if name == "modelport_shadow" else (name,)
    total = 0.0
    for line in metrics.splitlines():
        metric = line.split("{", 1)[0].split(" ", 1)[0]
        if metric.removesuffix("_total") in families and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)
