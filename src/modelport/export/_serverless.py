"""Building a function artifact, shared by the three serverless targets.

An artifact is a directory (``function/``) and the same files as a deterministic zip:

    function/
      <entry module>            the platform's entry point (lambda_function.py, main.py, function_app.py)
      model/<name>.mpk          the bundle, loaded once per container
      modelport/                modelport's package (the loader, runtime and the server's codec)
      <site dir>/...            numpy, onnx, onnxruntime, orjson ... (--deps env | pip)
      requirements.txt          what the platform installs itself (--deps none), and its own packages
    <name>-<target>.zip
    DEPLOY.md, export.json      how to deploy it; what was exported, sizes and limits

The sizes are checked against the platform's published limits (the dependencies the platform
installs itself count too, at their size here); over a hard limit the export fails naming it, and
nothing is written. When the runtime's Python matches this interpreter, the artifact is checked
before it is kept: a clean interpreter (``python -I``, nothing but the artifact on its path)
(``-I -S``: no site-packages either) imports the entry module and answers a health probe, the metadata request and a records request
through the platform's own event shape, and the answers must equal the bundle's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import ExportError, InputError
from modelport.export import _artifact, _vendor
from modelport.export._result import ExportResult

DEPS_MODES = ("env", "pip", "none")


@dataclass(frozen=True)
class FunctionPlatform:
    """What differs between the serverless targets."""

    target: str  # "lambda"
    platform: str  # "AWS Lambda"
    #: Python version -> (glibc of the runtime's OS, how the platform names the runtime)
    runtimes: Mapping[tuple[int, int], tuple[tuple[int, int], str]]
    limits: Sequence[_artifact.SizeLimit]
    entry_module: str  # "lambda_function"
    max_body_bytes: int  # what the platform delivers at most, bounding decompression too
    site_dir: str = ""  # where vendored distributions go, relative to function/
    default_deps: str = "env"
    platform_requirements: Sequence[str] = ()  # the platform's own packages, for requirements.txt
    platform_roots: Sequence[str] = ()  # ... of which these are vendored too with --deps env / pip
    #: what --deps none means on this platform (who provides the distributions)
    deps_none_note: str = ""
    files: Callable[[str, str], dict[str, str]] = field(default=lambda model, name: {})
    deploy_notes: Callable[[str, str, str], str] = field(default=lambda name, zip_name, runtime: "")
    #: an event in the platform's shape for the clean-interpreter check: (method, path, body) -> code
    probe: str = ""


def runtime_for(p: FunctionPlatform, python: str | None, arch: str | None) -> _vendor.PythonRuntime:
    version = _vendor.parse_python(python) if python else _vendor.local_python()
    machine = _vendor.parse_machine(arch) if arch else _vendor._machine()
    if version not in p.runtimes:
        known = ", ".join(f"{a}.{b}" for a, b in sorted(p.runtimes))
        raise InputError(
            f"{p.platform} has no Python {version[0]}.{version[1]} runtime; it runs {known}.",
            hint="pass --python with one of those (the dependencies must then be wheels for it: --deps pip)",
        )
    glibc, label = p.runtimes[version]
    return _vendor.PythonRuntime(f"{p.platform} {label} ({machine}, glibc {glibc[0]}.{glibc[1]})",
                                 version, glibc, machine)


def export_function(
    p: FunctionPlatform,
    bundle: Any,
    output: str | Path,
    *,
    deps: str | None = None,
    python: str | None = None,
    arch: str | None = None,
    wheelhouse: str | Path | None = None,
    overwrite: bool = False,
    check: bool = True,
) -> ExportResult:
    deps = deps or p.default_deps
    if deps not in DEPS_MODES:
        raise InputError(f"--deps must be one of {', '.join(DEPS_MODES)}; got {deps!r}.")
    if wheelhouse is not None and deps != "pip":
        raise InputError("--wheelhouse applies to --deps pip.")
    runtime = runtime_for(p, python, arch)
    dists = _vendor.closure(_vendor.FUNCTION_ROOTS)
    vendored = _vendor.closure((*_vendor.FUNCTION_ROOTS, *p.platform_roots)) if deps == "env" else dists
    if deps == "env":
        _vendor.check_compatible(vendored, runtime, newer=_newer_runtime(p, runtime))
    name = bundle.name
    model_rel = f"model/{name}.mpk"
    data = bundle.to_bytes()
    # fail fast, before anything is copied: the bundle and what it needs must fit
    estimate = len(data) + sum(_installed_size(d) for d in dists)
    for limit in p.limits:
        if limit.what == "unzipped":
            limit.check(p.platform, estimate, subject=_subject(p, len(data), estimate - len(data)))
    notes: list[str] = []
    with _artifact.staging(output, overwrite=overwrite) as root:
        fn = root / "function"
        (fn / "model").mkdir(parents=True)
        (fn / model_rel).write_bytes(data)
        _vendor.copy_modelport(fn)
        site = fn / p.site_dir if p.site_dir else fn
        site.mkdir(parents=True, exist_ok=True)
        if deps == "env":
            _vendor.copy_distributions(vendored, site)
            requirements = list(p.platform_requirements)
        elif deps == "pip":
            _vendor.pip_install([*root_requirements(), *_platform_vendored(p)], site, runtime,
                                wheelhouse=Path(wheelhouse) if wheelhouse is not None else None)
            requirements = list(p.platform_requirements)
        else:
            requirements = [*p.platform_requirements, *(d.pin for d in dists)]
            if p.deps_none_note:
                notes.append(p.deps_none_note + ": " + ", ".join(d.pin for d in dists))
        for rel, text in p.files(model_rel, name).items():
            path = fn / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if requirements:
            (fn / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
        if deps != "none" and runtime.matches_here():
            _vendor.compile_bytecode(fn)
        unzipped = _artifact.tree_size(fn)
        counted = unzipped + (estimate - len(data) if deps == "none" else 0)
        for limit in p.limits:
            if limit.what == "unzipped":
                limit.check(p.platform, counted, subject=_subject(p, len(data), counted - len(data)))
        checked = False
        if check and deps != "none" and runtime.matches_here():
            check_in_clean_interpreter(p, fn, bundle)
            checked = True
        elif check and deps != "none":
            notes.append(f"not run here: this interpreter is Python {sys.version_info[0]}.{sys.version_info[1]} "
                         f"on {_vendor._machine()}, the function runs on {runtime.label}")
        zip_name = f"{name}-{p.target}.zip"
        zipped = _artifact.zip_directory(fn, root / zip_name)
        for limit in p.limits:
            if limit.what == "zipped":
                note = limit.check(p.platform, zipped, subject=f"the zip {zip_name}")
                if note:
                    notes.append(note)
        (root / "DEPLOY.md").write_text(p.deploy_notes(name, zip_name, runtime.version))
        result = ExportResult(
            target=p.target, path=Path(output), bundle=name, digest=bundle.digest,
            files={"directory": "function", "zip": zip_name, "entry": f"function/{p.entry_module}.py",
                   "model": f"function/{model_rel}"},
            sizes={"bundle": len(data), "unzipped": unzipped, "zipped": zipped,
                   **({"installed_by_platform": estimate - len(data)} if deps == "none" else {})},
            limits=[{"what": lim.what, "bytes": lim.bytes, "text": lim.text, "hard": lim.hard} for lim in p.limits],
            details={"runtime": runtime.label, "python": runtime.version, "deps": deps,
                     "distributions": [d.pin for d in vendored] if deps != "pip" else root_requirements(),
                     "checked_in_clean_interpreter": checked},
            notes=notes,
        )
        result.write_summary(root)
    return result


def _newer_runtime(p: FunctionPlatform, runtime: _vendor.PythonRuntime) -> str | None:
    """The oldest of the platform's runtimes with a newer glibc than ``runtime``, as a hint."""
    newer = sorted(v for v, (glibc, _label) in p.runtimes.items() if glibc > runtime.glibc)
    if not newer:
        return None
    v = newer[0]
    glibc, label = p.runtimes[v]
    return (f"{p.platform} {label} (glibc {glibc[0]}.{glibc[1]}): --python {v[0]}.{v[1]} --deps pip "
            f"(wheels for that Python)")


