"""What it takes to run a bundle, against what it takes to run the pickle it replaces (issue 16).

The same model (a 100-tree random forest on scikit-learn's breast-cancer data, as in the
quickstart) two ways:

* **modelport runtime**: a fresh virtual environment with ``pip install modelport`` and nothing
  else (core requirements: numpy, onnx, onnxruntime, click, rich), loading the ``.mpk``;
* **sklearn stack**: a fresh virtual environment with scikit-learn (numpy, scipy, joblib,
  threadpoolctl), ``joblib.load`` of the pickle.

Both are installed offline from wheels rebuilt from this environment (the same versions), with
``PIP_CONFIG_FILE=/dev/null``. Printed: the size of each site-packages (pip and setuptools left
out), the size of what a function artifact vendors (``--deps env``, pruned), and the cold start
(a fresh interpreter: ``import`` + load + first prediction, best of N, and the whole process);
also the cold start of the Cloud Functions artifact itself in ``python -I -S``. With ``--images``
and podman, the image of ``--target container`` against an image of the sklearn stack with the
pickle on the same base.

    python bench/bench_runtime_install.py [--repeat 5] [--images] [--json]
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

ROOT = Path(__file__).resolve().parent.parent
ROWS = [[17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871, 1.095, 0.9053, 8.589, 153.4,
         0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193, 25.38, 17.33, 184.6, 2019.0, 0.1622, 0.6656,
         0.7119, 0.2654, 0.4601, 0.1189]]

MODELPORT_COLD = """
import time
t0 = time.perf_counter()
import numpy as np
import modelport
b = modelport.load({path!r})
out = b.predict(np.array({rows!r}))
t = time.perf_counter() - t0
import sys
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {{'pandas', 'sklearn', 'scipy', 'starlette', 'click', 'rich'}})
print(t, int(out['label'][0]), ','.join(heavy))
"""
SKLEARN_COLD = """
import time
t0 = time.perf_counter()
import numpy as np
import joblib
m = joblib.load({path!r})
out = m.predict(np.array({rows!r}))
t = time.perf_counter() - t0
print(t, int(out[0]), '')
"""
FUNCTION_COLD = """
import time
t0 = time.perf_counter()
import sys
sys.path[:0] = [{fn!r}]
import main
class R:
    method, path, query_string = "POST", "/", b""
    headers = {{"content-type": "application/json"}}
    def get_data(self, cache=True):
        return {body!r}
