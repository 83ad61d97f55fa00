"""The monitoring commands as installed (the ``modelport`` console script in a clean environment):
drift's exit codes and reports, monitor's rules and actions (a real webhook receiver, a real
registry), ui serving the page, and clear errors for bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from tests.serve.conftest import free_port
from tests.test_entry_points import clean_env, modelport_script

import modelport as mp
from modelport.monitor.log import PredictionLog

from .conftest import churn_frame, churn_label

pytestmark = pytest.mark.integration

DAY = 86400.0


def _mp(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run([str(modelport_script()), *args], env={**clean_env(tmp_path), **(env or {})},
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def _log(path: Path, bundle, frames: list[tuple[str, object, float]]) -> Path:
    """A prediction log holding each (id prefix, frame, timestamp) as one logged request."""
    log = PredictionLog(path, rotate_seconds=3600)
    ml = log.model(bundle)
    for prefix, frame, ts in frames:
        ml.write(prefix, len(frame), data=frame, outputs=bundle.predict(frame), ts=ts)
    log.close()
    return path


def test_drift_exits_0_without_drift_10_with_it_and_writes_an_offline_html_report(tmp_path, churn_path):
    bundle = mp.load(churn_path)
    stable = _log(tmp_path / "stable", bundle, [("s", churn_frame(2000, 11), time.time())])
    shifted_frame = churn_frame(2000, 12)
    shifted_frame["spend"] += 15.0
    shifted = _log(tmp_path / "shifted", bundle, [("x", shifted_frame, time.time())])
    ok = _mp(tmp_path, "drift", str(churn_path), str(stable), "--json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["rows"] == 2000 and not any(c["drifted"] for c in doc["columns"])
    bad = _mp(tmp_path, "drift", str(churn_path), str(shifted), "--since", "1h", "--html", str(tmp_path / "d.html"))
    assert bad.returncode == 10, bad.stderr
    assert "spend" in bad.stdout
    html = (tmp_path / "d.html").read_text()
    assert "spend" in html and "<svg" in html
    assert "http://" not in html and "https://" not in html and "<script src" not in html  # works offline
    # a window with no rows: nothing to compare, said so, not a silent "no drift"
    empty = _mp(tmp_path, "drift", str(churn_path), str(shifted), "--until", "2000-01-01", "--json")
    assert empty.returncode == 0 and json.loads(empty.stdout)["rows"] == 0
    for args, phrase in ((["--since", "yesterday-ish"], "--since"), (["--psi", "-1"], "--psi"),
                         (["--against", str(tmp_path / "nope.parquet")], "nope.parquet")):
        r = _mp(tmp_path, "drift", str(churn_path), str(shifted), *args)
        assert r.returncode not in (0, 10) and phrase in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


class _Hook(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:
        n = int(self.headers["content-length"])
        _Hook.bodies.append({"type": self.headers["content-type"], "body": json.loads(self.rfile.read(n))})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hook():
    _Hook.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/retrain", _Hook.bodies
    finally:
        server.shutdown()
        server.server_close()


def _policy(path: Path, log: Path, *, url: str, labels: Path | None = None, rules: str) -> Path:
    text = f"""
[monitor]
log = "{log}"
model = "models:/churn@production"
window = "1d"
windows = 2
{f'labels = "{labels}"' if labels else ""}

{rules}

[actions.webhook]
url = "{url}"
[actions.tag]
key = "needs-retraining"
[actions.exit]
code = 42
"""
    path.write_text(text)
    return path


def test_monitor_fires_webhook_tag_and_exit_code_from_the_rules(tmp_path, churn_path, hook, monkeypatch):
    from modelport.registry import open_registry

    url, bodies = hook
    home = tmp_path / "home"
    env = {"MODELPORT_HOME": str(home)}
    monkeypatch.setenv("MODELPORT_HOME", str(home))
    monkeypatch.delenv("MODELPORT_REGISTRY", raising=False)
    monkeypatch.delenv("MODELPORT_ARTIFACTS", raising=False)
    reg = open_registry()
    info = reg.push(churn_path, name="churn")
    reg.set_alias("churn", "production", info.version)
    bundle = mp.load(churn_path)
    now = time.time()
    yesterday, today = churn_frame(1500, 21), churn_frame(1500, 22)
    yesterday["spend"] += 15.0
    today["spend"] += 15.0
    log = _log(tmp_path / "log", bundle, [("y", yesterday, now - DAY), ("t", today, now)])
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": f"t:{i}", "label": int(v)}) + "\n"
                              for i, v in enumerate(churn_label(today))))
    rules = """
[[rule]]
name = "spend drift"
when = "drift.psi[spend] > 0.2"
for = 2
actions = ["webhook", "tag", "exit"]

[[rule]]
name = "age drift"
when = "drift.psi[age] > 0.2"

[[rule]]
name = "realised"
when = "realised.accuracy < 2"
actions = ["webhook"]

