"""Fixtures for the inspect/diff tests: small real bundles and a helper that edits a bundle's files."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from modelport.bundle import manifest as mf
from modelport.bundle.core import Bundle


def _rewrite(bundle: Bundle, edit: Callable[[dict[str, Any]], None] | None = None,
            replace: dict[str, bytes] | None = None) -> Bundle:
    """A copy of ``bundle`` with its manifest edited (and files replaced, digests recomputed)."""
    files = dict(bundle.files)
    manifest = json.loads(files["manifest.json"])
    if replace:
        files.update(replace)
        manifest["files"] = mf.files_table({k: v for k, v in files.items() if k != "manifest.json"})
    if edit is not None:
        edit(manifest)
    files["manifest.json"] = mf.dumps(manifest)
    return Bundle(files, origin="<edited>")


@pytest.fixture(scope="session")
def lr_models(iris):
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    return (LogisticRegression(C=1.0, max_iter=2000).fit(X, y), LogisticRegression(C=0.05, max_iter=2000).fit(X, y))


@pytest.fixture(scope="session")
def lr_bundles(iris, lr_models):
    import modelport as mp

    X, _ = iris
    a = mp.pack(lr_models[0], X, name="iris-lr", version="1", metrics={"accuracy": 0.97})
    b = mp.pack(lr_models[1], X, name="iris-lr", version="2", metrics={"accuracy": 0.93})
    return a, b


def _frame(rng: np.random.Generator, n: int, columns: dict[str, str]) -> Any:
    """A DataFrame with numeric ('num') and string ('str') columns, and a target that depends on them."""
    import pandas as pd

    data: dict[str, Any] = {}
    for name, kind in columns.items():
        data[name] = rng.normal(size=n) if kind == "num" else rng.choice(["red", "green", "blue"], size=n)
    return pd.DataFrame(data)


def _pipeline_bundle(columns: dict[str, str], *, name: str = "frame", seed: int = 0) -> tuple[Bundle, Any, Any]:
    """Pack a scaler/one-hot + logistic regression pipeline over a DataFrame with ``columns``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import modelport as mp

    rng = np.random.default_rng(seed)
    df = _frame(rng, 300, columns)
    num = [c for c, k in columns.items() if k == "num"]
    cat = [c for c, k in columns.items() if k == "str"]
    y = (df[num[0]] > 0).astype(int).to_numpy()
    pre = ColumnTransformer([
        ("num", StandardScaler(), num),
        *([("cat", OneHotEncoder(handle_unknown="ignore"), cat)] if cat else []),
    ])
    model = make_pipeline(pre, LogisticRegression()).fit(df, y)
    return mp.pack(model, df, name=name), model, df


@pytest.fixture(scope="session")
def rewrite() -> Callable[..., Bundle]:
    return _rewrite


@pytest.fixture(scope="session")
def pipeline_bundle() -> Callable[..., tuple[Bundle, Any, Any]]:
    return _pipeline_bundle


def _tensor_bundle(weight: np.ndarray, *, name: str = "tensor", rows: int = 8, seed: int = 0) -> Bundle:
    """A hand-built non-tabular bundle: y = x @ weight over a 3-D input x [N, 2, 3] (no columns)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(weight.astype(np.float32), name="W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul")],
        "tensor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2, weight.shape[1]])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    x = np.random.default_rng(seed).normal(size=(rows, 2, 3)).astype(np.float32)
    from modelport.bundle import npz

    files = {
        "model.onnx": model.SerializeToString(),
        "reference/inputs.npz": npz.dumps({"x": x}),
        "reference/outputs.npz": npz.dumps({"y": x @ weight.astype(np.float32)}),
    }
    manifest = {
        "format": "modelport/1", "name": name, "version": None, "task": "tensor", "classes": None,
        "source": {"framework": "handmade"},
        "signature": {
            "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 2, 3]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [None, 2, int(weight.shape[1])]}],
            "columns": None,
        },
        "onnx": {"ir_version": 8, "opsets": {"ai.onnx": 17}, "producer": ""},
        "parity": {"pass": True, "samples": rows, "max_abs_error": 0.0, "max_rel_error": 0.0,
                   "label_agreement": None, "tolerance": {"probability_abs": 1e-5, "regression_rel": 1e-5}},
        "metrics": {}, "tags": {}, "lineage": {"parent": None},
        "files": mf.files_table(files),
    }
    return Bundle({**files, "manifest.json": mf.dumps(manifest)}, origin=f"<{name}>")


@pytest.fixture(scope="session")
def tensor_bundle() -> Callable[..., Bundle]:
    return _tensor_bundle
