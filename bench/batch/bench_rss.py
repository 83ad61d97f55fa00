"""Peak RSS of `modelport score` on 2M and 10M rows: memory must not grow with the file (target <= 600 MB).

    python bench/batch/bench_rss.py --rows 2000000 10000000

Each run is a separate `python -m modelport score` process; its peak RSS is read from the kernel's
rusage of that child (os.wait4), so nothing in this process is counted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _data import add_workdir_option, open_workdir, parquet_file


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[2_000_000, 10_000_000])
    ap.add_argument("--workers", type=int, default=1)
    add_workdir_option(ap)
    args = ap.parse_args()
    work, bf = open_workdir(args.workdir)
    for rows in args.rows:
        src = parquet_file(work, rows)
        out = work / f"scored_{rows}.parquet"
        cmd = [sys.executable, "-m", "modelport", "score", str(bf), str(src), "-o", str(out), "--overwrite",
               "--no-progress", "--workers", str(args.workers)]
        rss, secs = peak_rss_mb(cmd)
        size = src.stat().st_size / 1e6
        print(f"{rows:>11,} rows ({size:,.0f} MB Parquet): peak RSS {rss:6.0f} MB, {secs:6.1f} s, "
              f"{rows / secs:,.0f} rows/s   (target <= 600 MB)")
        out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
