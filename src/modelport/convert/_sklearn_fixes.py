"""Repairs to skl2onnx's converter table, installed once before the first conversion.

* ``SimpleImputer`` on a float64 input: skl2onnx emits ai.onnx.ml ``Imputer``, for which ONNX
  Runtime has float32 and int64 kernels only, and it rounds the fill values to float32. We emit
  ``IsNaN`` + ``Where`` with the float64 statistics instead, which is exactly what scikit-learn
  computes. Every other imputer configuration goes to skl2onnx's own converter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from skl2onnx.common._registration import register_converter
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer

    def convert_imputer(scope: Any, operator: Any, container: Any) -> None:
        if not _double_nan_imputer(operator):
            convert_sklearn_imputer(scope, operator, container)
            return
        _convert_double_imputer(scope, operator, container)

    register_converter("SklearnSimpleImputer", convert_imputer, overwrite=True)
    _installed = True


def _double_nan_imputer(operator: Any) -> bool:
    from skl2onnx.common.data_types import DoubleTensorType

    op = operator.raw_operator
    stats = getattr(op, "statistics_", None)
    missing = getattr(op, "missing_values", None)
    return (
        all(isinstance(v.type, DoubleTensorType) for v in operator.inputs)
        and stats is not None
        and np.asarray(stats).dtype.kind == "f"
        and bool(np.all(np.isfinite(stats)))  # all-NaN columns are dropped by sklearn: leave to skl2onnx
        and isinstance(missing, float)
        and np.isnan(missing)
        and not getattr(op, "add_indicator", False)
    )


def _convert_double_imputer(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.operator_converters.common import concatenate_variables

    op = operator.raw_operator
    stats = np.asarray(op.statistics_, dtype=np.float64).reshape(1, -1)
    features = concatenate_variables(scope, operator.inputs, container)
    fill = scope.get_unique_variable_name("impute_fill")
    container.add_initializer(fill, TensorProto.DOUBLE, list(stats.shape), stats.ravel().tolist())
    is_nan = scope.get_unique_variable_name("impute_isnan")
    container.add_node("IsNaN", [features], [is_nan], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node(
        "Where", [is_nan, fill, features], [operator.outputs[0].full_name], name=scope.get_unique_operator_name("Where")
    )
