"""modelport score vs raw onnxruntime session.run, and --workers 2 vs 1 (issue 5 targets).

    python bench/batch/bench_throughput.py --rows 2000000 --repeat 2

1. raw: the same rows already in memory as one float32 matrix, ``session.run`` in chunks of the same
   size as the scorer's, same thread settings; vs ``score_file`` Parquet -> Parquet end to end
   (read, convert, run, write parts, assemble the output). Target: ratio >= 0.85.
2. ``score_file(workers=2, threads=1)`` vs ``workers=1, threads=1``: process parallelism with one
   ONNX Runtime thread per process. Target: >= 1.6x.
3. (``--parts cli1,cli2``) the same pair through ``modelport score`` in its own process, as a user
   runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _data import COLUMNS, add_workdir_option, open_workdir, parquet_file


def raw_rows_per_s(bundle_file: Path, data_file: Path, chunk: int, threads: int | None) -> float:
    import onnxruntime as ort
    import pyarrow.parquet as pq

    import modelport as mp

    b = mp.load(bundle_file)
    table = pq.read_table(data_file, columns=COLUMNS)
    X = np.column_stack([table.column(c).to_numpy() for c in COLUMNS]).astype(np.float32)
    del table
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(b.model_bytes, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    t = time.perf_counter()
    for s in range(0, X.shape[0], chunk):
        sess.run(names, {"X": X[s:s + chunk]})
    return X.shape[0] / (time.perf_counter() - t)


def score_rows_per_s(bundle_file: Path, data_file: Path, out: Path, chunk: int, **kw) -> float:
    from modelport.batch import score_file

    r = score_file(bundle_file, data_file, out, chunk_rows=chunk, overwrite=True, **kw)
    return r.rows_in / r.seconds


def cli_rows_per_s(bundle_file: Path, data_file: Path, out: Path, chunk: int, *args: str) -> float:
    """``modelport score`` as a user runs it (its own process, with the allocator settings the
    command applies); the rate is the job's own (from ``--json``), without interpreter start-up."""
    import json
    import subprocess

    cmd = [sys.executable, "-m", "modelport", "score", str(bundle_file), str(data_file), "-o", str(out),
           "--overwrite", "--no-progress", "--json", "--chunk-rows", str(chunk), *args]
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return r["rows_in"] / r["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--chunk", type=int, default=131_072)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--parts", default="raw,score,raw1,w1,w2",
                    help="which variants to run (comma-separated; the ratios need their pairs)")
    add_workdir_option(ap)
    args = ap.parse_args()
    work, bf = open_workdir(args.workdir)
    df = parquet_file(work, args.rows)
    out = work / "scored.parquet"
    print(f"{args.rows:,} rows x 20 columns, 100-tree model, chunk {args.chunk:,}, {os.cpu_count()} cores")

    # best of --repeat runs, interleaved, so that a burst of load from elsewhere hits every variant
    runs: dict[str, list[float]] = {}
    variants = {
        "raw": lambda: raw_rows_per_s(bf, df, args.chunk, None),
        "score": lambda: score_rows_per_s(bf, df, out, args.chunk),
        "raw1": lambda: raw_rows_per_s(bf, df, args.chunk, 1),
        "w1": lambda: score_rows_per_s(bf, df, out, args.chunk, workers=1, threads=1),
        "w2": lambda: score_rows_per_s(bf, df, out, args.chunk, workers=2, threads=1),
        "cli1": lambda: cli_rows_per_s(bf, df, out, args.chunk, "--workers", "1", "--threads", "1"),
        "cli2": lambda: cli_rows_per_s(bf, df, out, args.chunk, "--workers", "2", "--threads", "1"),
    }
    chosen = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(chosen) - set(variants))
    if unknown:
        ap.error(f"unknown --parts {unknown}; choose from {sorted(variants)}")
    for _ in range(args.repeat):
        for name in chosen:
            runs.setdefault(name, []).append(variants[name]())
    best = {k: max(v) for k, v in runs.items()}
    lines = [
        ("raw", None, "raw session.run (in memory)       ", ""),
        ("score", "raw", "modelport score (Parquet->Parquet)", "  (target >= 0.85)"),
        ("raw1", None, "raw session.run, 1 thread         ", ""),
        ("w1", "raw1", "--workers 1 --threads 1           ", "  (ratio to raw 1 thread)"),
        ("w2", "w1", "--workers 2 --threads 1           ", "  (ratio to 1 worker, target >= 1.6)"),
        ("cli1", None, "CLI --workers 1 --threads 1       ", ""),
        ("cli2", "cli1", "CLI --workers 2 --threads 1       ", "  (ratio to 1 worker, target >= 1.6)"),
    ]
    for name, ref, label, note in lines:
        if name not in best:
            continue
        ratio = f"   ratio {best[name] / best[ref]:.2f}{note}" if ref in best else ""
        print(f"{label}{best[name]:12,.0f} rows/s{ratio}")
    print("all runs (rows/s):", {k: [round(x) for x in v] for k, v in runs.items()})


if __name__ == "__main__":
    main()
