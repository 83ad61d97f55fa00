"""The JSON request forms TF Serving and MLflow share (``instances`` rows, ``inputs`` columns),
decoded into what the data plane scores: records, or V2 tensors for
:meth:`ServedModel.feeds_from_v2`.

Decoding only reads the wire format: each JSON value becomes a V2 tensor (its shape from the
nesting, its datatype from the model's input or column of that name, else from the JSON values)
through :func:`modelport.serve.codec.tensor_from_json`, with the same bounds as V2 JSON; what a
value may be is then decided by the runtime's rules, as for V2. TF Serving's ``{"b64": "..."}``
holds a binary string.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelport.errors import InputError
from modelport.serve import codec
from modelport.serve.codec import COLUMN_TO_V2, SIGNATURE_TO_V2, InferInput

if TYPE_CHECKING:
    from modelport.serve.model import ServedModel


@dataclass
class Decoded:
    """A request in one of the two forms the data plane scores."""

    records: list[Any] | None = None
    inputs: list[InferInput] | None = None


def instances(model: ServedModel, value: Any, what: str = '"instances"') -> Decoded:
    """TF Serving's row format: one entry per row; an object (input or column name -> value) or,
    for a model with one input, that input's value for the row."""
    if not isinstance(value, list):
        raise InputError(f"{what} must be a list with one entry per row; got {_type(value)}. {model.expected(records=True)}")
    if not value:
        return Decoded(records=[])
    if all(isinstance(v, Mapping) for v in value):
        keys = set(value[0])
        if any(set(v) != keys for v in value):
            bad = next(i for i, v in enumerate(value) if set(v) != keys)
            raise InputError(f"{what}: row {bad} names other fields than row 0 ({_names(value[bad])} vs {_names(value[0])}); "
                             f"every row must name the same inputs. {model.expected(records=True)}")
        if keys == model.input_names and keys != model.column_names:
            return Decoded(inputs=[tensor(model, name, [_unb64(v[name]) for v in value]) for name in value[0]])
        return Decoded(records=[{k: _scalar(v[k]) for k in v} for v in value])
    if any(isinstance(v, Mapping) for v in value):
        raise InputError(f"{what}: rows must all be objects or all be values; row "
                         f"{next(i for i, v in enumerate(value) if isinstance(v, Mapping) != isinstance(value[0], Mapping))} "
                         "is not like row 0.")
    return Decoded(inputs=[tensor(model, _single_input(model, what), _unb64(value))])


def columns(model: ServedModel, value: Any, what: str = '"inputs"') -> Decoded:
    """TF Serving's columnar format: an object of input (or column) name -> its values for every
    row, or for a model with one input, that input's values."""
    if isinstance(value, Mapping):
        if not value:
            raise InputError(f"{what} names no input. {model.expected()}")
        return Decoded(inputs=[tensor(model, str(name), _unb64(v)) for name, v in value.items()])
    return Decoded(inputs=[tensor(model, _single_input(model, what), _unb64(value))])


def tensor(model: ServedModel, name: str, value: Any) -> InferInput:
    """One JSON value as a V2 tensor named ``name``: shape from its nesting, datatype from the
    model's input or column of that name (else from the values)."""
    shape = _shape(name, value)
    datatype = _datatype(model, name, value)
    data = codec.tensor_from_json(name, datatype, shape, value)
    return InferInput(name, datatype, shape, data)


def _shape(name: str, value: Any) -> tuple[int, ...]:
    dims: list[int] = []
    v = value
    while isinstance(v, list):
        if len(dims) >= codec.MAX_DIMS:
            raise InputError(f"input {codec.show(name)}: the value is nested more than {codec.MAX_DIMS} levels deep.")
        dims.append(len(v))
        v = v[0] if v else None
    return codec.parse_shape(name, dims)


def _datatype(model: ServedModel, name: str, value: Any) -> str:
    sig = model.signature
    if name in model.input_names:
        return SIGNATURE_TO_V2[sig.input(name).dtype]
    if name in model.column_names:
        return COLUMN_TO_V2[sig.column(name).dtype]
    v = value
    while isinstance(v, list) and v:
        v = v[0]
    if isinstance(v, bool):
        return "BOOL"
    if isinstance(v, int):
        return "INT64"
    if isinstance(v, float):
        return "FP64"
    return "BYTES"


def _single_input(model: ServedModel, what: str) -> str:
    names = [t.name for t in model.signature.inputs]
    if len(names) != 1:
        raise InputError(
            f"{what} holds plain values, but model {model.name!r} has {len(names)} inputs; give objects that "
            f"name them. {model.expected(records=True)}"
        )
    return names[0]


def _unb64(value: Any) -> Any:
    """Replace TF Serving's ``{"b64": "..."}`` objects by the bytes they encode (bounded by the
    body: each object is visited once)."""
    if isinstance(value, Mapping):
        if set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise InputError("a {\"b64\": ...} value is not valid base64.") from None
        raise InputError(f"a value must be a number, a string, a list or {{\"b64\": \"...\"}}; got an object with "
                         f"keys {_names(value)}.")
    if isinstance(value, list):
        return [_unb64(v) for v in value] if any(isinstance(v, (Mapping, list)) for v in value) else value
    return value


def _scalar(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _unb64(value)
    if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], (list, Mapping)):
        return value[0]  # a [N, 1] input's value for one row
    return value


def _names(value: Mapping[str, Any]) -> str:
    names = [repr(str(k))[:60] for k in list(value)[:10]]
    return "{" + ", ".join(names) + (", ..." if len(value) > 10 else "") + "}"


def _type(value: Any) -> str:
    return type(value).__name__
