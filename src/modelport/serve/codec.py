"""Open Inference Protocol (KServe V2) tensors: datatypes, request/response objects, and their
JSON and binary encodings.

Both transports decode into the same :class:`InferRequest` and encode the same
:class:`InferResponse`; only the wire format differs. The binary tensor data extension
(``Inference-Header-Content-Length``, ``binary_data_size``, ``binary_data``,
``binary_data_output``) and gRPC's ``raw_input_contents`` / ``raw_output_contents`` share one raw
layout: little-endian elements in row-major order, BOOL as one byte, and BYTES elements each
prefixed by their 4-byte little-endian length.

Every decoder here costs time linear in the bytes received and allocates only in proportion to
them: a shape is checked (non-negative dimensions, at most :data:`MAX_DIMS`, a product that fits
int64) and compared with the number of elements actually received *before* anything of that
shape is allocated. Typed values follow one rule whatever the transport (:func:`check_integers`,
:func:`check_floats`): an integer outside its datatype's range and a finite number too large for a
float datatype are refused, never wrapped or turned into infinity; NaN and infinities given
explicitly (``"NaN"``, ``"inf"`` in JSON, IEEE values in raw data or gRPC contents) are values,
which the model's own input rules then judge.
"""

from __future__ import annotations

import math
import struct
import warnings
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
# a value too large for FP16/FP32 is refused by check_floats: numpy's warning about the cast that
# found it would only repeat that in the server's log
warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning, __name__)
# numpy's historical limit; no model takes a tensor of more dimensions
MAX_DIMS = 32
_INT64_MAX = (1 << 63) - 1
# the longest name an error message repeats (a client may send a megabyte-long name)
_NAME_SHOWN = 80


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
    shape_t = parse_shape(name, list(shape))
    count = math.prod(shape_t)
    if datatype == "BYTES":
        return _bytes_from_raw(name, raw, count).reshape(shape_t)
    dt = _LE.get(datatype)
    if dt is None:
        raise InputError(bad_datatype(name, datatype))
    if len(raw) != count * dt.itemsize:
        raise InputError(
            f"input {show(name)}: {len(raw)} bytes of raw data do not hold shape {list(shape_t)} of {datatype} "
            f"({count * dt.itemsize} bytes expected)."
        )
    arr = np.frombuffer(raw, dtype=dt)
    if datatype == "BOOL":
        arr = arr.astype(np.bool_)  # any non-zero byte is true, as in the wire format
    return arr.reshape(shape_t)


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
    if count * 4 > len(mv):  # checked before allocating: the shape is the client's word, the bytes are real
        raise InputError(
            f"input {show(name)}: {count} BYTES elements need at least {count * 4} bytes (a 4-byte length "
            f"each), but the raw data has {len(mv)}."
        )
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(mv):
            raise InputError(f"input {show(name)}: raw BYTES data ends after {i} of {count} elements.")
        (n,) = struct.unpack_from("<I", mv, pos)
        pos += 4
        if pos + n > len(mv):
            raise InputError(f"input {show(name)}: raw BYTES element {i} claims {n} bytes past the end of the data.")
        out[i] = bytes(mv[pos:pos + n])
        pos += n
    if pos != len(mv):
        raise InputError(f"input {show(name)}: {len(mv) - pos} bytes left over after {count} BYTES elements.")
    return out


# ----------------------------------------------------------------------------- JSON
def tensor_from_json(name: str, datatype: Any, shape: Any, data: Any) -> np.ndarray:
    """Decode the ``data`` of one JSON tensor (flat or nested) to an array of ``shape``
    (a JSON shape, or a tuple that :func:`parse_shape` returned)."""
    shape_t = shape if type(shape) is tuple else parse_shape(name, shape)
    if not isinstance(datatype, str) or datatype not in V2_TO_NUMPY:
        raise InputError(bad_datatype(name, datatype))
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
                raise InputError(f"input {show(name)}: BYTES elements must be strings; got {type(v).__name__}.")
        return out.reshape(shape_t)
    try:
        if datatype == "BOOL":
            arr = _bools(data)
        elif datatype in _FLOATS:
            arr = check_floats(name, datatype, data)
        else:
            arr = _json_integers(name, datatype, data)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(
            f"input {show(name)}: data does not hold {datatype} values ({_first_line(exc)}).",
            hint="send numbers for numeric tensors (null is not a number: use NaN only where the model allows it)",
        ) from None
    if arr.size != count:
        raise InputError(_count_mismatch(name, arr.size, shape_t))
    return arr.reshape(shape_t)


def parse_shape(name: str, shape: Any) -> tuple[int, ...]:
    """A V2 shape: at most MAX_DIMS non-negative integers whose product fits int64."""
    if type(shape) is list and len(shape) <= MAX_DIMS:
        size = 1
        for d in shape:
            if type(d) is not int or d < 0:  # bool is not a dimension
                break
            size *= d or 1
        else:
            if size <= _INT64_MAX:
                return tuple(shape)
            raise InputError(
                f"input {show(name)}: shape {shape!r} describes more elements than any tensor can hold "
                f"(the product of the dimensions must fit in int64)."
            )
    if type(shape) is list and len(shape) > MAX_DIMS:
        raise InputError(f"input {show(name)}: shape has {len(shape)} dimensions; at most {MAX_DIMS} are accepted.")
    raise InputError(f"input {show(name)}: shape must be a list of non-negative integers; got {_short(shape)}.")


def element_count(name: str, shape: Any) -> int:
    """The number of elements a (validated) shape holds."""
    return math.prod(parse_shape(name, shape))