body, status, _ = main.predict(R())
t = time.perf_counter() - t0
print(t, status, '')
"""


def du(path: Path, exclude: tuple[str, ...] = ()) -> int:
    total = 0
    for dirpath, dirs, files in os.walk(path):
        rel = os.path.relpath(dirpath, path)
        if rel != "." and rel.split(os.sep)[0].lower().startswith(exclude):
            dirs[:] = []
            continue
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def make_venv(where: Path, wheels: Path, requirements: list[str]) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
                    "--find-links", str(wheels), *requirements], check=True, env=env)
    return where


def cold(python: str, code: str, repeat: int, flags: tuple[str, ...] = ()) -> dict[str, float]:
    inner, outer, label = [], [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = subprocess.run([python, *flags, "-c", code], capture_output=True, text=True, check=True)
        outer.append(time.perf_counter() - t0)
        t, label, heavy = [*out.stdout.strip().splitlines()[-1].split(" "), ""][:3]
        if heavy:
            raise SystemExit(f"the runtime imported {heavy}")
        inner.append(float(t))
    return {"import_load_predict_s": min(inner), "process_s": min(outer), "median_process_s": statistics.median(outer),
            "label": label}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--images", action="store_true", help="also build both images with podman and compare sizes")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    import modelport as mp
    from modelport.export import _vendor, export

    tmp = Path(tempfile.mkdtemp(prefix="modelport-bench-install-"))
    try:
        X, y = load_breast_cancer(return_X_y=True)
        model = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)
        bundle = mp.pack(model, X, name="cancer")
        mpk = tmp / "cancer.mpk"
        bundle.save(mpk)
        pkl = tmp / "cancer.joblib"
        joblib.dump(model, pkl)

        wheels = tmp / "wheels"
        core = _vendor.closure(["numpy", "onnx", "onnxruntime", "click", "rich"])
        stack = _vendor.closure(["scikit-learn", "joblib"])
        for d in {d.name: d for d in (*core, *stack)}.values():
            _vendor.repack_wheel(d, wheels)
        _vendor.modelport_wheel(wheels)

        rt = make_venv(tmp / "venv-modelport", wheels, ["modelport"])
        sk = make_venv(tmp / "venv-sklearn", wheels, ["scikit-learn", "joblib"])
        skip = ("pip", "setuptools", "_distutils_hack", "distutils-precedence", "pkg_resources", "__pycache__")
        sizes = {
            "modelport_runtime_site_packages": du(site_packages(rt), skip),
            "sklearn_stack_site_packages": du(site_packages(sk), skip),
        }
        gcf = export(bundle, "gcf", tmp / "gcf", deps="env")
        fn = gcf.path / "function"
        sizes["function_artifact_unzipped"] = gcf.sizes["unzipped"]
        sizes["function_artifact_zipped"] = gcf.sizes["zipped"]
        sizes["bundle"] = mpk.stat().st_size
        sizes["pickle"] = pkl.stat().st_size
        installed = {"modelport_runtime": sorted(p.name.split("-")[0] for p in site_packages(rt).glob("*.dist-info")),
                     "sklearn_stack": sorted(p.name.split("-")[0] for p in site_packages(sk).glob("*.dist-info"))}

        starts = {
            "modelport_runtime": cold(str(rt / "bin" / "python"), MODELPORT_COLD.format(path=str(mpk), rows=ROWS),
                                      args.repeat),
            "sklearn_stack": cold(str(sk / "bin" / "python"), SKLEARN_COLD.format(path=str(pkl), rows=ROWS),
                                  args.repeat),
            "function_artifact": cold(sys.executable, FUNCTION_COLD.format(
                fn=str(fn), body=json.dumps({"records": [dict(zip(bundle.signature.column_names, ROWS[0]))]}).encode()),
                args.repeat, flags=("-I", "-S", "-B")),
        }
        images: dict[str, int] = {}
        if args.images:
            images = build_images(bundle, pkl, wheels, stack, tmp)
        report = {"sizes": sizes, "cold_start": starts, "installed": installed, "images": images,
                  "python": sys.version.split()[0], "cpus": os.cpu_count()}
        if args.json:
            print(json.dumps(report, indent=2))
            return
        mb = 1e6
        print(f"model: RandomForestClassifier(100 trees), breast cancer; bundle {sizes['bundle'] / 1e3:.0f} kB, "
              f"pickle {sizes['pickle'] / 1e3:.0f} kB; Python {report['python']}, {report['cpus']} CPUs")
        print("install size (site-packages, pip/setuptools excluded)")
        print(f"  modelport runtime (pip install modelport)  {sizes['modelport_runtime_site_packages'] / mb:7.1f} MB"
              f"  [{', '.join(installed['modelport_runtime'])}]")
        print(f"  sklearn stack (scikit-learn + joblib)       {sizes['sklearn_stack_site_packages'] / mb:7.1f} MB"
              f"  [{', '.join(installed['sklearn_stack'])}]")
        print(f"  function artifact (--deps env, pruned)      {sizes['function_artifact_unzipped'] / mb:7.1f} MB"
              f" unzipped, {sizes['function_artifact_zipped'] / mb:.1f} MB zipped")
        print(f"cold start (fresh interpreter; best of {args.repeat})      import+load+predict   whole process")
        for key, label in (("modelport_runtime", "modelport runtime venv"), ("sklearn_stack", "sklearn stack venv"),
                           ("function_artifact", "function artifact, python -I -S")):
            s = starts[key]
            print(f"  {label:<36} {s['import_load_predict_s'] * 1000:10.0f} ms {s['process_s'] * 1000:14.0f} ms")
        if images:
            print("images (podman, same debootstrap base)")
            for k, v in images.items():
                print(f"  {k:<36} {v / mb:7.1f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SKLEARN_CONTAINERFILE = """\
ARG BASE
FROM ${BASE} AS install
COPY tools/ /tmp/tools/
COPY wheels/ /tmp/wheels/
RUN python3 /tmp/tools/pip.whl/pip install --no-index --no-deps --no-cache-dir --root-user-action=ignore \\
      --target /opt/stack /tmp/wheels/*.whl
FROM ${BASE}
COPY --from=install /opt/stack /opt/stack
COPY model.joblib /models/model.joblib
ENV PYTHONPATH=/opt/stack
CMD ["python3", "-c", "import joblib; joblib.load('/models/model.joblib')"]
"""


def build_images(bundle, pkl: Path, wheels: Path, stack, tmp: Path) -> dict[str, int]:
    from modelport.export import _vendor, export
    from modelport.export.container import _ulimits, ensure_debootstrap_base, image_size

    base = ensure_debootstrap_base("{}.{}".format(*sys.version_info[:2]))
    tag = "localhost/modelport-bench-cancer:1"
    result = export(bundle, "container", tmp / "image", build=tag, base="debootstrap")
    ctx = tmp / "sk-image"
    (ctx / "wheels").mkdir(parents=True)
    (ctx / "tools").mkdir()
    for d in stack:
        shutil.copy(next(wheels.glob(d.name.replace("-", "_") + "-*.whl")), ctx / "wheels")
    shutil.copy(_vendor.repack_wheel(_vendor.closure(["pip"])[0], tmp / "pipwheel"), ctx / "tools" / "pip.whl")
    shutil.copy(pkl, ctx / "model.joblib")
    (ctx / "Containerfile").write_text(SKLEARN_CONTAINERFILE)
    sk_tag = "localhost/modelport-bench-sklearn:1"
    subprocess.run(["podman", "build", "--format", "docker", "--network", "none", "--build-arg", f"BASE={base}",
                    *_ulimits(), "-t", sk_tag, str(ctx)], check=True, capture_output=True)
    out = {"base": image_size("podman", base), "modelport_image": result.sizes["image"],
           "sklearn_stack_image": image_size("podman", sk_tag)}
    for t in (tag, sk_tag):
        subprocess.run(["podman", "rmi", "-f", t], capture_output=True)
    return out


if __name__ == "__main__":
    main()
