"""Dask and Spark overhead against local scoring of the same file, same output (one run each).

    python bench/batch/bench_engines.py --rows 500000

local: ``score_file`` in this process; dask: a LocalCluster of 2 worker processes (1 thread each,
started before timing); spark: local[2] (session started before timing). Each engine run includes
reading, scoring, writing its partitions and assembling the same output file as local scoring.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _data import add_workdir_option, open_workdir, parquet_file


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500_000)
    add_workdir_option(ap)
    args = ap.parse_args()
    work, bf = open_workdir(args.workdir)
    src = parquet_file(work, args.rows)
    from modelport.batch import score_file

    out = work / "engines.parquet"
    local = timed(lambda: score_file(bf, src, out, overwrite=True))
    print(f"local  {local:7.1f} s  {args.rows / local:10,.0f} rows/s")

    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        dask_s = timed(lambda: score_file(bf, src, out, overwrite=True, engine="dask"))
    print(f"dask   {dask_s:7.1f} s  {args.rows / dask_s:10,.0f} rows/s  overhead x{dask_s / local:.2f} vs local")

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    spark_s = timed(lambda: score_file(bf, src, out, overwrite=True, engine="spark"))
    spark.stop()
    print(f"spark  {spark_s:7.1f} s  {args.rows / spark_s:10,.0f} rows/s  overhead x{spark_s / local:.2f} vs local")


if __name__ == "__main__":
    main()
