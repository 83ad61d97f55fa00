"""Packing a 100-tree RandomForestClassifier (20 features, 10k rows), verification included, vs the
time scikit-learn takes to fit the same forest, in one run (issue 2: pack <= 10 s).

Both are timed in this process on the same data; the first pack also pays the one-off imports of
skl2onnx and onnxruntime, so it is reported apart from the best of the later packs.

    python bench/bench_pack.py [--repeat 3] [--trees 100] [--rows 10000] [--jobs 1]
"""

from __future__ import annotations

import argparse
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=1, help="n_jobs for the forest's fit (and predict)")
    args = ap.parse_args()

    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import modelport as mp

    X, y = make_classification(
        args.rows, args.features, n_informative=10, n_classes=3, random_state=0
    )
    t = time.perf_counter()
    model = RandomForestClassifier(args.trees, n_jobs=args.jobs, random_state=0).fit(X, y)
    fit_s = time.perf_counter() - t

    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bundle = mp.pack(model, X, name="bench-forest")
        times.append(time.perf_counter() - t)
    parity = bundle.manifest["parity"]
    stats = bundle.manifest["reference"]
    nodes = sum(e.tree_.node_count for e in model.estimators_)

    print(f"forest: {args.trees} trees, {nodes} nodes, {args.features} features, {args.rows} rows")
    print(f"sklearn fit             : {fit_s:7.2f} s")
    print(f"modelport pack, 1st run : {times[0]:7.2f} s   (includes importing skl2onnx / onnxruntime)")
    if len(times) > 1:
        best = min(times[1:])
        print(f"modelport pack, best    : {best:7.2f} s   (target <= 10 s; ratio to sklearn fit {best / fit_s:.2f}x)")
    else:
        print(f"ratio to sklearn fit    : {times[0] / fit_s:.2f}x   (target: pack <= 10 s)")
    print(
        f"verification: {parity['samples']} rows ({stats['probes']} probes), pass={parity['pass']}, "
        f"max abs error {parity['max_abs_error']:.2e}, bundle {len(bundle.to_bytes()) / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
