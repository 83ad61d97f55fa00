"""PMML both ways, timed in one run against JPMML-Evaluator (the JVM reference; test/bench-only):

- import: ``mp.pack`` of a PMML file (read, convert, verify) next to JPMML's own load + verify of it;
- scoring: the bundle's ``predict`` on N rows next to JPMML's ``evaluateAll`` of the same rows
  (a DataFrame through JPype, as a Python user of JPMML scores), for the imported document;
- export: ``export --target pmml`` of a bundle, then JPMML scoring the exported document vs the bundle.

    python bench/bench_pmml.py [--rows 20000] [--pmml tests/data/pmml/xgboost_binary.pmml]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pmml", default=str(ROOT / "tests/data/pmml/xgboost_binary.pmml"))
    args = ap.parse_args()

    import numpy as np
    import pandas as pd
    from jpmml_evaluator import make_evaluator

    import modelport as mp
    from modelport.convert.pmml import read
    from modelport.export import export

    path = Path(args.pmml)
    sample = pd.read_csv(path.with_suffix(".csv"))
    cols = [f.name for f in read(path).active_fields()]
    rows = sample[cols].sample(args.rows, replace=True, random_state=0).reset_index(drop=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        bundle = mp.pack(str(path), sample, name="bench-pmml")
        pack_s = time.perf_counter() - t
    t = time.perf_counter()
    ev = make_evaluator(str(path)).verify()
    jload_s = time.perf_counter() - t
    ev.evaluateAll(rows.iloc[:1000])  # the JVM's warm-up
    bundle.predict(rows.iloc[:1000])
    b_s = _best(lambda: bundle.predict(rows), args.repeat)
    j_s = _best(lambda: ev.evaluateAll(rows), args.repeat)
    print(f"document: {path.name} ({path.stat().st_size / 1e6:.2f} MB), {args.rows} rows, best of {args.repeat}")
    print(f"import : mp.pack {pack_s:6.2f} s (read, convert, verify)   JPMML load+verify {jload_s:6.2f} s")
    print(f"score  : bundle {args.rows / b_s:12,.0f} rows/s   JPMML {args.rows / j_s:12,.0f} rows/s   "
          f"ratio {j_s / b_s:6.1f}x")

    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(5000, 10)), columns=[f"f{i}" for i in range(10)])
    y = (x.f0 + x.f1 * x.f2 > 0).astype(int)
    forest = mp.pack(RandomForestClassifier(100, max_depth=8, random_state=0).fit(x, y), x, name="bench-forest")
    out = Path(tempfile.mkdtemp()) / "forest.pmml"
    t = time.perf_counter()
    export(forest, "pmml", out)
    export_s = time.perf_counter() - t
    ev2 = make_evaluator(str(out)).verify()
    xr = x.sample(args.rows, replace=True, random_state=1).reset_index(drop=True)
    ev2.evaluateAll(xr.iloc[:1000])
    fb_s = _best(lambda: forest.predict(xr), args.repeat)
    fj_s = _best(lambda: ev2.evaluateAll(xr), args.repeat)
    print(f"export : 100-tree depth-8 forest -> {out.stat().st_size / 1e6:.1f} MB PMML in {export_s:.2f} s; "
          f"JPMML on it {args.rows / fj_s:,.0f} rows/s, the bundle {args.rows / fb_s:,.0f} rows/s "
          f"(ratio {fj_s / fb_s:.1f}x)")


if __name__ == "__main__":
    main()
