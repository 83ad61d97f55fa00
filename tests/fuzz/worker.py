"""A fuzzing worker: one process that runs many cases under a memory cap, one JSON line in, one out.

    python -m tests.fuzz.worker CAP_MIB        (started by runner.py, in a directory holding secret.bin)

For each case it does what a user or server would: load the bundle (``Bundle.read``; on a BundleError also the
file-by-file report ``modelport verify`` prints), describe and render it as ``modelport inspect`` does, re-run
its reference data as ``modelport verify`` and registry push do, and, if all that accepts it, score the seed's
reference rows and probe rows and compare with the seed's own answers.
"""

from __future__ import annotations

import io
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

_PROBES: dict[str, dict[str, dict[str, np.ndarray]]] = {}


def _probes(seed_path: str) -> dict[str, dict[str, np.ndarray]]:
    if seed_path not in _PROBES:
        from modelport.bundle import npz

        arrays = npz.loads(Path(seed_path).with_suffix(".probes.npz").read_bytes(), origin="probes")
        groups: dict[str, dict[str, np.ndarray]] = {}
        for key, value in arrays.items():
            group, _, name = key.partition("/")
            groups.setdefault(group, {})[name] = value
        _PROBES[seed_path] = groups
    return _PROBES[seed_path]


def _differences(expected: dict[str, np.ndarray], actual: dict[str, Any]) -> list[str]:
    out = []
    for name, want in expected.items():
        if name not in actual:
            out.append(f"output {name} missing")
            continue
        got = np.asarray(actual[name])
        if want.dtype.kind in "US":
            got = got.astype(str)
        if got.shape != want.shape:
            out.append(f"{name}: shape {got.shape} instead of {want.shape}")
        elif want.dtype.kind in "fc":
            if not np.allclose(got.astype(want.dtype), want, rtol=1e-5, atol=1e-6, equal_nan=True):
                out.append(f"{name}: max difference {np.nanmax(np.abs(got.astype(float) - want.astype(float))):.3g}")
        elif not np.array_equal(got, want):
            out.append(f"{name}: {int((got != want).sum())} values differ")
    return out


def run_case(case: dict[str, Any], secret: bytes) -> dict[str, Any]:
    from tests.fuzz import crafted

    from modelport.bundle.core import Bundle
    from modelport.bundle.reference import decode_columns
    from modelport.errors import BundleError, ModelportError
    from modelport.inspect._text import console
    from modelport.inspect.describe import describe, render
    from modelport.inspect.integrity import file_report
    from modelport.verification import check

    result: dict[str, Any] = {"id": case["id"]}
    stage = "load"
    try:
        if "selftest" in case:  # the runner's own test: make each failure happen on purpose
            _selftest(case["selftest"], secret)
        try:
            bundle = Bundle.read(case["path"])
        except BundleError:
            stage = "file report"
            try:
                file_report(case["path"])
            except BundleError:
                pass
            raise
        stage = "inspect"
        console(file=io.StringIO(), width=120).print(render(describe(bundle)))
        stage = "check"
        report = check(bundle)
        if not report.verified:
            result.update(outcome="refused", stage="check", error="not verified")
            return result
        stage = "score"
        seed = _probes(case["seed_path"])
        tabular = bundle.signature.is_tabular
        outputs: list[np.ndarray] = []
        problems: list[str] = []
        for group, expected in (("ref", "expected_ref"), ("probe", "expected_probe")):
            if group == "probe" and not case["same_graph"]:
                continue  # a resealed graph is only held to the rows its reference check covers
            feeds = decode_columns(seed[group]) if tabular else dict(seed[group])
            try:
                got = bundle.predict(feeds)
            except ModelportError as exc:  # it accepted its own reference rows but not the seed's
                problems.append(f"{group} rows refused: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            outputs.extend(np.asarray(v) for v in got.values())
            problems += [f"{group}: {p}" for p in _differences(seed[expected], got)]
        if crafted.leaked([o for o in outputs if o.dtype.kind not in "OUS"], secret):
            result.update(outcome="leak", stage=stage)
        elif problems:
            result.update(outcome="different", stage=stage, error="; ".join(problems)[:1000])
        else:
            result.update(outcome="accepted")
    except ModelportError as exc:
        result.update(outcome="refused", stage=stage, error=type(exc).__name__, message=str(exc)[:300])
    except BaseException as exc:  # what the suite counts: anything that is not a modelport error
        result.update(outcome="raw", stage=stage, error=type(exc).__name__, message=str(exc)[:500],
                      traceback=traceback.format_exc()[-3000:])
    return result


def _selftest(what: str, secret: bytes) -> None:
    import os
    import signal
    import time

    if what == "raise":
        raise ValueError("a non-modelport error")
    if what == "hang":
        time.sleep(3600)
    if what == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if what == "memory":
        _ = bytearray(64 * 1024**3)


def main() -> None:
    from tests.fuzz.capped import cap_memory

    cap_mib = int(sys.argv[1])
    # everything a case may need is imported before the cap, as a long-running server would have it
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import rich.console  # noqa: F401

    import modelport.inspect.describe
    import modelport.runtime.session
    import modelport.verification  # noqa: F401

    secret = Path("secret.bin").read_bytes()
    for line in sys.stdin:
        case = json.loads(line)
        # the cap is renewed per case: what a case may map is CAP_MIB beyond what the process held before it
        # (thread stacks and allocator arenas of earlier sessions stay mapped and are not the case's doing)
        cap_memory(cap_mib * 1024**2)
        print(json.dumps(run_case(case, secret)), flush=True)


if __name__ == "__main__":
    main()
