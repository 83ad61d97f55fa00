"""SVR and NuSVR -> ONNX in double precision, written out with standard operators.

ONNX Runtime's ``SVMRegressor`` (ai.onnx.ml) has a float32 kernel only, so skl2onnx's graph
computes kernels in float32 while libsvm computes them in float64. Here the prediction
``sum_i dual_coef_i * K(sv_i, x) + intercept`` is a MatMul over the support vectors in float64,
with libsvm's kernels: linear ``x.sv``, rbf ``exp(-gamma (|x|^2 + |sv|^2 - 2 x.sv))``,
poly ``(gamma x.sv + coef0)^degree`` and sigmoid ``tanh(gamma x.sv + coef0)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from modelport.convert._sklearn_graph import GraphBuilder, make_model, value_info

INPUT = "features"


def supports(model: Any) -> bool:
    return type(model).__name__ in ("SVR", "NuSVR") and model.kernel in ("linear", "rbf", "poly", "sigmoid")


def build(model: Any, n_features: int) -> tuple[onnx.ModelProto, list[str]]:
    b = GraphBuilder("svr_")
    sv = np.asarray(model.support_vectors_, dtype=np.float64)
    dual = np.asarray(model.dual_coef_, dtype=np.float64).reshape(-1, 1)
    gamma = float(model._gamma)
    dot = b.op1("MatMul", [INPUT, b.const(sv.T, "sv_t")], "dot")
    if model.kernel == "linear":
        k = dot
    elif model.kernel == "rbf":
        x_sq = b.op1("ReduceSum", [b.op1("Mul", [INPUT, INPUT]), b.const([1], "axis", np.int64)], keepdims=1)
        sv_sq = b.const((sv * sv).sum(axis=1).reshape(1, -1), "sv_sq")
        dist = b.op1("Sub", [b.op1("Add", [x_sq, sv_sq]), b.op1("Mul", [dot, b.const(np.array(2.0), "two")])])
        k = b.op1("Exp", [b.op1("Mul", [dist, b.const(np.array(-gamma), "neg_gamma")])])
    else:
        inner = b.op1("Add", [b.op1("Mul", [dot, b.const(np.array(gamma), "gamma")]),
                              b.const(np.array(float(model.coef0)), "coef0")])
        if model.kernel == "poly":
            k = b.op1("Pow", [inner, b.const(np.array(float(model.degree)), "degree")])
        else:
            k = b.op1("Tanh", [inner])
    pred = b.op1("Add", [b.op1("MatMul", [k, b.const(dual, "dual")]),
                         b.const(np.asarray(model.intercept_, dtype=np.float64).reshape(1, 1), "intercept")])
    b.rename(b.op1("Reshape", [pred, b.const([-1], "flat", np.int64)]), "prediction")
    inputs = [value_info(INPUT, TensorProto.DOUBLE, [None, n_features])]
    return make_model(b, inputs, [value_info("prediction", TensorProto.DOUBLE, [None])], "svr"), ["prediction"]
