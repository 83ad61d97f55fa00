"""``modelport stream`` as the installed console script: JSON lines through stdin/stdout and files,
clear errors for bad options and unreachable brokers, and --consumers N."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pytest

pytestmark = pytest.mark.integration


BIN = Path(sysconfig.get_path("scripts"))


def modelport_script() -> str:
    return str(BIN / "modelport")


def _run(args, *, stdin: bytes = b"", cwd=None, timeout=120):
    return subprocess.run([modelport_script(), "stream", *args], input=stdin, capture_output=True,
                          timeout=timeout, cwd=cwd, check=False, env={**os.environ})


def test_jsonl_stdin_to_stdout(cat_model):
    records = cat_model.records(300, 51)
    lines = [orjson.dumps({**r, "key": i}) for i, r in enumerate(records)]
    lines.insert(100, b"this is not json")
    lines.insert(200, b"")  # empty lines are skipped, not dead letters
    r = _run([str(cat_model.path), "--source", "-", "--sink", "-"], stdin=b"\n".join(lines) + b"\n")
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    outs = [orjson.loads(line) for line in r.stdout.splitlines()]
    assert [o["key"] for o in outs] == list(range(300))
    want = cat_model.bundle.predict(records)
    assert [o["label"] for o in outs] == want["label"].tolist()
    got = np.array([[o["probabilities"][str(c)] for c in cat_model.bundle.classes] for o in outs])
    np.testing.assert_allclose(got, want["probabilities"], rtol=1e-6, atol=1e-6)
    # ids are line numbers
    assert outs[0]["id"] == "1" and outs[100]["id"] == "102"
    # the bad line is a dead letter on stderr, as JSON, among the JSON logs
    docs = [orjson.loads(line) for line in r.stderr.splitlines() if line.startswith(b"{")]
    dead = [d for d in docs if "reason" in d]
    assert len(dead) == 1 and dead[0]["reason"] == "malformed" and dead[0]["payload"] == "this is not json"
    assert dead[0]["id"] == "101"
    assert any(d.get("message", "").startswith("stopped: 301 message(s) in, 300 out, 1 dead-lettered") for d in docs)


def test_jsonl_files(reg_model, tmp_path):
    records = reg_model.records(50, 52)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(x) for x in records) + b"\n")
    out = tmp_path / "out.jsonl"
    r = _run([str(reg_model.path), "--source", str(src), "--sink", f"file://{out}", "--log-format", "text"])
    assert r.returncode == 0, r.stderr.decode()
    outs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    np.testing.assert_allclose([o["prediction"] for o in outs], reg_model.bundle.predict(records)["prediction"],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("args", "code", "phrase"), [
    (["--source", "kafka://localhost:9092?topic=x", "--sink", "-"], 2, "scheme 'kafka'"),
    (["--source", "redis://127.0.0.1:1/0?group=g", "--sink", "-"], 2, "names no stream"),
    (["--source", "-", "--sink", "redis://127.0.0.1:6379/0?stream=s&colour=red"], None, None),
    (["--source", "-", "--sink", "-", "--max-message-bytes", "lots"], 2, "cannot read the size"),
    (["--source", "-", "--sink", "-", "--keep", "label"], 2, "--keep names field(s) label"),
    (["--source", "-", "--sink", "-", "--consumers", "2"], 2, "JSON-lines source cannot be shared"),
])
def test_bad_options_are_clear_errors(cat_model, args, code, phrase, redis_url):
    if code is None:  # an unknown URL parameter, on the real server
        args = ["--source", "-", "--sink", f"{redis_url}?stream=s&colour=red"]
        code, phrase = 2, "unknown parameter(s) colour"
    r = _run([str(cat_model.path), *args])
    err = r.stderr.decode()
    assert r.returncode == code, err
    assert phrase in err and "Traceback" not in err


def test_unreachable_brokers_are_clear_errors(cat_model):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    for source, phrase in ((f"redis://127.0.0.1:{port}/0?stream=s&group=g", "cannot reach Redis"),
                           (f"nats://127.0.0.1:{port}?stream=S&subject=s", "cannot reach NATS")):
        r = _run([str(cat_model.path), "--source", source, "--sink", "-"], timeout=60)
        err = r.stderr.decode()
        assert r.returncode == 10, err
        assert phrase in err and "Traceback" not in err


def test_a_model_that_does_not_exist(tmp_path):
    r = _run([str(tmp_path / "nope.mpk"), "--source", "-", "--sink", "-"])
    assert r.returncode != 0 and "does not exist" in r.stderr.decode()


@pytest.mark.parametrize("launcher", ["cli", "api"])
def test_consumers_2_share_the_group_and_stop_on_sigterm(launcher, reg_model, rds, tmp_path):
    payloads = [orjson.dumps(r) for r in reg_model.records(20_000, 53)]
    rds.r.xgroup_create(rds.src, "scorers", id="0", mkstream=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "supervisor.log"
    if launcher == "cli":
        command = [modelport_script(), "stream", str(reg_model.path), "--source", rds.source(), "--sink", rds.sink(),
                   "--consumers", "2", "--metrics-port", str(port), "--name", "pair"]
    else:  # a user's script without `if __name__ == "__main__"`: the children must not run it again
        script = tmp_path / "score_stream.py"
        script.write_text(
            "import modelport.stream as ms\n"
            f"stats = ms.run({str(reg_model.path)!r}, source={rds.source()!r}, sink={rds.sink()!r},\n"
            f"              consumers=2, metrics_port={port}, name='pair')\n"
            "print('done', stats.drained)\n"
        )
        command = [sys.executable, str(script)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while log.read_text().count('"message":"consuming ') < 2:  # both children are up (slow machines start late)
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        ids = rds.produce(payloads)
        rds.wait_len(rds.out, len(ids), timeout=120, procs=[proc])
        names = {c["name"].decode() for c in rds.r.xinfo_consumers(rds.src, "scorers")}
        assert {n.rsplit("-", 1)[0] for n in names} == {"pair-0", "pair-1"}, names
        time.sleep(1.5)  # the children share their numbers every second
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        outs = sum(float(v) for v in re.findall(r"^modelport_stream_messages_out_total\{[^}]*\} (\S+)$", body, re.M))
        assert outs == len(ids), body[:2000]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sorted(o["id"] for o in rds.outputs()) == sorted(ids)
    assert rds.pending() == 0
    assert rds.r.xinfo_groups(rds.src)[0]["consumers"] == 0, "both children left the group"


def test_children_stop_when_the_supervisor_is_killed(reg_model, rds, tmp_path):
    log = tmp_path / "supervisor.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([modelport_script(), "stream", str(reg_model.path), "--source", rds.source(),
                                 "--sink", rds.sink(), "--consumers", "2"], stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while log.read_text().count('"message":"consuming ') < 2:
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        pids = [int(p) for p in re.findall(r"started consumer process \d \(pid (\d+)\)", log.read_text())]
        assert len(pids) == 2
        proc.kill()  # SIGKILL: the supervisor cannot forward anything
        proc.wait()
        deadline = time.time() + 30
        alive = pids
        while alive and time.time() < deadline:
            alive = [p for p in pids if _running(p)]
            time.sleep(0.2)
        assert not alive, f"consumer processes {alive} outlived their supervisor"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