def root_requirements() -> list[str]:
    """modelport's own requirement lines for the function roots (version ranges, markers dropped)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    wanted = {_vendor._norm(r) for r in _vendor.FUNCTION_ROOTS}
    out: dict[str, str] = {}
    for text in md.requires("modelport") or ():
        req = Requirement(text)
        key = _vendor._norm(req.name)
        if key in wanted and key not in out:
            out[key] = f"{req.name}{req.specifier}"
    for key in sorted(wanted - set(out)):
        out[key] = key
    return [out[k] for k in sorted(out)]


def _platform_vendored(p: FunctionPlatform) -> list[str]:
    """The platform's own requirement lines that are vendored too (those of ``platform_roots``)."""
    from packaging.requirements import Requirement

    roots = {_vendor._norm(r) for r in p.platform_roots}
    return [r for r in p.platform_requirements if _vendor._norm(Requirement(r).name) in roots]


def _installed_size(d: _vendor.Dist) -> int:
    total = 0
    for rel, path in _vendor._dist_files(d):
        if not _vendor._pruned(rel):
            total += path.stat().st_size
    return total


def _subject(p: FunctionPlatform, bundle_bytes: int, rest: int) -> str:
    return (f"the {p.target} artifact (bundle {_artifact.mb(bundle_bytes)} + runtime and dependencies "
            f"{_artifact.mb(rest)})")


