"""``--target mlflow``: an MLflow model directory holding the bundle.

    dist/mlflow/
      MLmodel                     flavors: onnx (data: bundle/model.onnx) and python_function
                                  (loader_module: modelport.export.mlflow, data: bundle)
      bundle/                     the bundle as a directory (manifest, model.onnx, reference data)
      input_example.json          a few reference rows (pandas "split" orient), and the serving form
      serving_input_example.json
      requirements.txt, python_env.yaml, conda.yaml    what loading it needs: modelport and its runtime

``mlflow.pyfunc.load_model(dir).predict(df)`` answers what ``Bundle.predict_frame(df)`` answers
(``label`` and ``proba_<class>`` columns for classifiers, ``prediction`` for regressors), with
the bundle's own input rules behind MLflow's schema check; ``mlflow.onnx.load_model(dir)`` gives
the ONNX graph to tools that know nothing of modelport. The MLmodel signature lists the bundle's
columns with MLflow's types, so MLflow's registry, UI and serving see them; nothing in the
directory is a pickle. The model UUID and creation time come from the bundle (its digest and
manifest), so the same bundle always gives the same directory.

This module is also the ``python_function`` loader: importing it needs nothing but the runtime.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from modelport.export import _artifact
from modelport.export._result import ExportResult

LOADER_MODULE = "modelport.export.mlflow"
BUNDLE_DIR = "bundle"
# modelport column dtype -> MLflow column type
_COLUMN_TYPES = {"float64": "double", "float32": "float", "int64": "long", "int32": "integer", "bool": "boolean",
                 "str": "string"}
# signature tensor dtype -> MLflow tensor dtype (numpy names)
_TENSOR_TYPES = {"float64": "float64", "float32": "float32", "float16": "float16", "int64": "int64", "int32": "int32",
                 "int16": "int16", "int8": "int8", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32",
                 "uint64": "uint64", "bool": "bool", "str": "str"}


# ============================================================================ the pyfunc loader (in MLflow)
class BundlePyfunc:
    """What ``mlflow.pyfunc.load_model`` wraps: a bundle answering ``predict`` with a DataFrame."""

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return self.bundle.predict_frame(model_input)

    def get_raw_model(self) -> Any:
        return self.bundle


def _load_pyfunc(path: str, model_config: Any = None) -> BundlePyfunc:
    """MLflow's entry point for the ``python_function`` flavor: ``path`` is the bundle directory."""
    from modelport.bundle.core import Bundle

    return BundlePyfunc(Bundle.read(path))


