"""Times the other tree compilers (tl2cgen / treelite, lleaves, m2cgen) and each library's own
predict on models saved by bench_treecompilers.py; runs in their own virtual environment
(.venv-treecompilers), prints one JSON object. Not meant to be run by hand.

    .venv-treecompilers/bin/python bench/codegen/treecompilers_worker.py WORKDIR MODEL [--repeat 3]

WORKDIR holds ``MODEL.json`` (XGBoost), ``MODEL.txt`` (LightGBM) or ``MODEL.pkl`` (scikit-learn),
``batch.npy`` (float32 rows) and ``meta.json``. Single-row calls of the compiled tools are made
from a C loop (one call per row), so no Python call overhead is counted; the libraries' own
predict is called from Python, the way a service would call it.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

TL_DRIVER = r"""
#include "header.h"
/* batch: one predict() per row, the way tl2cgen's own runtime loops; single: the same per call */
long tl_rows(const float *x, long n, long nf, double *out, long k) {
    union Entry e[4096];
    LEAF_T res[64];
    for (long r = 0; r < n; ++r) {
        for (long j = 0; j < nf; ++j) {
            const float v = x[r * nf + j];
            if (v != v) e[j].missing = -1; else e[j].fvalue = v;
        }
        for (long j = 0; j < k; ++j) res[j] = 0;
        predict(e, 0, res);
        for (long j = 0; j < k; ++j) out[r * k + j] = res[j];
    }
    return 0;
}
"""

LL_DRIVER = r"""
typedef void (*entry_t)(const double *, double *, int, int);
long ll_single(void *fn, const double *x, long n, long nf, double *out, long k) {
    entry_t f = (entry_t)fn;
    for (long r = 0; r < n; ++r) f(x + r * nf, out + r * k, 0, 1);
    return 0;
}
"""

M2_DRIVER = r"""
long m2_rows(const float *x, long n, long nf, double *out, long k) {
    double row[4096];
    for (long r = 0; r < n; ++r) {
        for (long j = 0; j < nf; ++j) row[j] = x[r * nf + j];
        SCORE_CALL;
    }
    return 0;
}
"""


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cc(sources: list[Path], lib: Path, opt: str, timeout: float) -> float:
    t0 = time.perf_counter()
    subprocess.run(["gcc", opt, "-fPIC", "-shared", "-o", str(lib), *map(str, sources), "-lm"], check=True,
                   capture_output=True, timeout=timeout)
    return time.perf_counter() - t0


def positive(p: np.ndarray) -> np.ndarray:
    """The score compared across tools: P(class 1) for a binary classifier, else the value."""
    p = np.asarray(p, dtype=np.float64)
    return p.reshape(len(p), -1)[:, -1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("model")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--single", type=int, default=20000, help="single-row calls from C")
    ap.add_argument("--single-python", type=int, default=1000, help="single-row calls from Python")
    ap.add_argument("--cc-timeout", type=float, default=600)
    ap.add_argument("--m2cgen-timeout", type=float, default=120)
    ap.add_argument("--opt", default="-O2", help="gcc optimisation for the generated C (modelport's is -O2)")
    ap.add_argument("--tl2cgen-quantize", type=lambda s: [int(v) for v in s.split(",")], default=[1])
    ap.add_argument("--tools", default="library,tl2cgen,lleaves,m2cgen")
    ap.add_argument("--cache", type=Path, help="keep compiled libraries here, keyed by the model file's digest")
    args = ap.parse_args()
    work, name = args.work, args.model
    meta = json.loads((work / "meta.json").read_text())[name]
    family, kind = meta["family"], meta["kind"]
    x = np.load(work / "batch.npy")
    n, nf = x.shape
    ns = min(args.single, n)
    xd = np.ascontiguousarray(x.astype(np.float64))
    tools = args.tools.split(",")
    src = next(work / f"{name}.{ext}" for ext in ("json", "txt", "pkl") if (work / f"{name}.{ext}").exists())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    cache = args.cache if args.cache is not None else work
    cache.mkdir(parents=True, exist_ok=True)
    res: dict[str, dict] = {}

    # the library's own predict, one thread; its output is the accuracy reference
    if family == "xgboost":
        import xgboost as xgb

        bst = xgb.Booster()
        bst.load_model(str(work / f"{name}.json"))
        bst.set_param({"nthread": 1})
        own = lambda a: bst.inplace_predict(a)  # noqa: E731
    elif family == "lightgbm":
        import lightgbm as lgb

        bst = lgb.Booster(model_file=str(work / f"{name}.txt"))
        own = lambda a: bst.predict(a, num_threads=1)  # noqa: E731
    else:
        with open(work / f"{name}.pkl", "rb") as fh:
            skl = pickle.load(fh)
        skl.set_params(n_jobs=1)
        own = skl.predict_proba if kind == "classifier" else skl.predict
    ref = positive(own(x))
    np.save(work / f"{name}.ref.npy", ref)
    if "library" in tools:
        t = best(lambda: own(x), args.repeat)
        k1 = min(args.single_python, n)
        t1 = best(lambda: [own(x[i:i + 1]) for i in range(k1)], args.repeat)
        res["library"] = {"batch": n / t, "single": k1 / t1, "maxdiff": 0.0, "note": "from Python"}

    if "tl2cgen" in tools:
        import tl2cgen
        import treelite

        if family == "xgboost":
            tm = treelite.frontend.load_xgboost_model(str(work / f"{name}.json"))
        elif family == "lightgbm":
            tm = treelite.frontend.load_lightgbm_model(str(work / f"{name}.txt"))
        else:
            tm = treelite.sklearn.import_model(skl)
        for q in args.tl2cgen_quantize:
            label = f"tl2cgen (quantize={q})"
            try:
                d = cache / f"tl2cgen_{digest}_q{q}{args.opt}"
                note = "compiled earlier (cached)"
                if not (d / "lib.so").exists():
                    t0 = time.perf_counter()
                    tl2cgen.generate_c_code(tm, str(d), params={"quantize": q})
                    t_gen = time.perf_counter() - t0
                    leaf_t = "float" if "float* result" in (d / "header.h").read_text() else "double"
                    (d / "driver.c").write_text(TL_DRIVER.replace("LEAF_T", leaf_t))
                    srcs = sorted(d.glob("*.c"))
                    t_cc = cc(srcs, d / "lib.tmp", args.opt, args.cc_timeout)
                    (d / "lib.tmp").rename(d / "lib.so")
                    note = f"generate {t_gen:.1f} s + gcc {args.opt} {t_cc:.1f} s"
                lib = ctypes.CDLL(str(d / "lib.so"))
                fn = lib.tl_rows
                fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long]
                header = (d / "header.h").read_text()
                # a scikit-learn classifier's trees carry every class's probability (MAX_N_CLASS 2)
                k = int(re.search(r"#define MAX_N_CLASS (\d+)", header).group(1))
                out = np.zeros((n, k))
                t = best(lambda fn=fn, out=out, k=k: fn(x.ctypes.data, n, nf, out.ctypes.data, k), args.repeat)
                # single rows: the same per-row function, one call each (C loop)
                t1 = best(lambda fn=fn, out=out, k=k: fn(x.ctypes.data, ns, nf, out.ctypes.data, k), args.repeat)
                fn(x.ctypes.data, n, nf, out.ctypes.data, k)
                res[label] = {"batch": n / t, "single": ns / t1, "maxdiff": float(np.abs(positive(out) - ref).max()),
                              "note": f"{note}; batch = its per-row predict in a C loop"}
            except Exception as exc:
                res[label] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}

    if "lleaves" in tools and family == "lightgbm":
        import lleaves

        try:
            t0 = time.perf_counter()
            m = lleaves.Model(model_file=str(work / f"{name}.txt"))
            m.compile()
            t_cc = time.perf_counter() - t0
            t = best(lambda: m.predict(xd, n_jobs=1), args.repeat)
            got = positive(m.predict(xd, n_jobs=1))
            d = work / "ll"
            d.mkdir(exist_ok=True)  # the driver only; lleaves compiles in memory
            (d / "driver.c").write_text(LL_DRIVER)
            cc([d / "driver.c"], d / "lib.so", "-O2", args.cc_timeout)
            drv = ctypes.CDLL(str(d / "lib.so")).ll_single
            drv.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_long] * 2 + [ctypes.c_void_p, ctypes.c_long]
            addr = ctypes.cast(m._c_entry_func, ctypes.c_void_p).value
            k = 1
            out = np.zeros((ns, k))
            t1 = best(lambda: drv(addr, xd.ctypes.data, ns, nf, out.ctypes.data, k), args.repeat)
            res["lleaves (fp64)"] = {"batch": n / t, "single": ns / t1, "maxdiff": float(np.abs(got - ref).max()),
                                     "note": f"compile {t_cc:.1f} s; rows given as float64 (conversion not timed)"}
        except Exception as exc:
            res["lleaves (fp64)"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}

    if "m2cgen" in tools:
        try:
            import m2cgen

            sys.setrecursionlimit(100000)
            model_obj = skl if family == "sklearn" else None
            if family == "xgboost":
                import xgboost as xgb

                model_obj = xgb.XGBClassifier() if kind == "classifier" else xgb.XGBRegressor()
                model_obj.load_model(str(work / f"{name}.json"))
            elif family == "lightgbm":
                with open(work / f"{name}.pkl", "rb") as fh:
                    model_obj = pickle.load(fh)
            t0 = time.perf_counter()
            code = m2cgen.export_to_c(model_obj)
            t_gen = time.perf_counter() - t0
            vector = "void score(double * input, double * output)" in code
            k = (meta["n_classes"] if kind == "classifier" else 1) if vector else 1
            call = "score(row, out + r * k)" if vector else "out[r] = score(row)"
            d = cache / f"m2cgen_{digest}{args.opt}"
            d.mkdir(exist_ok=True)
            note = f"generate {t_gen:.1f} s, compiled earlier (cached)"
            if (d / "failed").exists():
                raise subprocess.TimeoutExpired("gcc", args.m2cgen_timeout)
            if not (d / "lib.so").exists():
                (d / "model.c").write_text(code + "\n" + M2_DRIVER.replace("SCORE_CALL", call))
                try:
                    t_cc = cc([d / "model.c"], d / "lib.tmp", args.opt, args.m2cgen_timeout)
                except subprocess.TimeoutExpired:
                    (d / "failed").write_text("timeout")
                    raise
                (d / "lib.tmp").rename(d / "lib.so")
                note = f"generate {t_gen:.1f} s + gcc {args.opt} {t_cc:.1f} s"
            fn = ctypes.CDLL(str(d / "lib.so")).m2_rows
            fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long]
            out = np.zeros((n, k))
            t = best(lambda: fn(x.ctypes.data, n, nf, out.ctypes.data, k), args.repeat)
            t1 = best(lambda: fn(x.ctypes.data, ns, nf, out.ctypes.data, k), args.repeat)
            fn(x.ctypes.data, n, nf, out.ctypes.data, k)
            res["m2cgen"] = {"batch": n / t, "single": ns / t1, "maxdiff": float(np.abs(positive(out) - ref).max()),
                             "note": note}
        except subprocess.TimeoutExpired:
            res["m2cgen"] = {"error": f"gcc {args.opt} did not finish within {args.m2cgen_timeout:.0f} s"}
        except Exception as exc:
            res["m2cgen"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    print(json.dumps(res))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
