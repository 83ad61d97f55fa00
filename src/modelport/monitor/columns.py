"""What a logged row holds, in the bundle's own terms: graph feeds <-> named input columns, and
results -> named output columns.

The log records what the model saw, decoded back into the columns a user knows (the inverse of
:class:`modelport.runtime.coerce.FeedBuilder`'s assembly): numbers as numbers, strings as text,
category codes as the category values. Replaying a logged row through the FeedBuilder gives the
very feeds the model saw, so the same version answers the same (:mod:`modelport.monitor.replay`).

Where the feeds lost a value, the request's own data fills it in: a value outside a category
column's categories reaches the graph as a missing value (or as the encoder's unknown marker), so
the logged row takes the value the client sent, as text. Without the request's data such a value
is logged as :data:`UNKNOWN` (which any version again treats as a value outside its categories).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.bundle.signature import Signature
from modelport.runtime.coerce import UNKNOWN_TEXT, numpy_dtype
from modelport.runtime.session import output_columns

#: a logged value that was outside its column's categories, when the request's value is not known
UNKNOWN = UNKNOWN_TEXT
IN = "in."
OUT = "out."


@dataclass(frozen=True)
class LoggedColumn:
    """One logged input column: its name, the Arrow kind it is stored as (``float``, ``int``,
    ``bool``, ``str`` or ``list``), and where it comes from in the feeds."""

    name: str
    kind: str
    input: str
    index: int | None
    categories: tuple[Any, ...] | None = None
    text: bool = False  # a str / category column: values are text in the log
    width: int = 1  # list columns: values per row


def plan(signature: Signature) -> list[LoggedColumn]:
    """The logged input columns of a signature, in signature order."""
    out: list[LoggedColumn] = []
    if signature.columns is not None:
        for c in signature.columns:
            spec = signature.input(c.input)
            if c.dtype == "category":
                out.append(LoggedColumn(c.name, "str", c.input, c.index, tuple(c.categories or ()), text=True))
            elif c.dtype == "str" or spec.dtype == "str":
                out.append(LoggedColumn(c.name, "str", c.input, c.index, None, text=True))
            elif spec.dtype == "bool":
                out.append(LoggedColumn(c.name, "bool", c.input, c.index))
            elif spec.dtype.startswith(("int", "uint")):
                out.append(LoggedColumn(c.name, "int", c.input, c.index))
            else:
                out.append(LoggedColumn(c.name, "float", c.input, c.index))
        return out
    for t in signature.inputs:
        width = 1
        for d in t.shape[1:]:
            width *= d if d is not None else 0
        kind = {"str": "str", "bool": "bool"}.get(t.dtype, "int" if t.dtype.startswith(("int", "uint")) else "float")
        if len(t.shape) > 1 and width != 1:
            out.append(LoggedColumn(t.name, "list", t.name, None, width=width, text=t.dtype == "str"))
        else:
            out.append(LoggedColumn(t.name, kind, t.name, None, text=t.dtype == "str"))
    return out


def from_feeds(signature: Signature, feeds: Mapping[str, np.ndarray], *, raw: Any = None,
               columns: Sequence[LoggedColumn] | None = None) -> dict[str, np.ndarray]:
    """Input columns (name -> 1-D array; ``list`` columns 2-D) from the graph feeds of N rows.

    ``raw``: the request's own data, aligned with the rows (a list of records, a mapping of column
    name -> values, or None), used only where the feeds lost a category value."""
    cols = plan(signature) if columns is None else columns
    out: dict[str, np.ndarray] = {}
    for c in cols:
        feed = feeds[c.input]
        n = feed.shape[0] if feed.ndim else 1
        if c.kind == "list":
            out[c.name] = feed.reshape(n, -1)
            continue
        v = feed[:, c.index] if c.index is not None else feed.reshape(n)
        if c.categories is not None:
            v = _decode_codes(v, c.categories)
        elif c.kind == "str":
            v = v.astype(object, copy=False)
        elif c.kind == "float":
            v = v.astype(np.float64, copy=False)
        elif c.kind == "int":
            v = v.astype(np.int64, copy=False)
        elif c.kind == "bool" and v.dtype != np.bool_:
            v = v.astype(np.bool_)
        if c.text and raw is not None:
            v = _restore(v, c.name, raw)
        out[c.name] = v
    return out


def _decode_codes(codes: np.ndarray, categories: tuple[Any, ...]) -> np.ndarray:
    """Category codes (float, NaN missing) -> the categories as text (None missing, UNKNOWN outside)."""
    codes = codes.astype(np.float64, copy=False)
    k = len(categories)
    texts = np.array([str(c) for c in categories] + [UNKNOWN, None], dtype=object)
    nan = np.isnan(codes)
    with np.errstate(invalid="ignore"):
        ok = ~nan & (codes >= 0) & (codes < k) & (np.mod(codes, 1) == 0)
    idx = np.where(ok, np.where(ok, codes, 0).astype(np.int64), k)  # k: unknown
    idx[nan] = k + 1
    return texts[idx]


def _restore(v: np.ndarray, name: str, raw: Any) -> np.ndarray:
    """Where a text column is missing or unknown in the feeds, the request's own value (as text)."""
    lost = np.fromiter((x is None or x is UNKNOWN or x == UNKNOWN for x in v.tolist()), dtype=bool, count=v.shape[0])
    if not lost.any():
        return v
    v = v.copy()
    for i in np.flatnonzero(lost).tolist():
        got = _raw_value(raw, name, i)
        if got is None or (isinstance(got, float) and got != got):
            continue  # really missing
        if isinstance(got, bytes):
            got = got.decode("utf-8", "replace")
        v[i] = got if isinstance(got, str) else str(got)
    return v


