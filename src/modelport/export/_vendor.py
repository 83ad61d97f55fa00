"""What a deployed bundle needs at run time, and how it gets into an artifact.

Running a bundle takes numpy, onnx (the loader checks the graph), onnxruntime and modelport's own
loader and runtime; answering HTTP in a function adds orjson (the V2 JSON codec of ``serve``), and
a container's server adds uvicorn and prometheus-client. No pandas, no training library, no web
framework: the closure of those roots over the installed distributions' declared requirements is
:func:`closure`, and the tests keep :data:`FUNCTION_ROOTS` equal to the package's own core
requirements.

Three ways to put the distributions into an artifact:

* ``env``: copy them from this environment, after checking that each one's wheel tags fit the
  platform's runtime (its Python version, CPU architecture and glibc); a wheel built for a newer
  glibc than the platform has is refused by name, because it would fail there at import;
* ``pip``: ``pip install --target`` for the platform's tags (``--platform``, ``--python-version``,
  ``--only-binary``), from the package index or, offline, from a local ``--wheelhouse``;
* ``none``: only a pinned ``requirements.txt``, for platforms that install it themselves.

modelport itself is always copied from this installation (its pure-Python package), so the
artifact runs exactly the loader that was checked here.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelport.errors import ExportError, InputError

#: what a function handler imports: the core requirements minus the CLI's (click, rich), plus the
#: ``serverless`` extra (orjson, the V2 JSON codec)
FUNCTION_ROOTS: tuple[str, ...] = ("numpy", "onnx", "onnxruntime", "orjson")
#: what ``modelport serve`` imports in a container: the above, the CLI's click (not rich: serve
#: prints nothing with it), and the ``serve`` extra minus starlette and python-multipart (only
#: for --cors-origin, which then names the missing extra)
SERVER_ROOTS: tuple[str, ...] = (
    *FUNCTION_ROOTS, "click", "uvicorn", "httptools", "uvloop", "prometheus-client",
)
#: distributions the CLI alone needs; never part of a function
CLI_ONLY: frozenset[str] = frozenset({"click", "rich"})

# subtrees of the runtime distributions that no import of a bundle's load / predict / serve
# reaches: test suites and test data, onnxruntime's offline tools, build headers and stubs.
# The export's own check (a clean interpreter that loads and scores the bundle from the
# artifact) proves them unneeded each time.
_PRUNE_DIRS = frozenset({"tests", "__pycache__"})
_PRUNE_PATHS = (
    "onnx/backend/test/", "onnxruntime/transformers/", "onnxruntime/tools/", "onnxruntime/quantization/",
    "numpy/f2py/", "numpy/_pyinstaller/", "numpy/_core/include/", "numpy/_core/lib/pkgconfig/",
)
_PRUNE_SUFFIXES = (".pyi", ".pyc", ".h", ".hpp", ".c", ".cpp", ".pxd", ".proto", ".proto3")


# ============================================================================ platform runtimes
@dataclass(frozen=True)
class PythonRuntime:
    """A platform's Python: which wheels it can load."""

    label: str  # e.g. "AWS Lambda python3.11 (Amazon Linux 2, glibc 2.26)"
    python: tuple[int, int]
    glibc: tuple[int, int]
    machine: str  # x86_64 | aarch64

    @property
    def version(self) -> str:
        return f"{self.python[0]}.{self.python[1]}"

    def platform_tags(self) -> list[str]:
        """Every manylinux tag this runtime loads, newest first (for pip's --platform)."""
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 16, -1)]
        tags.append(f"manylinux2014_{self.machine}")
        if self.machine == "x86_64":
            tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
        return tags

    def matches_here(self) -> bool:
        """Whether this interpreter could stand in for the runtime (same Python, Linux, machine)."""
        return sys.platform == "linux" and sys.version_info[:2] == self.python and _machine() == self.machine


def local_python() -> tuple[int, int]:
    return (sys.version_info[0], sys.version_info[1])


def _machine() -> str:
    m = os.uname().machine if hasattr(os, "uname") else ""
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m.lower(), m)


def parse_python(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(?:python)?(\d)\.?(\d{1,2})", text.strip().lower())
    if not m:
        raise InputError(f"--python must look like 3.11; got {text!r}.")
    return (int(m.group(1)), int(m.group(2)))


def parse_machine(text: str) -> str:
    m = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}.get(text.strip().lower())
    if m is None:
        raise InputError(f"--arch must be x86_64 or arm64; got {text!r}.")
    return m


