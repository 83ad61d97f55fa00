"""Benchmark: modelport's C target against the other tree compilers (tl2cgen / treelite,
lleaves, m2cgen), each library's own predict and single-thread ONNX Runtime, on the same rows.

    python bench/codegen/bench_treecompilers.py [--rows 200000] [--repeat 3] [--models xgb200_d6,lgbm500_l63,rf100_d10]
        [--venv .venv-treecompilers] [--no-install]

The other compilers live in their own virtual environment (``--venv``, git-ignored), created on
first use with pip (tl2cgen, lleaves, m2cgen, and the same xgboost / lightgbm / scikit-learn /
numpy versions as this environment, so the saved models load alike); the models are trained
here, saved in each library's own format and timed there by ``treecompilers_worker.py``.

Models (20 features, 20,000 training rows): XGBoost classifier 200 trees depth 6, LightGBM
regressor 500 trees 63 leaves, scikit-learn RandomForest classifier 100 trees depth 10.
Everything runs on one thread with float32 rows: batch = ``--rows`` rows in one call, single =
one call per row (the compiled tools from a C loop, so no Python overhead is counted;
ONNX Runtime and the libraries from Python, as a service would call them). Every figure is
the best of ``--repeat`` runs; modelport's C is timed right before and right after the other
tools of each model and its best is used, so load from other users shows up in both. The
ratio column is modelport's rate divided by the tool's (above 1: modelport is ahead);
``max |diff|`` is against the library's own predict (float64), on P(class 1) for classifiers.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

SINGLE_LOOP = """
long {p}_single_loop(const float *x, long n, long nf, long no, float *out) {{
    for (long i = 0; i < n; ++i) {p}_predict(x + i * nf, 1, out + i * no);
    return 0;
}}
"""


def ensure_venv(venv: Path, install: bool) -> Path:
    py = venv / "bin" / "python"
    if py.exists():
        return py
    if not install:
        sys.exit(f"{venv} does not exist; run without --no-install to create it")
    print(f"creating {venv} (tl2cgen, lleaves, m2cgen) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = [f"{d}=={metadata.version(d)}" for d in ("numpy", "xgboost", "lightgbm", "scikit-learn")]
    # lleaves 1.3 uses llvmlite's legacy pass manager, which llvmlite 0.44 removed
    subprocess.run([str(py), "-m", "pip", "install", "-q", "tl2cgen", "lleaves", "llvmlite<0.44", "m2cgen", *pins], check=True)
    return py


def train(names: list[str], work: Path) -> dict[str, dict]:
    from sklearn.datasets import make_classification, make_regression
    from sklearn.ensemble import RandomForestClassifier

    Xc, yc = make_classification(20000, 20, n_informative=12, random_state=0)
    Xr, yr = make_regression(20000, 20, n_informative=12, noise=10.0, random_state=0)
    Xc, Xr = Xc.astype(np.float32), Xr.astype(np.float32)
    out: dict[str, dict] = {}
    for name in names:
        if name == "xgb200_d6":
            import xgboost as xgb

            m = xgb.XGBClassifier(n_estimators=200, max_depth=6, n_jobs=2, random_state=0).fit(Xc, yc)
            m.save_model(str(work / f"{name}.json"))
            out[name] = {"model": m, "X": Xc, "family": "xgboost", "kind": "classifier", "n_classes": 2}
        elif name == "lgbm500_l63":
            import lightgbm as lgb

            m = lgb.LGBMRegressor(n_estimators=500, num_leaves=63, n_jobs=2, random_state=0, verbose=-1).fit(Xr, yr)
            m.booster_.save_model(str(work / f"{name}.txt"))
            with open(work / f"{name}.pkl", "wb") as fh:
                pickle.dump(m, fh)
            out[name] = {"model": m, "X": Xr, "family": "lightgbm", "kind": "regressor", "n_classes": 0}
        elif name == "rf100_d10":
            m = RandomForestClassifier(100, max_depth=10, random_state=0, n_jobs=2).fit(Xc, yc)
            with open(work / f"{name}.pkl", "wb") as fh:
                pickle.dump(m, fh)
            out[name] = {"model": m, "X": Xc, "family": "sklearn", "kind": "classifier", "n_classes": 2}
        else:
            sys.exit(f"unknown model {name!r}; expected xgb200_d6, lgbm500_l63 or rf100_d10")
    return out


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_model(name: str, info: dict, args: argparse.Namespace, py: Path, work: Path) -> None:
    """Times modelport's C, ONNX Runtime and (through the worker) the other tools on one model; prints a table."""
    import modelport as mp
    from modelport.codegen import lower
    from modelport.codegen.c import build_shared, to_c
    from modelport.runtime.session import Runtime

    X = info["X"]
    rng = np.random.default_rng(1)
    batch = np.ascontiguousarray(X[rng.integers(0, len(X), args.rows)])
    np.save(work / "batch.npy", batch)
    (work / "meta.json").write_text(json.dumps({name: {k: info[k] for k in ("family", "kind", "n_classes")}}))

    b = mp.pack(info["model"], X[:2000], name=name, probe_rows=200)
    prog = lower(b)
    no, nf = prog.n_outputs, batch.shape[1]
    res = np.empty((args.rows, no), dtype=np.float32)
    ns = min(args.single, args.rows)
    variants = []  # (label, predict, single-row loop, generate s, gcc s, source MB)
    for sums in ("float", "double"):
        cdir = work / f"c_{name}_{sums}"
        cdir.mkdir()
        t0 = time.perf_counter()
        source, header = to_c(prog, prefix="m", sums=sums)
        t_gen = time.perf_counter() - t0
        (cdir / "m.h").write_text(header)
        (cdir / "m.c").write_text(source + SINGLE_LOOP.format(p="m"))
        t0 = time.perf_counter()
        lib = ctypes.CDLL(str(build_shared(cdir, "m")))
        t_cc = time.perf_counter() - t0
        fn = lib.m_predict
        fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p]
        loop = lib.m_single_loop
        loop.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
        label = "modelport C" if sums == "float" else "modelport C, double sums"
        variants.append((label, fn, loop, t_gen, t_cc, len(source) / 1e6))

    def time_c() -> list[tuple[float, float]]:
        rates = []
        for _, fn, loop, *_rest in variants:
            tb = best(lambda fn=fn: fn(batch.ctypes.data, args.rows, res.ctypes.data), args.repeat)
            ts = best(lambda loop=loop: loop(batch.ctypes.data, ns, nf, no, res.ctypes.data), args.repeat)
            rates.append((args.rows / tb, ns / ts))
        return rates

    c_before = time_c()
    worker = subprocess.run(
        [str(py), str(HERE / "treecompilers_worker.py"), str(work), name, "--repeat", str(args.repeat),
         "--single", str(args.single), "--single-python", str(args.single_python), "--cache", str(args.cache)],
        capture_output=True, text=True,
    )
    if worker.returncode != 0:
        print(worker.stderr[-3000:])
        sys.exit(f"the worker failed on {name}")
    others = json.loads(worker.stdout.strip().splitlines()[-1])
    c_after = time_c()
    ref = np.load(work / f"{name}.ref.npy")
    mine = []  # (label, batch, single, max diff)
    for (label, fn, *_rest), before, after in zip(variants, c_before, c_after):
        fn(batch.ctypes.data, args.rows, res.ctypes.data)
        mine.append((label, max(before[0], after[0]), max(before[1], after[1]),
                     float(np.abs(res[:, -1].astype(np.float64) - ref).max())))
    c_batch, c_single = mine[0][1], mine[0][2]

    rt = Runtime(b, intra_op_threads=1, inter_op_threads=1)
    out_names = [o.name for o in rt.session.get_outputs()]
    score = "probabilities" if "probabilities" in out_names else out_names[0]
    tb = best(lambda: rt.session.run([score], {"X": batch}), args.repeat)
    k1 = min(args.single_python, args.rows)
    rows1 = [batch[i:i + 1] for i in range(k1)]
    t1 = best(lambda: [rt.session.run([score], {"X": r}) for r in rows1], args.repeat)
    o = np.asarray(rt.session.run([score], {"X": batch})[0], dtype=np.float64)
    others["ONNX Runtime"] = {"batch": args.rows / tb, "single": k1 / t1,
                              "maxdiff": float(np.abs(o.reshape(len(o), -1)[:, -1] - ref).max()), "note": "from Python"}

    _, _, _, t_gen, t_cc, mb = variants[0]
    print(f"\n{name}: modelport C source {mb:.1f} MB, generate {t_gen:.1f} s + gcc -O2 {t_cc:.1f} s")
    print(f"  {'tool':<24} {'batch rows/s':>13} {'C ahead':>8} {'single calls/s':>15} {'C ahead':>8} {'max |diff|':>10}")
    for label, rb, rs, diff in mine:
        print(f"  {label:<24} {rb:>13,.0f} {c_batch / rb:>7.2f}x {rs:>15,.0f} {c_single / rs:>7.2f}x {diff:>10.2g}")
    for tool, r in others.items():
        if "error" in r:
            print(f"  {tool:<24} {r['error']}")
            continue
        print(f"  {tool:<24} {r['batch']:>13,.0f} {c_batch / r['batch']:>7.2f}x {r['single']:>15,.0f} "
              f"{c_single / r['single']:>7.2f}x {r['maxdiff']:>10.2g}  {r.get('note', '')}")
    print(f"  (modelport C before / after the others: batch {c_before[0][0]:,.0f} / {c_after[0][0]:,.0f}, "
          f"single {c_before[0][1]:,.0f} / {c_after[0][1]:,.0f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--single", type=int, default=20_000, help="single-row calls made from C")
    ap.add_argument("--single-python", type=int, default=1000, help="single-row calls made from Python")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", default="xgb200_d6,lgbm500_l63,rf100_d10")
    ap.add_argument("--venv", type=Path, default=ROOT / ".venv-treecompilers")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / "out" / "treecompilers",
                    help="compiled tl2cgen / m2cgen libraries, reused by later runs on the same models")
    args = ap.parse_args()

    import onnxruntime as ort

    py = ensure_venv(args.venv, not args.no_install)
    versions = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(', '.join(f'{d} {m.version(d)}' for d in "
         "('tl2cgen', 'treelite', 'lleaves', 'llvmlite', 'm2cgen')))"], capture_output=True, text=True, check=True,
    ).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="bench-treecompilers-"))
    names = args.models.split(",")
    ms = train(names, work)
    print(f"{versions}; onnxruntime {ort.__version__}; {args.rows:,} rows x 20 float32 features, one thread, "
          f"best of {args.repeat}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    for name, info in ms.items():
        bench_model(name, info, args, py, work)


if __name__ == "__main__":
    main()
