"""LightGBM models (LGBMClassifier, LGBMRegressor, LGBMRanker, raw ``lightgbm.Booster``) -> ONNX.

Written from ``Booster.dump_model()``, LightGBM's full description of its trees, so that the graph
routes values the way LightGBM's own predictor does:

* numerical splits compare ``x <= threshold`` in double; for float32 input that is ``x <= t32`` with
  ``t32`` the largest float32 not above the threshold;
* missing values per split: ``NaN`` type sends NaN the default way; ``None`` type reads NaN as 0;
  ``Zero`` type sends NaN and |x| <= 1e-35 the default way (a derived input column maps them to NaN);
* the predictor reads |x| <= 1e-35 as 0 (it drops such values like sparse zeros); split values
  near zero are moved so that the band goes where 0 goes;
* categorical splits are set membership on the integer category code (C-style truncation of the
  value, for category columns too: a fractional code in a numpy array is read as LightGBM reads
  it); negative codes and NaN go right. pandas categoricals are coded as positions in the training
  categories (``pandas_categorical``), exactly what the runtime feeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport._deps import require
from modelport.bundle.signature import Column, default_column_names
from modelport.convert._sample import column_kinds, is_dataframe, with_categories
from modelport.convert._trees import (
    ZERO_BAND,
    Ensemble,
    Leaf,
    Node,
    Split,
    booster_converted,
    bottom_up,
    build_model,
    f32_down,
    member_chain,
)
from modelport.convert.base import Converted, Converter
from modelport.errors import ConversionError, UnsupportedModelError

_IDENTITY = {"regression", "regression_l1", "huber", "fair", "quantile", "mape", "lambdarank", "rank_xendcg", "custom"}
_EXP = {"poisson", "gamma", "tweedie"}
_LOGISTIC = {"binary", "cross_entropy"}


class LightGBMConverter(Converter):
    name = "lightgbm"
    framework = "LightGBM"
    modules = ("lightgbm",)

    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted:
        lgb = require("lightgbm", purpose="converting LightGBM models")
        booster, wrapper = _booster(model)
        dump = booster.dump_model()
        objective, params = _objective(dump["objective"])
        n_class = int(dump["num_class"])
        per_iteration = int(dump["num_tree_per_iteration"])
        task, link, n_targets = _task(objective, n_class, wrapper)
        n_features = int(dump["max_feature_idx"]) + 1
        columns = _columns(sample, dump, booster, n_features)
        names = [c.name for c in sorted(columns, key=lambda c: c.index or 0)]
        categorical_columns = {int(c.index or 0) for c in columns if c.dtype == "category"}

        ensemble = Ensemble(trees=[], n_targets=n_targets, base=[0.0] * n_targets, n_features=n_features)
        # LightGBM scales the margin of binary / multiclassova objectives by `sigmoid` before the sigmoid
        margin_scale = float(params.get("sigmoid", 1.0)) if link in ("logistic", "logistic_ova") else 1.0
        if dump.get("average_output"):
            n_iterations = max(1, len(dump["tree_info"]) // max(per_iteration, 1))
            margin_scale /= n_iterations
        for tree in dump["tree_info"]:
            target = int(tree["tree_index"]) % per_iteration if n_targets > 1 else 0
            ensemble.trees.append(_tree(tree["tree_structure"], target, margin_scale, ensemble, categorical_columns))
        classes = _classes(wrapper, n_targets) if task == "classification" else None
        onx = build_model(ensemble, task=task, link=link, classes=classes,
                          doc=f"LightGBM {lgb.__version__} {dump['objective']}")
        return booster_converted(
            onx, ensemble=ensemble, task=task, columns=columns, classes=classes, names=names,
            framework="lightgbm", framework_version=lgb.__version__,
            estimator=type(model).__name__ if wrapper is not None else f"Booster({objective})",
        )

    def prepare_sample(self, model: Any, sample: Any) -> Any:
        """A sample read from a file (text columns) gets the categories the model stores
        (``pandas_categorical``, one list per categorical feature in column order)."""
        if not is_dataframe(sample):
            return sample
        booster, _ = _booster(model)
        pandas_categorical = booster.pandas_categorical or []
        if not pandas_categorical:
            return sample
        infos = booster.dump_model(num_iteration=1).get("feature_infos") or {}
        names = list(booster.feature_name())
        categorical = [n for n in names if (infos.get(n) or {}).get("values")]
        if len(categorical) != len(pandas_categorical) or len(names) != len(sample.columns):
            return sample  # _columns() explains what does not fit
        # LightGBM reads a DataFrame's columns by position
        by_position = dict(zip(names, [str(c) for c in sample.columns], strict=True))
        cats = {by_position[n]: tuple(c.item() if hasattr(c, "item") else c for c in pc)
                for n, pc in zip(categorical, pandas_categorical, strict=True)}
        return with_categories(sample, cats, source="the LightGBM model")

    def reference(self, model: Any, data: Any) -> dict[str, np.ndarray]:
        booster, wrapper = _booster(model)
        if wrapper is not None:
            from sklearn.base import is_classifier

            if is_classifier(wrapper):
                return {"label": np.asarray(wrapper.predict(data)), "probabilities": np.asarray(wrapper.predict_proba(data))}
            return {"prediction": np.asarray(wrapper.predict(data))}
        dump_objective = booster.dump_model(num_iteration=1).get("objective", "")
        objective, _ = _objective(dump_objective)
        n_class = booster.num_model_per_iteration()
        task, _, _ = _task(objective, n_class, None)
        pred = np.asarray(booster.predict(data))
        if task == "regression":
            return {"prediction": pred}
        proba = np.column_stack([1 - pred, pred]) if pred.ndim == 1 else pred
        return {"label": np.argmax(proba, axis=1).astype(np.int64), "probabilities": proba}


def _booster(model: Any) -> tuple[Any, Any]:
    if type(model).__name__ == "Booster":
        return model, None
    try:
        return model.booster_, model
    except Exception as exc:  # LGBMNotFittedError (a sklearn NotFittedError) or AttributeError
        raise UnsupportedModelError(
            f"the {type(model).__name__} is not fitted; call fit() before packing it."
        ) from exc


def _objective(text: str) -> tuple[str, dict[str, str]]:
    """'binary sigmoid:1' -> ('binary', {'sigmoid': '1'})."""
    parts = str(text).split()
    if not parts:
        return "custom", {}
    params = dict(p.split(":", 1) for p in parts[1:] if ":" in p)
    return parts[0], params


def _task(objective: str, n_class: int, wrapper: Any) -> tuple[str, str, int]:
    """(task, link, number of margins)."""
    is_classifier = False
    if wrapper is not None:
        from sklearn.base import is_classifier as _is_classifier

        is_classifier = _is_classifier(wrapper)
    if objective in _LOGISTIC:
        # a raw booster is a classifier for 'binary'; cross_entropy fits probabilities, a regression
        classifier = is_classifier if wrapper is not None else objective == "binary"
        return ("classification" if classifier else "regression"), "logistic", 1
    if objective == "multiclass":
        return "classification", "softmax", n_class
    if objective == "multiclassova":
        return "classification", "logistic_ova", n_class
    if is_classifier:
        raise UnsupportedModelError(
            f"LightGBM objective {objective!r} on a classifier gives no probabilities modelport can reproduce.",
            hint="use objective 'binary', 'multiclass' or 'multiclassova'",
        )
    if objective in _IDENTITY:
        return "regression", "identity", n_class
    if objective in _EXP:
        return "regression", "exp", n_class
    raise UnsupportedModelError(
        f"LightGBM objective {objective!r} is not supported.",
        hint="supported: " + ", ".join(sorted(_IDENTITY | _EXP | _LOGISTIC | {"multiclass", "multiclassova"})),
    )


def _tree(root: dict[str, Any], target: int, scale: float, ensemble: Ensemble, categorical_columns: set[int]) -> Node:
    def children(node: dict[str, Any]) -> list[dict[str, Any]]:
        if "leaf_value" in node:
            return []
        if "left_child" not in node:
            raise UnsupportedModelError(f"unexpected LightGBM tree node without leaf value or children: {sorted(node)}.")
        return [node["left_child"], node["right_child"]]

    def make(node: dict[str, Any], built: list[Node]) -> Node:
        if not built:
            if "leaf_coeff" in node or "leaf_features" in node:
                raise UnsupportedModelError(
                    "LightGBM linear trees (linear_tree=True) are not supported; modelport converts constant leaves."
                )
            return Leaf(((target, float(node["leaf_value"]) * scale),))
        left, right = built
        feature = int(node["split_feature"])
        default_left = bool(node.get("default_left", False))
        missing_type = str(node.get("missing_type", "None"))
        decision = node["decision_type"]
        if decision == "==":
            values = [int(v) for v in str(node["threshold"]).split("||") if v != ""]
            # codes are cut toward zero as LightGBM's int cast does: the codes of category values are
            # whole already, and a fractional code in a numpy array / the tensor form is read as LightGBM reads it
            slot = ensemble.derived_index("trunc", feature)
            return member_chain(slot, values, inside=left, outside=right, missing_inside=False)
        if decision != "<=":
            raise UnsupportedModelError(f"unexpected LightGBM decision type {decision!r}.")
        threshold = float(node["threshold"])
        value = _effective_threshold(threshold)
        if missing_type == "NaN":
            return Split(feature, "BRANCH_LEQ", value, left, right, missing_true=default_left)
        if missing_type == "Zero":
            slot = ensemble.derived_index("zero_missing", feature)
            return Split(slot, "BRANCH_LEQ", value, left, right, missing_true=default_left)
        # missing type None: LightGBM reads NaN as 0.0
        return Split(feature, "BRANCH_LEQ", value, left, right, missing_true=threshold >= 0.0)

    return bottom_up(root, children, make)


def _effective_threshold(threshold: float) -> float:
    """The float32 ``t`` with ``x <= t`` iff LightGBM sends float32 ``x`` left at ``threshold``.

    LightGBM compares in double and first reads |x| <= 1e-35 as 0, so values in that band go
    where 0 goes; the band only matters for thresholds near zero.
    """
    if threshold >= 0:  # 0 and the whole band go left
        return f32_down(max(threshold, ZERO_BAND))
    if threshold >= -ZERO_BAND:  # 0 goes right, so the band does too: left only below -1e-35
        return float(np.nextafter(np.float32(-ZERO_BAND), np.float32(-np.inf)))
    return f32_down(threshold)


def _columns(sample: Any, dump: dict[str, Any], booster: Any, n_features: int) -> list[Column]:
    """Columns in model feature order; pandas categoricals take LightGBM's training categories."""
    if not is_dataframe(sample):
        width = np.asarray(sample).shape[1] if np.ndim(sample) == 2 else None
        if width != n_features:
            raise ConversionError(f"the sample has {width} columns but the LightGBM model was trained on {n_features}.")
        kinds = column_kinds(sample)
        return [Column(n, k, "X", i) for i, (n, k, _) in enumerate(kinds)] if kinds else [
            Column(n, "float64", "X", i) for i, n in enumerate(default_column_names(n_features))
        ]
    kinds = column_kinds(sample)
    if len(kinds) != n_features:
        raise ConversionError(
            f"the sample has {len(kinds)} columns ({', '.join(n for n, _, _ in kinds)}) "
            f"but the LightGBM model was trained on {n_features}."
        )
    # LightGBM reads DataFrame columns by position and codes its categorical columns, in order,
    # against the categories it saw in training
    pandas_categorical = dump.get("pandas_categorical") or booster.pandas_categorical or []
    n_cat = sum(1 for _, k, _ in kinds if k == "category")
    if n_cat != len(pandas_categorical):
        raise ConversionError(
            f"the sample has {n_cat} categorical column(s) but the LightGBM model was trained with "
            f"{len(pandas_categorical)}.",
            hint="pass a sample with the same columns and dtypes as the training data",
        )
    columns = []
    k = 0
    for i, (name, kind, _) in enumerate(kinds):
        if kind == "category":
            cats = tuple(c.item() if hasattr(c, "item") else c for c in pandas_categorical[k])
            k += 1
            columns.append(Column(name, "category", "X", i, cats))
        elif kind == "str":
            raise ConversionError(
                f"column {name!r} holds strings; LightGBM takes numbers or pandas categoricals.",
                hint="convert it with df[col].astype('category') before fitting",
            )
        else:
            columns.append(Column(name, kind, "X", i))
    return columns


def _classes(wrapper: Any, n_targets: int) -> list[Any]:
    if wrapper is not None and hasattr(wrapper, "classes_"):
        return [c.item() if hasattr(c, "item") else c for c in wrapper.classes_]
    return list(range(2 if n_targets == 1 else n_targets))