# ============================================================================ the clean-interpreter check
_CHECK = textwrap.dedent("""
    import json, sys
    sys.path[:0] = {paths!r}
    banned = ("pandas", "sklearn", "starlette", "fastapi", "flask", "torch", "xgboost", "lightgbm", "click", "rich")
    import {entry} as entry
    {probe}
    results = [call("GET", "/v2/health/ready", b""), call("GET", "/v2/models/{name}", b"")]
    if {body!r} is not None:
        results.append(call("POST", "/v2/models/{name}/records", {body!r}))
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in banned)
    outside = sorted({{m.__file__ for m in list(sys.modules.values())
                      if getattr(m, "__file__", None) and m.__name__.split(".")[0] not in sys.stdlib_module_names
                      and not any(m.__file__.startswith(p) for p in {paths!r})}})
    print(json.dumps({{"results": results, "banned": loaded, "outside": outside}}))
""")


def check_in_clean_interpreter(p: FunctionPlatform, fn: Path, bundle: Any) -> None:
    """Import the artifact's entry module in ``python -I`` with only the artifact on ``sys.path``
    and ask it for health, metadata and a prediction in the platform's event shape."""
    import numpy as np

    paths = [str(fn)] + ([str(fn / p.site_dir)] if p.site_dir else [])
    records = _probe_records(bundle)
    body = json.dumps({"records": records}).encode() if records else None
    code = _CHECK.format(paths=paths, entry=p.entry_module, probe=p.probe, name=bundle.name, body=body)
    proc = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", code], capture_output=True, text=True, cwd=fn, timeout=300)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise ExportError(
            f"the {p.target} artifact does not run in a clean interpreter (python -I with only the artifact "
            f"on its path):\n{tail}",
            hint="this is a modelport bug or an environment modelport does not expect: please report it",
        )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["banned"] or report["outside"]:
        raise ExportError(
            f"the {p.target} artifact imported what it must not: {report['banned'] or report['outside']}."
        )
    statuses = [r[0] for r in report["results"]]
    if statuses[:2] != [200, 200] or (body is not None and statuses[2] != 200):
        raise ExportError(f"the {p.target} artifact answered {statuses} in the clean-interpreter check: "
                          f"{[r[1] for r in report['results']]}")
    if body is not None and records is not None:
        got = json.loads(report["results"][2][1])["predictions"]
        want = _expected(bundle, records)
        if not _same(got, want, np):
            raise ExportError(f"the {p.target} artifact's predictions differ from the bundle's: {got[:2]} vs {want[:2]}")


def _probe_records(bundle: Any, n: int = 3) -> list[dict[str, Any]] | None:
    """A few reference rows without missing values, as JSON records (None for tensor-only bundles)."""
    from modelport.bundle.reference import decode_columns

    if bundle.signature.columns is None or not bundle.reference_inputs:
        return None
    cols = decode_columns(bundle.reference_inputs)
    names = bundle.signature.column_names
    if any(c not in cols for c in names):
        return None
    rows = []
    for i in range(len(cols[names[0]])):
        rec = {c: cols[c][i].item() if hasattr(cols[c][i], "item") else cols[c][i] for c in names}
        if any(v is None or (isinstance(v, float) and v != v) for v in rec.values()):
            continue
        rows.append(rec)
        if len(rows) == n:
            break
    return rows or None


def _expected(bundle: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records endpoint's answer for ``records`` as documented in docs/serving.md, from the bundle itself."""
    from modelport.runtime.session import output_columns

    result = bundle.predict(records)
    n = len(records)
    if bundle.classes is not None and "label" in result and "probabilities" in result:
        names = [str(c) for c in bundle.classes]
        return [{"label": result["label"][i].item(), "probabilities": dict(zip(names, result["probabilities"][i].tolist()))}
                for i in range(n)]
    cols = {k: v.tolist() for k, v in output_columns(result, bundle.classes).items()}
    return [{k: v[i] for k, v in cols.items()} for i in range(n)]


def _same(got: Any, want: Any, np: Any) -> bool:
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k], np) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(_same(g, w, np) for g, w in zip(got, want))
    if isinstance(want, float) and isinstance(got, (int, float)):
        return bool(np.isclose(got, want, rtol=1e-6, atol=1e-7))
    return bool(got == want)
