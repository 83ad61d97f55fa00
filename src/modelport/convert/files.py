"""Loading a trained model from a file the user trusts, for ``modelport pack MODEL_FILE ...``.

The format is recognised by content first and extension second:

=====================  ===================================  ======================================
format                 recognised by                        loaded as
=====================  ===================================  ======================================
XGBoost JSON / UBJ     ``{"learner": ...`` / UBJSON object  XGBClassifier / XGBRegressor / Booster
LightGBM text model    ``tree\\nversion=...``               lightgbm.Booster
CatBoost binary        ``CBM1`` magic                       CatBoostClassifier / CatBoostRegressor
torch ExportedProgram  zip with ``archive_format`` = pt2     torch.export.ExportedProgram
ONNX                   ``.onnx`` / an ONNX protobuf         :class:`~.passthrough.OnnxModel`
pickle / joblib        pickle opcodes, ``.pkl`` ``.joblib``  whatever the pickle holds
MLflow model           a directory holding ``MLmodel``      its onnx flavor, or (trusted) its
                                                            sklearn / xgboost / lightgbm flavor
                                                            (:mod:`~.mlflow`)
=====================  ===================================  ======================================

Pickles (and torch ``.pt`` files, which are pickles in a zip) run code while they load, so they
are loaded only with ``trust_pickle=True``. A ``.pt2`` archive may carry pickled weights or
objects too; those are refused unless trusted, and the rest is checked to load with torch's
weights-only loader.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

from modelport._deps import require
from modelport.errors import ConversionError, InputError, UnsupportedModelError

FORMATS = ("xgboost-json", "xgboost-ubj", "lightgbm", "catboost", "torch-export", "torch-pickle", "onnx", "pickle",
           "mlflow")
_PICKLE_EXTENSIONS = (".pkl", ".pickle", ".joblib", ".jl", ".sav")
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"x\x01", b"x\x5e", b"x\x9c", b"x\xda", b"BZh", b"\xfd7zXZ", b"\x04\x22\x4d\x18")


def detect(path: str | os.PathLike[str]) -> str:
    """The format of a model file (one of :data:`FORMATS`), from its content and extension."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such model file.")
    if p.is_dir():
        from modelport.convert.mlflow import is_mlflow_model

        if is_mlflow_model(p):
            return "mlflow"
        raise InputError(
            f"{p} is a directory without an MLmodel file; pass a model file (XGBoost .json/.ubj, LightGBM .txt, "
            "CatBoost .cbm, torch .pt2, .onnx, or a pickle with --trust-pickle) or an MLflow model directory."
        )
    size = p.stat().st_size
    if size == 0:
        raise ConversionError(f"{p}: the model file is empty.")
    with p.open("rb") as fh:
        head = fh.read(256)
    suffix = p.suffix.lower()
    if head.startswith(b"CBM1") or suffix == ".cbm":
        return "catboost"
    if head.startswith(b"tree\n") or head.startswith(b"tree\r\n"):
        return "lightgbm"
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(p):
        raise ConversionError(f"{p}: a truncated or corrupt zip archive (no central directory); write the file again.")
    if zipfile.is_zipfile(p):
        names = _zip_names(p)
        if any(n.endswith("archive_format") for n in names) or suffix == ".pt2":
            return "torch-export"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-pickle"
        raise UnsupportedModelError(f"{p}: a zip archive that is neither a torch .pt2 ExportedProgram nor a torch file.")
    stripped = head.lstrip()
    if stripped.startswith(b"{"):
        if b"learner" in head[:64] and not stripped.startswith(b'{"'):
            return "xgboost-ubj"
        if stripped.startswith(b'{"') or suffix == ".json":
            return "xgboost-json"
    if suffix == ".ubj":
        return "xgboost-ubj"
    if head[:1] == b"\x80" or suffix in _PICKLE_EXTENSIONS or head.startswith(_COMPRESSED_MAGIC):
        return "pickle"
    if suffix == ".onnx" or _looks_like_onnx(p):
        return "onnx"
    if suffix in (".txt", ".model") and head.lstrip().startswith(b"tree"):
        return "lightgbm"
    raise UnsupportedModelError(
        f"{p}: cannot tell which kind of model file this is.",
        hint="supported: XGBoost .json/.ubj, LightGBM text (.txt), CatBoost .cbm, torch ExportedProgram .pt2 "
        "(torch.export.save), ONNX .onnx, and pickle/joblib files with --trust-pickle",
    )


