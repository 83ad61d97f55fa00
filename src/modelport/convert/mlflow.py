"""Reading an MLflow model directory (``MLmodel`` + artifacts) for ``modelport pack``.

    modelport pack mlruns/0/<run>/artifacts/model                 # sample: MLmodel's input example
    modelport pack model_dir sample.parquet --trust-pickle         # a sklearn / xgboost / lightgbm flavor

Flavors, in the order they are preferred:

=============  =====================================  ==========================================
flavor         read as                                 needs
=============  =====================================  ==========================================
``onnx``       the ONNX file (passthrough)             nothing: no code runs
``sklearn``    the estimator (skops, MLflow's default,  ``trust_pickle``: unpickling runs code;
               or pickle / cloudpickle)                skops loads the types it lists
``xgboost``    XGBClassifier / XGBRegressor / Booster  ``trust_pickle``: MLflow's loader builds
               from the native file                    the class MLmodel names
``lightgbm``   Booster from the text file, or the      ``trust_pickle``
               pickled LGBMModel
=============  =====================================  ==========================================

Nothing named in ``MLmodel`` is imported: the framework classes come from a fixed table, and a
flavor naming any other class is refused. Every path in ``MLmodel`` must stay inside the model
directory. When no sample is given, MLmodel's input example (a JSON file, never a pickle) is the
sample, with its columns cast to the types of MLmodel's signature; a model logged without one
needs a sample file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport._deps import require
from modelport.errors import ConversionError, InputError, UnsupportedModelError

MLMODEL = "MLmodel"
FLAVORS = ("onnx", "sklearn", "xgboost", "lightgbm")
_PICKLE_FLAVORS = ("sklearn", "xgboost", "lightgbm")
_MAX_MLMODEL_BYTES = 1 << 20
_MAX_EXAMPLE_BYTES = 64 << 20
# MLflow column type -> pandas dtype of the sample
_COLUMN_DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32",
                  "boolean": "bool", "string": "object", "binary": "object", "datetime": "datetime64[ns]"}
# the classes a flavor may name, and where modelport finds them (nothing else is imported)
_XGBOOST_CLASSES = {
    "xgboost.sklearn.XGBClassifier": "XGBClassifier", "xgboost.sklearn.XGBRegressor": "XGBRegressor",
    "xgboost.XGBClassifier": "XGBClassifier", "xgboost.XGBRegressor": "XGBRegressor",
    "xgboost.core.Booster": "Booster", "xgboost.Booster": "Booster",
}
_LIGHTGBM_CLASSES = {"lightgbm.basic.Booster", "lightgbm.Booster", "lightgbm.sklearn.LGBMClassifier",
                     "lightgbm.sklearn.LGBMRegressor", "lightgbm.LGBMClassifier", "lightgbm.LGBMRegressor"}


@dataclass
class MlflowModel:
    """An MLflow model read for packing: the model object, the flavor it came from, and the sample
    MLmodel provides (None when it has no input example)."""

    path: Path
    flavor: str
    model: Any
    sample: Any = None
    flavors: list[str] = field(default_factory=list)
    signature: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.path.resolve().name


def is_mlflow_model(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an MLflow model directory (it holds an ``MLmodel`` file)."""
    p = Path(path)
    return p.is_dir() and (p / MLMODEL).is_file()


