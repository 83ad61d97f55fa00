"""Serving benchmark: modelport vs the bare reference endpoint (bench/serve/bare.py), same run.

Model: a 100-tree, depth-10 RandomForest over 20 float features. Load: ``wrk`` on loopback,
single-row V2 JSON requests, one server worker pinned to CPU 0 and the load generator to CPU 1.

    python bench/serve/bench_serve.py                 # all parts, ~2 minutes
    python bench/serve/bench_serve.py --duration 5 --parts throughput

Parts: ``throughput`` (concurrency 8 and 32: throughput ratio and p99 ratio vs bare),
``overload`` (concurrency 256 against modelport: status codes, p99 vs the timeout),
``binary`` (one 10,000-row request, binary tensor extension vs JSON, end to end), and on request
``soak`` (concurrency 64 for --soak-seconds, default 5 minutes: statuses and server memory),
``memory`` (peak server memory of one large request per kind, as a multiple of its body),
``versus-tree`` (this tree's modelport against another source tree's, ``--base-src``: interleaved
rounds at concurrency 1 (single-row latency), 8 and 32; best-of, median and spread per side),
``mlserver`` (MLServer 1.7 + mlserver-sklearn on the same forest from joblib, adaptive batching on,
against modelport; needs --mlserver-bin from a separate venv) and ``mlflow`` (``mlflow models
serve`` on the same forest, one worker; needs --mlflow-bin from a separate venv).
Needs ``wrk`` (Debian: apt-get install wrk) for throughput, overload and versus-tree.

    git archive a7aff65 src | tar -x -C /tmp/base    # the tree to compare with
    python bench/serve/bench_serve.py --parts versus-tree --base-src /tmp/base/src --duration 4 --rounds 6
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORK = Path(tempfile.gettempdir()) / "modelport-bench-serve"
PARALLEL_WORKERS = int(os.environ.get("MLSERVER_PARALLEL_WORKERS", "0"))  # 1 (its default) failed requests here

LUA_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("BODY_PATH"):read("*a")
"""

