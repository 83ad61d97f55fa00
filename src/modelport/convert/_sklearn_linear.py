"""Linear classifiers without ``predict_proba`` (LinearSVC, SGDClassifier with hinge-type losses,
Perceptron, RidgeClassifier, PassiveAggressiveClassifier), and SGDClassifier with the
``log_loss`` / ``modified_huber`` losses -> ONNX in double precision.

skl2onnx emits ``LinearClassifier`` (ai.onnx.ml), which computes in float32 and refuses a
double input for these models. The decision function ``X @ coef_.T + intercept_`` is a MatMul
and an Add; we build it in double so that labels and decision values match scikit-learn to
rounding. Outputs: ``label``; ``probabilities``, the one-hot matrix of the predicted class
(these models have no probabilities: a hard classifier puts all mass on its answer); and
``decision_function``, shaped as scikit-learn's (N,) for two classes and (N, n_classes) otherwise.

SGDClassifier's probabilities (one-vs-rest sigmoid, or the clipped modified-Huber score, each
normalised over classes) often tie between classes; skl2onnx then takes the label from the
probabilities, whereas scikit-learn takes it from the decision function. We do as scikit-learn
does, so labels agree on every row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from modelport.convert._sklearn_graph import (
    GraphBuilder,
    label_constant,
    label_tensor_type,
    make_model,
    one_hot_from_index,
    value_info,
)

INPUT = "features"
OUTPUTS = ["label", "probabilities", "decision_function"]


_SGD_PROBA_LOSSES = ("log_loss", "modified_huber")


def supports(model: Any) -> bool:
    from sklearn.base import is_classifier
    from sklearn.linear_model import SGDClassifier
    from sklearn.linear_model._base import LinearClassifierMixin

    if not (is_classifier(model) and isinstance(model, LinearClassifierMixin)):
        return False
    if not hasattr(model, "predict_proba"):
        return True
    return isinstance(model, SGDClassifier) and model.loss in _SGD_PROBA_LOSSES


def build(model: Any, n_features: int) -> tuple[onnx.ModelProto, list[str]]:
    b = GraphBuilder("lin_")
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64).reshape(1, -1)
    classes = np.asarray(model.classes_)
    scores = b.op1("Add", [b.op1("MatMul", [INPUT, b.const(coef.T, "coef_t")]), b.const(intercept, "intercept")])
    if coef.shape[0] == 1:  # binary: one decision value, positive means classes_[1]
        decision = b.op1("Reshape", [scores, b.const([-1], "flat", np.int64)], "decision")
        positive = b.op1("Greater", [decision, b.const(np.array(0.0), "zero")])
        index = b.op1("Cast", [positive], "index", to=TensorProto.INT64)
        decision_shape: list[int | None] = [None]
    else:
        decision = scores
        index = b.op1("ArgMax", [scores], "index", axis=1, keepdims=0)
        decision_shape = [None, coef.shape[0]]
    b.rename(b.op1("Gather", [b.const(label_constant(classes), "classes"), index]), "label")
    outputs = [
        value_info("label", label_tensor_type(classes), [None]),
        value_info("probabilities", TensorProto.DOUBLE, [None, len(classes)]),
    ]
    if hasattr(model, "predict_proba"):
        b.rename(_sgd_proba(b, model.loss, decision, len(classes)), "probabilities")
        names = OUTPUTS[:2]
    else:
        b.rename(one_hot_from_index(b, index, len(classes)), "probabilities")
        b.rename(decision, "decision_function")
        outputs.append(value_info("decision_function", TensorProto.DOUBLE, decision_shape))
        names = OUTPUTS
    return make_model(b, [value_info(INPUT, TensorProto.DOUBLE, [None, n_features])], outputs, "linear"), names


def _sgd_proba(b: GraphBuilder, loss: str, decision: str, n_classes: int) -> str:
    """SGDClassifier.predict_proba, as scikit-learn computes it, from the decision values."""
    if loss == "log_loss":
        p = b.op1("Sigmoid", [decision], "sigmoid")
    else:  # modified_huber: (clip(d, -1, 1) + 1) / 2
        clipped = b.op1("Clip", [decision, b.const(np.array(-1.0), "m1"), b.const(np.array(1.0), "p1")])
        p = b.op1("Div", [b.op1("Add", [clipped, b.const(np.array(1.0), "one")]), b.const(np.array(2.0), "two")])
    if n_classes == 2:
        col = b.op1("Unsqueeze", [p, b.const([1], "axis1", np.int64)])
        return b.op1("Concat", [b.op1("Sub", [b.const(np.array([[1.0]]), "one2"), col]), col], "proba", axis=1)
    axis = b.const([1], "axis", np.int64)
    norm = b.op1("ReduceSum", [p, axis], "norm", keepdims=1)
    if loss == "log_loss":
        return b.op1("Div", [p, norm], "proba")
    # rows whose scores are all clipped to 0 become uniform, as in scikit-learn
    zero = b.op1("Equal", [norm, b.const(np.array(0.0), "zero2")])
    safe = b.op1("Where", [zero, b.const(np.array(1.0), "one3"), norm])
    proba = b.op1("Div", [p, safe])
    return b.op1("Where", [zero, b.const(np.array(1.0 / n_classes), "uniform"), proba], "proba")