def read_mlmodel(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``MLmodel`` of a model directory, checked to have a ``flavors`` table."""
    root = Path(path)
    f = root / MLMODEL
    if not f.is_file():
        raise ConversionError(f"{root}: no MLmodel file; this is not an MLflow model directory.",
                              hint="pass the directory that holds MLmodel (e.g. mlruns/0/<run>/artifacts/model)")
    if f.stat().st_size > _MAX_MLMODEL_BYTES:
        raise ConversionError(f"{f}: {f.stat().st_size} bytes is far larger than any MLmodel file; refused.")
    yaml = require("yaml", purpose="reading MLflow's MLmodel file")
    try:
        doc = yaml.safe_load(f.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{f} is not valid YAML: {_first_line(exc)}",
                              hint="the MLflow model directory is damaged; log the model again") from None
    if not isinstance(doc, dict):
        raise ConversionError(f"{f} must be a YAML mapping with a 'flavors' entry; got {type(doc).__name__}.")
    flavors = doc.get("flavors")
    if not isinstance(flavors, dict) or not flavors or not all(isinstance(v, dict) for v in flavors.values()):
        raise ConversionError(f"{f} has no 'flavors' mapping of flavor name -> settings; it is not a valid MLmodel.")
    return doc


def read(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> MlflowModel:
    """Read the MLflow model at ``path``: the best flavor modelport can use, and MLmodel's sample."""
    root = Path(path)
    doc = read_mlmodel(root)
    flavors = doc["flavors"]
    usable = [f for f in FLAVORS if f in flavors]
    if not usable:
        loader = (flavors.get("python_function") or {}).get("loader_module")
        raise UnsupportedModelError(
            f"{root}: MLflow flavor(s) {', '.join(sorted(flavors))}"
            + (f" (python_function loader {loader})" if loader else "")
            + f"; modelport reads {', '.join(FLAVORS)}.",
            hint="log the model with one of those flavors (mlflow.onnx.log_model needs no trust), or load it in "
            "Python and call modelport.pack(model, sample)",
        )
    flavor = usable[0]
    if flavor in _PICKLE_FLAVORS and not trust_pickle:
        raise ConversionError(
            f"{root}: the MLflow model has the {flavor} flavor only"
            + (f" (and {', '.join(u for u in usable[1:])})" if len(usable) > 1 else "")
            + "; loading it runs the framework's loader on files chosen by whoever logged the model "
            "(a pickle runs code), so modelport does not by default.",
            hint="if you trust the model, pass --trust-pickle (trust_pickle=True); better, log it with the onnx flavor "
            "(mlflow.onnx.log_model) or in the framework's own format",
        )
    conf = flavors[flavor]
    if flavor == "onnx":
        model = _load_onnx(root, conf)
    elif flavor == "sklearn":
        model = _load_sklearn(root, conf)
    elif flavor == "xgboost":
        model = _load_xgboost(root, conf)
    else:
        model = _load_lightgbm(root, conf)
    signature = _signature(root, doc.get("signature"))
    return MlflowModel(root, flavor, model, _sample(root, doc, signature), sorted(flavors), signature)


# ----------------------------------------------------------------------------- flavors
def _inside(root: Path, rel: Any, what: str) -> Path:
    """``root / rel`` for a relative path from MLmodel that stays inside ``root`` (no absolute
    paths, no ``..``, no links leading out)."""
    if not isinstance(rel, str) or not rel.strip():
        raise ConversionError(f"{root / MLMODEL}: {what} must be a relative path string; got {rel!r}.")
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise ConversionError(f"{root / MLMODEL}: {what} {rel!r} points outside the model directory; refused.")
    full = root / p
    try:
        resolved = full.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise ConversionError(f"{root}: {what} {rel!r} names a file that is not there (incomplete download?).",
                              hint="copy the whole MLflow model directory again") from None
    if not resolved.is_relative_to(root.resolve()):
        raise ConversionError(f"{root / MLMODEL}: {what} {rel!r} is a link leading outside the model directory; refused.")
    return full


def _load_onnx(root: Path, conf: dict[str, Any]) -> Any:
    from modelport.convert.passthrough import OnnxModel

    path = _inside(root, conf.get("data", "model.onnx"), "the onnx flavor's data")
    if path.is_dir():
        raise ConversionError(f"{path}: the onnx flavor's data is a directory; expected the .onnx file.")
    return OnnxModel.read(path)


def _load_sklearn(root: Path, conf: dict[str, Any]) -> Any:

    fmt = conf.get("serialization_format", "cloudpickle")
    if fmt not in ("pickle", "cloudpickle", "skops"):
        raise UnsupportedModelError(
            f"{root}: the sklearn flavor is serialized as {fmt!r}; modelport reads skops, pickle and cloudpickle.",
            hint="load it with its library and call modelport.pack(model, sample) in Python",
        )
    path = _inside(root, conf.get("pickled_model", "model.pkl"), "the sklearn flavor's pickled_model")
    return _load_serialized(path, fmt, "sklearn")


def _load_serialized(path: Path, fmt: str, flavor: str) -> Any:
    """A model MLflow serialized with skops, pickle or cloudpickle (the caller trusts the file)."""
    from modelport.convert.files import _load_pickle

    if fmt == "skops":
        sio = require("skops.io", purpose="loading a model MLflow saved with skops")
        try:
            # every type the file names is trusted: the caller passed trust_pickle for this file
            return sio.load(path, trusted=sio.get_untrusted_types(file=path))
        except Exception as exc:  # skops raises zipfile, json and its own errors on damaged files
            raise ConversionError(f"{path}: skops cannot load the {flavor} flavor's model: "
                                  f"{type(exc).__name__}: {_first_line(exc)}") from exc
    if fmt == "cloudpickle":
        require("cloudpickle", purpose="unpickling a model MLflow saved with cloudpickle")
    return _load_pickle(path)


def _load_xgboost(root: Path, conf: dict[str, Any]) -> Any:
    xgb = require("xgboost", purpose="loading MLflow's xgboost flavor")
    cls_path = conf.get("model_class", "xgboost.core.Booster")
    name = _XGBOOST_CLASSES.get(str(cls_path))
    if name is None:
        raise UnsupportedModelError(
            f"{root}: the xgboost flavor names the class {cls_path!r}; modelport builds only "
            f"{', '.join(sorted(set(_XGBOOST_CLASSES.values())))} (it imports nothing MLmodel names)."
        )
    path = _inside(root, conf.get("data", "model.xgb"), "the xgboost flavor's data")
    model = getattr(xgb, name)()
    try:
        model.load_model(str(path))
    except (xgb.core.XGBoostError, ValueError, OSError) as exc:
        raise ConversionError(f"{path}: XGBoost cannot load the xgboost flavor's model: {_first_line(exc)}") from exc
    return model


def _load_lightgbm(root: Path, conf: dict[str, Any]) -> Any:
    from modelport.convert.files import _load_lightgbm as load_text

    cls_path = str(conf.get("model_class", "lightgbm.basic.Booster"))
    if cls_path not in _LIGHTGBM_CLASSES:
        raise UnsupportedModelError(
            f"{root}: the lightgbm flavor names the class {cls_path!r}; modelport reads "
            "a Booster or an LGBMClassifier / LGBMRegressor (it imports nothing MLmodel names)."
        )
    path = _inside(root, conf.get("data", "model.lgb"), "the lightgbm flavor's data")
    fmt = conf.get("serialization_format")
    if fmt is not None or path.suffix in (".pkl", ".pickle", ".skops") or "LGBM" in cls_path:
        fmt = fmt or ("skops" if path.suffix == ".skops" else "cloudpickle")
        if fmt not in ("pickle", "cloudpickle", "skops"):
            raise UnsupportedModelError(f"{root}: the lightgbm flavor is serialized as {fmt!r}; modelport reads "
                                        "skops, pickle and cloudpickle.")
        return _load_serialized(path, fmt, "lightgbm")
    return load_text(path)


# ----------------------------------------------------------------------------- signature and example
def _signature(root: Path, sig: Any) -> dict[str, Any] | None:
    """MLmodel's signature with its inputs / outputs parsed (they are JSON strings in the file)."""
    if sig is None:
        return None
    if not isinstance(sig, dict):
        raise ConversionError(f"{root / MLMODEL}: 'signature' must be a mapping; got {type(sig).__name__}.")
    out: dict[str, Any] = {}
    for key in ("inputs", "outputs"):
        raw = sig.get(key)
        if raw is None:
            continue
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise ConversionError(f"{root / MLMODEL}: signature {key} is not valid JSON ({exc}).") from None
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConversionError(f"{root / MLMODEL}: signature {key} must be a list of column or tensor specs.")
        out[key] = value
    return out


def _sample(root: Path, doc: dict[str, Any], signature: dict[str, Any] | None) -> Any:
    info = doc.get("saved_input_example_info")
    if info is None:
        return None
    if not isinstance(info, dict):
        raise ConversionError(f"{root / MLMODEL}: 'saved_input_example_info' must be a mapping.")
    path = _inside(root, info.get("artifact_path", "input_example.json"), "the input example")
    if path.stat().st_size > _MAX_EXAMPLE_BYTES:
        raise ConversionError(f"{path}: the input example is over {_MAX_EXAMPLE_BYTES >> 20} MB; give a sample file.")
    if path.suffix != ".json":
        raise ConversionError(f"{path}: modelport reads JSON input examples only (never pickles); give a sample file.")
    try:
        example = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{path}: the input example is not valid JSON ({exc}).") from None
    kind = info.get("type", "dataframe")
    if kind == "ndarray":
        import numpy as np

        data = example.get("inputs", example) if isinstance(example, dict) else example
        if isinstance(data, dict):
            return {k: np.asarray(v) for k, v in data.items()}
        return np.asarray(data)
    if kind != "dataframe":
        raise UnsupportedModelError(f"{path}: an input example of type {kind!r}; modelport reads dataframe and ndarray.")
    return _frame(path, example, info.get("pandas_orient", "split"), signature)


def _frame(path: Path, example: Any, orient: str, signature: dict[str, Any] | None) -> Any:
    pd = require("pandas", purpose="reading MLflow's dataframe input example")
    if isinstance(example, dict) and "dataframe_split" in example:
        example, orient = example["dataframe_split"], "split"
    elif isinstance(example, dict) and "dataframe_records" in example:
        example, orient = example["dataframe_records"], "records"
    try:
        if orient == "split":
            if not isinstance(example, dict) or "data" not in example:
                raise ValueError("a split-oriented example needs 'columns' and 'data'")
            frame = pd.DataFrame(example["data"], columns=example.get("columns"))
        elif orient == "records":
            if not isinstance(example, list):
                raise ValueError("a records-oriented example must be a list of objects")
            frame = pd.DataFrame.from_records(example)
        else:
            raise ValueError(f"pandas orient {orient!r} is not split or records")
    except (ValueError, TypeError) as exc:
        raise ConversionError(f"{path}: cannot read the input example as a table: {exc}.") from None
    if frame.empty:
        raise ConversionError(f"{path}: the input example has no rows; give a sample file.")
    for spec in (signature or {}).get("inputs", []):
        name, kind = spec.get("name"), spec.get("type")
        if name in frame.columns and kind in _COLUMN_DTYPES:
            try:
                frame[name] = frame[name].astype(_COLUMN_DTYPES[kind])
            except (ValueError, TypeError) as exc:
                raise ConversionError(
                    f"{path}: column {name!r} of the input example does not hold the signature's {kind} values ({exc})."
                ) from None
    return frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_missing_sample(model: MlflowModel) -> InputError:
    """The error for an MLflow model without an input example when no sample file was given."""
    return InputError(
        f"{model.path}: the MLflow model has no input example, and no sample file was given; packing checks the "
        "bundle against the model on sample rows.",
        hint="pass a sample file: modelport pack MODEL_DIR sample.parquet (or log the model with input_example=...)",
    )
