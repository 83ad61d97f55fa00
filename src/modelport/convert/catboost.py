"""CatBoost models (CatBoostClassifier, CatBoostRegressor, CatBoost) with numeric features -> ONNX.

Written from CatBoost's JSON model export (``save_model(format="json")``), which lists every
oblivious tree: one (feature, border) split per level, the same at every node of the level, and
``2**depth`` leaves (times the number of model dimensions). A level's bit is ``x > border`` on
float32 input, leaf index ``sum(bit_k << k)``; NaN takes the bit the feature's
``nan_value_treatment`` says (``AsFalse`` for nan_mode Min, ``AsTrue`` for Max). The raw value is
``scale * sum(leaves) + bias``. Categorical, text and embedding features (CTR statistics on
hashed values) are not converted; CatBoost's own ONNX export refuses them too.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np

from modelport._deps import require
from modelport.bundle.signature import Column
from modelport.convert._sample import column_kinds
from modelport.convert._trees import Ensemble, Leaf, Node, Split, booster_converted, build_model
from modelport.convert.base import Converted, Converter
from modelport.errors import ConversionError, UnsupportedModelError

_BINARY = {"Logloss", "CrossEntropy"}
_EXP = {"Poisson", "Tweedie"}
_IDENTITY = {
    "RMSE", "MAE", "Quantile", "MAPE", "Huber", "Expectile", "LogLinQuantile", "Lq", "LogCosh", "MultiRMSE",
    "YetiRank", "YetiRankPairwise", "PairLogit", "PairLogitPairwise", "QueryRMSE",
}


class CatBoostConverter(Converter):
    name = "catboost"
    framework = "CatBoost"
    modules = ("catboost", "_catboost")

    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted:
        catboost = require("catboost", purpose="converting CatBoost models")
        _check_fitted(model)
        doc = _json_model(model)
        loss = _loss(model)
        task, link = _task(model, loss)
        info = doc["features_info"]
        unsupported = [k for k in ("categorical_features", "text_features", "embedding_features") if info.get(k)]
        if unsupported:
            kinds = ", ".join(k.replace("_features", "") for k in unsupported)
            raise UnsupportedModelError(
                f"this CatBoost model uses {kinds} features; modelport converts CatBoost models with numeric features only.",
                hint="encode those columns as numbers before training (e.g. an ordinal or target encoding), "
                "or use LightGBM, whose categorical splits modelport converts",
            )
        floats = info.get("float_features", [])
        n_features = max((int(f["flat_feature_index"]) for f in floats), default=-1) + 1
        columns = _columns(sample, n_features)
        nan_true: dict[int, bool | None] = {}
        for f in floats:
            treatment = f.get("nan_value_treatment", "AsIs")
            # the level's bit (x > border) is false for AsFalse (and for AsIs: NaN > b is false), true for AsTrue
            nan_true[int(f["feature_index"])] = treatment == "AsTrue"
        flat_of = {int(f["feature_index"]): int(f["flat_feature_index"]) for f in floats}
        scale, bias = doc.get("scale_and_bias", [1.0, [0.0]])
        bias = list(bias) if isinstance(bias, list) else [bias]
        trees = doc["oblivious_trees"]
        dims = len(bias)
        if task == "classification" and link == "softmax" and dims < 2:
            raise ConversionError(f"CatBoost multiclass model has {dims} dimension(s).")
        ensemble = Ensemble(trees=[], n_targets=dims, base=[float(b) for b in bias], n_features=n_features)
        for tree in trees:
            ensemble.trees.append(_tree(tree, dims, float(scale), flat_of, nan_true))
        classes = _classes(model, dims) if task == "classification" else None
        onx = build_model(ensemble, task=task, link=link, classes=classes, doc=f"CatBoost {catboost.__version__} {loss}")
        names = [c.name for c in columns]
        nullable: dict[str, bool] = {}
        for f in floats:
            flat = int(f["flat_feature_index"])
            if f.get("nan_value_treatment") in ("AsFalse", "AsTrue") and flat < len(names):
                nullable[names[flat]] = True
        return booster_converted(
            onx, ensemble=ensemble, task=task, columns=columns, classes=classes, names=names,
            framework="catboost", framework_version=catboost.__version__,
            estimator=type(model).__name__ if type(model).__name__ != "CatBoost" else f"CatBoost({loss})",
            nullable=nullable,
        )

    def reference(self, model: Any, data: Any) -> dict[str, np.ndarray]:
        loss = _loss(model)
        task, link = _task(model, loss)
        if task == "classification":
            proba = np.asarray(model.predict(data, prediction_type="Probability"))
            classes = np.asarray(model.classes_) if getattr(model, "classes_", None) is not None else np.arange(proba.shape[1])
            return {"label": classes[np.argmax(proba, axis=1)], "probabilities": proba}
        pred = np.asarray(model.predict(data, prediction_type="Exponent" if link == "exp" else "RawFormulaVal"))
        return {"prediction": pred}


def _check_fitted(model: Any) -> None:
    fitted = model.is_fitted() if hasattr(model, "is_fitted") else True
    if not fitted:
        raise UnsupportedModelError(f"the {type(model).__name__} is not fitted; call fit() before packing it.")


def _json_model(model: Any) -> dict[str, Any]:
    # CatBoost writes its JSON export only to a file
    with tempfile.TemporaryDirectory(prefix="modelport-catboost-") as tmp:
        path = os.path.join(tmp, "model.json")
        model.save_model(path, format="json")
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)


def _loss(model: Any) -> str:
    params = model.get_all_params()
    return str(params.get("loss_function", "RMSE")).split(":", 1)[0]


def _task(model: Any, loss: str) -> tuple[str, str]:
    if loss in _BINARY:
        return "classification", "logistic"
    if loss == "MultiClass":
        return "classification", "softmax"
    if loss == "MultiClassOneVsAll":
        return "classification", "logistic_ova"
    if type(model).__name__ == "CatBoostClassifier":
        raise UnsupportedModelError(f"CatBoost loss {loss!r} on a classifier gives no probabilities modelport can reproduce.")
    if loss in _EXP:
        return "regression", "exp"
    if loss in _IDENTITY:
        return "regression", "identity"
    raise UnsupportedModelError(
        f"CatBoost loss {loss!r} is not supported.",
        hint="supported: " + ", ".join(sorted(_BINARY | _EXP | _IDENTITY | {"MultiClass", "MultiClassOneVsAll"})),
    )


def _tree(tree: dict[str, Any], dims: int, scale: float, flat_of: dict[int, int],
          nan_true: dict[int, bool | None]) -> Node:
    splits = tree.get("splits") or []
    values = [float(v) * scale for v in tree["leaf_values"]]
    depth = len(splits)
    if len(values) != dims << depth:
        raise ConversionError(f"CatBoost tree has {len(values)} leaf values; expected {dims << depth}.")
    for s in splits:
        if s.get("split_type") != "FloatFeature":
            raise UnsupportedModelError(f"CatBoost split type {s.get('split_type')!r} is not supported (numeric features only).")

    def leaf(index: int) -> Leaf:
        return Leaf(tuple((d, values[index * dims + d]) for d in range(dims)))

    def build(level: int, index: int) -> Node:
        # levels are read from the deepest bit down so that each level decides bit `level`
        if level < 0:
            return leaf(index)
        s = splits[level]
        feature = int(s["float_feature_index"])
        bit_off = build(level - 1, index)
        bit_on = build(level - 1, index | (1 << level))
        # x <= border: bit off; NaN takes the bit its treatment gives
        return Split(flat_of.get(feature, feature), "BRANCH_LEQ", float(np.float32(s["border"])), bit_off, bit_on,
                     missing_true=not nan_true.get(feature, False))

    return build(depth - 1, 0)


def _columns(sample: Any, n_features: int) -> list[Column]:
    kinds = column_kinds(sample)
    if len(kinds) != n_features:
        raise ConversionError(f"the sample has {len(kinds)} columns but the CatBoost model was trained on {n_features}.")
    columns = []
    for i, (name, kind, _) in enumerate(kinds):
        if kind in ("str", "category"):
            raise ConversionError(
                f"column {name!r} is not numeric ({kind}); modelport converts CatBoost models with numeric features only."
            )
        columns.append(Column(name, kind, "X", i))
    return columns


def _classes(model: Any, dims: int) -> list[Any]:
    classes = getattr(model, "classes_", None)
    if classes is not None and len(classes):
        return [c.item() if hasattr(c, "item") else c for c in classes]
    return list(range(2 if dims == 1 else dims))
