"""Benchmark: generated C (gcc -O2, through ctypes), Java (warm JIT), JavaScript (node) and SQL
(DuckDB, PostgreSQL) against single-thread ONNX Runtime, measured in the same run.

    python bench/codegen/bench_codegen.py [--rows 200000] [--repeat 5] [--parts c,java,javascript,sql]
        [--sql-rows 1000000] [--sql-repeat 2] [--postgres URL] [--models rf100_d10,xgb200_d6]

Models: a 100-tree depth-10 RandomForest and a 200-tree depth-6 XGBoost, both over 20 features.
The machine is shared, so every engine runs ``--repeat`` times, C and ONNX Runtime around each
other engine's runs; each line prints the best rows/s and the spread (slowest / best), and the
ratios are best against best. ``cpu`` ratios divide the engines' CPU seconds instead (process
or thread CPU time; PostgreSQL's from its backend's /proc entry), which other users' load
disturbs less than wall-clock time.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
HERE = Path(__file__).resolve().parent


def models(n_train: int, names: list[str]):
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_train, 20, n_informative=12, random_state=0)
    X = X.astype(np.float32)
    out = {}
    if "rf100_d10" in names:
        out["rf100_d10"] = RandomForestClassifier(100, max_depth=10, random_state=0, n_jobs=2).fit(X, y)
    if "xgb200_d6" in names:
        import xgboost as xgb

        out["xgb200_d6"] = xgb.XGBClassifier(n_estimators=200, max_depth=6, n_jobs=2, random_state=0).fit(X, y)
    return X, out


@dataclass
class Timings:
    """Wall and CPU seconds of repeated runs of one engine on ``rows`` rows."""

    rows: int
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)

    @property
    def best(self) -> float:
        return self.rows / min(self.wall)

    @property
    def best_cpu(self) -> float:
        return self.rows / min(self.cpu)

    @property
    def spread(self) -> float:
        return max(self.wall) / min(self.wall)


def line(name: str, t: Timings, c: Timings | None, ort: Timings) -> str:
    vs_c = f"{t.best / c.best:5.2f}x C (cpu {t.best_cpu / c.best_cpu:4.2f}x)" if c is not None and t is not c else " " * 25
    return (f"  {name:<22} {t.best:>11,.0f} rows/s  spread {t.spread:4.2f} over {len(t.wall)}  {vs_c}  "
            f"{t.best / ort.best:6.2f}x ORT (cpu {t.best_cpu / ort.best_cpu:5.2f}x)")


def write_rows(path: Path, x: np.ndarray) -> None:
    path.write_bytes(struct.pack("<ii", *x.shape) + np.ascontiguousarray(x, dtype="<f4").tobytes())


def run_vm(cmd: list[str], rows: int) -> tuple[Timings, float]:
    """Batch timings and single-row calls/s printed by JavaBench / js_bench.mjs."""
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed: {res.stderr[-2000:]}")
    t = Timings(rows)
    single = 0.0
    for ln in res.stdout.splitlines():
        parts = ln.split()
        if parts[0] == "batch":
            t.add(float(parts[1]), float(parts[2]))
        elif parts[0] == "single":
            single = max(single, int(parts[3]) / float(parts[1]))
    return t, single


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000, help="batch size for C / Java / JavaScript / ONNX Runtime")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=float, default=4.0, help="seconds of JIT warm-up for Java and JavaScript")
    ap.add_argument("--parts", default="c,java,javascript,sql")
    ap.add_argument("--skip-sql", action="store_true", help="same as leaving sql out of --parts")
    ap.add_argument("--models", default="rf100_d10,xgb200_d6")
    ap.add_argument("--sql-rows", type=int, default=1_000_000)
    ap.add_argument("--sql-repeat", type=int, default=2)
    ap.add_argument("--sql-engines", default="duckdb,postgresql")
    ap.add_argument("--sql-parallel", type=int, default=2,
                    help="also one run with this many DuckDB threads / PostgreSQL workers (0: single-threaded only)")
    ap.add_argument("--train-rows", type=int, default=20_000)
    ap.add_argument("--postgres", default=os.environ.get("MODELPORT_TEST_POSTGRES_URL"))
    args = ap.parse_args()
    parts = [p for p in args.parts.split(",") if not (args.skip_sql and p == "sql")]

    import onnxruntime as ort

    import modelport as mp
    from modelport.codegen import compile_bundle, lower
    from modelport.codegen.c import build_shared
    from modelport.codegen.java import to_java
    from modelport.codegen.javascript import to_javascript
    from modelport.codegen.toolchain import javac, tool
    from modelport.runtime.session import Runtime

    X, ms = models(args.train_rows, args.models.split(","))
    rng = np.random.default_rng(1)
    batch = np.ascontiguousarray(X[rng.integers(0, len(X), args.rows)])
    print(f"onnxruntime {ort.__version__}, batch {args.rows:,} rows x 20 float32 features, ORT with 1 thread; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    for name, model in ms.items():
        b = mp.pack(model, X[:2000], name=name, probe_rows=200)
        prog = lower(b)
        work = Path(tempfile.mkdtemp(prefix="bench-codegen-"))
        rt = Runtime(b, intra_op_threads=1, inter_op_threads=1)
        feeds = {"X": batch}
        res = np.empty((args.rows, prog.n_outputs), dtype=np.float32)
        c = Timings(args.rows)
        o = Timings(args.rows)
        lib = None
        t0 = time.perf_counter()
        out = compile_bundle(b, "c", prefix="m", program=prog)
        t_gen = time.perf_counter() - t0
        for f, text in out.files.items():
            (work / f).write_text(text)
        t0 = time.perf_counter()
        lib = ctypes.CDLL(str(build_shared(work, "m")))
        t_cc = time.perf_counter() - t0
        fn = lib.m_predict
        fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p]

        def c_and_ort(n: int, fn=fn, res=res, c=c, o=o, rt=rt, feeds=feeds) -> None:
            for _ in range(n):
                w0, c0 = time.perf_counter(), time.process_time()
                fn(batch.ctypes.data, args.rows, res.ctypes.data)
                c.add(time.perf_counter() - w0, time.process_time() - c0)
                w0, c0 = time.perf_counter(), time.process_time()
                rt.session.run(["probabilities"], feeds)
                o.add(time.perf_counter() - w0, time.process_time() - c0)

        c_and_ort(args.repeat)
        ref = rt.session.run(["probabilities"], feeds)[0]
        print(f"\n{name}: C source {len(out.files['m.c']) / 1e6:.1f} MB, generate {t_gen:.2f} s + gcc -O2 {t_cc:.2f} s; "
              f"C vs ORT max abs diff {float(np.abs(ref - res).max()):.2g}", flush=True)
        others: list[tuple[str, Timings, str]] = []
        rows_file = work / "rows.bin"
        write_rows(rows_file, batch)
        if "java" in parts:
            t0 = time.perf_counter()
            (work / "BenchModel.java").write_text(to_java(prog, class_name_="BenchModel"))
            t_gen = time.perf_counter() - t0
            shutil.copy(HERE / "JavaBench.java", work)
            t0 = time.perf_counter()
            javac([work / "BenchModel.java", work / "JavaBench.java"], work / "classes")
            t_javac = time.perf_counter() - t0
            jt, single = run_vm([tool("java"), "-cp", str(work / "classes"), "JavaBench", "BenchModel", str(rows_file),
                                 str(args.warmup), str(args.repeat)], args.rows)
            others.append(("Java (warm JIT)", jt, f"generate {t_gen:.2f} s + javac {t_javac:.2f} s; "
                                                 f"single-row predict(float[]) {single:,.0f} calls/s"))
            c_and_ort(args.repeat)
        if "javascript" in parts:
            t0 = time.perf_counter()
            (work / "model.mjs").write_text(to_javascript(prog))
            t_gen = time.perf_counter() - t0
            vt, single = run_vm([tool("node"), str(HERE / "js_bench.mjs"), str(work / "model.mjs"), str(rows_file),
                                 str(args.warmup), str(args.repeat)], args.rows)
            others.append((f"JavaScript (node {subprocess.run([tool('node'), '--version'], capture_output=True, text=True).stdout.strip()})",
                           vt, f"generate {t_gen:.2f} s; single-row predict(row) {single:,.0f} calls/s"))
            c_and_ort(args.repeat)
        print(line("C (gcc -O2, ctypes)", c, None, o))
        for label, t, note in others:
            print(line(label, t, c, o) + f"\n  {'':<22} {note}")
        print(line("ONNX Runtime", o, c, o), flush=True)
        if "sql" in parts:
            sql_bench(b, prog, X, args, rt)
        shutil.rmtree(work, ignore_errors=True)
        sys.stdout.flush()


def _pg_cpu(pid: int) -> float:
    """User + system CPU seconds of a local PostgreSQL backend (0 when it is not local)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sql_bench(b, prog, X, args, rt) -> None:
    from modelport.codegen.sql import sql_script

    n = args.sql_rows
    rng = np.random.default_rng(2)
    data = X[rng.integers(0, len(X), n)].astype(np.float64)
    names = [c.name for c in prog.columns]
    engines = args.sql_engines.split(",")
    ort_batch = np.ascontiguousarray(data[: min(n, 200_000)].astype(np.float32))
    o = Timings(len(ort_batch))

    def ort_once() -> None:
        w0, c0 = time.perf_counter(), time.process_time()
        rt.session.run(["probabilities"], {"X": ort_batch})
        o.add(time.perf_counter() - w0, time.process_time() - c0)

    print(f"  SQL on {n:,} rows (ORT reference on {len(ort_batch):,} rows, measured around each SQL run; "
          f"load average {os.getloadavg()[0]:.1f}):", flush=True)

    def report(label: str, t: Timings, note: str) -> None:
        print(line(label, t, None, o) + f"\n  {'':<22} {note}", flush=True)

    par = [args.sql_parallel] if args.sql_parallel > 1 else []
    if "duckdb" in engines:
        import duckdb
        import pyarrow as pa

        script = sql_script(prog, dialect="duckdb", table="t")
        con = duckdb.connect()
        tbl = pa.table({c: data[:, i] for i, c in enumerate(names)})  # noqa: F841 (read by DuckDB)
        con.execute("CREATE TABLE t AS SELECT * FROM tbl")
        for threads in (1, *par):
            con.execute(f"SET threads TO {threads}")
            t = Timings(n)
            for _ in range(args.sql_repeat if threads == 1 else 1):
                ort_once()
                con.execute("DROP TABLE IF EXISTS r")
                w0, c0 = time.perf_counter(), time.process_time()
                con.execute(f"CREATE TABLE r AS {script.query}")
                t.add(time.perf_counter() - w0, time.process_time() - c0)
                ort_once()
            report(f"DuckDB ({threads} thread{'s' if threads > 1 else ''})", t, f"SQL {len(script.text()) / 1e6:.2f} MB")
        con.close()
    if "postgresql" in engines and args.postgres:
        import psycopg

        script = sql_script(prog, dialect="postgresql", table="t")
        with psycopg.connect(args.postgres, autocommit=True) as con:
            for statement in script.setup:
                con.execute(statement)
            con.execute("SET statement_timeout = '1800s'")
            cols = ", ".join(f'"{c}" DOUBLE PRECISION' for c in names)
            con.execute(f"CREATE TEMP TABLE t ({cols})")
            t0 = time.perf_counter()
            with con.cursor() as cur, cur.copy("COPY t FROM STDIN") as copy:
                for row in data.tolist():
                    copy.write_row(row)
            con.execute("ANALYZE t")
            t_load = time.perf_counter() - t0
            pid = con.execute("SELECT pg_backend_pid()").fetchone()[0]
            for workers, reps in ((0, args.sql_repeat), *((w, 1) for w in par)):
                con.execute(f"SET max_parallel_workers_per_gather = {workers}")
                t = Timings(n)
                for _ in range(reps):
                    ort_once()
                    con.execute("DROP TABLE IF EXISTS r")
                    w0, c0 = time.perf_counter(), _pg_cpu(pid)
                    con.execute(f"CREATE TEMP TABLE r AS {script.query}")
                    wall = time.perf_counter() - w0
                    # with workers, the backend's CPU time misses theirs: count wall time
                    t.add(wall, (_pg_cpu(pid) - c0) if workers == 0 and _pg_cpu(pid) else wall)
                    ort_once()
                label = "PostgreSQL (1 process)" if workers == 0 else f"PostgreSQL ({workers} workers)"
                report(label, t, f"SQL {len(script.text()) / 1e6:.2f} MB, {'; '.join(script.setup) or 'jit as set'}; "
                                 f"COPY of {n:,} rows {t_load:.1f} s")
    elif "postgresql" in engines:
        print("  PostgreSQL skipped: no --postgres URL")
    print(line("ONNX Runtime", o, None, o), flush=True)


if __name__ == "__main__":
    main()
