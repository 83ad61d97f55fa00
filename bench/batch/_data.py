"""Shared by the batch benchmarks: a 100-tree model on 20 columns, and Parquet files of N rows written in pieces."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

N_COLS = 20
COLUMNS = [f"x{i}" for i in range(N_COLS)]


def add_workdir_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "modelport-bench-batch"),
                    help="where the model and the data files are built once and kept")


def open_workdir(workdir: str) -> tuple[Path, Path]:
    """The work directory (created if needed) and the bundle file in it."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    return work, bundle_path(work)


def bundle_path(workdir: Path) -> Path:
    """A 100-tree gradient-boosted classifier on 20 float columns, packed once and cached."""
    path = workdir / "gbm100.mpk"
    if path.exists():
        return path
    import pandas as pd
    from sklearn.ensemble import GradientBoostingClassifier

    import modelport as mp

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(5_000, N_COLS)), columns=COLUMNS)
    y = (X["x0"] + X["x1"] * X["x2"] - X["x3"] > 0).astype(int)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=4, random_state=0).fit(X, y)
    mp.pack(model, X, name="gbm100").save(path)
    return path


def parquet_file(workdir: Path, rows: int, *, piece: int = 500_000) -> Path:
    """``rows`` x 20 float64 columns plus an int64 id, written in pieces (bounded memory), cached."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = workdir / f"rows_{rows}.parquet"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    rng = np.random.default_rng(1)
    schema = pa.schema([pa.field("id", pa.int64())] + [pa.field(c, pa.float64()) for c in COLUMNS])
    with pq.ParquetWriter(tmp, schema) as w:
        for start in range(0, rows, piece):
            n = min(piece, rows - start)
            data = rng.normal(size=(n, N_COLS))
            arrays = [pa.array(np.arange(start, start + n, dtype=np.int64))] + [pa.array(data[:, i]) for i in range(N_COLS)]
            w.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=131_072)
    tmp.rename(path)
    return path