def load_model_file(path: str | os.PathLike[str], *, trust_pickle: bool = False) -> Any:
    """Load the model in ``path`` with its own library (see the module docstring for the formats).

    Pickle-based files (``.pkl``, ``.joblib``, torch ``.pt``) are refused unless ``trust_pickle``
    is True, because loading a pickle executes code chosen by whoever wrote the file.
    """
    p = Path(path)
    fmt = detect(p)
    if fmt in ("xgboost-json", "xgboost-ubj"):
        return _load_xgboost(p, fmt)
    if fmt == "lightgbm":
        return _load_lightgbm(p)
    if fmt == "catboost":
        return _load_catboost(p)
    if fmt == "torch-export":
        return _load_torch_export(p, trust_pickle=trust_pickle)
    if fmt == "onnx":
        from modelport.convert.passthrough import OnnxModel

        return OnnxModel.read(p)
    if fmt == "mlflow":
        from modelport.convert.mlflow import read

        return read(p, trust_pickle=trust_pickle).model
    if not trust_pickle:
        raise ConversionError(
            f"{p} is a pickle ({'a torch.save file' if fmt == 'torch-pickle' else 'pickle/joblib'}); "
            "loading a pickle runs code chosen by whoever wrote the file, so modelport does not load it by default.",
            hint="if you trust the file, pass --trust-pickle (trust_pickle=True); better, save the model in its "
            "library's own format (XGBoost save_model .json/.ubj, LightGBM .txt, CatBoost .cbm, torch.export.save .pt2)",
        )
    if fmt == "torch-pickle":
        return _load_torch_pickle(p)
    return _load_pickle(p)


# ---------------------------------------------------------------------- per format
def _load_xgboost(p: Path, fmt: str) -> Any:
    xgb = require("xgboost", purpose="loading XGBoost model files")
    booster = xgb.Booster()
    try:
        booster.load_model(str(p))
        config = json.loads(booster.save_config())
    except (xgb.core.XGBoostError, ValueError, OSError) as exc:
        raise ConversionError(
            f"{p}: XGBoost cannot load this {fmt.split('-')[1].upper()} model (truncated or not an XGBoost model?): "
            f"{_first_line(exc)}"
        ) from exc
    objective = str(config.get("learner", {}).get("objective", {}).get("name", ""))
    if objective.startswith(("binary:", "multi:")):
        cls = xgb.XGBClassifier
    elif objective.startswith(("reg:", "count:")):
        cls = xgb.XGBRegressor
    else:  # ranking, survival, custom objectives: the booster itself
        return booster
    model = cls()
    try:
        model.load_model(str(p))
    except (xgb.core.XGBoostError, ValueError, OSError) as exc:
        raise ConversionError(f"{p}: XGBoost cannot load this model as {cls.__name__}: {_first_line(exc)}") from exc
    return model


def _load_lightgbm(p: Path) -> Any:
    lgb = require("lightgbm", purpose="loading LightGBM model files")
    _check_lightgbm_text(p)
    try:
        return lgb.Booster(model_file=str(p))
    except (lgb.basic.LightGBMError, ValueError, OSError) as exc:
        raise ConversionError(
            f"{p}: LightGBM cannot load this text model (truncated or not a LightGBM model?): {_first_line(exc)}"
        ) from exc


