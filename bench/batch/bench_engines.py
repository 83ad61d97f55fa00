"""``modelport score --engine dask`` and ``--engine spark`` against local ``modelport score`` (issue 17 part 3).

    python bench/batch/bench_engines.py --rows 10000000 --repeat 1

Each variant is ``modelport score BUNDLE rows_N.parquet -o OUT --json`` in its own process, as a user
runs it: ``local`` (the default single process), ``dask`` (the command starts its own LocalCluster:
one single-threaded worker process per core) and ``spark`` (its own ``local[*]`` session). The
engines' times include their start-up, which is also printed apart, with the rest of each job's
breakdown from ``--json``: ``startup`` (cluster / session, bundle on the workers), ``scoring``
(until the last part is in; parts are appended to the output meanwhile), ``write`` (finishing
the output) and ``shutdown`` (closing the LocalCluster). Target: each engine's job time at most
1.3x local's.

The machine is shared, so the CPU time of each command's whole process tree (sampled from /proc
every 0.1 s: the command, Dask's workers, Spark's JVM and Python workers) is printed too; its
ratio to local's says what an engine costs whatever the load. Every engine's output is compared
with local's, value for value.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _data import add_workdir_option, open_workdir, parquet_file

_TICK = os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> dict[int, float]:
    """CPU seconds so far of ``root`` and each of its live descendants (user + system, each its own)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    keep = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in keep and pid not in keep:
                keep.add(pid)
                changed = True
    return {pid: cpu[pid] for pid in keep if pid in cpu}


def run_cli(cmd: list[str]) -> tuple[dict, float, float]:
    """Run ``cmd``; its ``--json`` result, wall seconds and the CPU seconds of its process tree."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid, c in _tree(proc.pid).items():
                seen[pid] = max(seen.get(pid, 0.0), c)
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    # each process's own time, seen last at most 0.1 s before it ended (children's times that a
    # parent collects when it reaps them are not added: they would count twice)
    return json.loads(out.strip().splitlines()[-1]), wall, sum(seen.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--engines", default="local,dask,spark")
    ap.add_argument("--no-compare", action="store_true", help="skip comparing the outputs with local's")
    add_workdir_option(ap)
    args = ap.parse_args()
    work, bf = open_workdir(args.workdir)
    src = parquet_file(work, args.rows)
    engines = [e for e in args.engines.split(",") if e]
    print(f"{args.rows:,} rows x 20 columns ({src.stat().st_size / 1e9:.2f} GB Parquet), 100-tree model, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, list[dict]] = {e: [] for e in engines}
    for _ in range(args.repeat):
        for engine in engines:
            out = work / f"engines-{engine}.parquet"
            cmd = [sys.executable, "-m", "modelport", "score", str(bf), str(src), "-o", str(out), "--overwrite",
                   "--no-progress", "--json", "--engine", engine]
            r, wall, cpu = run_cli(cmd)
            r.update(wall=wall, cpu=cpu, load=os.getloadavg()[0])
            results[engine].append(r)
            t = r["timings"]
            print(f"{engine:6s} job {r['seconds']:6.1f} s (startup {t['startup']:5.1f}, scoring {t['scoring']:6.1f}, "
                  f"write {t['write']:4.1f}, shutdown {t.get('shutdown', 0.0):4.1f})  process {wall:6.1f} s  "
                  f"CPU {cpu:6.1f} s  load {r['load']:.1f}", flush=True)
            if engine != "local" and "local" in engines and not args.no_compare:
                import pyarrow.parquet as pq

                same = pq.read_table(out).equals(pq.read_table(work / "engines-local.parquet"))
                print(f"       output identical to local's: {'yes' if same else 'NO'}", flush=True)
                if not same:
                    raise SystemExit("the outputs differ")
    if "local" in results:
        print("ratios to local, per round (job time incl. start-up / CPU time of the process tree):")
        for engine in engines:
            if engine == "local":
                continue
            for i, r in enumerate(results[engine]):
                ref = results["local"][i]
                print(f"  {engine:6s} round {i + 1}: x{r['seconds'] / ref['seconds']:.2f} job "
                      f"(x{(r['seconds'] - r['timings']['startup']) / ref['seconds']:.2f} without start-up), "
                      f"x{r['wall'] / ref['wall']:.2f} process, x{r['cpu'] / ref['cpu']:.2f} CPU  (target <= 1.3 job)")


if __name__ == "__main__":
    main()
