"""What every converter is and returns.

A converter turns one framework's fitted model into an ONNX graph whose outputs follow the
modelport naming (``label`` + ``probabilities`` for classifiers, ``prediction`` for regressors),
and knows how to ask the original model for the same outputs (:meth:`Converter.reference`), so
that parity can be measured. Subclasses implement ``_convert`` and ``reference``; the public
``convert`` checks what they return.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import onnx

from modelport.bundle.manifest import TASKS
from modelport.bundle.signature import Column
from modelport.errors import ConversionError


@dataclass
class Converted:
    onnx_model: onnx.ModelProto
    task: str
    columns: tuple[Column, ...] | None
    classes: list[Any] | None
    source: dict[str, Any]
    #: split thresholds in input space, column name -> values, for edge-case probes
    thresholds: dict[str, list[float]] = field(default_factory=dict)
    #: whether the model takes NaN in a column, where the converter knows; None lets pack() probe
    nullable: dict[str, bool] | None = None
    notes: list[str] = field(default_factory=list)


class Converter(ABC):
    #: short registry key ("sklearn", "xgboost", ...)
    name: ClassVar[str]
    #: the framework as users name it ("scikit-learn")
    framework: ClassVar[str]
    #: module prefixes of the model types this converter accepts (checked over the MRO)
    modules: ClassVar[tuple[str, ...]]

    def matches(self, model: Any) -> bool:
        for cls in type(model).__mro__:
            mod = cls.__module__ or ""
            if any(mod == m or mod.startswith(m + ".") for m in self.modules):
                return True
        return False

    def convert(self, model: Any, sample: Any, options: Mapping[str, Any]) -> Converted:
        """Convert and check the result; errors from the framework become ConversionError."""
        try:
            result = self._convert(model, sample, dict(options))
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(
                f"{self.framework}: converting {type(model).__name__} failed: {type(exc).__name__}: {exc}"
            ) from exc
        self._check(result, model)
        return result

    @abstractmethod
    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted: ...

    @abstractmethod
    def reference(self, model: Any, data: Any) -> dict[str, np.ndarray]:
        """The original model's outputs on ``data``, named and shaped like the bundle's."""

    def tensor_inputs(self, data: Any, signature: Any) -> dict[str, np.ndarray]:
        """For non-tabular models: ``data`` (as the user passes it to the original) as graph feeds."""
        names = [t.name for t in signature.inputs]
        if isinstance(data, Mapping):
            return {k: np.asarray(v) for k, v in data.items()}
        if isinstance(data, (tuple, list)) and len(names) > 1:
            return {n: np.asarray(v) for n, v in zip(names, data)}
        return {names[0]: np.asarray(data)}

    def _check(self, result: Converted, model: Any) -> None:
        where = f"{self.name} converter on {type(model).__name__}"
        if not isinstance(result.onnx_model, onnx.ModelProto):
            raise ConversionError(f"{where}: returned no ONNX model.")
        if result.task not in TASKS:
            raise ConversionError(f"{where}: unknown task {result.task!r}.")
        outputs = [o.name for o in result.onnx_model.graph.output]
        if result.task == "classification" and (outputs[:2] != ["label", "probabilities"] or not result.classes):
            raise ConversionError(
                f"{where}: classifier outputs must be ['label', 'probabilities'] with classes; got {outputs}."
            )
        if result.task == "regression" and "prediction" not in outputs:
            raise ConversionError(f"{where}: a regressor must output 'prediction'; got {outputs}.")
        for key in ("framework", "framework_version", "estimator", "converter", "converter_version"):
            if key not in result.source:
                raise ConversionError(f"{where}: source metadata lacks {key!r}.")
