"""Run the fuzzing cases through a pool of capped worker processes and count what happened.

Outcomes of a case (``worker.py`` decides the first five; this module the last two):

- ``refused``: a modelport error, at load (including the file-by-file report), inspect, or the reference check
  (``modelport verify``'s and registry push's verdict);
- ``accepted``: loaded, verified, and it answers exactly like its seed on the seed's reference rows, and, when its
  graph is the seed's byte for byte, on probe rows no reference check saw (a resealed graph is held to its
  reference rows only: that bundles are not silently *replaced* is what signatures are for);
- failures: ``raw`` (any other exception), ``different`` (accepted yet answering otherwise), ``leak`` (an output
  holding the secret file planted in the workers' working directory), ``hang`` (past the per-case timeout: the
  worker is killed and replaced) and ``killed`` (the worker died: the memory cap, or a crash in native code).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzz import cases as case_mod
from tests.fuzz import seeds as seed_mod

ROOT = Path(__file__).resolve().parents[2]
FAILURES = ("raw", "different", "leak", "hang", "killed")
SECRET = b"\xa5TOPSECRET-fuzz-" + b"0123456789abcdef"


@dataclass
class Report:
    cases: int
    seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)
    by_family: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.cases} cases in {self.seconds:.1f} s: " + ", ".join(
            f"{k} {self.outcomes[k]}" for k in ("refused", "accepted", *FAILURES))]
        for family in sorted(self.by_family):
            counts = self.by_family[family]
            lines.append(f"  {family:9s} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for f in self.failures[:25]:
            lines.append(f"  FAILURE {f['outcome']}: case {f['id']} ({f['family']}: {f['detail']}) at "
                         f"{f.get('stage')}: {f.get('error')} {f.get('message', '')[:300]}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"cases": self.cases, "seconds": self.seconds, "outcomes": dict(self.outcomes),
                "by_family": {k: dict(v) for k, v in self.by_family.items()}, "failures": self.failures}


class _Worker:
    def __init__(self, run_dir: Path, cap_mib: int, log: Path) -> None:
        self.log = log.open("ab")  # closed in kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz.worker", str(cap_mib)], cwd=run_dir, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buffer = b""
        self.case: dict[str, Any] | None = None
        self.started = 0.0

    def send(self, case: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.case = case
        self.started = time.monotonic()
        self.proc.stdin.write((json.dumps(case) + "\n").encode())
        self.proc.stdin.flush()

    def lines(self) -> list[bytes]:
        assert self.proc.stdout is not None
        try:
            chunk = self.proc.stdout.read()
        except BlockingIOError:
            chunk = None
        if chunk == b"":
            raise EOFError
        self.buffer += chunk or b""
        *done, self.buffer = self.buffer.split(b"\n")
        return [ln for ln in done if ln.startswith(b'{"id"')]

    def kill(self) -> None:
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()


def run(*, cases: int, seed: int, workers: int = 2, timeout: float = 60.0, cap_mib: int = 1024,
        work: Path | None = None, keep: bool = False, progress: bool = False) -> Report:
    """Generate ``cases`` cases from ``seed`` and run them; ``work``: where seeds and cases go (a temporary
    directory by default, removed afterwards unless ``keep``)."""
    t0 = time.perf_counter()
    owned = work is None
    work = Path(tempfile.mkdtemp(prefix="modelport-fuzz-")) if work is None else Path(work)
    try:
        seed_paths = seed_mod.build(work / "seeds")
        run_dir = work / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "secret.bin").write_bytes(SECRET)  # what a crafted graph would try to read
        all_cases = case_mod.generate(seed_paths, work / "cases", cases, seed)
        (work / "cases" / "outside.bin").write_bytes(SECRET)  # where a directory case's symlink points
        results = _dispatch(all_cases, seed_paths, run_dir, workers, timeout, cap_mib, work, progress)
        report = Report(cases=len(all_cases), seconds=0.0)
        for case in all_cases:
            r = results[case.id]
            report.outcomes[r["outcome"]] += 1
            report.by_family.setdefault(case.family, Counter())[r["outcome"]] += 1
            if r["outcome"] in FAILURES:
                report.failures.append({**case.to_dict(), **r})
        report.seconds = time.perf_counter() - t0
        return report
    finally:
        if owned and not keep:
            shutil.rmtree(work, ignore_errors=True)


def _dispatch(all_cases: list[case_mod.Case], seed_paths: dict[str, Path], run_dir: Path, n_workers: int,
              timeout: float, cap_mib: int, work: Path, progress: bool) -> dict[int, dict[str, Any]]:
    dicts = [{**c.to_dict(), "seed_path": str(seed_paths[c.seed])} for c in all_cases]
    return run_cases(dicts, run_dir, n_workers=n_workers, timeout=timeout, cap_mib=cap_mib, logs=work,
                     progress=progress)


def run_cases(case_dicts: list[dict[str, Any]], run_dir: Path, *, n_workers: int, timeout: float, cap_mib: int,
              logs: Path, progress: bool = False) -> dict[int, dict[str, Any]]:
    """Run cases (dicts with ``id``, ``path``, ``seed_path``, ``same_graph``) through capped workers started in
    ``run_dir`` (which must hold ``secret.bin``); returns id -> the worker's result, or a hang / killed verdict."""
    pending = list(reversed(case_dicts))
    results: dict[int, dict[str, Any]] = {}
    work = logs
    spawned = 0

    def spawn() -> _Worker:
        nonlocal spawned
        spawned += 1
        return _Worker(run_dir, cap_mib, work / f"worker-{spawned}.log")

    pool = [spawn() for _ in range(max(1, min(n_workers, len(pending))))]
    sel = selectors.DefaultSelector()
    for w in pool:
        sel.register(w.proc.stdout, selectors.EVENT_READ, w)  # type: ignore[arg-type]
        if pending:
            w.send(pending.pop())
    total = len(pending) + len(pool)
    while len(results) < total:
        busy = [w for w in pool if w.case is not None]
        if not busy:
            break
        wait = max(0.05, min(w.started + timeout for w in busy) - time.monotonic())
        for key, _ in sel.select(wait):
            w = key.data
            try:
                for line in w.lines():
                    r = json.loads(line)
                    results[r["id"]] = r
                    w.case = None
            except EOFError:
                assert w.case is not None
                code = w.proc.wait()
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
                results[w.case["id"]] = {"id": w.case["id"], "outcome": "killed", "error": how}
                w.case = None
                w = _replace(w, pool, sel, spawn)
            if w.case is None and pending:
                w.send(pending.pop())
        now = time.monotonic()
        for w in list(pool):
            if w.case is not None and now - w.started > timeout:
                results[w.case["id"]] = {"id": w.case["id"], "outcome": "hang", "error": f"over {timeout:.0f} s"}
                w.case = None
                w = _replace(w, pool, sel, spawn)
                if pending:
                    w.send(pending.pop())
        if progress:
            print(f"\r{len(results)}/{total}", end="", file=sys.stderr, flush=True)
    for w in pool:
        sel.unregister(w.proc.stdout)  # type: ignore[arg-type]
        assert w.proc.stdin is not None
        w.proc.stdin.close()
        w.kill()
    if progress:
        print(file=sys.stderr)
    return results


def _replace(w: _Worker, pool: list[_Worker], sel: selectors.BaseSelector, spawn: Any) -> _Worker:
    sel.unregister(w.proc.stdout)  # type: ignore[arg-type]
    w.kill()
    new = spawn()
    pool[pool.index(w)] = new
    sel.register(new.proc.stdout, selectors.EVENT_READ, new)  # type: ignore[arg-type]
    return new