LUA_COUNTS = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("BODY_PATH"):read("*a")
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) counts = {} end
response = function(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
done = function(summary, latency, requests)
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do io.write(string.format("STATUS %d %d\\n", k, v)) end
  end
end
"""


def build_model() -> tuple[Path, Path, np.ndarray]:
    WORK.mkdir(parents=True, exist_ok=True)
    mpk, onnx_path, xs = WORK / "rf.mpk", WORK / "rf.onnx", WORK / "X.npy"
    if not mpk.exists():
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier

        import modelport as mp

        X, y = make_classification(n_samples=4000, n_features=20, n_informative=12, random_state=0)
        model = RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0, n_jobs=2).fit(X, y)
        bundle = mp.pack(model, X, name="rf", version="1")
        bundle.save(mpk)
        import joblib  # MLServer's sklearn runtime loads the model this way (our own file, in a temp dir)

        model.set_params(n_jobs=1)  # one-row predictions: joblib's thread pool would only add overhead
        joblib.dump(model, WORK / "rf.joblib")
        onnx_path.write_bytes(bundle.model_bytes)
        np.save(xs, X.astype(np.float32))
    return mpk, onnx_path, np.load(xs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, path: str = "/v2/health/ready", timeout: float = 60) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1)
            return  # any answer: it listens (the bare endpoint answers GETs with an error)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not come up")


def start_bare(onnx_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BARE_MODEL": str(onnx_path), "PYTHONPATH": str(ROOT)}
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "uvicorn", "bench.serve.bare:app", "--port", str(port),
           "--log-level", "warning", "--no-access-log", "--http", "httptools", "--loop", "uvloop"]
    return subprocess.Popen(cmd, env=env, cwd=ROOT)


def start_modelport(mpk: Path, port: int, *extra: str, src: Path | None = None) -> subprocess.Popen[bytes]:
    """``modelport serve`` pinned to CPU 0; ``src``: run the modelport package of that source tree."""
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "modelport", "serve", str(mpk), "--port", str(port),
           "--log-level", "warning", *extra]
    env = None
    if src is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env)


def wrk(port: int, body: Path, conns: int, duration: float, *, counts: bool = False,
        path: str = "/v2/models/rf/infer") -> dict[str, float]:
    script = WORK / ("counts.lua" if counts else "post.lua")
    script.write_text((LUA_COUNTS if counts else LUA_POST).replace("BODY_PATH", str(body)))
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "10s",
           "-s", str(script), f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    result = {"rps": rps, "p50_ms": p50, "p99_ms": p99}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    errors = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = errors.group(1) if errors else "none"  # type: ignore[assignment]
    for code, n in re.findall(r"STATUS (\d+) (\d+)", out):
        result[f"status_{code}"] = float(n)
    return result


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v


def single_row_body(X: np.ndarray) -> Path:
    import orjson

    body = {"inputs": [{"name": "X", "shape": [1, 20], "datatype": "FP32", "data": X[0].tolist()}]}
    path = WORK / "one_row.json"
    path.write_bytes(orjson.dumps(body))
    return path


def part_throughput(mpk: Path, onnx_path: Path, X: np.ndarray, duration: float, extra: list[str]) -> None:
    body = single_row_body(X)
    bp, mp_port = free_port(), free_port()
    bare, ours = start_bare(onnx_path, bp), start_modelport(mpk, mp_port, *extra)
    try:
        wait_up(bp, "/"), wait_up(mp_port)
        for port in (bp, mp_port):  # warm both
            wrk(port, body, 8, 2)
        for conns in (8, 32):
            b = wrk(bp, body, conns, duration)
            m = wrk(mp_port, body, conns, duration)
            print(
                f"concurrency {conns:>3}: bare {b['rps']:8.0f} req/s p99 {b['p99_ms']:6.2f} ms | "
                f"modelport {m['rps']:8.0f} req/s p99 {m['p99_ms']:6.2f} ms | "
                f"throughput ratio {m['rps'] / b['rps']:.2f} (target >= 0.9), p99 ratio {m['p99_ms'] / b['p99_ms']:.2f} "
                f"(target <= 1.5); non-2xx {int(m['non2xx'])}"
            )
    finally:
        for p in (bare, ours):
            p.terminate()
            p.wait(10)


def part_versus_tree(mpk: Path, X: np.ndarray, duration: float, base_src: Path, rounds: int) -> None:
    """This tree's modelport against another source tree's (``--base-src``, e.g. an older commit
    unpacked with ``git archive``), same model, same machine, same run: single-row latency at
    concurrency 1, throughput at 8 and 32. Both servers are up at once
    (pinned to the same CPU, loaded one at a time), runs interleaved and the order alternated per
    round, so that a neighbour's load hits both alike. Prints best-of and median per side and
    their ratios (this tree / base)."""
    body = single_row_body(X)
    ours_port, base_port = free_port(), free_port()
    ours = start_modelport(mpk, ours_port, src=ROOT / "src")
    base = start_modelport(mpk, base_port, src=base_src)
    try:
        wait_up(ours_port), wait_up(base_port)
        for port in (ours_port, base_port):  # warm both
            wrk(port, body, 8, 2)
        for conns in (1, 8, 32):
            got: dict[str, list[float]] = {"ours": [], "base": []}
            p50: dict[str, list[float]] = {"ours": [], "base": []}
            cpu: dict[str, list[float]] = {"ours": [], "base": []}
            failed = {"ours": 0, "base": 0}
            procs = {"ours": ours, "base": base}
            for r in range(rounds):
                order = [("ours", ours_port), ("base", base_port)]
                for side, port in order if r % 2 == 0 else order[::-1]:
                    cpu0 = _cpu_seconds(procs[side].pid)
                    result = wrk(port, body, conns, duration)
                    cpu[side].append((_cpu_seconds(procs[side].pid) - cpu0) / max(result["rps"] * duration, 1) * 1e6)
                    got[side].append(result["rps"])
                    p50[side].append(result["p50_ms"])
                    failed[side] += int(result["non2xx"])
            o, b = got["ours"], got["base"]
            co, cb = statistics.median(cpu["ours"]), statistics.median(cpu["base"])
            # server CPU time per request does not depend on how much of the core a busy
            # neighbour leaves: on a shared machine it is the steadier figure
            print(f"concurrency {conns:>3}: server CPU per request, median of rounds: this tree {co:.0f} us, "
                  f"base {cb:.0f} us, ratio {co / cb:.3f} (lower is better)")
            if conns == 1:  # one request at a time: the single-row latency
                lo, lb = min(p50["ours"]), min(p50["base"])
                print(f"concurrency   1, {rounds} rounds of {duration:g} s: single-row latency p50, best of rounds: "
                      f"this tree {lo * 1000:.0f} us, base {lb * 1000:.0f} us, ratio {lo / lb:.3f}; "
                      f"req/s best {max(o):.0f} vs {max(b):.0f}; non-2xx {failed['ours']} / {failed['base']}")
                continue
            print(
                f"concurrency {conns:>3}, {rounds} rounds of {duration:g} s: "
                f"this tree best {max(o):.0f} median {statistics.median(o):.0f} (spread {min(o):.0f}-{max(o):.0f}) | "
                f"base best {max(b):.0f} median {statistics.median(b):.0f} (spread {min(b):.0f}-{max(b):.0f}) req/s | "
                f"ratio best {max(o) / max(b):.3f}, median {statistics.median(o) / statistics.median(b):.3f} "
                f"(target >= 0.95); non-2xx {failed['ours']} / {failed['base']}"
            )
    finally:
        _stop(ours, base)


def part_overload(mpk: Path, onnx_path: Path, X: np.ndarray, duration: float, timeout: float) -> None:
    body = single_row_body(X)
    port, bp = free_port(), free_port()
    ours = start_modelport(mpk, port, "--request-timeout", str(timeout), "--max-queue", "512")
    bare = start_bare(onnx_path, bp)
    try:
        wait_up(port), wait_up(bp, "/")
        r = wrk(port, body, 256, duration, counts=True)
        b = wrk(bp, body, 256, duration, counts=True)  # the same load on the reference, for context
        statuses = {k: int(v) for k, v in r.items() if k.startswith("status_")}
        other = {k: v for k, v in statuses.items() if k not in ("status_200", "status_503")}
        print(
            f"concurrency 256: modelport {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms "
            f"(request timeout {timeout * 1000:.0f} ms); statuses {statuses}; socket errors: {r['socket_errors']}; "
            f"{'OK: only 200 and deliberate 503' if not other else 'UNEXPECTED statuses ' + str(other)} | "
            f"bare {b['rps']:.0f} req/s, p50 {b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} ms"
        )
    finally:
        for p in (ours, bare):
            p.terminate()
            p.wait(10)


def part_mlserver(mpk: Path, X: np.ndarray, duration: float, mlserver_bin: str) -> None:
    """MLServer (mlserver-sklearn, the same forest from joblib, adaptive batching on) vs modelport.

    MLServer lives in its own virtual environment; pass its executable with --mlserver-bin.
    """
    import json

    joblib_path = WORK / "rf.joblib"
    if not joblib_path.exists():
        raise SystemExit(f"{joblib_path} is missing: delete {WORK} and run again to rebuild the models")
    body = single_row_body(X)
    repo = WORK / "mlserver"
    (repo / "rf").mkdir(parents=True, exist_ok=True)
    ml_port, grpc_port, metrics_port, mp_port = free_port(), free_port(), free_port(), free_port()
    (repo / "settings.json").write_text(json.dumps({
        "http_port": ml_port, "grpc_port": grpc_port, "metrics_port": metrics_port,
        "parallel_workers": PARALLEL_WORKERS, "debug": False,
    }))
    (repo / "rf" / "model-settings.json").write_text(json.dumps({
        "name": "rf", "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": 8, "max_batch_time": 0.002,
        "parameters": {"uri": str(joblib_path), "version": "1"},
    }))
    ml = subprocess.Popen(["taskset", "-c", "0", mlserver_bin, "start", str(repo)], cwd=repo,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours = start_modelport(mpk, mp_port)
    try:
        wait_up(ml_port, timeout=120), wait_up(mp_port)
        _versus("MLServer", (ml_port, body, "/v2/models/rf/infer"), (mp_port, body), duration, target=5)
    finally:
        _stop(ml, ours)


def part_soak(mpk: Path, X: np.ndarray, duration: float) -> None:
    """Concurrency 64 for ``duration`` seconds: every status, and the server's memory over time."""
    body = single_row_body(X)
    port = free_port()
    ours = start_modelport(mpk, port)
    try:
        wait_up(port)
        wrk(port, body, 64, 3)  # warm: sessions, allocator pools
        rss0 = _rss_mb(ours.pid)
        r = wrk(port, body, 64, duration, counts=True)
        rss1 = _rss_mb(ours.pid)
        statuses = {k: int(v) for k, v in r.items() if k.startswith("status_")}
        print(f"soak, concurrency 64, {duration:.0f} s: {r['rps']:.0f} req/s, statuses {statuses}, "
              f"socket errors: {r['socket_errors']}; server RSS {rss0:.0f} MB -> {rss1:.0f} MB")
    finally:
        ours.terminate()
        ours.wait(10)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_text_model() -> Path:
    """A small pipeline with a text column (one-hot 'plan' + two numbers), for the memory part."""
    path = WORK / "churn.mpk"
    if not path.exists():
        import pandas as pd
        from sklearn.compose import make_column_transformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder

        import modelport as mp

        rng = np.random.default_rng(3)
        df = pd.DataFrame({"age": rng.integers(18, 80, 300), "plan": rng.choice(["basic", "pro", "max"], 300),
                           "spend": rng.normal(50, 10, 300)})
        y = ((df.spend > 50) ^ (df.plan == "max")).astype(int)
        model = make_pipeline(make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                                                      remainder="passthrough"), LogisticRegression(max_iter=500))
        mp.pack(model.fit(df, y), df, name="churn", version="1").save(path)
    return path