[[rule]]
name = "estimated drop"
when = "estimated.accuracy_drop > 50%"
"""
    policy = _policy(tmp_path / "monitor.toml", log, url=url, labels=labels, rules=rules)
    dry = _mp(tmp_path, "monitor", "--policy", str(policy), "--dry-run", "--json", env=env)
    assert dry.returncode == 42, dry.stderr
    assert bodies == [] and "needs-retraining" not in open_registry().resolve("models:/churn/1").tags
    r = _mp(tmp_path, "monitor", "--policy", str(policy), "--json", env=env)
    assert r.returncode == 42, r.stderr
    doc = json.loads(r.stdout)
    assert doc["fired"] == ["spend drift", "realised"]
    spend = next(x for x in doc["rules"] if x["name"] == "spend drift")
    assert len(spend["values"]) == 2 and all(v > 0.2 for v in spend["values"])
    realised = next(x for x in doc["rules"] if x["name"] == "realised")
    assert realised["values"][0] is None and 0.5 < realised["values"][1] <= 1.0  # labels only for today
    assert len(bodies) == 1 and bodies[0]["type"] == "application/json"
    assert bodies[0]["body"]["fired"] == ["spend drift", "realised"] and bodies[0]["body"]["model"] == "churn"
    tags = open_registry().resolve("models:/churn/1").tags
    assert tags["needs-retraining"] == "true"
    # only the webhook rule fires: no exit action, exit 0
    only = _policy(tmp_path / "only.toml", log, url=url, rules="""
[[rule]]
when = "drift.psi[spend] > 0.2"
actions = ["webhook"]
""")
    r = _mp(tmp_path, "monitor", "--policy", str(only), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FIRED" in r.stdout and "action: webhook" in r.stdout and len(bodies) == 2
    # a webhook that cannot be reached: exit 13, said so
    dead = _policy(tmp_path / "dead.toml", log, url=f"http://127.0.0.1:{free_port()}/x", rules=rules)
    r = _mp(tmp_path, "monitor", "--policy", str(dead), env=env)
    assert r.returncode == 13 and "could not be reached" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("text, phrase", [
    ("[monitor]\nlog = 'x'\n", "model"),
    ("[monitor]\nlog = 'x'\nmodel = 'm.mpk'\n", "no rules"),
    ("[monitor]\nlog = 'x'\nmodel = 'm.mpk'\n[[rule]]\nwhen = 'drift.psi >> 1'\n", "METRIC OP NUMBER"),
    ("[monitor]\nlog = 'x'\nmodel = 'm.mpk'\n[[rule]]\nwhen = 'drift.speed > 1'\n", "unknown metric"),
    ("[monitor]\nlog = 'x'\nmodel = 'm.mpk'\n[[rule]]\nwhen = 'drift.psi > 1'\nactions = ['tag']\n", "registry URI"),
    ("[monitor]\nlog = 'x'\nmodel = 'm.mpk'\n[[rule]]\nwhen = 'drift.psi > 1'\nactions = ['webhook']\n", "url"),
    ("[monitor]\nlog = 'x'\nmodel = 'm.mpk'\nwindows = 0\n[[rule]]\nwhen = 'drift.psi > 1'\n", "windows"),
    ("not toml [", "not valid TOML"),
])
def test_bad_policies_are_clear_errors(tmp_path, text, phrase):
    path = tmp_path / "p.toml"
    path.write_text(text)
    r = _mp(tmp_path, "monitor", "--policy", str(path))
    assert r.returncode not in (0, 10, 13) and phrase in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_ui_serves_the_page_and_the_logs_numbers(tmp_path, churn_path):
    bundle = mp.load(churn_path)
    log = _log(tmp_path / "log", bundle, [("u", churn_frame(300, 5), time.time())])
    port = free_port()
    out = tmp_path / "ui.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([str(modelport_script()), "ui", "--log", str(log), "--port", str(port), "--bundle",
                                 str(churn_path)],
                                env=clean_env(tmp_path), cwd=tmp_path, stdout=fh, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, out.read_text()
            try:
                if httpx.get(f"{base}/ui/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, out.read_text()
            time.sleep(0.2)
        assert httpx.get(base + "/").status_code == 307
        drift = httpx.get(f"{base}/ui/api/drift", params={"model": "churn"}, timeout=60).json()
        assert drift["rows"] == 300
        perf = httpx.get(f"{base}/ui/api/perf", params={"model": "churn"}, timeout=60).json()
        assert sum(w["predictions"] for w in perf["windows"]) == 300
        nope = httpx.get(f"{base}/ui/api/drift", params={"model": "nope"}, timeout=60)
        assert nope.status_code == 404 and "--bundle" in nope.json()["hint"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    bad = _mp(tmp_path, "ui", "--log", str(churn_path), "--port", str(free_port()))
    assert bad.returncode != 0 and "not a directory" in bad.stderr and "Traceback" not in bad.stderr