def _load_catboost(p: Path) -> Any:
    cb = require("catboost", purpose="loading CatBoost model files")
    try:
        generic = cb.CatBoost()
        generic.load_model(str(p), format="cbm")
        loss = str(generic.get_all_params().get("loss_function", ""))
    except (cb.CatBoostError, ValueError, OSError) as exc:
        raise ConversionError(
            f"{p}: CatBoost cannot load this .cbm model (truncated or not a CatBoost model?): {_first_line(exc)}"
        ) from exc
    classifier_losses = ("Logloss", "CrossEntropy", "MultiClass", "MultiClassOneVsAll")
    cls = cb.CatBoostClassifier if loss.split(":")[0] in classifier_losses else cb.CatBoostRegressor
    if loss.split(":")[0] not in classifier_losses and not _is_regression_loss(loss):
        return generic  # ranking and other losses: the generic model
    model = cls()
    model.load_model(str(p), format="cbm")
    return model


def _check_lightgbm_text(p: Path) -> None:
    """LightGBM's parser trusts the ``tree_sizes`` header and crashes the process on a cut-off file,
    so the structure is checked first: every tree block where the header says, and the end marker."""
    data = p.read_bytes()
    problem = None
    if b"\nend of trees" not in data:
        problem = "it has no 'end of trees' line"
    else:
        header = data.split(b"\n\n", 1)[0]
        sizes: list[int] = []
        for line in header.splitlines():
            if line.startswith(b"tree_sizes="):
                try:
                    sizes = [int(v) for v in line[len(b"tree_sizes="):].split()]
                except ValueError:
                    problem = "its tree_sizes line is malformed"
        start = data.find(b"Tree=0")
        if not problem and sizes:
            if start < 0:
                problem = "it lists tree sizes but holds no trees"
            else:
                pos = start
                for i, size in enumerate(sizes):
                    if not data.startswith(f"Tree={i}".encode(), pos) or pos + size > len(data):
                        problem = f"tree {i} is not where the header says (the file was cut off or edited)"
                        break
                    pos += size
    if not problem and b"\nparameters:" in data:
        end = data.find(b"\nend of parameters")
        if end < 0:
            problem = "its parameters section has no end (the file was cut off)"
        else:
            rest = data[end + len(b"\nend of parameters"):].strip()
            if rest.startswith(b"pandas_categorical:"):
                try:
                    json.loads((rest[len(b"pandas_categorical:"):].splitlines() or [b"null"])[0] or b"null")
                except ValueError:
                    problem = "its pandas_categorical line is cut off or malformed"
    if problem:
        raise ConversionError(f"{p}: not a complete LightGBM text model: {problem}.", hint="save the model again")


def _is_regression_loss(loss: str) -> bool:
    name = loss.split(":")[0]
    return name in ("RMSE", "MAE", "Quantile", "Expectile", "LogLinQuantile", "MAPE", "Poisson", "Tweedie",
                    "Huber", "Lq", "RMSEWithUncertainty", "MultiRMSE", "SurvivalAft", "LogCosh", "Cox", "FairLoss")


def _load_torch_export(p: Path, *, trust_pickle: bool) -> Any:
    torch = require("torch", purpose="loading torch ExportedProgram (.pt2) files")
    if not trust_pickle:
        _check_pt2_pickle_free(p)
    try:
        with zipfile.ZipFile(p) as zf:
            bad = zf.testzip()
        if bad is not None:
            raise ConversionError(f"{p}: the .pt2 archive is corrupt (entry {bad!r} fails its CRC check).")
        # torch logs its own traceback before raising; the error below says what matters
        export_logger = logging.getLogger("torch.export")
        level = export_logger.level
        export_logger.setLevel(logging.CRITICAL)
        try:
            return torch.export.load(str(p))
        finally:
            export_logger.setLevel(level)
    except ConversionError:
        raise
    except Exception as exc:  # torch raises RuntimeError, KeyError, AssertionError ... on bad archives
        raise ConversionError(
            f"{p}: torch.export.load cannot read this .pt2 archive: {type(exc).__name__}: {_first_line(exc)}",
            hint="write it with torch.export.save(torch.export.export(module, args), path) from the same torch major version",
        ) from exc


