"""scikit-learn estimators and pipelines -> ONNX, through skl2onnx (with our own fixes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport._deps import require
from modelport.bundle.signature import Column
from modelport.convert._graph import flatten_output, keep_outputs, output_rank, rename_outputs
from modelport.convert._sample import column_kinds
from modelport.convert.base import Converted, Converter
from modelport.errors import UnsupportedModelError


class SklearnConverter(Converter):
    name = "sklearn"
    framework = "scikit-learn"
    modules = ("sklearn", "imblearn")

    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted:
        sklearn = require("sklearn", purpose="converting scikit-learn models")
        skl2onnx = require("skl2onnx", purpose="converting scikit-learn models")
        from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
        from sklearn.base import is_classifier, is_regressor
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(model)
        except NotFittedError as exc:
            raise UnsupportedModelError(
                f"the {type(model).__name__} is not fitted; call fit() before packing it."
            ) from exc
        kinds = column_kinds(sample)
        numeric = all(k in ("float64", "float32", "int64", "bool") for _, k, _ in kinds)
        if numeric:
            initial_types = [("X", FloatTensorType([None, len(kinds)]))]
            columns = tuple(Column(n, k, "X", i) for i, (n, k, _) in enumerate(kinds))
        else:
            initial_types = []
            cols = []
            for n, k, cats in kinds:
                if k == "str":
                    t: Any = StringTensorType([None, 1])
                elif k in ("int64", "bool"):
                    t = Int64TensorType([None, 1])
                elif k == "category":
                    raise UnsupportedModelError(
                        f"column {n!r} has pandas 'category' dtype, which scikit-learn pipelines treat as strings; "
                        "cast it to str (df[col].astype(str)) before fitting and packing."
                    )
                else:
                    t = FloatTensorType([None, 1])
                initial_types.append((n, t))
                cols.append(Column(n, k, n, None, cats))
            columns = tuple(cols)
        if is_classifier(model):
            task = "classification"
        elif is_regressor(model):
            task = "regression"
        else:
            task = "transform"
        conv_options = {id(model): {"zipmap": False}} if task == "classification" else None
        onx = skl2onnx.convert_sklearn(model, initial_types=initial_types, options=conv_options)
        outs = [o.name for o in onx.graph.output]
        classes = None
        if task == "classification":
            rename_outputs(onx, {outs[0]: "label", outs[1]: "probabilities"})
            keep_outputs(onx, ["label", "probabilities"])
            classes = [_py(c) for c in model.classes_]
        elif task == "regression":
            rename_outputs(onx, {outs[0]: "prediction"})
            keep_outputs(onx, ["prediction"])
            if output_rank(onx, "prediction") == 2 and _n_targets(model, sample) == 1:
                flatten_output(onx, "prediction")
        return Converted(
            onnx_model=onx,
            task=task,
            columns=columns,
            classes=classes,
            source={
                "framework": "scikit-learn",
                "framework_version": sklearn.__version__,
                "estimator": _estimator_name(model),
                "converter": "skl2onnx",
                "converter_version": skl2onnx.__version__,
            },
        )

    def reference(self, model: Any, data: Any) -> dict[str, np.ndarray]:
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(model):
            return {"label": np.asarray(model.predict(data)), "probabilities": np.asarray(model.predict_proba(data))}
        if is_regressor(model):
            pred = np.asarray(model.predict(data))
            return {"prediction": pred.ravel() if pred.ndim == 2 and pred.shape[1] == 1 else pred}
        return {}


def _n_targets(model: Any, sample: Any) -> int:
    from sklearn.pipeline import Pipeline

    est = model.steps[-1][1] if isinstance(model, Pipeline) else model
    coef = getattr(est, "coef_", None)
    if coef is not None and np.ndim(coef) == 2 and coef.shape[0] > 1:
        return int(coef.shape[0])
    n_out = getattr(est, "n_outputs_", 1)
    return int(n_out)


def _estimator_name(model: Any) -> str:
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return "Pipeline(" + ", ".join(type(s).__name__ for _, s in model.steps if s not in (None, "passthrough")) + ")"
    return type(model).__name__


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


