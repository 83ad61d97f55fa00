"""bundle.predict on one row vs a raw onnxruntime session.run of the same model (issue 2).

Target: modelport costs at most 1.5x the raw call. Both are measured in this one run, interleaved,
with the same ONNX bytes, the same thread settings and the same input row; the ratio is printed.

    python bench/bench_predict.py [--trees 100] [--repeat 5000]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import onnxruntime as ort
from _timing import timeit
from sklearn.ensemble import RandomForestClassifier

import modelport as mp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5000)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, args.features))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    model = RandomForestClassifier(args.trees, max_depth=args.depth, random_state=0, n_jobs=1).fit(X, y)
    bundle = mp.pack(model, X[:1000], name="bench")
    row = X[:1]
    row32 = row.astype(np.float32)

    sess = ort.InferenceSession(bundle.model_bytes, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    raw = lambda: sess.run(out_names, {"X": row32})  # noqa: E731
    ours = lambda: bundle.predict(row)  # noqa: E731
    for fn in (raw, ours):
        timeit(fn, 200)  # warm-up
    r_raw, r_ours = [], []
    for _ in range(5):  # interleave rounds so machine noise hits both
        r_raw.append(timeit(raw, args.repeat // 5))
        r_ours.append(timeit(ours, args.repeat // 5))
    t_raw, t_ours = statistics.median(r_raw), statistics.median(r_ours)
    print(f"model: RandomForest {args.trees} trees, depth {args.depth}, {args.features} features; one row")
    print(f"raw onnxruntime session.run : {t_raw * 1e6:8.1f} us/call")
    print(f"modelport bundle.predict    : {t_ours * 1e6:8.1f} us/call")
    print(f"ratio (modelport / raw)     : {t_ours / t_raw:8.2f}x   (target <= 1.5x)")


if __name__ == "__main__":
    main()
