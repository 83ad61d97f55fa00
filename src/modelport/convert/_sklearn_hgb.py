"""HistGradientBoostingClassifier / Regressor -> ONNX, written here rather than by skl2onnx.

skl2onnx 1.20 fails on these models with scikit-learn >= 1.7 (a TypeError building the
TreeEnsemble attributes from numpy integer node ids), and even where it works it compares
float32 inputs with float32 thresholds, whereas scikit-learn compares float64 inputs with
float64 thresholds. This builder reads ``_predictors`` directly and emits one
``TreeEnsembleRegressor`` (ai.onnx.ml 3) with double thresholds over a double input, so splits
are decided exactly as scikit-learn decides them, including the learned side for missing
values (``missing_go_to_left`` -> ``nodes_missing_value_tracks_true``). The link function
(identity, log, logistic, softmax) is applied in double precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from modelport.convert._sklearn_graph import (
    GraphBuilder,
    label_constant,
    label_tensor_type,
    make_model,
    value_info,
)
from modelport.errors import UnsupportedModelError

INPUT = "features"


def build(model: Any, n_features: int) -> tuple[onnx.ModelProto, list[str]]:
    """The graph of a fitted HistGradientBoosting* model reading a (N, n_features) double input."""
    from sklearn.base import is_classifier

    if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        raise UnsupportedModelError(
            f"{type(model).__name__} uses native categorical splits (categorical_features), which modelport "
            "cannot convert yet.",
            hint="encode categorical columns in the pipeline instead (OneHotEncoder or OrdinalEncoder in a "
            "ColumnTransformer) and set categorical_features=None",
        )
    b = GraphBuilder("hgb_")
    raw_f = b.op1("Cast", [_trees(b, model)], "raw_f", to=TensorProto.DOUBLE)
    link = type(model._loss.link).__name__
    if not is_classifier(model):
        if link == "IdentityLink":
            pred = raw_f
        elif link == "LogLink":
            pred = b.op1("Exp", [raw_f], "exp")
        else:
            raise UnsupportedModelError(f"HistGradientBoostingRegressor with a {link} link is not supported.")
        b.rename(b.op1("Reshape", [pred, b.const([-1], "flat", np.int64)]), "prediction")
        outputs = [value_info("prediction", TensorProto.DOUBLE, [None])]
        return make_model(b, [value_info(INPUT, TensorProto.DOUBLE, [None, n_features])], outputs, "hgb"), [
            "prediction"
        ]
    classes = np.asarray(model.classes_)
    if len(classes) == 2:
        p1 = b.op1("Sigmoid", [raw_f], "p1")
        p0 = b.op1("Sub", [b.const(np.array([[1.0]]), "one"), p1], "p0")
        proba = b.op1("Concat", [p0, p1], "proba", axis=1)
    else:
        proba = b.op1("Softmax", [raw_f], "proba", axis=1)
    index = b.op1("ArgMax", [proba], "argmax", axis=1, keepdims=0)
    label = b.op1("Gather", [b.const(label_constant(classes), "classes"), index], "label")
    b.rename(label, "label")
    b.rename(proba, "probabilities")
    outputs = [
        value_info("label", label_tensor_type(classes), [None]),
        value_info("probabilities", TensorProto.DOUBLE, [None, len(classes)]),
    ]
    return make_model(b, [value_info(INPUT, TensorProto.DOUBLE, [None, n_features])], outputs, "hgb"), [
        "label",
        "probabilities",
    ]


def _trees(b: GraphBuilder, model: Any) -> str:
    """One TreeEnsembleRegressor summing every tree into (N, n_trees_per_iteration) raw scores."""
    predictors = model._predictors
    n_targets = len(predictors[0]) if predictors else model.n_trees_per_iteration_
    a: dict[str, list[Any]] = {k: [] for k in (
        "treeids", "nodeids", "featureids", "modes", "values", "true", "false", "missing",
        "t_treeids", "t_nodeids", "t_ids", "t_weights")}
    tree_id = 0
    for per_iteration in predictors:
        for target, predictor in enumerate(per_iteration):
            nodes = predictor.nodes
            for node_id, node in enumerate(nodes):
                leaf = bool(node["is_leaf"])
                a["treeids"].append(tree_id)
                a["nodeids"].append(node_id)
                a["featureids"].append(0 if leaf else int(node["feature_idx"]))
                a["modes"].append("LEAF" if leaf else "BRANCH_LEQ")
                a["values"].append(0.0 if leaf else float(node["num_threshold"]))
                a["true"].append(0 if leaf else int(node["left"]))
                a["false"].append(0 if leaf else int(node["right"]))
                a["missing"].append(0 if leaf else int(node["missing_go_to_left"]))
                if leaf:
                    a["t_treeids"].append(tree_id)
                    a["t_nodeids"].append(node_id)
                    a["t_ids"].append(target)
                    a["t_weights"].append(float(node["value"]))
            tree_id += 1
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    if not a["treeids"]:  # max_iter=0 or every tree pruned away: only the baseline remains
        raise UnsupportedModelError(f"the {type(model).__name__} has no trees; there is nothing to convert.")
    return b.op1(
        "TreeEnsembleRegressor",
        [INPUT],
        "raw",
        domain="ai.onnx.ml",
        n_targets=n_targets,
        aggregate_function="SUM",
        post_transform="NONE",
        nodes_treeids=a["treeids"],
        nodes_nodeids=a["nodeids"],
        nodes_featureids=a["featureids"],
        nodes_modes=a["modes"],
        nodes_values_as_tensor=numpy_helper.from_array(np.asarray(a["values"], dtype=np.float64)),
        nodes_truenodeids=a["true"],
        nodes_falsenodeids=a["false"],
        nodes_missing_value_tracks_true=a["missing"],
        target_treeids=a["t_treeids"],
        target_nodeids=a["t_nodeids"],
        target_ids=a["t_ids"],
        target_weights_as_tensor=numpy_helper.from_array(np.asarray(a["t_weights"], dtype=np.float64)),
        base_values_as_tensor=numpy_helper.from_array(baseline),
    )