_FLOATS = frozenset({"FP16", "FP32", "FP64"})
_FLOAT_MAX = {dt: float(np.finfo(V2_TO_NUMPY[dt]).max) for dt in ("FP16", "FP32")}
_INT_RANGES = {dt: (int(np.iinfo(V2_TO_NUMPY[dt]).min), int(np.iinfo(V2_TO_NUMPY[dt]).max))
               for dt in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")}


def check_integers(name: str, datatype: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` (any integer dtype wide enough to hold what was sent) as ``datatype``, refusing values
    outside its range: the one range rule for JSON data and gRPC typed contents."""
    lo, hi = _INT_RANGES[datatype]
    if arr.size:
        low, high = int(arr.min()), int(arr.max())
        if low < lo or high > hi:
            raise _out_of_range(name, datatype, low if low < lo else high)
    return arr.astype(V2_TO_NUMPY[datatype], copy=False)


def check_floats(name: str, datatype: str, data: Any) -> np.ndarray:
    """``data`` (JSON numbers, ``"NaN"``/``"inf"`` strings, null for missing) as a float array,
    refusing finite numbers too large for the datatype (they would become infinity)."""
    dt = V2_TO_NUMPY[datatype]
    if datatype == "FP64":  # JSON cannot hold a finite number beyond FP64
        return np.asarray(data, dtype=dt)
    # the hot path of every FP32 request: a short flat list of JSON numbers (finite, as JSON's are)
    # is checked against the datatype's range in Python, cheaper than any numpy call on it
    if type(data) is list and len(data) <= 64:
        try:
            fits = -_FLOAT_MAX[datatype] <= min(data) and max(data) <= _FLOAT_MAX[datatype]
        except (TypeError, ValueError):  # nested lists, strings ("NaN"), nulls, []: numpy decides below
            fits = False
        if fits:
            return np.asarray(data, dtype=dt)
    try:  # no errstate on this path either: it costs as much as the cast
        arr = np.asarray(data, dtype=dt)
    except RuntimeWarning:  # numpy's overflow warning, where a filter turns warnings into errors
        pass
    else:
        if np.isfinite(arr).all():
            return arr
    with np.errstate(over="ignore"):
        arr = np.asarray(data, dtype=dt)
    wide = np.asarray(data, dtype=np.float64)
    overflow = np.isinf(arr) & np.isfinite(wide)
    if overflow.any():
        finfo = np.finfo(dt)
        raise InputError(
            f"input {show(name)}: {datatype} holds finite numbers up to ±{float(finfo.max):g}; "
            f"got {float(wide[overflow][0]):g}.",
            hint="send the values as FP64, or scale them",
        )
    return arr


def _json_integers(name: str, datatype: str, data: list[Any]) -> np.ndarray:
    arr = np.asarray(data)  # JSON integers arrive as int64 / uint64; anything else is judged below
    kind = arr.dtype.kind
    if kind in "iu":
        return check_integers(name, datatype, arr)
    lo, hi = _INT_RANGES[datatype]
    if kind in "fO":
        flat = _flatten(data)
        if flat and all(type(v) is int for v in flat):  # integers numpy only holds as floats (2**64 - 1 with 0)
            low, high = min(flat), max(flat)
            if low < lo or high > hi:
                raise _out_of_range(name, datatype, low if low < lo else high)
            return np.array(flat, dtype=V2_TO_NUMPY[datatype])
    if kind == "f":
        if arr.size and not (np.isfinite(arr).all() and (arr == np.trunc(arr)).all()):
            raise InputError(
                f"input {show(name)}: {datatype} elements must be whole numbers; got fractional, NaN or infinite values.",
                hint="send FP32/FP64 for fractional values",
            )
        # compared as floats, exactly: the bounds lo and hi + 1 are powers of two (or small)
        if arr.size and (arr.min() < float(lo) or arr.max() >= float(hi + 1)):
            raise _out_of_range(name, datatype, float(arr.min() if arr.min() < float(lo) else arr.max()))
        return arr.astype(V2_TO_NUMPY[datatype])
    what = {"b": "true/false", "U": "strings", "S": "strings"}.get(kind, "nulls, strings or nested values")
    raise InputError(
        f"input {show(name)}: {datatype} elements must be integers; the data holds {what}.",
        hint="integer tensors cannot hold missing values: send FP64 with NaN where the model allows it",
    )


def _out_of_range(name: str, datatype: str, bad: Any) -> InputError:
    lo, hi = _INT_RANGES[datatype]
    shown = f"{bad:g}" if isinstance(bad, float) else str(bad)
    return InputError(
        f"input {show(name)}: {datatype} holds integers from {lo} to {hi}; got {shown}.",
        hint="send the values in a wider datatype (INT64, or FP64 for fractions), or check them",
    )


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


def _count_mismatch(name: str, got: int, shape: tuple[int, ...]) -> str:
    return f"input {show(name)}: shape {list(shape)} needs {math.prod(shape)} elements but data holds {got}."


def bad_datatype(name: str, datatype: Any) -> str:
    """The message for a datatype the protocol does not define."""
    return f"input {show(name)}: unknown datatype {_short(datatype)}; expected one of {', '.join(V2_TO_NUMPY)}."


def show(name: Any) -> str:
    """A client-given name as an error message repeats it: quoted, and cut if it is very long."""
    text = name if isinstance(name, str) else str(name)
    if len(text) > _NAME_SHOWN:
        return repr(text[:_NAME_SHOWN]) + f"... ({len(text)} characters)"
    return repr(text)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _NAME_SHOWN else text[:_NAME_SHOWN] + f"... ({len(text)} characters)"


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
            raise InputError(f"{where}: parameter {show(k)} must be a string, number or boolean; got {type(v).__name__}.")
    return dict(value)
