"""Monitoring benchmarks (issue 12), each against its reference measured in the same run.

    python bench/monitor/bench_monitor.py                           # both parts, ~3 minutes
    python bench/monitor/bench_monitor.py --parts serve --duration 5 --rounds 6
    python bench/monitor/bench_monitor.py --parts drift --rows 1000000

``serve``: ``modelport serve`` with the prediction log at 100 % sampling and the live drift
sketches on (``--log DIR --log-sample 1``) against the same server without them, same model (the
serving benchmark's 100-tree RandomForest over 20 float features), single-row V2 JSON requests at
concurrency 8 (``wrk``). Both servers are up at once, pinned to CPU 0 (wrk on CPU 1), loaded one
at a time in interleaved rounds whose order alternates; reported: req/s best and median of each,
their ratio (target >= 0.85), and each server's CPU time per request (from /proc: the steadier
figure on a shared machine). Needs ``wrk``.

``drift``: ``modelport drift BUNDLE LOG --json`` (the console command, end to end: start-up, reading
the Parquet log, every statistic, the JSON) on a log of ``--rows`` rows x 20 numeric columns
written by the prediction log itself; target under 3 s. Also the in-process time of
``drift_of_log``, and, with ``--evidently-python`` (a separate environment with evidently: it needs
pandas < 3, so it is never a dependency of modelport), evidently's data-drift report on the same
rows and reference, for the ratio (target >= 5x).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "serve"))

import bench_serve as bs  # noqa: E402 (the serving benchmark's model, wrk and server helpers)

WORK = Path(tempfile.gettempdir()) / "modelport-bench-monitor"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _total_cpu(pid: int) -> float:
    """CPU seconds of a server and its children (``--workers``; one worker here: the process itself)."""
    return _cpu_seconds(pid)


def part_serve(duration: float, rounds: int) -> None:
    mpk, _, X = bs.build_model()
    body = bs.single_row_body(X)
    log_dir = WORK / "serve-log"
    shutil.rmtree(log_dir, ignore_errors=True)
    plain_port, log_port = bs.free_port(), bs.free_port()
    plain = bs.start_modelport(mpk, plain_port)
    logged = bs.start_modelport(mpk, log_port, "--log", str(log_dir), "--log-sample", "1", "--log-rotate", "60")
    try:
        bs.wait_up(plain_port), bs.wait_up(log_port)
        for port in (plain_port, log_port):
            bs.wrk(port, body, 8, 2)
        res: dict[str, list[tuple[float, float]]] = {"plain": [], "log": []}
        for r in range(rounds):
            order = [("plain", plain_port, plain.pid), ("log", log_port, logged.pid)]
            if r % 2:
                order.reverse()
            for name, port, pid in order:
                c0 = _total_cpu(pid)
                out = bs.wrk(port, body, 8, duration)
                cpu = _total_cpu(pid) - c0
                n = out["rps"] * max(1, round(duration))
                res[name].append((out["rps"], cpu / max(n, 1.0) * 1e6))
                assert out["non2xx"] == 0, out
        time.sleep(1.5)
        state = json.loads(next((log_dir / "_writers").glob("*.json")).read_text())
        for name in ("plain", "log"):
            rps = [x[0] for x in res[name]]
            cpu = [x[1] for x in res[name]]
            print(f"  {name:5}: req/s best {max(rps):7.0f} median {statistics.median(rps):7.0f} "
                  f"({min(rps):.0f}-{max(rps):.0f}); CPU per request median {statistics.median(cpu):6.1f} us")
        best = max(x[0] for x in res["log"]) / max(x[0] for x in res["plain"])
        med = statistics.median(x[0] for x in res["log"]) / statistics.median(x[0] for x in res["plain"])
        cpu_ratio = statistics.median(x[1] for x in res["plain"]) / statistics.median(x[1] for x in res["log"])
        print(f"serve, concurrency 8, log 100 % + drift sketches / without: throughput ratio best {best:.2f}, "
              f"median {med:.2f}; inverse CPU per request ratio {cpu_ratio:.2f} (target >= 0.85); "
              f"log: accepted {state['accepted']:,}, dropped {state['dropped']:,}, load average "
              f"{os.getloadavg()[0]:.1f}")
    finally:
        bs._stop(plain, logged)


def build_drift_log(rows: int) -> tuple[Path, Path, Path]:
    """A 20-column logistic regression bundle, and a log of ``rows`` rows (5 columns shifted)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import modelport as mp
    from modelport.monitor.log import PredictionLog

    root = WORK / f"drift-{rows}"
    mpk, log, ref = root / "m.mpk", root / "log", root / "reference.parquet"
    if (root / "done").exists():
        return mpk, log, ref
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    cols = [f"f{i}" for i in range(20)]
    train = pd.DataFrame(rng.normal(size=(5000, 20)), columns=cols)
    y = (train.f0 + train.f1 - train.f2 > 0).astype(int)
    bundle = mp.pack(LogisticRegression(max_iter=500).fit(train, y), train, name="m", version="1")
    bundle.save(mpk)
    train.to_parquet(ref)  # the reference evidently gets (modelport's is in the bundle)
    plog = PredictionLog(log, rotate_seconds=3600, max_pending_rows=2_000_000)
    target = plog.model(bundle)
    chunk = 100_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        data = rng.normal(size=(n, 20))
        data[:, :5] += 0.5  # some drift to find
        frame = pd.DataFrame(data, columns=cols)
        plog.wait_room(n)
        target.write(f"r{start}", n, data=frame, outputs=bundle.predict(frame))
    plog.close()
    assert plog.stats.written == rows, plog.stats
    (root / "done").write_text("ok")
    return mpk, log, ref


