"""The real bundles the fuzzing cases are made from, and for each the answers it must keep giving.

Each seed is saved as ``<name>.mpk`` with ``<name>.probes.npz`` beside it: probe inputs (the reference rows with
every column shuffled independently, so they are rows no reference check has seen) and the seed's own outputs on
the reference rows and on the probes. A case that loads and passes the reference check must reproduce these.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

SEEDS = ("forest", "frame", "regression", "tensor")


def build(directory: Path) -> dict[str, Path]:
    """Pack the seed bundles into ``directory`` (once: reused when present). Returns name -> .mpk path."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in SEEDS:
        path = directory / f"{name}.mpk"
        if not path.exists() or not (directory / f"{name}.probes.npz").exists():
            bundle = _BUILDERS[name]()
            bundle.save(path)
            _write_probes(bundle, directory / f"{name}.probes.npz")
        out[name] = path
    return out


def _forest() -> Any:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    import modelport as mp

    X, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(X, y)
    return mp.pack(model, X, name="fuzz-forest", version="1", metrics={"accuracy": 0.97}, tags={"team": "fuzz"},
                   description="an iris forest")


def _frame() -> Any:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import modelport as mp

    rng = np.random.default_rng(3)
    n = 120
    df = pd.DataFrame({"age": rng.uniform(18, 80, n), "income": rng.normal(50_000, 15_000, n),
                       "city": rng.choice(["paris", "lyon", "nice"], n)})
    y = ((df["age"] > 45) ^ (df["city"] == "nice")).astype(int).to_numpy()
    pre = ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])])
    model = make_pipeline(pre, LogisticRegression(max_iter=500)).fit(df, y)
    return mp.pack(model, df, name="fuzz-frame")


def _regression() -> Any:
    from sklearn.tree import DecisionTreeRegressor

    import modelport as mp

    rng = np.random.default_rng(7)
    X = rng.normal(size=(150, 4))
    y = X @ np.array([1.5, -2.0, 0.5, 3.0]) + rng.normal(scale=0.1, size=150)
    return mp.pack(DecisionTreeRegressor(max_depth=5, random_state=0).fit(X, y), X, name="fuzz-regression")


def _tensor() -> Any:
    """A tensor bundle with a model-local function (Y = X + X), sealed by hand like a passthrough ONNX bundle."""
    from tests.fuzz import crafted

    from modelport.bundle import manifest as mf
    from modelport.bundle import npz
    from modelport.bundle.core import Bundle

    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(-1, 1)
    files = crafted.bundle_files(crafted.legitimate_function(), name="fuzz-tensor", **crafted.FLOAT_IO,
                                 extra={"reference/inputs.npz": npz.dumps({"X": x}),
                                        "reference/outputs.npz": npz.dumps({"Y": 2 * x})})
    manifest = json.loads(files["manifest.json"])
    manifest["parity"] = {"pass": True, "samples": int(x.shape[0]), "max_abs_error": 0.0, "max_rel_error": 0.0,
                          "tolerance": {"regression_rel": 1e-5}}
    return Bundle({**files, "manifest.json": mf.dumps(manifest)}, origin="<fuzz-tensor>")


_BUILDERS = {"forest": _forest, "frame": _frame, "regression": _regression, "tensor": _tensor}


def _write_probes(bundle: Any, path: Path) -> None:
    from modelport.bundle import npz
    from modelport.bundle.reference import decode_columns

    inputs = bundle.reference_inputs
    rng = np.random.default_rng(42)
    probes = {}
    n = next(iter(inputs.values())).shape[0]
    for k, v in inputs.items():  # every column shuffled on its own: rows the reference check never saw
        probes[k] = v[rng.permutation(n)] if not k.endswith("::missing") else v
    feeds = (lambda a: decode_columns(a)) if bundle.signature.is_tabular else (lambda a: a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_ref = bundle.predict(feeds(inputs))
        expected_probe = bundle.predict(feeds(probes))
    arrays = {f"ref/{k}": v for k, v in inputs.items()}
    arrays.update({f"probe/{k}": v for k, v in probes.items()})
    arrays.update({f"expected_ref/{k}": _plain(v) for k, v in expected_ref.items()})
    arrays.update({f"expected_probe/{k}": _plain(v) for k, v in expected_probe.items()})
    path.write_bytes(npz.dumps(arrays))


def _plain(v: Any) -> np.ndarray:
    arr = np.asarray(v)
    return arr.astype(str) if arr.dtype == object else arr
