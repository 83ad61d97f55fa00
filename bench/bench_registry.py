"""The registry's overhead: loading a bundle through ``models:/NAME@ALIAS`` vs reading the same
``.mpk`` file directly, and the cost of ``resolve`` (what a server polls to follow an alias).

No issue sets a target; the ratio says what the registry adds on top of the file read (a
metadata lookup and the blob's sha256 check; both paths validate the bundle). Both are
measured in this one run, interleaved, on the same bundle. SQLite by default; pass
``--url postgresql://...`` to measure a PostgreSQL registry.

    python bench/bench_registry.py [--trees 50] [--repeat 200] [--url URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _timing import timeit
from sklearn.ensemble import RandomForestClassifier

import modelport as mp
from modelport.registry import open_registry


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--url", default=None, help="registry URL (default: a temporary SQLite file)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 10))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    model = RandomForestClassifier(args.trees, max_depth=8, random_state=0, n_jobs=1).fit(X, y)
    bundle = mp.pack(model, X, name="bench")

    with tempfile.TemporaryDirectory() as tmp:
        path = bundle.save(Path(tmp) / "bench.mpk")
        reg = open_registry(args.url or f"sqlite:///{tmp}/registry.db", artifacts=f"{tmp}/artifacts")
        t0 = time.perf_counter()
        info = reg.push(bundle)
        push_s = time.perf_counter() - t0
        reg.set_alias("bench", "production", info.version)
        uri = "models:/bench@production"

        file_t, reg_t, res_t = [], [], []
        for _ in range(5):  # interleaved rounds, median of each
            file_t.append(timeit(lambda: mp.load(path), args.repeat // 5))
            reg_t.append(timeit(lambda: reg.load(uri), args.repeat // 5))
            res_t.append(timeit(lambda: reg.resolve(uri), args.repeat // 5))
        f, r, s = statistics.median(file_t), statistics.median(reg_t), statistics.median(res_t)
        print(f"bundle: {args.trees} trees, {path.stat().st_size / 1024:.0f} KiB; registry: {reg.url}")
        print(f"push (incl. check):        {push_s * 1e3:8.2f} ms")
        print(f"mp.load(file):             {f * 1e3:8.2f} ms")
        print(f"reg.load(models:/..@alias): {r * 1e3:8.2f} ms")
        print(f"reg.resolve(alias):        {s * 1e3:8.2f} ms")
        print(f"ratio registry load / file load: {r / f:.2f}x")


if __name__ == "__main__":
    main()