def part_memory(mpk: Path, megabytes: float) -> None:
    """Peak server memory of one request, as a multiple of its body, per kind of request: a fresh
    server per kind, warmed, then one request of about ``megabytes`` MB; the figure is the growth
    of the server's VmHWM (peak resident set) over the body size. docs/security-serving.md."""
    import json

    import httpx

    churn = build_text_model()
    size = int(megabytes * (1 << 20))
    rows = size // 200  # about 200 bytes of JSON per 20-feature row
    row = ", ".join(["0.123456"] * 20)
    kinds: list[tuple[str, str, bytes, dict[str, str]]] = []
    data = ", ".join([row] * rows)
    kinds.append(("JSON FP32 matrix", "/v2/models/rf/infer",
                  f'{{"inputs": [{{"name": "X", "shape": [{rows}, 20], "datatype": "FP32", "data": [{data}]}}]}}'.encode(),
                  {}))
    k = size // 30
    kinds.append(("JSON column form with text", "/v2/models/churn/infer", json.dumps({"inputs": [
        {"name": "age", "shape": [k], "datatype": "INT64", "data": [40] * k},
        {"name": "plan", "shape": [k], "datatype": "BYTES", "data": ["pro"] * k},
        {"name": "spend", "shape": [k], "datatype": "FP64", "data": [52.5] * k}]}).encode(), {}))
    raw = np.full((size // 80, 20), 0.5, dtype="<f4").tobytes()
    head = json.dumps({"inputs": [{"name": "X", "shape": [size // 80, 20], "datatype": "FP32",
                                   "parameters": {"binary_data_size": len(raw)}}]}).encode()
    kinds.append(("binary FP32 matrix", "/v2/models/rf/infer", head + raw,
                  {"inference-header-content-length": str(len(head))}))
    m = size // 23
    ages, spends = np.full(m, 40, "<i8").tobytes(), np.full(m, 52.5, "<f8").tobytes()
    plans = (b"\x03\x00\x00\x00" + b"pro") * m
    head = json.dumps({"inputs": [
        {"name": "age", "shape": [m], "datatype": "INT64", "parameters": {"binary_data_size": len(ages)}},
        {"name": "plan", "shape": [m], "datatype": "BYTES", "parameters": {"binary_data_size": len(plans)}},
        {"name": "spend", "shape": [m], "datatype": "FP64", "parameters": {"binary_data_size": len(spends)}}]}).encode()
    kinds.append(("binary column form with text", "/v2/models/churn/infer", head + ages + plans + spends,
                  {"inference-header-content-length": str(len(head))}))
    record = "{" + ", ".join(f'"f{j}": 0.5' for j in range(20)) + "}"
    records = ", ".join([record] * (size // len(record)))
    kinds.append(("records", "/v2/models/rf/records", f'{{"records": [{records}]}}'.encode(), {}))
    for name, path, body, headers in kinds:
        port = free_port()
        proc = start_modelport(mpk, port, str(churn), "--max-body-size", "none", "--max-rows", "0",
                               "--request-timeout", "0")
        try:
            wait_up(port)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as c:
                for _ in range(5):
                    c.post("/v2/models/rf/infer", content=single_row_body_bytes(), headers={"content-type": "application/json"})
                before = _hwm_mb(proc.pid)
                t = time.perf_counter()
                r = c.post(path, content=body, headers={"content-type": "application/json", **headers})
                took = time.perf_counter() - t
            grew = _hwm_mb(proc.pid) - before
            mb = len(body) / (1 << 20)
            print(f"{name}: body {mb:.1f} MB, status {r.status_code}, {took:.2f} s end to end, "
                  f"server peak RSS +{grew:.0f} MB = {grew / mb:.1f}x the body")
        finally:
            _stop(proc)


def single_row_body_bytes() -> bytes:
    return (WORK / "one_row.json").read_bytes()


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def part_binary(mpk: Path, X: np.ndarray, repeats: int) -> None:
    import httpx
    import orjson

    rows = np.resize(X, (10_000, 20)).astype(np.float32)
    port = free_port()
    ours = start_modelport(mpk, port, "--max-batch-size", "1")
    try:
        wait_up(port)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        url = "/v2/models/rf/infer"

        def json_call() -> np.ndarray:
            body = orjson.dumps({"inputs": [{"name": "X", "shape": [10_000, 20], "datatype": "FP32",
                                             "data": rows}]}, option=orjson.OPT_SERIALIZE_NUMPY)
            r = client.post(url, content=body, headers={"content-type": "application/json"})
            r.raise_for_status()
            out = orjson.loads(r.content)["outputs"]
            return np.asarray(next(o for o in out if o["name"] == "probabilities")["data"], dtype=np.float32)

        def binary_call() -> np.ndarray:
            raw = rows.tobytes()
            head = orjson.dumps({
                "inputs": [{"name": "X", "shape": [10_000, 20], "datatype": "FP32",
                            "parameters": {"binary_data_size": len(raw)}}],
                "parameters": {"binary_data_output": True}})
            r = client.post(url, content=head + raw, headers={
                "inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"})
            r.raise_for_status()
            n = int(r.headers["inference-header-content-length"])
            meta = orjson.loads(r.content[:n])
            offset = n
            for o in meta["outputs"]:
                size = o["parameters"]["binary_data_size"]
                if o["name"] == "probabilities":
                    return np.frombuffer(r.content[offset:offset + size], dtype="<f4")
                offset += size
            raise AssertionError("no probabilities")

        assert np.allclose(json_call(), binary_call())
        tj, tb = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            json_call()
            tj.append(time.perf_counter() - t)
            t = time.perf_counter()
            binary_call()
            tb.append(time.perf_counter() - t)
        mj, mb = statistics.median(tj), statistics.median(tb)
        print(f"10,000 rows end to end, httpx + orjson client (median of {repeats}): JSON {mj * 1000:.1f} ms, "
              f"binary {mb * 1000:.1f} ms, binary is {mj / mb:.1f}x faster (target >= 3x)")

        # the same request from the stock Triton HTTP client, as a user of an existing client sends it
        import tritonclient.http as th

        tc = th.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=60, connection_timeout=60)

        def triton_call(binary: bool) -> np.ndarray:
            inp = th.InferInput("X", [10_000, 20], "FP32")
            inp.set_data_from_numpy(rows, binary_data=binary)
            out = th.InferRequestedOutput("probabilities", binary_data=binary)
            return tc.infer("rf", [inp], outputs=[out]).as_numpy("probabilities")

        assert np.allclose(triton_call(False), triton_call(True))
        tj, tb = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            triton_call(False)
            tj.append(time.perf_counter() - t)
            t = time.perf_counter()
            triton_call(True)
            tb.append(time.perf_counter() - t)
        mj, mb = statistics.median(tj), statistics.median(tb)
        print(f"10,000 rows end to end, tritonclient.http (median of {repeats}): JSON {mj * 1000:.1f} ms, "
              f"binary {mb * 1000:.1f} ms, binary is {mj / mb:.1f}x faster (target >= 3x)")
    finally:
        ours.terminate()
        ours.wait(10)


def part_mlflow(mpk: Path, X: np.ndarray, duration: float, mlflow_bin: str) -> None:
    """``mlflow models serve`` (the same forest from joblib, saved with mlflow.sklearn, one worker)
    vs modelport, each answering the same single row in its own protocol.

    MLflow lives in its own virtual environment; pass its executable with --mlflow-bin.
    """
    import json

    joblib_path = WORK / "rf.joblib"
    if not joblib_path.exists():
        raise SystemExit(f"{joblib_path} is missing: delete {WORK} and run again to rebuild the models")
    model_dir = WORK / "mlflow-rf"
    if not model_dir.exists():
        python = Path(mlflow_bin).with_name("python")
        # our own forest: its tree type is trusted explicitly (MLflow 3 saves sklearn models with skops)
        save = ("import sys, joblib, mlflow.sklearn; mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2], "
                "skops_trusted_types=['sklearn.tree._tree.Tree'])")
        tmp = model_dir.with_name(model_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([str(python), "-c", save, str(joblib_path), str(tmp)], check=True)
        tmp.rename(model_dir)
    v2_body = single_row_body(X)
    mlflow_body = WORK / "one_row_mlflow.json"
    mlflow_body.write_text(json.dumps({"inputs": [X[0].tolist()]}))
    ml_port, mp_port = free_port(), free_port()
    ml = subprocess.Popen(
        ["taskset", "-c", "0", mlflow_bin, "models", "serve", "-m", str(model_dir), "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(ml_port), "-w", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # it starts `uvicorn` from PATH: that of its own venv
        env={**os.environ, "PATH": f"{Path(mlflow_bin).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    ours = start_modelport(mpk, mp_port)
    try:
        wait_up(ml_port, "/ping", timeout=180), wait_up(mp_port)
        _versus("mlflow", (ml_port, mlflow_body, "/invocations"), (mp_port, v2_body), duration, target=30)
    finally:
        _stop(ml, ours)


def _versus(name: str, other: tuple[int, Path, str], ours: tuple[int, Path], duration: float, *,
            target: float) -> None:
    """Warm both servers, then wrk each at concurrency 8 and 32 and print the throughput ratio."""
    (o_port, o_body, o_path), (m_port, m_body) = other, ours
    wrk(o_port, o_body, 8, 2, path=o_path)
    wrk(m_port, m_body, 8, 2)
    for conns in (8, 32):
        m = wrk(o_port, o_body, conns, duration, path=o_path)
        o = wrk(m_port, m_body, conns, duration)
        print(
            f"concurrency {conns:>3}: {name} {m['rps']:8.0f} req/s p99 {m['p99_ms']:6.2f} ms "
            f"(non-2xx {int(m['non2xx'])}) | modelport {o['rps']:8.0f} req/s p99 {o['p99_ms']:6.2f} ms | "
            f"throughput ratio {o['rps'] / max(m['rps'], 1e-9):.1f}x (target >= {target:g}x)"
        )


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    ap.add_argument("--parts", default="throughput,overload,binary", help="also: soak")
    ap.add_argument("--soak-seconds", type=float, default=300)
    ap.add_argument("--timeout", type=float, default=0.5, help="request timeout for the overload part (s)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--modelport-args", default="", help="extra `modelport serve` options for the throughput part")
    ap.add_argument("--base-src", type=Path, default=None,
                    help="another tree's src/ directory (git archive COMMIT src | tar -x -C DIR); enables the "
                    "`versus-tree` part: this tree's single-row throughput against that one's")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the versus-tree part")
    ap.add_argument("--memory-mb", type=float, default=16, help="body size of the memory part's requests (MB)")
    ap.add_argument("--mlserver-bin", default=None,
                    help="the `mlserver` executable of a separate venv (pip install 'mlserver==1.7.*' "
                    "'mlserver-sklearn==1.7.*'); enables the `mlserver` part")
    ap.add_argument("--mlflow-bin", default=None,
                    help="the `mlflow` executable of a separate venv (pip install mlflow scikit-learn); "
                    "enables the `mlflow` part")
    args = ap.parse_args()
    parts = args.parts.split(",")
    if {"throughput", "overload", "versus-tree"} & set(parts) and shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    mpk, onnx_path, X = build_model()
    print(f"model: 100 trees, depth 10, 20 features ({mpk.stat().st_size / 1e6:.1f} MB bundle); {os.cpu_count()} CPUs")
    if "throughput" in parts:
        part_throughput(mpk, onnx_path, X, args.duration, args.modelport_args.split())
    if "memory" in parts:
        single_row_body(X)
        part_memory(mpk, args.memory_mb)
    if "versus-tree" in parts:
        if args.base_src is None:
            sys.exit("the versus-tree part needs --base-src DIR (the src/ directory of the tree to compare with)")
        part_versus_tree(mpk, X, args.duration, args.base_src, args.rounds)
    if "overload" in parts:
        part_overload(mpk, onnx_path, X, args.duration, args.timeout)
    if "binary" in parts:
        part_binary(mpk, X, args.repeats)
    if "soak" in parts:
        part_soak(mpk, X, args.soak_seconds)
    if "mlserver" in parts:
        if not args.mlserver_bin:
            sys.exit("the mlserver part needs --mlserver-bin PATH (MLServer in its own virtual environment)")
        part_mlserver(mpk, X, args.duration, args.mlserver_bin)
    if "mlflow" in parts:
        if not args.mlflow_bin:
            sys.exit("the mlflow part needs --mlflow-bin PATH (MLflow in its own virtual environment)")
        part_mlflow(mpk, X, args.duration, args.mlflow_bin)


if __name__ == "__main__":
    main()
