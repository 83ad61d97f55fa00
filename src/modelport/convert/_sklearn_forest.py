"""DecisionTree*, ExtraTree*, RandomForest* and ExtraTrees* -> ONNX, built from the fitted
``tree_`` arrays with numpy.

skl2onnx walks every node in Python (about 25 s for a 100-tree forest of 250k nodes on a busy
two-core machine); reading ``tree_.feature`` / ``threshold`` / ``children_*`` / ``value`` as
whole arrays takes a fraction of a second. The graph is one ``TreeEnsembleRegressor``
(ai.onnx.ml 3) over a float32 input, as scikit-learn casts inputs to float32:

* thresholds are the largest float32 <= scikit-learn's float64 threshold, so ``x <= t`` decides
  every float32 ``x`` exactly as scikit-learn does;
* missing values follow ``tree_.missing_go_to_left`` (scikit-learn >= 1.4);
* classifiers: each leaf holds its class fractions, averaged over trees (``predict_proba`` of a
  forest is the mean of its trees'); ``label`` is the class with the highest probability, the
  first one on ties, like ``numpy.argmax``. A regressor output averages the leaf values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto

from modelport.convert._sklearn_graph import (
    GraphBuilder,
    label_constant,
    label_tensor_type,
    make_model,
    value_info,
)
from modelport.errors import UnsupportedModelError

INPUT = "features"
SUPPORTED = (
    "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor",
    "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
)


def supports(model: Any) -> bool:
    return type(model).__name__ in SUPPORTED


def build(model: Any, n_features: int) -> tuple[onnx.ModelProto, list[str]]:
    from sklearn.base import is_classifier

    trees = [model.tree_] if hasattr(model, "tree_") else [e.tree_ for e in model.estimators_]
    classifier = is_classifier(model)
    n_outputs = int(model.n_outputs_)
    if classifier and n_outputs != 1:
        raise UnsupportedModelError(
            f"a multi-output {type(model).__name__} ({n_outputs} targets) is not supported; "
            "pack one classifier per target."
        )
    n_targets = len(model.classes_) if classifier else n_outputs
    b = GraphBuilder("forest_")
    attrs = _attributes(trees, classifier, n_targets)
    scores = b.op1(
        "TreeEnsembleRegressor", [INPUT], "scores", domain="ai.onnx.ml",
        n_targets=n_targets, aggregate_function="AVERAGE", post_transform="NONE",
    )
    b.nodes[-1].attribute.extend(attrs)
    inputs = [value_info(INPUT, TensorProto.FLOAT, [None, n_features])]
    if not classifier:
        if n_outputs == 1:
            b.rename(b.op1("Reshape", [scores, b.const([-1], "flat", np.int64)]), "prediction")
            return make_model(b, inputs, [value_info("prediction", TensorProto.FLOAT, [None])], "forest"), ["prediction"]
        b.rename(scores, "prediction")
        return make_model(b, inputs, [value_info("prediction", TensorProto.FLOAT, [None, n_outputs])], "forest"), [
            "prediction"
        ]
    classes = np.asarray(model.classes_)
    index = b.op1("ArgMax", [scores], "argmax", axis=1, keepdims=0)
    b.rename(b.op1("Gather", [b.const(label_constant(classes), "classes"), index]), "label")
    b.rename(scores, "probabilities")
    outputs = [
        value_info("label", label_tensor_type(classes), [None]),
        value_info("probabilities", TensorProto.FLOAT, [None, len(classes)]),
    ]
    return make_model(b, inputs, outputs, "forest"), ["label", "probabilities"]


def round_down_float32(t: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 value (for float32 x: x <= result iff x <= t)."""
    t32 = np.asarray(t, dtype=np.float64).astype(np.float32)
    above = t32.astype(np.float64) > t
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def _attributes(trees: list[Any], classifier: bool, n_targets: int) -> list[AttributeProto]:
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "treeids", "nodeids", "featureids", "leaf", "values", "true", "false", "missing",
        "t_treeids", "t_nodeids", "t_ids", "t_weights")}
    for tid, t in enumerate(trees):
        n = int(t.node_count)
        leaf = t.children_left == -1
        ids = np.arange(n, dtype=np.int64)
        cols["treeids"].append(np.full(n, tid, dtype=np.int64))
        cols["nodeids"].append(ids)
        cols["featureids"].append(np.where(leaf, 0, t.feature).astype(np.int64))
        cols["leaf"].append(leaf)
        cols["values"].append(np.where(leaf, np.float32(0), round_down_float32(t.threshold)))
        cols["true"].append(np.where(leaf, 0, t.children_left).astype(np.int64))
        cols["false"].append(np.where(leaf, 0, t.children_right).astype(np.int64))
        missing = getattr(t, "missing_go_to_left", None)
        cols["missing"].append(np.where(leaf, 0, missing if missing is not None else 0).astype(np.int64))
        leaf_ids = ids[leaf]
        value = np.asarray(t.value, dtype=np.float64)[leaf]  # (n_leaves, n_outputs, n_classes)
        if classifier:
            v = value[:, 0, :]
            total = v.sum(axis=1, keepdims=True)
            weights = v / np.where(total == 0.0, 1.0, total)
        else:
            weights = value[:, :, 0]
        rows, targets = np.nonzero(weights)  # zero weights need no entry
        cols["t_treeids"].append(np.full(rows.size, tid, dtype=np.int64))
        cols["t_nodeids"].append(leaf_ids[rows])
        cols["t_ids"].append(targets.astype(np.int64))
        cols["t_weights"].append(weights[rows, targets].astype(np.float32))
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    modes = np.where(cat["leaf"], b"LEAF", b"BRANCH_LEQ")
    return [
        _ints("nodes_treeids", cat["treeids"]),
        _ints("nodes_nodeids", cat["nodeids"]),
        _ints("nodes_featureids", cat["featureids"]),
        _strings("nodes_modes", modes),
        _floats("nodes_values", cat["values"]),
        _ints("nodes_truenodeids", cat["true"]),
        _ints("nodes_falsenodeids", cat["false"]),
        _ints("nodes_missing_value_tracks_true", cat["missing"]),
        _ints("target_treeids", cat["t_treeids"]),
        _ints("target_nodeids", cat["t_nodeids"]),
        _ints("target_ids", cat["t_ids"]),
        _floats("target_weights", cat["t_weights"]),
    ]


# AttributeProto filled directly: helper.make_attribute inspects every element in Python


def _ints(name: str, values: np.ndarray) -> AttributeProto:
    attr = AttributeProto(name=name, type=AttributeProto.INTS)
    attr.ints.extend(values.astype(np.int64).tolist())
    return attr


def _floats(name: str, values: np.ndarray) -> AttributeProto:
    attr = AttributeProto(name=name, type=AttributeProto.FLOATS)
    attr.floats.extend(values.astype(np.float32).tolist())
    return attr


def _strings(name: str, values: np.ndarray) -> AttributeProto:
    attr = AttributeProto(name=name, type=AttributeProto.STRINGS)
    attr.strings.extend(values.tolist())
    return attr

