"""The table of converters: model type -> converter. One module per framework registers here."""

from __future__ import annotations

import importlib
from typing import Any

from modelport.convert.base import Converter
from modelport.errors import ConversionError, UnsupportedModelError

# name -> "module:Class"; modules are imported only when a model of theirs is converted
_BUILTIN: dict[str, str] = {
    "sklearn": "modelport.convert.sklearn:SklearnConverter",
    "xgboost": "modelport.convert.xgboost:XGBoostConverter",
    "lightgbm": "modelport.convert.lightgbm:LightGBMConverter",
    "catboost": "modelport.convert.catboost:CatBoostConverter",
    "torch": "modelport.convert.torch:TorchConverter",
    "keras": "modelport.convert.keras:KerasConverter",
    "tensorflow": "modelport.convert.tensorflow:TensorFlowConverter",
    "onnx": "modelport.convert.passthrough:OnnxConverter",
    "pmml": "modelport.convert.pmml.converter:PMMLConverter",
    "spark": "modelport.convert.spark:SparkConverter",
}
#: module prefixes per converter, so matching needs no import of the converter module
_PREFIXES: dict[str, tuple[str, ...]] = {
    "sklearn": ("sklearn", "imblearn"),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "catboost": ("catboost", "_catboost"),
    "torch": ("torch",),
    "keras": ("keras", "modelport.convert.keras"),
    "tensorflow": ("tensorflow", "modelport.convert.tensorflow"),
    "onnx": ("modelport.convert.passthrough", "onnx"),
    "pmml": ("modelport.convert.pmml",),
    "spark": ("pyspark", "modelport.convert._spark_read"),
}
_instances: dict[str, Converter] = {}
_extra: dict[str, Converter] = {}


def register(converter: Converter) -> None:
    """Add a converter (for plugins); a name that is taken raises."""
    if converter.name in _BUILTIN or converter.name in _extra:
        raise ConversionError(f"a converter named {converter.name!r} is already registered.")
    _extra[converter.name] = converter


def get(name: str) -> Converter:
    if name in _extra:
        return _extra[name]
    if name not in _BUILTIN:
        raise UnsupportedModelError(f"no converter named {name!r}; known: {', '.join(names())}.")
    if name not in _instances:
        mod_name, cls_name = _BUILTIN[name].split(":")
        cls = getattr(importlib.import_module(mod_name), cls_name)
        _instances[name] = cls()
    return _instances[name]


def names() -> list[str]:
    return sorted([*_BUILTIN, *_extra])


def find(model: Any) -> Converter:
    """The converter for ``model``, chosen by the modules of its type (no framework imports)."""
    for conv in _extra.values():
        if conv.matches(model):
            return conv
    for cls in type(model).__mro__:
        mod = cls.__module__ or ""
        for name, prefixes in _PREFIXES.items():
            if any(mod == p or mod.startswith(p + ".") for p in prefixes):
                return get(name)
    raise UnsupportedModelError(
        f"modelport cannot convert a {type(model).__module__}.{type(model).__name__}: no converter handles it.",
        hint=f"supported frameworks: {', '.join(names())}; for a PMML or ONNX file use the CLI's pack",
    )
