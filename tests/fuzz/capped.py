"""Run modelport on one (hostile) bundle file in a child process under a memory cap, and measure it.

    python -m tests.fuzz.capped ACTION PATH CAP_MIB

ACTION is ``load`` (``Bundle.read``), ``reference`` (load, then read the reference data: what verify and
push do first) or ``check`` (load, then re-run the reference data: ``modelport verify``). The child sets
``RLIMIT_AS`` to what it already uses plus ``CAP_MIB`` (so an allocation past the cap fails inside the
child instead of hurting the machine), and prints one JSON line: the outcome (``ok``, or the exception's
class, whether it is a modelport error, and its message) and the peak resident memory the action added
(the high-water mark of its resident size, reset before the action, minus the size then).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def vm_bytes() -> int:
    """Address space mapped now (what RLIMIT_AS counts)."""
    return _status("VmSize")


def start_peak() -> int:
    """Reset this process's resident high-water mark and return the resident size now.

    Not ``ru_maxrss``: Linux carries a parent's peak into a child across fork and exec, so a child of a large
    process (pytest) would report the parent's peak, not its own.
    """
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current resident size
    return _status("VmRSS")


def peak() -> int:
    return _status("VmHWM")


def cap_memory(extra: int) -> None:
    """Let this process map at most ``extra`` more bytes than it has now (the soft limit: it can be renewed)."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm_bytes() + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def run(action: str, path: str | os.PathLike[str], *, cap_mib: int = 768, timeout: float = 120.0) -> dict[str, Any]:
    """Run ``action`` on ``path`` in a capped child; returns the child's report (``killed`` if it died)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.capped", action, str(path), str(cap_mib)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"outcome": "killed", "returncode": proc.returncode, "stderr": proc.stderr[-2000:]}
    return json.loads(lines[-1])


def _child(action: str, path: str, cap_mib: int) -> dict[str, Any]:
    import numpy  # noqa: F401  - imported before measuring, like any process that loads bundles
    import onnx  # noqa: F401

    from modelport.bundle.core import Bundle
    from modelport.errors import ModelportError
    from modelport.verification import check

    if action == "check":
        import onnxruntime  # noqa: F401
    before = start_peak()
    cap_memory(cap_mib * 1024**2)
    report: dict[str, Any] = {"outcome": "ok"}
    try:
        bundle = Bundle.read(path)
        report["declared"] = bundle.size
        if action in ("reference", "check"):
            _ = bundle.reference_inputs, bundle.reference_outputs
        if action == "check":
            report["passed"] = check(bundle).passed
    except ModelportError as exc:
        report.update(outcome="refused", error=type(exc).__name__, message=str(exc)[:500])
    except BaseException as exc:  # what the caller counts as a failure
        report.update(outcome="raw", error=type(exc).__name__, message=str(exc)[:500])
    report["peak_added"] = max(0, peak() - before)
    return report


if __name__ == "__main__":
    act, target, cap = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(_child(act, target, cap)), flush=True)
