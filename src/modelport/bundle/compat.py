"""Whether two bundles can stand in for each other: they take the same requests and give the
same kind of answer.

One rule, used wherever bundles are put side by side: the arms and shadows of one routed model
name (``serve/routing.py``) and the members of an ensemble (``modelport.ensemble``). Two bundles
are compatible when their task, class labels (in order), graph inputs and outputs (name, element
type, shape) and tabular columns (name, type, where each lands, categories) are the same.
Descriptive fields (name, version, metrics), how missing values and unknown categories are
treated, and the graphs themselves may differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle
    from modelport.bundle.signature import Column, TensorSpec


def difference(a: Bundle, b: Bundle) -> str | None:
    """The first way ``b`` differs from ``a`` in what it takes or gives, in words, or None.

    The text reads "<what>: <a's> here, <b's> there", e.g. ``input 'X': shape [N, 4] here, [N, 5]
    there``; callers put the two bundles' names around it.
    """
    if a.task != b.task:
        return f"task: {a.task!r} here, {b.task!r} there"
    if a.task == "classification" and list(a.classes or []) != list(b.classes or []):
        return f"classes: {_brief(a.classes)} here, {_brief(b.classes)} there"
    for kind, ta, tb in (("input", a.signature.inputs, b.signature.inputs),
                         ("output", a.signature.outputs, b.signature.outputs)):
        text = _tensors(kind, ta, tb)
        if text:
            return text
    ca, cb = a.signature.columns, b.signature.columns
    if (ca is None) != (cb is None):
        return "columns: " + ("named columns here, plain tensors there" if ca is not None else
                              "plain tensors here, named columns there")
    if ca is not None and cb is not None:
        return _columns(ca, cb)
    return None


def _tensors(kind: str, ta: Sequence[TensorSpec], tb: Sequence[TensorSpec]) -> str | None:
    na, nb = [t.name for t in ta], [t.name for t in tb]
    if na != nb:
        return f"{kind}s: {_brief(na)} here, {_brief(nb)} there"
    for x, y in zip(ta, tb):
        if x.dtype != y.dtype:
            return f"{kind} {x.name!r}: element type {x.dtype} here, {y.dtype} there"
        if tuple(x.shape) != tuple(y.shape):
            return f"{kind} {x.name!r}: shape {_shape(x.shape)} here, {_shape(y.shape)} there"
    return None


def _columns(ca: Sequence[Column], cb: Sequence[Column]) -> str | None:
    na, nb = [c.name for c in ca], [c.name for c in cb]
    if na != nb:
        missing = [n for n in na if n not in nb]
        extra = [n for n in nb if n not in na]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"{_brief(missing)} only here")
            if extra:
                parts.append(f"{_brief(extra)} only there")
            return "columns: " + ", ".join(parts)
        return f"column order: {_brief(na)} here, {_brief(nb)} there"
    for x, y in zip(ca, cb):
        if x.dtype != y.dtype:
            return f"column {x.name!r}: type {x.dtype} here, {y.dtype} there"
        if (x.input, x.index) != (y.input, y.index):
            return f"column {x.name!r}: fed to {_slot(x)} here, {_slot(y)} there"
        if (x.categories is None) != (y.categories is None) or (
            x.categories is not None and y.categories is not None and list(x.categories) != list(y.categories)
        ):
            return f"column {x.name!r}: categories {_brief(x.categories)} here, {_brief(y.categories)} there"
    return None


def _slot(c: Column) -> str:
    return f"input {c.input!r}" if c.index is None else f"slot {c.index} of input {c.input!r}"


def _shape(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def _brief(value: Any, limit: int = 120) -> str:
    text = repr(list(value)) if isinstance(value, (list, tuple)) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
