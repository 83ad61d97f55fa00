"""Linear classifiers without ``predict_proba`` (LinearSVC, SGDClassifier with hinge-type losses,
Perceptron, RidgeClassifier, PassiveAggressiveClassifier) -> ONNX in double precision.

skl2onnx emits ``LinearClassifier`` (ai.onnx.ml), which computes in float32 and refuses a
double input for these models. The decision function ``X @ coef_.T + intercept_`` is a MatMul
and an Add; we build it in double so that labels and decision values match scikit-learn to
rounding. Outputs: ``label``; ``probabilities``, the one-hot matrix of the predicted class
(these models have no probabilities: a hard classifier puts all mass on its answer); and
``decision_function``, shaped as scikit-learn's (N,) for two classes and (N, n_classes) otherwise.
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


def supports(model: Any) -> bool:
    from sklearn.base import is_classifier
    from sklearn.linear_model._base import LinearClassifierMixin

    return is_classifier(model) and isinstance(model, LinearClassifierMixin) and not hasattr(model, "predict_proba")


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
    b.rename(one_hot_from_index(b, index, len(classes)), "probabilities")
    b.rename(decision, "decision_function")
    outputs = [
        value_info("label", label_tensor_type(classes), [None]),
        value_info("probabilities", TensorProto.DOUBLE, [None, len(classes)]),
        value_info("decision_function", TensorProto.DOUBLE, decision_shape),
    ]
    return make_model(b, [value_info(INPUT, TensorProto.DOUBLE, [None, n_features])], outputs, "linear"), OUTPUTS
