"""``--target container``: a Containerfile and its build context for a small image that runs
``modelport serve`` on one bundle, with the runtime-only dependencies and nothing else.

    dist/image/
      Containerfile        two stages: install the wheels offline, then copy only the result
      wheels/*.whl         modelport and its serving closure, rebuilt from this environment
      tools/pip-*.whl      pip, to install them in the build stage only (the image has no pip)
      tools/prune.py       drops test suites, headers and offline tools from what was installed
      model/<name>.mpk     the bundle
      DEPLOY.md, export.json

The image: the base's ``python3`` (the wheels are for this interpreter's version, so the base must
have it: ``python:X.Y-slim`` by default), the packages under ``/opt/modelport``, the bundle under
``/models``, a non-root user (uid 10001), ``PORT`` (default 8080, as Cloud Run sets it), and a
``HEALTHCHECK`` on ``/v2/health/ready`` written in Python (no curl in the image). The build needs
no network: every wheel is in the context (``podman build --network none`` works).

``build=TAG`` builds the image with podman (or buildah), in Docker format so that the health check
is kept (the OCI format drops it). ``base="debootstrap"`` first makes a Debian base image here with
``debootstrap`` (python3 from Debian's packages, apt lists, docs and locales removed), for machines
without a registry. Podman's own settings apply; ``MODELPORT_BUILD_ULIMITS`` (default
``nofile=1024:1024,nproc=4096:4096``) sets the ulimits of the build's containers, which a
container host with lower limits than Podman's defaults needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from modelport.errors import ExportError, InputError, MissingDependencyError
from modelport.export import _artifact, _vendor
from modelport.export._result import ExportResult

DEFAULT_PORT = 8080
UID = 10001
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
ULIMITS_ENV = "MODELPORT_BUILD_ULIMITS"
_DEFAULT_ULIMITS = "nofile=1024:1024,nproc=4096:4096"

_CONTAINERFILE = """\
# A small image serving the modelport bundle {name} (written by `modelport export --target container`).
# Build it with no network: every wheel it installs is in this directory.
#   podman build --format docker --network none -t {tag} .
#   podman run --rm -p 8080:8080 {tag}
ARG BASE={base}

