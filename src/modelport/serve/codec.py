"""Open Inference Protocol (KServe V2) tensors: datatypes, request/response objects, and their
JSON and binary encodings.

Both transports decode into the same :class:`InferRequest` and encode the same
:class:`InferResponse`; only the wire format differs. The binary tensor data extension
(``Inference-Header-Content-Length``, ``binary_data_size``, ``binary_data``,
``binary_data_output``) and gRPC's ``raw_input_contents`` / ``raw_output_contents`` share one raw
layout: little-endian elements in row-major order, BOOL as one byte, and BYTES elements each
prefixed by their 4-byte little-endian length.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import InputError

# V2 datatype -> numpy dtype (BYTES is an object array of str or bytes)
V2_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8), "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
# signature dtype name (bundle.signature.TENSOR_DTYPES) -> V2 datatype
SIGNATURE_TO_V2: dict[str, str] = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "str": "BYTES",
}
# logical column dtype -> the V2 datatype a client sends for it in the per-column form
COLUMN_TO_V2: dict[str, str] = {
    "float64": "FP64", "float32": "FP32", "int64": "INT64", "int32": "INT32", "bool": "BOOL",
    "str": "BYTES", "category": "BYTES",
}
_LE = {dt: np.dtype(t).newbyteorder("<") for dt, t in V2_TO_NUMPY.items() if dt != "BYTES"}


def v2_datatype(arr: np.ndarray) -> str:
    """The V2 datatype of a numpy array (object and unicode arrays are BYTES)."""
    if arr.dtype.kind in "OUS":
        return "BYTES"
    for name, dt in V2_TO_NUMPY.items():
        if dt == arr.dtype:
            return name
    raise InputError(f"numpy dtype {arr.dtype} has no Open Inference Protocol datatype.")


# ----------------------------------------------------------------------------- request/response
@dataclass
class InferInput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def binary(self) -> bool | None:
        v = self.parameters.get("binary_data")
        return None if v is None else bool(v)


@dataclass
class InferRequest:
    model: str
    version: str | None
    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferOutput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[InferOutput]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- raw (binary) layout
def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview) -> np.ndarray:
    """Decode one tensor from its raw bytes (binary extension / raw_input_contents)."""
    count = _count(name, shape)
    if datatype == "BYTES":
        return _bytes_from_raw(name, raw, count).reshape(shape)
    dt = _LE.get(datatype)
    if dt is None:
        raise InputError(_bad_datatype(name, datatype))
    if len(raw) != count * dt.itemsize:
        raise InputError(
            f"input {name!r}: {len(raw)} bytes of raw data do not hold shape {list(shape)} of {datatype} "
            f"({count * dt.itemsize} bytes expected)."
        )
    arr = np.frombuffer(raw, dtype=dt)
    if datatype == "BOOL":
        arr = arr.astype(np.bool_)  # any non-zero byte is true, as in the wire format
    return arr.reshape(shape)


def to_raw(arr: np.ndarray, datatype: str) -> bytes:
    """Encode one tensor as raw bytes."""
    if datatype == "BYTES":
        parts = []
        for v in arr.ravel().tolist():
            b = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(struct.pack("<I", len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=_LE[datatype]).tobytes()


def _bytes_from_raw(name: str, raw: bytes | memoryview, count: int) -> np.ndarray:
    mv = memoryview(raw)
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(mv):
            raise InputError(f"input {name!r}: raw BYTES data ends after {i} of {count} elements.")
        (n,) = struct.unpack_from("<I", mv, pos)
        pos += 4
        if pos + n > len(mv):
            raise InputError(f"input {name!r}: raw BYTES element {i} claims {n} bytes past the end of the data.")
        out[i] = bytes(mv[pos:pos + n])
        pos += n
    if pos != len(mv):
        raise InputError(f"input {name!r}: {len(mv) - pos} bytes left over after {count} BYTES elements.")
    return out


# ----------------------------------------------------------------------------- JSON
def tensor_from_json(name: str, datatype: Any, shape: Any, data: Any) -> np.ndarray:
    """Decode the ``data`` of one JSON tensor (flat or nested) to an array of ``shape``."""
    shape_t = parse_shape(name, shape)
    if not isinstance(datatype, str) or datatype not in V2_TO_NUMPY:
        raise InputError(_bad_datatype(name, datatype))
    if not isinstance(data, list):
        data = [data]
    count = math.prod(shape_t)
    if datatype == "BYTES":
        flat = _flatten(data)
        if len(flat) != count:
            raise InputError(_count_mismatch(name, len(flat), shape_t))
        out = np.empty(count, dtype=object)
        for i, v in enumerate(flat):
            if isinstance(v, str):
                out[i] = v
            elif isinstance(v, (bytes, bool, int, float)) or v is None:
                # numbers given for a BYTES tensor: keep them as text, the column check decides
                out[i] = v if v is None else str(v)
            else:
                raise InputError(f"input {name!r}: BYTES elements must be strings; got {type(v).__name__}.")
        return out.reshape(shape_t)
    try:
        arr = np.asarray(data, dtype=V2_TO_NUMPY[datatype]) if datatype != "BOOL" else _bools(data)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(
            f"input {name!r}: data does not hold {datatype} values ({_first_line(exc)}).",
            hint="send numbers for numeric tensors (null is not a number: use NaN only where the model allows it)",
        ) from None
    if arr.size != count:
        raise InputError(_count_mismatch(name, arr.size, shape_t))
    return arr.reshape(shape_t)


def parse_shape(name: str, shape: Any) -> tuple[int, ...]:
    if type(shape) is list:
        for d in shape:
            if type(d) is not int or d < 0:  # bool is not a dimension
                break
        else:
            return tuple(shape)
    raise InputError(f"input {name!r}: shape must be a list of non-negative integers; got {shape!r}.")


def tensor_to_json_data(arr: np.ndarray, datatype: str) -> Any:
    """The flat ``data`` list of a tensor: a numpy array orjson can write, or a list for BYTES/FP16."""
    flat = arr.ravel()
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat.tolist()]
    if datatype == "FP16":
        return flat.astype(np.float32)
    if not flat.flags.c_contiguous:
        flat = np.ascontiguousarray(flat)
    return flat


def _bools(data: list[Any]) -> np.ndarray:
    arr = np.asarray(data)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all():
        return arr.astype(np.bool_)
    raise ValueError("BOOL elements must be true/false")


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _count(name: str, shape: Sequence[int]) -> int:
    return math.prod(parse_shape(name, list(shape)))


def _count_mismatch(name: str, got: int, shape: tuple[int, ...]) -> str:
    return f"input {name!r}: shape {list(shape)} needs {math.prod(shape)} elements but data holds {got}."


def _bad_datatype(name: str, datatype: Any) -> str:
    return f"input {name!r}: unknown datatype {datatype!r}; expected one of {', '.join(V2_TO_NUMPY)}."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parameters(value: Any, where: str) -> dict[str, Any]:
    """Validate a V2 ``parameters`` object: string keys to string/number/bool values."""
    if not value and (value is None or isinstance(value, Mapping)):
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: parameters must be an object; got {type(value).__name__}.")
    for k, v in value.items():
        if not isinstance(v, (str, int, float, bool)) or v is None:
            raise InputError(f"{where}: parameter {k!r} must be a string, number or boolean; got {type(v).__name__}.")
    return dict(value)
