"""Building and running generated Java and JavaScript with the tools on the machine (javac, jar,
java, node): ``--build`` jars, and the harnesses ``--check`` and the conformance suite use.

Several programs are compiled with one ``javac`` and run in one JVM (or one ``node``), because
starting those tools costs a second or more each.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from modelport.errors import CodegenError, MissingDependencyError

_JDK_HINT = "install a JDK 11 or newer (e.g. apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"


def tool(name: str) -> str:
    """The path of ``javac``, ``java``, ``jar`` (from $JAVA_HOME/bin first) or ``node``."""
    if name == "node":
        path = shutil.which(os.environ.get("NODE", "node"))
        if path is None:
            raise MissingDependencyError(
                "node (Node.js) was not found on PATH; it runs the JavaScript target's checks.",
                hint="install Node.js 18 or newer, or set NODE to its path",
            )
        return path
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / name).exists():
        return str(Path(home) / "bin" / name)
    path = shutil.which(name)
    if path is None:
        raise MissingDependencyError(f"{name} was not found (looked in $JAVA_HOME/bin and on PATH).", hint=_JDK_HINT)
    return path


def _run(cmd: Sequence[str], what: str, timeout: float, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise CodegenError(f"{what} took longer than {timeout:.0f} s.") from exc
    if res.returncode != 0:
        raise CodegenError(
            f"{what} failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()[:3000]}",
            hint=f"command: {' '.join(cmd)}",
        )
    return res


def javac(sources: Sequence[Path], out: Path, *, timeout: float = 600) -> None:
    """Compile ``sources`` for Java 11 (``--release 11``, so nothing newer slips in) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [tool("javac"), "--release", "11", "-encoding", "UTF-8", "-nowarn", "-d", str(out), *map(str, sources)]
    _run(cmd, f"javac on {', '.join(p.name for p in sources[:3])}{' ...' if len(sources) > 3 else ''}", timeout)


def build_jar(source: Path, jar: Path, *, timeout: float = 600) -> Path:
    """``javac`` the generated ``source`` and pack its classes into ``jar``."""
    with tempfile.TemporaryDirectory() as d:
        classes = Path(d) / "classes"
        javac([source], classes, timeout=timeout)
        _run([tool("jar"), "--create", "--file", str(jar), "-C", str(classes), "."], f"jar for {jar.name}", timeout)
    return jar


# --------------------------------------------------------------------------- harnesses


@dataclass
class Job:
    """One generated program to run on the float32 rows ``x``: Java (``source`` of class
    ``name``, fully qualified) or JavaScript (``source`` of an ES module)."""

    name: str
    source: str
    x: np.ndarray


def _write_rows(path: Path, x: np.ndarray) -> None:
    x = np.ascontiguousarray(x, dtype="<f4")
    path.write_bytes(struct.pack("<ii", x.shape[0], x.shape[1] if x.ndim == 2 else 0) + x.tobytes())


def _read_result(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = path.read_bytes()
    n, no = struct.unpack("<ii", raw[:8])
    scores = np.frombuffer(raw, dtype="<f4", count=n * no, offset=8).reshape(n, no)
    labels = np.frombuffer(raw, dtype="<i4", count=n, offset=8 + 4 * n * no)
    return scores.astype(np.float64), labels.astype(np.int64)


def _file_of(name: str) -> str:
    return name.rsplit(".", 1)[-1] + ".java"


def run_java(jobs: Sequence[Job], *, timeout: float = 900) -> list[tuple[np.ndarray, np.ndarray] | CodegenError]:
    """Compile every job (one javac) and run them (one JVM) through the harness. A job whose
    source does not compile comes back as its CodegenError; the others still run."""
    with tempfile.TemporaryDirectory(prefix="modelport-java-") as d:
        root = Path(d)
        sources = []
        for i, job in enumerate(jobs):
            folder = root / "src" / str(i)
            folder.mkdir(parents=True)
            path = folder / _file_of(job.name)
            path.write_text(job.source, encoding="utf-8")
            sources.append(path)
        harness = root / "src" / "Harness.java"
        harness.write_text(resources.files("modelport.codegen.runtime").joinpath("Harness.java").read_text(encoding="utf-8"))
        classes = root / "classes"
        results: list[tuple[np.ndarray, np.ndarray] | CodegenError | None] = [None] * len(jobs)
        try:
            javac([harness, *sources], classes, timeout=timeout)
        except CodegenError:
            if len(jobs) == 1:
                raise
            # find which sources fail, so that one bad program does not hide the others
            javac([harness], classes, timeout=timeout)
            for i, src in enumerate(sources):
                try:
                    javac([src], classes, timeout=timeout)
                except CodegenError as exc:
                    results[i] = exc
        args: list[str] = []
        for i, job in enumerate(jobs):
            if results[i] is None:
                _write_rows(root / f"in{i}.bin", job.x)
                args += [job.name, str(root / f"in{i}.bin"), str(root / f"out{i}.bin")]
        if args:
            _run([tool("java"), "-Xss16m", "-cp", str(classes), "Harness", *args], "java (the check harness)", timeout)
        out: list[tuple[np.ndarray, np.ndarray] | CodegenError] = []
        for i in range(len(jobs)):
            r = results[i]
            out.append(r if r is not None else _read_result(root / f"out{i}.bin"))
        return out


def run_javascript(jobs: Sequence[Job], *, timeout: float = 900) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run every job's ES module (one node process) through the harness."""
    with tempfile.TemporaryDirectory(prefix="modelport-js-") as d:
        root = Path(d)
        (root / "harness.mjs").write_text(
            resources.files("modelport.codegen.runtime").joinpath("harness.mjs").read_text(encoding="utf-8"))
        args: list[str] = []
        for i, job in enumerate(jobs):
            (root / f"model{i}.mjs").write_text(job.source, encoding="utf-8")
            _write_rows(root / f"in{i}.bin", job.x)
            args += [str(root / f"model{i}.mjs"), str(root / f"in{i}.bin"), str(root / f"out{i}.bin")]
        _run([tool("node"), str(root / "harness.mjs"), *args], "node (the check harness)", timeout)
        return [_read_result(root / f"out{i}.bin") for i in range(len(jobs))]