EVIDENTLY = """
import sys, time, pandas as pd, pyarrow.parquet as pq
t0 = time.perf_counter()
from evidently import Report
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1])
cur = pq.read_table(sys.argv[2], columns=[f"in.f{i}" for i in range(20)]).to_pandas()
cur.columns = [c[3:] for c in cur.columns]
t1 = time.perf_counter()
snap = Report([DataDriftPreset()]).run(cur, ref)
snap.dict()
t2 = time.perf_counter()
print(f"EVIDENTLY {t2 - t0:.3f} {t2 - t1:.3f}")
"""


def part_drift(rows: int, repeats: int, evidently_python: str | None) -> None:
    from modelport.monitor.drift import drift_of_log

    t0 = time.perf_counter()
    mpk, log, ref = build_drift_log(rows)
    built = time.perf_counter() - t0
    script = shutil.which("modelport") or str(Path(sys.executable).parent / "modelport")
    import resource

    cli, cli_cpu = [], []
    for _ in range(repeats):
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run([script, "drift", str(mpk), str(log), "--json"], capture_output=True, text=True)
        cli.append(time.perf_counter() - t)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_cpu.append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
        assert r.returncode == 10, r.stderr  # the shifted columns drift
        doc = json.loads(r.stdout)
        assert doc["rows"] == rows
    api, api_cpu = [], []
    for _ in range(repeats):
        c0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        rep = drift_of_log(str(mpk), str(log))
        api.append(time.perf_counter() - t)
        c1 = resource.getrusage(resource.RUSAGE_SELF)
        api_cpu.append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
    drifted = sorted(c.name for c in rep.columns if c.drifted)
    print(f"drift, {rows:,} logged rows x 20 columns (log built in {built:.1f} s): `modelport drift --json` "
          f"wall best {min(cli):.2f} s median {statistics.median(cli):.2f} s, CPU best {min(cli_cpu):.2f} s (target < 3 s); "
          f"drift_of_log in-process wall best {min(api):.2f} s, CPU best {min(api_cpu):.2f} s; drifted {drifted}; "
          f"load average {os.getloadavg()[0]:.1f}")
    if evidently_python:
        import pyarrow.parquet as pq

        from modelport.monitor.read import read_log

        merged = WORK / "current.parquet"  # the same rows, as one plain Parquet file for evidently's pandas
        pq.write_table(read_log(str(log), columns=["in.*"]), merged)
        times: list[float] = []
        ev_cpu: list[float] = []
        for _ in range(repeats):
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = subprocess.run([evidently_python, "-c", EVIDENTLY, str(ref), str(merged)], capture_output=True, text=True)
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            ev_cpu.append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
            assert r.returncode == 0, r.stderr[-3000:]
            line = next(x for x in r.stdout.splitlines() if x.startswith("EVIDENTLY"))
            times.append(float(line.split()[1]))
        print(f"  evidently DataDriftPreset on the same rows: wall best {min(times):.2f} s (import and reading included), "
              f"CPU best {min(ev_cpu):.2f} s -> modelport is {min(times) / min(cli):.1f}x faster by wall time, "
              f"{min(ev_cpu) / min(cli_cpu):.1f}x by CPU time, end to end (target >= 5x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="serve,drift")
    ap.add_argument("--duration", type=float, default=5, help="seconds per wrk run (serve)")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved rounds (serve)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="logged rows (drift)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (drift)")
    ap.add_argument("--evidently-python", default=None, help="python of a separate environment with evidently")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    if "serve" in parts:
        part_serve(args.duration, args.rounds)
    if "drift" in parts:
        part_drift(args.rows, args.repeats, args.evidently_python)


if __name__ == "__main__":
    main()
