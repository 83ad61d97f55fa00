"""XGBoost models (XGBClassifier, XGBRegressor, XGBRF*, raw ``xgboost.Booster``) -> ONNX.

Written from XGBoost's own JSON model (``Booster.save_raw("json")``), which describes every tree,
the objective and the intercept, rather than through onnxmltools: that keeps missing-value routing,
float32 split values, vector intercepts (XGBoost >= 3) and categorical splits exact. XGBoost
compares float32 inputs with ``x < split``; a split on a categorical feature sends the listed
categories right; NaN (and the model's ``missing`` value) follows each node's default direction.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from modelport._deps import require
from modelport.bundle.signature import Column
from modelport.convert._sample import column_kinds, is_dataframe, with_categories
from modelport.convert._trees import (
    Ensemble,
    Leaf,
    Node,
    Split,
    booster_converted,
    bottom_up,
    build_model,
    member_chain,
)
from modelport.convert.base import Converted, Converter
from modelport.errors import ConversionError, UnsupportedModelError

# objective -> (task, link); the intercept is stored in the link's output space
_OBJECTIVES: dict[str, tuple[str, str]] = {
    "binary:logistic": ("classification", "logistic"),
    "multi:softprob": ("classification", "softmax"),
    "multi:softmax": ("classification", "softmax"),
    "reg:logistic": ("regression", "logistic"),
    "reg:squarederror": ("regression", "identity"),
    "reg:squaredlogerror": ("regression", "identity"),
    "reg:pseudohubererror": ("regression", "identity"),
    "reg:absoluteerror": ("regression", "identity"),
    "reg:quantileerror": ("regression", "identity"),
    "reg:expectileerror": ("regression", "identity"),
    "count:poisson": ("regression", "exp"),
    "reg:gamma": ("regression", "exp"),
    "reg:tweedie": ("regression", "exp"),
    "survival:cox": ("regression", "exp"),
    "rank:pairwise": ("regression", "identity"),
    "rank:ndcg": ("regression", "identity"),
    "rank:map": ("regression", "identity"),
}


class XGBoostConverter(Converter):
    name = "xgboost"
    framework = "XGBoost"
    modules = ("xgboost",)

    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted:
        xgb = require("xgboost", purpose="converting XGBoost models")
        booster, wrapper = _booster(model)
        doc = json.loads(bytes(booster.save_raw("json")))
        learner = doc["learner"]
        objective = learner["objective"]["name"]
        if objective not in _OBJECTIVES:
            raise UnsupportedModelError(
                f"XGBoost objective {objective!r} is not supported: it has no probabilities or prediction "
                "modelport can reproduce.",
                hint=f"supported objectives: {', '.join(sorted(_OBJECTIVES))}",
            )
        task, link = _OBJECTIVES[objective]
        if wrapper is not None:
            task = _wrapper_task(wrapper, task)
        gbm = learner["gradient_booster"]
        if gbm["name"] == "gblinear":
            raise UnsupportedModelError("XGBoost's gblinear booster is not a tree model; modelport converts gbtree and dart.")
        weights: list[float] | None = None
        if gbm["name"] == "dart":
            weights = [float(w) for w in gbm["weight_drop"]]
            gbm = gbm["gbtree"]
        trees_doc = gbm["model"]
        params = learner["learner_model_param"]
        n_features = int(params["num_feature"])
        n_targets = max(int(params.get("num_class", "0")), int(params.get("num_target", "1")), 1)
        names = _column_names(sample, booster, n_features)
        feature_types = list(booster.feature_types or [])
        categorical = {i for i, t in enumerate(feature_types) if t == "c"}
        categories = _training_categories(trees_doc, n_features) if categorical else {}
        columns = _columns(sample, names, categorical, categories)

        n_trees = _tree_count(trees_doc, booster, wrapper)
        ensemble = Ensemble(trees=[], n_targets=n_targets, base=_base_margins(params, objective, n_targets),
                            n_features=n_features)
        cat_columns = {int(c.index or 0) for c in columns if c.dtype == "category"}
        missing = _missing_value(wrapper)
        if missing is not None:
            ensemble.missing_value = missing
        tree_info = trees_doc["tree_info"]
        for i, tree in enumerate(trees_doc["trees"][:n_trees]):
            scale = weights[i] if weights is not None else 1.0
            root = _tree(tree, int(tree_info[i]), n_targets, scale, ensemble, cat_columns)
            ensemble.trees.append(root)
        classes = _classes(wrapper, task, n_targets) if task == "classification" else None
        if (task == "classification" and link == "logistic" and n_targets != 1) or (
            task == "regression" and link == "softmax"
        ):
            raise UnsupportedModelError(
                f"XGBoost objective {objective!r} with {n_targets} outputs on a {type(model).__name__} is not supported."
            )
        onx = build_model(ensemble, task=task, link=link, classes=classes, doc=f"XGBoost {xgb.__version__} {objective}")
        return booster_converted(
            onx, ensemble=ensemble, task=task, columns=columns, classes=classes, names=names,
            framework="xgboost", framework_version=xgb.__version__,
            estimator=type(model).__name__ if wrapper is not None else f"Booster({objective})",
        )

    def prepare_sample(self, model: Any, sample: Any) -> Any:
        """A sample read from a file (text columns) gets the categories the model stores (XGBoost >= 3.1)."""
        if not is_dataframe(sample):
            return sample
        booster, _ = _booster(model)
        types = list(booster.feature_types or [])
        if "c" not in types:
            return sample
        names = list(booster.feature_names or []) or [str(c) for c in sample.columns]
        need = [names[i] for i, t in enumerate(types) if t == "c" and i < len(names)]
        todo = [n for n in need if n in sample.columns and str(sample[n].dtype) != "category"]
        if not todo:
            return sample
        doc = json.loads(bytes(booster.save_raw("json")))
        stored = _training_categories(_trees_doc(doc), len(types))
        missing = [names[i] for i, t in enumerate(types) if t == "c" and names[i] in todo and i not in stored]
        if missing:
            raise ConversionError(
                f"the sample's column(s) {', '.join(map(repr, missing))} are not pandas categoricals, and the "
                "XGBoost model does not store the categories it was trained on (XGBoost >= 3.1 writes them).",
                hint="pass the sample as a DataFrame with those columns as pandas categoricals (df[col].astype('category'))",
            )
        cats = {names[i]: stored[i] for i, t in enumerate(types) if t == "c" and names[i] in todo}
        return with_categories(sample, cats, source="the XGBoost model")

    def reference(self, model: Any, data: Any) -> dict[str, np.ndarray]:
        xgb = require("xgboost", purpose="running the original XGBoost model")
        booster, wrapper = _booster(model)
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        task = _OBJECTIVES.get(objective, ("regression", "identity"))[0]
        if wrapper is not None:
            task = _wrapper_task(wrapper, task)
            if task == "regression":
                return {"prediction": np.asarray(wrapper.predict(data))}
            return {"label": np.asarray(wrapper.predict(data)), "probabilities": np.asarray(wrapper.predict_proba(data))}
        dmatrix = _dmatrix(xgb, booster, data)
        if task == "regression":
            return {"prediction": np.asarray(booster.predict(dmatrix))}
        if objective == "multi:softmax":
            proba = _softmax(np.asarray(booster.predict(dmatrix, output_margin=True)))
        else:
            pred = np.asarray(booster.predict(dmatrix))
            proba = np.column_stack([1 - pred, pred]) if pred.ndim == 1 else pred
        return {"label": np.argmax(proba, axis=1).astype(np.int64), "probabilities": proba}


def _booster(model: Any) -> tuple[Any, Any]:
    """(Booster, sklearn wrapper or None); an unfitted wrapper raises UnsupportedModelError."""
    if type(model).__name__ == "Booster":
        return model, None
    if not hasattr(model, "get_booster"):
        raise UnsupportedModelError(
            f"modelport converts XGBoost Booster and scikit-learn style XGB* models; got {type(model).__name__}."
        )
    try:
        return model.get_booster(), model
    except Exception as exc:  # sklearn's NotFittedError or XGBoostError
        raise UnsupportedModelError(
            f"the {type(model).__name__} is not fitted; call fit() before packing it."
        ) from exc


def _trees_doc(doc: dict[str, Any]) -> dict[str, Any]:
    gbm = doc["learner"]["gradient_booster"]
    if gbm.get("name") == "dart":
        gbm = gbm["gbtree"]
    return gbm.get("model", {})


def _wrapper_task(wrapper: Any, task: str) -> str:
    from sklearn.base import is_classifier

    if is_classifier(wrapper):
        if task != "classification":
            raise UnsupportedModelError(
                f"{type(wrapper).__name__} has objective {wrapper.objective!r}, which gives no class probabilities."
            )
        return "classification"
    # a regressor wrapper returns whatever its objective predicts (a probability for binary:logistic)
    return "regression"


def _missing_value(wrapper: Any) -> float | None:
    missing = getattr(wrapper, "missing", None) if wrapper is not None else None
    if missing is None:
        return None
    value = float(missing)
    return None if math.isnan(value) else value


def _tree_count(trees_doc: dict[str, Any], booster: Any, wrapper: Any) -> int:
    """How many trees predict() uses: the sklearn wrappers stop at the best iteration of early stopping."""
    total = len(trees_doc["trees"])
    if wrapper is None:
        return total
    best = booster.attr("best_iteration")
    if best is None:
        return total
    indptr = trees_doc.get("iteration_indptr")
    layers = int(best) + 1
    if indptr and layers < len(indptr):
        return int(indptr[layers])
    per_layer = max(1, int(trees_doc["gbtree_model_param"].get("num_parallel_tree", "1")))
    groups = max(1, len({int(t) for t in trees_doc["tree_info"]}))
    return min(total, layers * per_layer * groups)


def _base_margins(params: dict[str, Any], objective: str, n_targets: int) -> list[float]:
    raw = str(params["base_score"]).strip()
    values = [float(v) for v in raw.strip("[]").split(",") if v.strip()] if raw.startswith("[") else [float(raw)]
    if len(values) == 1 and n_targets > 1:
        values = values * n_targets
    if len(values) != n_targets:
        raise ConversionError(f"XGBoost base_score {raw!r} does not match the {n_targets} model outputs.")
    link = _OBJECTIVES[objective][1]
    out = []
    for v in values:
        v32 = float(np.float32(v))
        if link == "logistic":
            # XGBoost turns the stored probability into a margin in float32
            out.append(float(-np.log(np.float32(1.0) / np.float32(v32) - np.float32(1.0))))
        elif link == "exp" and objective != "survival:cox":
            out.append(float(np.log(np.float32(v32))))
        else:
            out.append(v32)
    return out


def _tree(tree: dict[str, Any], target: int, n_targets: int, scale: float, ensemble: Ensemble,
          cat_columns: set[int]) -> Node:
    if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
        raise UnsupportedModelError(
            "XGBoost multi-output trees (multi_strategy='multi_output_tree') are not supported.",
            hint="train with multi_strategy='one_output_per_tree' (the default)",
        )
    left = tree["left_children"]
    right = tree["right_children"]
    feature = tree["split_indices"]
    cond = tree["split_conditions"]
    default_left = tree["default_left"]
    split_type = tree.get("split_type") or [0] * len(left)
    cats: dict[int, list[int]] = {}
    for node, seg, size in zip(tree.get("categories_nodes", []), tree.get("categories_segments", []),
                               tree.get("categories_sizes", []), strict=True):
        cats[int(node)] = [int(c) for c in tree["categories"][int(seg):int(seg) + int(size)]]

    def children(i: int) -> list[int]:
        return [] if left[i] == -1 else [left[i], right[i]]

    def make(i: int, built: list[Node]) -> Node:
        if not built:
            value = float(np.float32(cond[i])) if scale == 1.0 else float(np.float32(cond[i]) * np.float32(scale))
            return Leaf(((target if n_targets > 1 else 0, value),))
        yes, no = built
        f = int(feature[i])
        if int(split_type[i]) == 1:
            # listed categories go right; codes that are not categories (negative, too large) go left.
            # Codes are floored as XGBoost does (a fractional code in a numpy array: 2.7 is 2, -0.5 is -1)
            slot = ensemble.derived_index("floor", f)
            return member_chain(slot, cats.get(i, []), inside=no, outside=yes, missing_inside=not default_left[i])
        return Split(f, "BRANCH_LT", float(np.float32(cond[i])), yes, no, missing_true=bool(default_left[i]))

    return bottom_up(0, children, make, key=int)


def _column_names(sample: Any, booster: Any, n_features: int) -> list[str]:
    """Names per model feature: the DataFrame's (matched by name when the booster has names), else f0.."""
    from modelport.bundle.signature import default_column_names

    if not is_dataframe(sample):
        width = np.asarray(sample).shape[1] if np.ndim(sample) == 2 else None
        if width != n_features:
            raise ConversionError(f"the sample has {width} columns but the XGBoost model was trained on {n_features}.")
        return default_column_names(n_features)
    cols = [str(c) for c in sample.columns]
    if len(cols) != n_features:
        raise ConversionError(
            f"the sample has {len(cols)} columns ({', '.join(cols)}) but the XGBoost model was trained on {n_features}."
        )
    model_names = list(booster.feature_names or [])
    if model_names and sorted(model_names) != sorted(cols):
        raise ConversionError(
            f"the sample's columns {cols} are not the model's features {model_names}.",
            hint="pass a sample with the columns the model was trained on",
        )
    return model_names or cols


