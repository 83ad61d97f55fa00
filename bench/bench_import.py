"""`import modelport` time vs `import numpy` (a floor every Python data tool pays), each in a fresh
interpreter, best of N; and which heavy libraries the import pulls in (issue 2: <= 0.3 s, none of
sklearn, torch, xgboost, lightgbm, catboost).

    python bench/bench_import.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CODE = (
    "import time, sys; t = time.perf_counter(); import {mod}; dt = time.perf_counter() - t; "
    "heavy = [m for m in ('sklearn','torch','xgboost','lightgbm','catboost','pandas','onnxruntime') if m in sys.modules]; "
    "print(dt, ','.join(heavy))"
)


def best(mod: str, n: int) -> tuple[float, str]:
    runs = []
    for _ in range(n):
        out = subprocess.run([sys.executable, "-c", CODE.format(mod=mod)], capture_output=True, text=True, check=True)
        t, _, heavy = out.stdout.strip().partition(" ")
        runs.append((float(t), heavy))
    return min(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    t_np, _ = best("numpy", args.repeat)
    t_mp, heavy = best("modelport", args.repeat)
    print(f"import numpy     : {t_np * 1000:7.1f} ms")
    print(f"import modelport : {t_mp * 1000:7.1f} ms   (target <= 300 ms; ratio to numpy {t_mp / t_np:.2f}x)")
    print(f"heavy modules imported by modelport: {heavy or 'none'}")


if __name__ == "__main__":
    main()