def _check_pt2_pickle_free(p: Path) -> None:
    """Refuse .pt2 archives that carry pickled weights, constants or objects (torch would unpickle them)."""
    import torch

    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConversionError(f"{p}: corrupt or truncated .pt2 archive ({exc}).") from exc
    with zf:
        names = zf.namelist()
        for name in names:
            base = name.split("/", 1)[-1]
            if base.endswith("_config.json") and ("/weights/" in name or "/constants/" in name):
                try:
                    config = json.loads(zf.read(name)).get("config", {})
                except (ValueError, zipfile.BadZipFile, OSError) as exc:
                    raise ConversionError(f"{p}: {name} in the .pt2 archive is not valid JSON ({exc}).") from exc
                for key, meta in config.items():
                    path_name = str(meta.get("path_name", ""))
                    if meta.get("use_pickle") or path_name.startswith(("custom_obj", "opaque_obj")):
                        raise ConversionError(
                            f"{p}: the .pt2 archive stores {key!r} as a pickled object; loading it would run code.",
                            hint="if you trust the file, pass --trust-pickle (trust_pickle=True)",
                        )
            elif base.startswith("data/sample_inputs/") or (
                base.startswith(("data/weights/", "data/constants/")) and base.endswith(".pt")
            ):
                # torch retries these with the full unpickler when the weights-only loader fails
                import io

                try:
                    torch.load(io.BytesIO(zf.read(name)), weights_only=True)
                except Exception as exc:
                    raise ConversionError(
                        f"{p}: {name} in the .pt2 archive is not plain tensor data (torch's weights-only "
                        f"loader refuses it: {_first_line(exc)}); loading it would run pickled code.",
                        hint="if you trust the file, pass --trust-pickle (trust_pickle=True)",
                    ) from exc


def _load_torch_pickle(p: Path) -> Any:
    torch = require("torch", purpose="loading torch.save files")
    try:
        obj = torch.load(str(p), weights_only=False, map_location="cpu")
    except Exception as exc:
        raise ConversionError(f"{p}: torch.load failed: {type(exc).__name__}: {_first_line(exc)}") from exc
    if isinstance(obj, dict):
        raise UnsupportedModelError(
            f"{p} holds a state dict (weights only), not a module; modelport needs the module's computation.",
            hint="save an ExportedProgram instead: torch.export.save(torch.export.export(module, (x,)), 'model.pt2')",
        )
    return obj


def _load_pickle(p: Path) -> Any:
    joblib = require("joblib", purpose="loading pickle/joblib model files")
    try:
        return joblib.load(p)
    except ModuleNotFoundError as exc:
        raise ConversionError(
            f"{p}: the pickle needs the module {exc.name!r}, which is not installed here.",
            hint=f"install the library the model was trained with (pip install {exc.name})",
        ) from exc
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... for truncated or foreign files
        raise ConversionError(
            f"{p}: cannot unpickle the file (truncated, or not a pickle/joblib file?): "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from exc


# ---------------------------------------------------------------------- helpers
def _zip_names(p: Path) -> list[str]:
    try:
        with zipfile.ZipFile(p) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConversionError(f"{p}: corrupt or truncated zip archive ({exc}).") from exc


def _looks_like_onnx(p: Path) -> bool:
    import onnx

    if p.stat().st_size > 2 * 1024**3:
        return False
    try:
        model = onnx.load_model_from_string(p.read_bytes())
    except Exception:  # protobuf's DecodeError and friends: not ONNX
        return False
    return model.ir_version > 0 and len(model.graph.node) > 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