def _training_categories(trees_doc: dict[str, Any], n_features: int) -> dict[int, tuple[Any, ...]]:
    """Categories XGBoost (>= 3.1) recorded at training, per feature index, in code order."""
    cats = trees_doc.get("cats") or {}
    enc = cats.get("enc") or []
    out: dict[int, tuple[Any, ...]] = {}
    for f, entry in enumerate(enc[:n_features]):
        values = entry.get("values", [])
        offsets = entry.get("offsets")
        if not values:
            continue
        if offsets:  # strings, stored as UTF-8 bytes with offsets
            raw = bytes(int(v) for v in values)
            out[f] = tuple(raw[offsets[k]:offsets[k + 1]].decode() for k in range(len(offsets) - 1))
        else:
            out[f] = tuple(v.item() if hasattr(v, "item") else v for v in values)
    return out


def _columns(sample: Any, names: list[str], categorical: set[int],
             categories: dict[int, tuple[Any, ...]]) -> list[Column]:
    kinds = {n: (k, cats) for n, k, cats in column_kinds(sample)}
    columns = []
    for i, name in enumerate(names):
        kind, cats = kinds.get(name, ("float64", None))
        if kind == "category":
            if i not in categorical:
                raise ConversionError(
                    f"column {name!r} is categorical in the sample but the XGBoost model treats it as numeric.",
                    hint="fit with enable_categorical=True, or pass the column as numbers",
                )
            # the codes XGBoost learned are positions in the training categories
            cats = categories.get(i, cats)
            columns.append(Column(name, "category", "X", i, tuple(cats or ())))
        elif kind == "str":
            raise ConversionError(
                f"column {name!r} holds strings; XGBoost takes numbers or pandas categoricals.",
                hint="convert it with df[col].astype('category') before fitting",
            )
        else:
            columns.append(Column(name, kind, "X", i))
    return columns


def _classes(wrapper: Any, task: str, n_targets: int) -> list[Any]:
    if wrapper is not None and hasattr(wrapper, "classes_"):
        return [c.item() if hasattr(c, "item") else c for c in wrapper.classes_]
    return list(range(2 if n_targets == 1 else n_targets))


def _dmatrix(xgb: Any, booster: Any, data: Any) -> Any:
    if is_dataframe(data):
        return xgb.DMatrix(data, enable_categorical=True)
    arr = np.asarray(data, dtype=np.float32)
    return xgb.DMatrix(arr, feature_names=booster.feature_names, feature_types=booster.feature_types)


def _softmax(margin: np.ndarray) -> np.ndarray:
    m = margin.astype(np.float64)
    e = np.exp(m - m.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
