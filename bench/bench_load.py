"""Loading a 100-tree forest bundle (bench_pack.py's: 20 features, 10k rows, 3 classes) with the safety checks
of issue 10 against the code before them, in one run (target: within 5 %).

The code before is the ``--base`` commit's ``src/`` (default: where this branch left main), extracted with
``git archive`` into a temporary directory. Both versions load the same ``.mpk`` and the same directory bundle
in child processes that alternate, round after round, so that load on the machine hits both alike; each child
reports its median over ``--loads`` loads, and the figure is the median over ``--rounds`` rounds.

    python bench/bench_load.py [--rounds 7] [--loads 20] [--base COMMIT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, statistics, sys, time
import modelport as mp
path, n = sys.argv[1], int(sys.argv[2])
mp.load(path)  # imports and first-use caches, paid once by any process
times = []
for _ in range(n):
    t = time.perf_counter()
    mp.load(path)
    times.append(time.perf_counter() - t)
print(json.dumps({"median": statistics.median(times), "best": min(times), "module": mp.__file__}))
"""


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _old_src(base: str, into: Path) -> Path:
    archive = into / "base.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "archive", base, "src"], cwd=ROOT, check=True, stdout=fh)
    with tarfile.open(archive) as tf:
        tf.extractall(into, filter="data")
    return into / "src"


def _forest(work: Path) -> tuple[Path, Path, str]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import modelport as mp

    X, y = make_classification(10_000, 20, n_informative=10, n_classes=3, random_state=0)
    model = RandomForestClassifier(100, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = mp.pack(model, X, name="bench-forest")
    nodes = sum(e.tree_.node_count for e in model.estimators_)
    about = f"{nodes} nodes, model.onnx {len(bundle.model_bytes) / 1e6:.1f} MB, {bundle.size / 1e6:.1f} MB of files"
    return bundle.save(work / "forest.mpk"), bundle.save(work / "forest-dir"), about


def _time(src: Path | None, path: Path, loads: int) -> dict[str, float]:
    env = {**os.environ}
    if src is not None:
        env["PYTHONPATH"] = str(src)  # ahead of the editable install of this checkout
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(loads)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--loads", type=int, default=20)
    ap.add_argument("--base", default=None, help="commit to compare with (default: merge-base of HEAD and main)")
    args = ap.parse_args()
    base = args.base or _git("merge-base", "HEAD", "main")
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = Path(tmp)
        old_src = _old_src(base, work)
        mpk, directory, about = _forest(work)
        print(f"forest: 100 trees, {about}; base {base[:12]} vs {_git('rev-parse', '--short=12', 'HEAD')}")
        for label, path in ((".mpk file", mpk), ("directory", directory)):
            old, new = [], []
            for _ in range(args.rounds):
                o = _time(old_src, path, args.loads)
                n = _time(None, path, args.loads)
                assert o["module"].startswith(str(old_src)) and not n["module"].startswith(str(old_src))
                old.append(o["median"])
                new.append(n["median"])
            mo, mn = statistics.median(old), statistics.median(new)
            print(f"load {label:10s}: before {mo * 1e3:7.2f} ms, with the checks {mn * 1e3:7.2f} ms, "
                  f"ratio {mn / mo:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