def _raw_value(raw: Any, name: str, i: int) -> Any:
    try:
        if isinstance(raw, list):
            rec = raw[i]
            return rec.get(name) if isinstance(rec, Mapping) else None
        if isinstance(raw, Mapping):
            col = raw.get(name)
            if col is None:
                return None
            item = col[i]
            if isinstance(item, np.ndarray):  # a [N, 1] column
                item = item.reshape(-1)[0] if item.size else None
            return item.item() if isinstance(item, np.generic) else item
    except (IndexError, KeyError, TypeError):
        return None
    return None


def to_feeds_data(signature: Signature, columns: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Logged input columns -> data for :meth:`FeedBuilder.check` (and its ``form``)."""
    if signature.columns is not None:
        return {c.name: columns[c.name] for c in signature.columns}, "columns"
    data: dict[str, Any] = {}
    for t in signature.inputs:
        arr = np.asarray(columns[t.name])
        if arr.dtype == object and arr.ndim == 1 and arr.size and isinstance(arr[0], (list, np.ndarray)):
            arr = np.stack([np.asarray(x) for x in arr])
        shape = [arr.shape[0], *[d if d is not None else -1 for d in t.shape[1:]]]
        data[t.name] = arr.astype(numpy_dtype(t.dtype), copy=False).reshape(shape) if t.dtype != "str" else arr
    return data, "tensors"


def outputs(result: Mapping[str, np.ndarray], classes: list[Any] | None) -> dict[str, np.ndarray]:
    """Named 1-D output columns (``label``, ``proba_<class>``, ``prediction``, ...), text decoded."""
    cols = output_columns(dict(result), classes)
    out: dict[str, np.ndarray] = {}
    for k, v in cols.items():
        if v.dtype.kind == "S":
            v = np.array([b.decode("utf-8", "replace") for b in v.tolist()], dtype=object)
        elif v.dtype.kind == "O":
            v = np.array([b.decode("utf-8", "replace") if isinstance(b, bytes) else b for b in v.tolist()], dtype=object)
        elif v.dtype.kind == "U":
            v = v.astype(object)
        out[k] = v
    return out