# ============================================================================ the export
def export(bundle: Any, output: str | Path, *, overwrite: bool = False) -> ExportResult:
    """Write an MLflow model directory for ``bundle`` to ``output``."""
    from modelport._deps import require

    yaml = require("yaml", purpose="writing the MLmodel file")
    import modelport

    with _artifact.staging(output, overwrite=overwrite) as root:
        bundle.save(root / BUNDLE_DIR)
        example = input_example(bundle)
        mlmodel: dict[str, Any] = {
            "flavors": {
                "onnx": {"code": None, "data": f"{BUNDLE_DIR}/model.onnx", "onnx_version": _version("onnx"),
                         "providers": ["CPUExecutionProvider"]},
                "python_function": {
                    "loader_module": LOADER_MODULE,
                    "data": BUNDLE_DIR,
                    "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                    "python_version": _python(),
                },
            },
            "model_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, bundle.digest)).replace("-", ""),
            "utc_time_created": _created(bundle),
            "signature": signature(bundle),
            "metadata": {"modelport_digest": bundle.digest, "modelport_version": modelport.__version__,
                         "modelport_bundle": bundle.name, "modelport_bundle_version": bundle.version},
        }
        if _version("mlflow"):
            mlmodel["mlflow_version"] = _version("mlflow")
        if example is not None:
            (root / "input_example.json").write_text(json.dumps(example))
            (root / "serving_input_example.json").write_text(json.dumps({"dataframe_split": example}, indent=2))
            mlmodel["saved_input_example_info"] = {"artifact_path": "input_example.json", "type": "dataframe",
                                                   "pandas_orient": "split",
                                                   "serving_input_path": "serving_input_example.json"}
        (root / "MLmodel").write_text(yaml.safe_dump(mlmodel, sort_keys=False))
        requirements = requirements_lines()
        (root / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
        (root / "python_env.yaml").write_text(yaml.safe_dump(
            {"python": _python(), "build_dependencies": ["pip"], "dependencies": ["-r requirements.txt"]},
            sort_keys=False))
        (root / "conda.yaml").write_text(yaml.safe_dump(
            {"name": "mlflow-env", "channels": ["conda-forge"],
             "dependencies": [f"python={_python()}", "pip", {"pip": requirements}]}, sort_keys=False))
        result = ExportResult(
            target="mlflow", path=Path(output), bundle=bundle.name, digest=bundle.digest,
            files={"mlmodel": "MLmodel", "bundle": BUNDLE_DIR, "onnx": f"{BUNDLE_DIR}/model.onnx"},
            sizes={"bundle": bundle.size, "directory": _artifact.tree_size(root)},
            details={"flavors": ["onnx", "python_function"], "requirements": requirements},
        )
        result.write_summary(root)
    return result


def signature(bundle: Any) -> dict[str, str]:
    """The MLmodel ``signature``: columns (or tensors) in, the ``predict_frame`` columns out."""
    sig = bundle.signature
    if sig.columns is not None:
        inputs = [{"type": _column_type(c), "name": c.name, "required": True} for c in sig.columns]
    else:
        inputs = [{"type": "tensor", "name": t.name,
                   "tensor-spec": {"dtype": _TENSOR_TYPES.get(t.dtype, t.dtype), "shape": [-1 if d is None else d
                                                                                          for d in t.shape]}}
                  for t in sig.inputs]
    outputs = [{"type": kind, "name": name, "required": True} for name, kind in _output_columns(bundle)]
    return {"inputs": json.dumps(inputs), "outputs": json.dumps(outputs)}


def _column_type(col: Any) -> str:
    if col.dtype == "category":
        cats = list(col.categories or ())
        if cats and all(isinstance(c, bool) for c in cats):
            return "boolean"
        if cats and all(isinstance(c, int) and not isinstance(c, bool) for c in cats):
            return "long"
        if cats and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in cats):
            return "double"
        return "string"
    return _COLUMN_TYPES.get(col.dtype, "string")


def _output_columns(bundle: Any) -> list[tuple[str, str]]:
    """(name, MLflow type) of the columns ``predict_frame`` returns, found by running the bundle
    on its first reference row (or on the signature's outputs when it has none)."""
    from modelport.runtime.session import output_columns

    arrays = bundle.reference_outputs
    if arrays:
        cols = output_columns({k: v[:1] for k, v in arrays.items()}, bundle.classes)
        return [(name, _numpy_type(np.asarray(v))) for name, v in cols.items()]
    return [(t.name, _COLUMN_TYPES.get(t.dtype, "double")) for t in bundle.signature.outputs]


def _numpy_type(arr: np.ndarray) -> str:
    kind = arr.dtype.kind
    if kind == "f":
        return "float" if arr.dtype.itemsize == 4 else "double"
    if kind in "iu":
        return "integer" if arr.dtype.itemsize <= 4 else "long"
    if kind == "b":
        return "boolean"
    return "string"


def input_example(bundle: Any, rows: int = 5) -> dict[str, Any] | None:
    """The first reference rows in pandas' "split" orient, or None for tensor-only bundles."""
    from modelport.bundle.reference import decode_columns

    sig = bundle.signature
    if sig.columns is None or not bundle.reference_inputs:
        return None
    cols = decode_columns(bundle.reference_inputs)
    names = sig.column_names
    if any(n not in cols for n in names):
        return None
    n = min(rows, len(cols[names[0]]))
    data = [[_plain(cols[c][i]) for c in names] for i in range(n)]
    return {"columns": list(names), "data": data}


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v


def requirements_lines() -> list[str]:
    """What loading the pyfunc needs: modelport and the distributions its runtime imports, pinned."""
    import modelport
    from modelport.export import _vendor

    pins = [d.pin for d in _vendor.closure(("numpy", "onnx", "onnxruntime", "pandas"))
            if d.name in ("numpy", "onnx", "onnxruntime", "pandas")]
    return [f"modelport=={modelport.__version__}", *pins]


def _version(dist: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _python() -> str:
    return ".".join(str(x) for x in sys.version_info[:3])


def _created(bundle: Any) -> str:
    """The bundle's creation time when its manifest records one, else now (both UTC, as MLflow writes it)."""
    created = str(bundle.manifest.get("created") or "")
    if created:
        return created.replace("Z", "").replace("+00:00", "")
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