# ============================================================================ distributions
@dataclass(frozen=True)
class Dist:
    """One installed distribution that an artifact needs."""

    name: str
    version: str
    tags: tuple[str, ...]
    dist: md.Distribution

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: Iterable[str]) -> list[Dist]:
    """The installed distributions ``roots`` need, following their declared (non-optional)
    requirements as this interpreter evaluates the markers. A missing one is an error naming it."""
    from packaging.requirements import Requirement

    seen: dict[str, Dist] = {}
    todo = [_norm(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen or name == "modelport":
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise ExportError(
                f"the distribution {name!r}, which a deployed bundle needs, is not installed here.",
                hint=f"pip install {name}",
            ) from None
        wheel = dist.read_text("WHEEL") or ""
        tags = tuple(line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:"))
        seen[name] = Dist(_norm(dist.metadata["Name"]), dist.version, tags, dist)
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(_norm(req.name))
    return sorted(seen.values(), key=lambda d: d.name)


def check_compatible(dists: Sequence[Dist], runtime: PythonRuntime, *, newer: str | None = None) -> None:
    """Refuse distributions whose wheels ``runtime`` cannot load, naming each and why; ``newer``
    names a runtime of the same platform with a newer glibc, for the hint."""
    problems = [f"{d.pin} ({why})" for d in dists if (why := _incompatible(d.tags, runtime)) is not None]
    if problems:
        hint = (f"take wheels built for that runtime: --deps pip (from the package index) or --deps pip "
                f"--wheelhouse DIR (offline), or run the export from a Python {runtime.version} environment whose "
                f"wheels target glibc {runtime.glibc[0]}.{runtime.glibc[1]} or older")
        if newer:
            hint += f"; or choose {newer}"
        raise ExportError(
            f"these installed distributions cannot run on {runtime.label}: " + "; ".join(problems) + ".", hint=hint)


def _incompatible(tags: Sequence[str], runtime: PythonRuntime) -> str | None:
    """None when one of the wheel's tags loads on ``runtime``, else the reason the best one does not."""
    if not tags:
        return "no wheel tags recorded: installed from source, so built for this machine only"
    reasons = []
    for tag in tags:
        for compressed in _expand(tag):
            why = _tag_problem(compressed, runtime)
            if why is None:
                return None
            reasons.append(why)
    return reasons[0]


def _expand(tag: str) -> list[tuple[str, str, str]]:
    interp, abi, plat = tag.split("-", 2)
    return [(i, a, p) for i in interp.split(".") for a in abi.split(".") for p in plat.split(".")]


def _tag_problem(tag: tuple[str, str, str], rt: PythonRuntime) -> str | None:
    interp, abi, plat = tag
    want = f"cp{rt.python[0]}{rt.python[1]}"
    if interp.startswith("cp"):
        if abi == "abi3":
            if int(interp[3:] or 0) > rt.python[1] or interp[2] != str(rt.python[0]):
                return f"built for CPython {interp[2]}.{interp[3:]}+ (abi3), the runtime has {rt.version}"
        elif interp != want:
            return f"built for CPython {interp[2]}.{interp[3:]}, the runtime has {rt.version}"
    elif not interp.startswith("py"):
        return f"built for the {interp} interpreter"
    if plat == "any":
        return None
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", plat)
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    if m:
        glibc, arch = (int(m.group(1)), int(m.group(2))), m.group(3)
    else:
        lm = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014)_(\w+)", plat)
        if not lm:
            return f"a {plat} wheel, not a manylinux one"
        glibc, arch = legacy[lm.group(1)], lm.group(2)
    if arch != rt.machine:
        return f"built for {arch}, the runtime is {rt.machine}"
    if glibc > rt.glibc:
        return f"needs glibc {glibc[0]}.{glibc[1]} ({plat}), the runtime has {rt.glibc[0]}.{rt.glibc[1]}"
    return None


# ============================================================================ putting files in
def _pruned(rel: str, *, keep_bytecode: bool = False) -> bool:
    parts = rel.split("/")
    dirs = _PRUNE_DIRS - {"__pycache__"} if keep_bytecode else _PRUNE_DIRS
    if any(p in dirs for p in parts[:-1]):
        return True
    if keep_bytecode and rel.endswith(".pyc"):
        return False
    return rel.startswith(_PRUNE_PATHS) or rel.endswith(_PRUNE_SUFFIXES)


def prune_script() -> str:
    """A stand-alone script applying the same pruning to an installed site-packages directory
    (run in an image's build stage, where modelport is not importable yet); bytecode is kept."""
    return f'''"""Remove what no bundle load, prediction or serve reaches (written by modelport export)."""
import os
import sys

DIRS = {sorted(_PRUNE_DIRS - {"__pycache__"})!r}
PATHS = {_PRUNE_PATHS!r}
SUFFIXES = {tuple(x for x in _PRUNE_SUFFIXES if x != ".pyc")!r}
root = sys.argv[1]
removed = 0
for dirpath, dirs, files in os.walk(root, topdown=False):
    rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
    parts = [] if rel_dir == "." else rel_dir.split("/")
    for f in files:
        rel = "/".join(parts + [f])
        if any(p in DIRS for p in parts) or rel.startswith(PATHS) or rel.endswith(SUFFIXES):
            path = os.path.join(dirpath, f)
            removed += os.path.getsize(path)
            os.unlink(path)
    if dirpath != root and not os.listdir(dirpath):
        os.rmdir(dirpath)
print("pruned %.1f MB" % (removed / 1e6))
'''


def _dist_files(d: Dist) -> list[tuple[str, Path]]:
    """(path relative to site-packages, file) of a distribution, without files outside
    site-packages (console scripts) and without its install bookkeeping."""
    out = []
    for f in d.dist.files or ():
        rel = PurePosixPath(str(f)).as_posix()
        if rel.startswith("../") or rel.startswith("/"):
            continue
        name = rel.rsplit("/", 1)[-1]
        if ".dist-info/" in rel and name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
            continue
        path = Path(str(d.dist.locate_file(f)))
        if path.is_file():
            out.append((rel, path))
    return out


def copy_distributions(dists: Sequence[Dist], target: Path, *, prune: bool = True) -> None:
    """Copy the distributions' files into ``target`` (a directory that goes on ``sys.path``),
    with a fresh RECORD per distribution listing exactly what was copied."""
    for d in dists:
        record: list[tuple[str, str, str]] = []
        dist_info = None
        for rel, src in _dist_files(d):
            if prune and _pruned(rel):
                continue
            dst = target / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            record.append((rel, _hash(dst), str(dst.stat().st_size)))
            if dist_info is None and ".dist-info/" in rel:
                dist_info = rel.split("/", 1)[0]
        if dist_info is not None:
            _write_record(target / dist_info / "RECORD", f"{dist_info}/RECORD", record)


def copy_modelport(target: Path) -> None:
    """Copy modelport's own package (its Python files and package data, no caches)."""
    import modelport

    src = Path(modelport.__file__).resolve().parent
    for dirpath, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if f.endswith((".pyc", ".pyo")):
                continue
            p = Path(dirpath, f)
            dst = target / "modelport" / p.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst)


def pip_install(requirements: Sequence[str], target: Path, runtime: PythonRuntime, *,
                wheelhouse: Path | None = None, prune: bool = True) -> None:
    """``pip install --target`` of ``requirements`` as wheels for ``runtime``'s platform."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
           "--target", str(target), "--only-binary", ":all:", "--implementation", "cp",
           "--python-version", runtime.version, "--abi", f"cp{runtime.python[0]}{runtime.python[1]}",
           "--abi", "abi3", "--abi", "none"]
    for tag in runtime.platform_tags():
        cmd += ["--platform", tag]
    if wheelhouse is not None:
        if not wheelhouse.is_dir():
            raise InputError(f"--wheelhouse {wheelhouse} is not a directory of wheels.")
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    cmd += list(requirements)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise ExportError(
            f"pip could not install {', '.join(requirements)} for {runtime.label}:\n{tail}",
            hint="check the package index is reachable, or give --wheelhouse DIR holding wheels for that platform",
        )
    bin_dir = target / "bin"
    if bin_dir.is_dir():
        shutil.rmtree(bin_dir)  # console scripts: nothing in a function runs them
    if prune:
        for dirpath, _dirs, files in os.walk(target, topdown=False):
            for f in files:
                p = Path(dirpath, f)
                if _pruned(p.relative_to(target).as_posix()):
                    p.unlink()
            if not os.listdir(dirpath) and Path(dirpath) != target:
                os.rmdir(dirpath)


def compile_bytecode(root: Path) -> None:
    """Byte-compile every module under ``root`` for this interpreter, with hash-based .pyc files.

    A function's code directory is read-only at run time, so without them every cold start
    compiles numpy, onnx and modelport from source; hash-based (unchecked) files stay valid in a
    zip whose timestamps are fixed, and are the same bytes for the same sources.
    """
    import compileall
    import py_compile

    ok = compileall.compile_dir(str(root), quiet=2, workers=1,
                                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if not ok:
        raise ExportError(f"some Python files under {root} do not compile with Python {sys.version.split()[0]}.")


# ============================================================================ wheels (containers)
def repack_wheel(d: Dist, outdir: Path) -> Path:
    """A wheel of an installed distribution, rebuilt from its installed files (for a local
    wheelhouse that lets an image build install exactly what was tested here, offline)."""
    tag = _wheel_tag(d.tags)
    files = _dist_files(d)
    dist_info = next((rel.split("/", 1)[0] for rel, _ in files if ".dist-info/" in rel), None)
    if dist_info is None:
        raise ExportError(f"{d.pin} has no .dist-info in its installed files; cannot rebuild a wheel of it.")
    return _write_wheel(outdir, d.dist.metadata["Name"], d.version, tag,
                        [(rel, p.read_bytes()) for rel, p in files], dist_info)


def modelport_wheel(outdir: Path) -> Path:
    """A wheel of this modelport (its package files and metadata), whether installed from a wheel
    or in editable mode from a source tree."""
    import modelport

    dist = md.distribution("modelport")
    version = dist.version
    src = Path(modelport.__file__).resolve().parent
    files: list[tuple[str, bytes]] = []
    for dirpath, dirs, names in os.walk(src):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in sorted(names):
            if f.endswith((".pyc", ".pyo")):
                continue
            p = Path(dirpath, f)
            files.append(("modelport/" + p.relative_to(src).as_posix(), p.read_bytes()))
    dist_info = f"modelport-{version}.dist-info"
    metadata = dist.read_text("METADATA") or f"Metadata-Version: 2.1\nName: modelport\nVersion: {version}\n"
    files.append((f"{dist_info}/METADATA", metadata.encode()))
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        files.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    files.append((f"{dist_info}/top_level.txt", b"modelport\n"))
    return _write_wheel(outdir, "modelport", version, "py3-none-any", files, dist_info)


def _wheel_tag(tags: Sequence[str]) -> str:
    if not tags:
        return "py3-none-any"
    parts = [t.split("-", 2) for t in tags]
    interp = ".".join(dict.fromkeys(p[0] for p in parts))
    abi = ".".join(dict.fromkeys(p[1] for p in parts))
    plat = ".".join(dict.fromkeys(p[2] for p in parts))
    return f"{interp}-{abi}-{plat}"


def _write_wheel(outdir: Path, name: str, version: str, tag: str, files: list[tuple[str, bytes]],
                 dist_info: str) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    wheel_meta = f"Wheel-Version: 1.0\nGenerator: modelport\nRoot-Is-Purelib: {'true' if tag.endswith('any') else 'false'}\n"
    wheel_meta += "".join(f"Tag: {i}-{a}-{p}\n" for i, a, p in _expand(tag))
    entries = [(rel, data) for rel, data in files if rel != f"{dist_info}/WHEEL"]
    entries.append((f"{dist_info}/WHEEL", wheel_meta.encode()))
    entries.sort()
    record = [(rel, "sha256=" + _b64(hashlib.sha256(data).digest()), str(len(data))) for rel, data in entries]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(record)
    writer.writerow((f"{dist_info}/RECORD", "", ""))
    entries.append((f"{dist_info}/RECORD", buf.getvalue().encode()))
    path = outdir / f"{re.sub(r'[-_.]+', '_', name)}-{version}-{tag}.whl"
    # level 1: a wheelhouse is a build input read once; speed matters more than a few MB
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for rel, data in entries:
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return path


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256=" + _b64(h.digest())


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _write_record(path: Path, self_rel: str, rows: list[tuple[str, str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    writer.writerow((self_rel, "", ""))
    path.write_text(buf.getvalue())