FROM ${{BASE}} AS install
COPY tools/ /tmp/tools/
COPY wheels/ /tmp/wheels/
RUN python3 -c "import sys; v = sys.version_info[:2]; sys.exit(0 if v == {py_tuple} else \\
      'the base image has Python %d.%d; these wheels are for {py_version}: build FROM a python{py_version} base' % v)" \\
 && python3 /tmp/tools/{pip_wheel}/pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check --root-user-action=ignore \\
      --target /opt/modelport/site-packages /tmp/wheels/*.whl \\
 && python3 /tmp/tools/prune.py /opt/modelport/site-packages

FROM ${{BASE}}
COPY --from=install /opt/modelport /opt/modelport
COPY model/ /models/
RUN echo "modelport:x:{uid}:{uid}:modelport:/nonexistent:/usr/sbin/nologin" >> /etc/passwd \\
 && echo "modelport:x:{uid}:" >> /etc/group
ENV PYTHONPATH=/opt/modelport/site-packages \\
    PATH=/opt/modelport/site-packages/bin:/usr/local/bin:/usr/bin:/bin \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    HOME=/tmp \\
    PORT={port}
USER {uid}:{uid}
EXPOSE {port}
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \\
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('PORT', '{port}'), timeout=2)"]
LABEL org.opencontainers.image.title="{name}" \\
      io.modelport.bundle.digest="{digest}" \\
      io.modelport.version="{modelport_version}"
ENTRYPOINT ["/bin/sh", "-c", "exec python3 -m modelport serve /models/{model_file} --host 0.0.0.0 --port \\"${{PORT}}\\" \\"$@\\"", "modelport"]
CMD []
"""


def export(
    bundle: Any,
    output: str | Path,
    *,
    build: str | None = None,
    base: str | None = None,
    port: int | None = None,
    builder: str | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the build context for ``bundle`` to ``output``; with ``build`` also build the image."""
    port = port or DEFAULT_PORT
    py = _vendor.local_python()
    py_version = f"{py[0]}.{py[1]}"
    default_base = f"docker.io/library/python:{py_version}-slim"
    base_ref = base or default_base
    if builder is not None and build is None:
        raise InputError("--builder applies with --build TAG.")
    tool = _builder(builder) if build else None
    dists = _vendor.closure(_vendor.SERVER_ROOTS)
    notes: list[str] = []
    with _artifact.staging(output, overwrite=overwrite) as root:
        wheels = root / "wheels"
        for d in dists:
            _vendor.repack_wheel(d, wheels)
        _vendor.modelport_wheel(wheels)
        pip_wheel = _vendor.repack_wheel(_vendor.closure(["pip"])[0], root / "tools")
        (root / "tools" / "prune.py").write_text(_vendor.prune_script())
        model_file = f"{bundle.name}.mpk"
        (root / "model").mkdir()
        data = bundle.to_bytes()
        (root / "model" / model_file).write_bytes(data)
        import modelport

        tag = build or f"localhost/{_image_name(bundle.name)}:{bundle.version or 'latest'}"
        text = _CONTAINERFILE.format(
            name=bundle.name, tag=tag, base=default_base if base == "debootstrap" else base_ref,
            py_tuple=repr(py), py_version=py_version, pip_wheel=pip_wheel.name, uid=UID, port=port,
            digest=bundle.digest, modelport_version=modelport.__version__, model_file=model_file,
        )
        (root / "Containerfile").write_text(text)
        (root / "DEPLOY.md").write_text(_deploy(bundle.name, tag, port))
        sizes = {"bundle": len(data), "context": _artifact.tree_size(root),
                 "site_packages": sum(_installed(d) for d in dists)}
        details: dict[str, Any] = {"python": py_version, "base": base_ref, "port": port,
                                   "distributions": [d.pin for d in dists], "user": UID}
        if build is not None:
            assert tool is not None
            build_base = ensure_debootstrap_base(py_version) if base == "debootstrap" else base_ref
            build_image(tool, root, build, base=build_base)
            sizes["image"] = image_size(tool, build)
            details.update({"image": build, "builder": tool, "base": build_base})
        result = ExportResult(
            target="container", path=Path(output), bundle=bundle.name, digest=bundle.digest,
            files={"containerfile": "Containerfile", "wheels": "wheels", "model": f"model/{model_file}",
                   **({"image": build} if build else {})},
            sizes=sizes, details=details, notes=notes,
        )
        result.write_summary(root)
    return result


def _image_name(name: str) -> str:
    out = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower()).strip("-._")
    return out or "model"


def _installed(d: _vendor.Dist) -> int:
    return sum(p.stat().st_size for _rel, p in _vendor._dist_files(d))


def _deploy(name: str, tag: str, port: int) -> str:
    return f"""# Building and running the image of {name}

```bash
podman build --format docker --network none -t {tag} .      # or: docker build -t {tag} .
podman run --rm -p {port}:{port} {tag}
curl -s localhost:{port}/v2/health/ready
curl -s localhost:{port}/v2/models/{name}/records -d '{{"records": [{{...}}]}}'
```

Arguments after the image name go to `modelport serve` (e.g. `--max-batch-size 16 --threads 2`);
`-e PORT=9000` moves the port (the health check follows). The image runs as uid {UID}, holds no
compiler, no pip and no training library, and serves `/metrics` for Prometheus on the same port.
Kubernetes / KServe manifests for it: `modelport export BUNDLE --target kserve --image {tag}`.
"""


# ============================================================================ building
def _builder(choice: str | None) -> str:
    options = [choice] if choice else ["podman", "buildah"]
    for tool in options:
        if shutil.which(tool):
            return tool
    raise MissingDependencyError(
        f"building an image needs {' or '.join(options)}, which is not installed here.",
        hint="apt-get install podman (Debian / Ubuntu), or build the written context yourself: "
        "docker build -t TAG OUTPUT",
    )


def _ulimits() -> list[str]:
    raw = os.environ.get(ULIMITS_ENV, _DEFAULT_ULIMITS)
    out: list[str] = []
    for item in filter(None, (x.strip() for x in raw.split(","))):
        out += ["--ulimit", item]
    return out


def build_image(tool: str, context: Path, tag: str, *, base: str) -> None:
    """Build the image of ``context`` with podman or buildah (Docker format, no network)."""
    cmd = ["podman", "build"] if tool == "podman" else ["buildah", "build"]
    cmd += ["--format", "docker", "--network", "none", "--build-arg", f"BASE={base}", *_ulimits(),
            "-t", tag, "-f", str(context / "Containerfile"), str(context)]
    _run(cmd, what=f"building the image {tag}", timeout=1800)


def image_size(tool: str, tag: str) -> int:
    out = _run([tool, "image", "inspect", tag, "--format", "{{.Size}}"], what=f"inspecting {tag}")
    try:
        return int(out.strip().splitlines()[0])
    except (ValueError, IndexError):
        raise ExportError(f"{tool} reports no size for {tag}: {out!r}") from None


def _run(cmd: list[str], *, what: str, timeout: float = 600, input: bytes | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        raise ExportError(f"{what} took more than {timeout:.0f} s; stopped.") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.decode(errors="replace").strip().splitlines()[-10:])
        raise ExportError(f"{what} failed ({cmd[0]} exited {proc.returncode}):\n{tail}")
    return proc.stdout.decode(errors="replace")


def ensure_debootstrap_base(py_version: str, *, tool: str = "podman") -> str:
    """A local Debian base image with python3 (made with debootstrap once, then reused)."""
    tag = f"localhost/modelport-base:{DEBIAN_SUITE}-py{py_version}"
    if subprocess.run([tool, "image", "exists", tag], capture_output=True).returncode == 0:
        return tag
    if not shutil.which("debootstrap"):
        raise MissingDependencyError("--base debootstrap needs debootstrap.", hint="apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ExportError("--base debootstrap runs debootstrap, which needs root.",
                          hint="run the export as root, or pass --base IMAGE with a python3 of this version")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="modelport-rootfs-") as tmp:
        rootfs = Path(tmp, "rootfs")
        _run(["debootstrap", "--variant=minbase", "--include=python3-minimal,libpython3-stdlib,ca-certificates",
              DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR], what="debootstrap of the Debian base", timeout=1800)
        version = subprocess.run(["chroot", str(rootfs), "python3", "-c",
                                  "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True).stdout.strip()
        if version != py_version:
            raise ExportError(
                f"Debian {DEBIAN_SUITE}'s python3 is {version or 'missing'}, the wheels are for {py_version}.",
                hint=f"export from a Python {version} environment, or pass --base IMAGE with python{py_version}",
            )
        excludes = ["./var/lib/apt/lists/*", "./var/cache/apt/*", "./usr/share/doc/*", "./usr/share/man/*",
                    "./usr/share/locale/*", "./usr/share/info/*", "./var/log/*"]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), *(f"--exclude={e}" for e in excludes), "-c", "."],
                               stdout=subprocess.PIPE)
        try:
            proc = subprocess.run([tool, "import", "--change", 'CMD ["python3"]', "-", tag], stdin=tar.stdout,
                                  capture_output=True, timeout=600)
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait()
        if proc.returncode != 0:
            raise ExportError(f"importing the Debian base into {tool} failed: {proc.stderr.decode(errors='replace')}")
    return tag
