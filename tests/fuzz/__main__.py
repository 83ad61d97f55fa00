"""``python -m tests.fuzz --cases 5000 --seed 0``: the full fuzzing run (see tests/fuzz/__init__.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.fuzz import runner


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a case may take before it counts as a hang")
    ap.add_argument("--cap-mib", type=int, default=1024, help="memory each worker may map beyond its imports")
    ap.add_argument("--work", type=Path, default=None, help="keep seeds, cases and worker logs in this directory")
    ap.add_argument("--json", type=Path, default=None, help="write the full report (every failure) here")
    args = ap.parse_args(argv)
    report = runner.run(cases=args.cases, seed=args.seed, workers=args.workers, timeout=args.timeout,
                        cap_mib=args.cap_mib, work=args.work, progress=sys.stderr.isatty())
    print(report.summary())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
