"""What a signature costs: signing a 100-tree forest bundle, and checking it under a SignaturePolicy
(what push and every serve (re)load add), next to loading the same bundle (what they pay anyway).

    python bench/bench_signing.py [--trees 100] [--repeat 20]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from _timing import timeit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import modelport as mp
    from modelport.signing import SignaturePolicy

    X, y = make_classification(n_samples=5000, n_features=20, random_state=0)
    bundle = mp.pack(RandomForestClassifier(n_estimators=args.trees, random_state=0).fit(X, y), X, name="forest")
    with tempfile.TemporaryDirectory() as tmp:
        key, pub = Path(tmp) / "ec.key", Path(tmp) / "ec.pub"
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)], check=True)
        subprocess.run(["openssl", "ec", "-in", str(key), "-pubout", "-out", str(pub)], check=True,
                       capture_output=True)
        signed = mp.sign(bundle, key=key)  # the first call imports model-signing
        policy = SignaturePolicy(trusted_keys=[pub])
        files = signed.files
        load = timeit(lambda: mp.Bundle(files, origin="bench"), args.repeat)
        sign = timeit(lambda: mp.sign(bundle, key=key), args.repeat)
        check = timeit(lambda: policy.check(signed), args.repeat)
    print(f"bundle: {args.trees} trees, {bundle.size / 2**20:.2f} MiB")
    print(f"load (validate every file):  {load * 1e3:7.1f} ms")
    print(f"sign:                        {sign * 1e3:7.1f} ms")
    print(f"policy check (verify):       {check * 1e3:7.1f} ms  ({check / load:.2f}x a load)")


if __name__ == "__main__":
    main()
