"""Benchmark: generated C (gcc -O2, through ctypes) and generated SQL against single-thread
ONNX Runtime, measured in the same run.

    python bench/codegen/bench_codegen.py [--rows 200000] [--sql-rows 1000000] [--postgres URL] [--skip-sql]

Models: a 100-tree depth-10 RandomForest and a 200-tree depth-6 XGBoost, both over 20 features.
Prints rows/s for each engine and the ratio to ONNX Runtime, and the generate + compile time.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def models(n_train: int):
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_train, 20, n_informative=12, random_state=0)
    X = X.astype(np.float32)
    out = {"rf100_d10": RandomForestClassifier(100, max_depth=10, random_state=0, n_jobs=2).fit(X, y)}
    try:
        import xgboost as xgb

        out["xgb200_d6"] = xgb.XGBClassifier(n_estimators=200, max_depth=6, n_jobs=2, random_state=0).fit(X, y)
    except ImportError:
        print("xgboost not installed: skipping the XGBoost model")
    return X, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000, help="batch size for C vs ONNX Runtime")
    ap.add_argument("--sql-rows", type=int, default=1_000_000)
    ap.add_argument("--train-rows", type=int, default=20_000)
    ap.add_argument("--postgres", default=os.environ.get("MODELPORT_TEST_POSTGRES_URL"))
    ap.add_argument("--skip-sql", action="store_true")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--sql-models", default="rf100_d10,xgb200_d6", help="models to run the SQL part for")
    ap.add_argument("--sql-engines", default="duckdb,postgresql")
    args = ap.parse_args()

    import onnxruntime as ort

    import modelport as mp
    from modelport.codegen import compile_bundle, lower
    from modelport.codegen.c import build_shared
    from modelport.runtime.session import Runtime

    X, ms = models(args.train_rows)
    rng = np.random.default_rng(1)
    batch = np.ascontiguousarray(X[rng.integers(0, len(X), args.rows)])
    print(f"onnxruntime {ort.__version__}, batch {args.rows} rows x 20 features, single-thread ORT")
    for name, model in ms.items():
        b = mp.pack(model, X[:2000], name=name, probe_rows=200)
        nodes = sum(1 for _ in b.onnx_model.graph.node)
        t0 = time.perf_counter()
        prog = lower(b)
        out = compile_bundle(b, "c", prefix="m", program=prog)
        t_gen = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as d:
            for f, text in out.files.items():
                with open(os.path.join(d, f), "w") as fh:
                    fh.write(text)
            size = len(out.files["m.c"])
            t1 = time.perf_counter()
            lib = ctypes.CDLL(str(build_shared(d, "m")))
            t_cc = time.perf_counter() - t1
            fn = lib.m_predict
            fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p]
            res = np.empty((args.rows, prog.n_outputs), dtype=np.float32)
            rt = Runtime(b, intra_op_threads=1, inter_op_threads=1)
            feeds = {"X": batch}
            # interleaved, best of several: the machine may be shared, and both sides see the same noise
            c_times, ort_times = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                fn(batch.ctypes.data, args.rows, res.ctypes.data)
                c_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                rt.session.run(["probabilities"], feeds)
                ort_times.append(time.perf_counter() - t0)
            c_time, ort_time = min(c_times), min(ort_times)
            ref = rt.session.run(["probabilities"], feeds)[0]
            err = float(np.abs(ref - res).max())
        print(
            f"{name}: {nodes} graph nodes; C source {size / 1e6:.1f} MB; generate {t_gen:.2f} s + gcc -O2 {t_cc:.2f} s "
            f"= {t_gen + t_cc:.2f} s"
        )
        print(
            f"  C {args.rows / c_time:,.0f} rows/s vs ORT(1 thread) {args.rows / ort_time:,.0f} rows/s "
            f"-> ratio {ort_time / c_time:.2f}x (max abs diff {err:.2g})"
        )
        if args.skip_sql or name not in args.sql_models.split(","):
            continue
        sql_bench(b, prog, X, args, ort_time / args.rows)
        sys.stdout.flush()


def sql_bench(b, prog, X, args, ort_per_row: float) -> None:
    from modelport.codegen.sql import to_sql

    n = args.sql_rows
    rng = np.random.default_rng(2)
    data = X[rng.integers(0, len(X), n)].astype(np.float64)
    names = [c.name for c in prog.columns]
    ort_rows_s = 1 / ort_per_row
    engines = args.sql_engines.split(",")
    if "duckdb" not in engines:
        print("  DuckDB not requested")
    try:
        if "duckdb" not in engines:
            raise ImportError("not requested")
        import duckdb
        import pyarrow as pa

        con = duckdb.connect()
        con.execute("SET threads TO 1")
        tbl = pa.table({c: data[:, i] for i, c in enumerate(names)})  # noqa: F841 (read by DuckDB)
        con.execute("CREATE TABLE t AS SELECT * FROM tbl")
        q = to_sql(prog, dialect="duckdb", table="t")
        t0 = time.perf_counter()
        con.execute(f"CREATE TABLE r AS {q}")
        dt = time.perf_counter() - t0
        print(f"  DuckDB (1 thread) {n / dt:,.0f} rows/s on {n:,} rows ({dt:.1f} s) -> {n / dt / ort_rows_s:.3f}x ORT")
        con.execute("SET threads TO 2")
        con.execute("DROP TABLE r")
        t0 = time.perf_counter()
        con.execute(f"CREATE TABLE r AS {q}")
        dt = time.perf_counter() - t0
        print(f"  DuckDB (2 threads) {n / dt:,.0f} rows/s ({dt:.1f} s)")
        con.close()
    except ImportError as exc:
        print(f"  DuckDB skipped: {exc}")
    if not args.postgres or "postgresql" not in engines:
        print("  PostgreSQL skipped: no --postgres URL or not requested")
        return
    import psycopg

    with psycopg.connect(args.postgres, autocommit=True) as con:
        con.execute("SET statement_timeout = '600s'")
        con.execute("SET max_parallel_workers_per_gather = 0")
        cols = ", ".join(f'"{c}" DOUBLE PRECISION' for c in names)
        con.execute(f"CREATE TEMP TABLE t ({cols})")
        t0 = time.perf_counter()
        with con.cursor() as cur, cur.copy("COPY t FROM STDIN") as copy:
            for row in data.tolist():
                copy.write_row(row)
        t_load = time.perf_counter() - t0
        q = to_sql(prog, dialect="postgresql", table="t")
        t0 = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE r AS {q}")
        dt = time.perf_counter() - t0
        print(
            f"  PostgreSQL (1 worker) {n / dt:,.0f} rows/s on {n:,} rows ({dt:.1f} s; load {t_load:.1f} s) "
            f"-> {n / dt / ort_rows_s:.3f}x ORT"
        )


if __name__ == "__main__":
    main()
