"""Turn what a user hands to ``predict`` into the feeds an ONNX graph expects.

Accepted: a pandas DataFrame, a pyarrow Table, a dict of columns (or of graph inputs), a list
of records (dicts), or a numpy array. Tabular bundles take their columns in any order; missing
or unexpected columns, wrong dtypes and missing values where the model cannot take them are
refused with an InputError that names the column and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelport.bundle.reference import is_missing, missing_mask
from modelport.bundle.signature import Column, Signature, TensorSpec
from modelport.errors import InputError

_NP = {
    "float32": np.float32, "float64": np.float64, "float16": np.float16,
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "bool": np.bool_, "str": np.object_,
}


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    return np.dtype(_NP[dtype])


def to_columns(data: Any) -> dict[str, Any] | None:
    """A dict of column name -> 1-D values for table-like inputs, or None for plain arrays."""
    if isinstance(data, Mapping):
        return dict(data)
    cls = type(data)
    mod = cls.__module__
    if mod.startswith("pandas") and hasattr(data, "columns"):
        return {str(c): data[c] for c in data.columns}
    if mod.startswith("pandas") and cls.__name__ == "Series":
        return {str(k): [v] for k, v in data.items()}
    if mod.startswith("pyarrow") and hasattr(data, "column_names"):
        return {name: data.column(name).to_numpy(zero_copy_only=False) for name in data.column_names}
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)) and data and isinstance(data[0], Mapping):
        names: list[str] = []
        seen: set[str] = set()
        for rec in data:
            if not isinstance(rec, Mapping):
                raise InputError("records must all be objects (dicts) mapping column names to values.")
            for k in rec:
                if k not in seen:
                    seen.add(k)
                    names.append(k)
        return {n: [rec.get(n) for rec in data] for n in names}
    return None


class FeedBuilder:
    """Feeds for one signature, with the checks planned once (the one-row path stays cheap)."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self._matrix: tuple[str, np.dtype[Any], np.ndarray | None] | None = None
        cols = signature.columns
        self._n_cols = len(cols) if cols is not None else 0
        if cols is not None and len(signature.inputs) == 1:
            spec = signature.inputs[0]
            in_order = all(c.index == i and c.input == spec.name for i, c in enumerate(cols))
            numeric = all(c.dtype not in ("str", "category") for c in cols) and spec.dtype != "str"
            width_ok = len(spec.shape) == 2 and spec.shape[1] in (None, len(cols))
            if in_order and numeric and width_ok:
                strict: np.ndarray | None = np.array([i for i, c in enumerate(cols) if not c.nullable], dtype=np.intp)
                if strict is not None and strict.size == len(cols):
                    strict = _ALL
                elif strict is not None and strict.size == 0:
                    strict = None
                self._matrix = (spec.name, numpy_dtype(spec.dtype), strict)

    def __call__(self, data: Any) -> dict[str, np.ndarray]:
        plan = self._matrix
        if plan is not None and type(data) is np.ndarray and data.dtype.kind in "biuf":
            name, dtype, strict = plan
            arr = data.reshape(1, -1) if data.ndim == 1 else data
            if arr.ndim == 2 and arr.shape[1] == self._n_cols:
                # one sum finds any NaN cheaply (NaN propagates); only then look at which columns
                if strict is not None and arr.dtype.kind == "f" and np.isnan(np.add.reduce(arr, axis=None)):
                    sub = arr if strict is _ALL else arr[:, strict]
                    if np.isnan(sub).any():
                        return feeds(self.signature, data)  # the slow path names the column and rows
                return {name: arr.astype(dtype, copy=False)}
        return feeds(self.signature, data)


_ALL = np.array([], dtype=np.intp)


def feeds(signature: Signature, data: Any) -> dict[str, np.ndarray]:
    """Build the ONNX feeds for ``data`` under ``signature``."""
    if isinstance(data, (list, tuple)) and not data and signature.columns is not None:
        # an empty list of records is an empty batch (it names no columns to check)
        return {
            t.name: np.empty((0, *(d or 0 for d in t.shape[1:])), dtype=numpy_dtype(t.dtype))
            for t in signature.inputs
        }
    cols = to_columns(data)
    if cols is not None:
        if signature.columns is None:
            return _feeds_from_tensors(signature, cols)
        tensor_only = {t.name for t in signature.inputs} - set(signature.column_names)
        if cols and set(cols) <= tensor_only:  # keyed by graph input (e.g. the matrix "X")
            return _feeds_from_tensors(signature, cols)
        return _feeds_from_columns(signature, cols)
    arr = np.asarray(data) if not isinstance(data, np.ndarray) else data
    if len(signature.inputs) != 1:
        if signature.columns is not None and arr.ndim == 2 and arr.shape[1] == len(signature.columns):
            return _feeds_from_columns(signature, {c.name: arr[:, i] for i, c in enumerate(signature.columns)})
        raise InputError(
            f"this model has {len(signature.inputs)} inputs ({', '.join(t.name for t in signature.inputs)}); "
            "pass a DataFrame or a dict keyed by column or input name, not a single array."
        )
    spec = signature.inputs[0]
    if signature.columns is not None:
        n_cols = len(signature.columns)
        if arr.ndim == 1 and n_cols > 1 and arr.shape[0] == n_cols:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != n_cols:
            raise InputError(
                f"expected a 2-D array with {n_cols} columns ({_list(signature.column_names)}); got shape {arr.shape}."
            )
        if any(c.dtype in ("str", "category") or not c.nullable for c in signature.columns):
            return _feeds_from_columns(signature, {c.name: arr[:, i] for i, c in enumerate(signature.columns)})
    return {spec.name: _cast_tensor(spec, arr)}


def _feeds_from_tensors(signature: Signature, cols: Mapping[str, Any]) -> dict[str, np.ndarray]:
    names = [t.name for t in signature.inputs]
    missing = [n for n in names if n not in cols]
    unexpected = [k for k in cols if k not in names]
    if missing or unexpected:
        raise InputError(_mismatch("input", missing, unexpected, names))
    return {t.name: _cast_tensor(t, np.asarray(cols[t.name])) for t in signature.inputs}


def _feeds_from_columns(signature: Signature, cols: Mapping[str, Any]) -> dict[str, np.ndarray]:
    assert signature.columns is not None
    expected = signature.column_names
    missing = [n for n in expected if n not in cols]
    unexpected = [k for k in cols if k not in signature._by_name]
    if missing or unexpected:
        raise InputError(_mismatch("column", missing, unexpected, expected))
    n_rows: int | None = None
    values: dict[str, np.ndarray] = {}
    for c in signature.columns:
        v = _column_values(c, cols[c.name], signature.input(c.input))
        if n_rows is None:
            n_rows = v.shape[0]
        elif v.shape[0] != n_rows:
            raise InputError(f"column {c.name!r} has {v.shape[0]} rows but the first column has {n_rows}.")
        values[c.name] = v
    out: dict[str, np.ndarray] = {}
    by_input: dict[str, list[Column]] = {}
    for c in signature.columns:
        by_input.setdefault(c.input, []).append(c)
    for spec in signature.inputs:
        members = by_input.get(spec.name, [])
        np_dtype = numpy_dtype(spec.dtype)
        if len(members) == 1 and members[0].index is None:
            out[spec.name] = values[members[0].name].astype(np_dtype, copy=False).reshape(-1, 1)
            continue
        width = spec.shape[-1] if spec.shape and spec.shape[-1] is not None else len(members)
        mat = np.empty((n_rows or 0, width), dtype=np_dtype)
        for c in members:
            mat[:, c.index] = values[c.name]
        out[spec.name] = mat
    return out


def _column_values(col: Column, raw: Any, spec: TensorSpec) -> np.ndarray:
    if hasattr(raw, "to_numpy") and type(raw).__module__.startswith("pandas"):
        if col.dtype == "category" or col.dtype == "str":
            arr = raw.to_numpy(dtype=object, na_value=None)
        else:
            try:
                arr = raw.to_numpy(dtype=np.float64, na_value=np.nan) if spec.dtype.startswith("float") else raw.to_numpy()
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"column {col.name!r} must be numeric ({col.dtype}); got values of dtype {raw.dtype}."
                ) from exc
    else:
        arr = np.asarray(raw)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InputError(f"column {col.name!r} must be one-dimensional; got shape {arr.shape}.")
    if col.dtype == "category":
        return _encode_category(col, arr)
    if spec.dtype == "str":
        if arr.dtype.kind not in "OUS":
            raise InputError(f"column {col.name!r} must hold strings; got dtype {arr.dtype}.")
        objs = arr.astype(object)
        bad = np.flatnonzero(missing_mask(objs)).tolist()
        if bad:
            raise InputError(
                f"column {col.name!r} has missing values in row(s) {_list(bad)}; this model cannot take missing strings."
            )
        return np.array([str(v) for v in objs], dtype=object)
    if arr.dtype.kind in "OUS":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise InputError(
                f"column {col.name!r} must be numeric ({col.dtype}); got non-numeric values such as {_first_bad(arr)!r}."
            ) from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"column {col.name!r} must be numeric ({col.dtype}); got dtype {arr.dtype}.")
    if arr.dtype.kind == "f" and not col.nullable:
        nan_rows = np.flatnonzero(np.isnan(arr))
        if nan_rows.size:
            raise InputError(
                f"column {col.name!r} has missing values (NaN) in row(s) {_list(nan_rows.tolist())}, "
                "and this model cannot take missing values.",
                hint="impute them first, or pack a pipeline that includes an imputer",
            )
    if spec.dtype.startswith("int") and arr.dtype.kind == "f" and (np.isnan(arr).any() or not np.all(np.mod(arr, 1) == 0)):
        raise InputError(f"column {col.name!r} must hold whole numbers; got fractional or missing values.")
    return arr


def _encode_category(col: Column, arr: np.ndarray) -> np.ndarray:
    cats = col.categories or ()
    index = {c: float(i) for i, c in enumerate(cats)}
    # values are matched as the training categories were: strings to strings, numbers to numbers
    out = np.empty(arr.shape[0], dtype=np.float64)
    for i, v in enumerate(arr.tolist()):
        if is_missing(v):
            out[i] = np.nan
        else:
            out[i] = index.get(v, index.get(str(v), np.nan))
    return out


def _cast_tensor(spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
    want = numpy_dtype(spec.dtype)
    if spec.dtype == "str":
        if arr.dtype.kind not in "OUS":
            raise InputError(f"input {spec.name!r} must hold strings; got dtype {arr.dtype}.")
        arr = arr.astype(object)
    elif arr.dtype != want:
        if arr.dtype.kind not in "biuf":
            raise InputError(f"input {spec.name!r} must be numeric ({spec.dtype}); got dtype {arr.dtype}.")
        if want.kind in "iu" and arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
            raise InputError(f"input {spec.name!r} must hold whole numbers ({spec.dtype}); got fractional values.")
        arr = arr.astype(want)
    if len(spec.shape) != arr.ndim:
        if len(spec.shape) == arr.ndim + 1 and spec.shape[0] is None:
            arr = arr.reshape((1, *arr.shape))
        else:
            raise InputError(
                f"input {spec.name!r} must have {len(spec.shape)} dimensions {_shape(spec.shape)}; got shape {arr.shape}."
            )
    for axis, (want_dim, got) in enumerate(zip(spec.shape, arr.shape)):
        if want_dim is not None and want_dim != got:
            raise InputError(
                f"input {spec.name!r} must have shape {_shape(spec.shape)}; got {arr.shape} (axis {axis} differs)."
            )
    return arr


def _mismatch(what: str, missing: list[str], unexpected: list[str], expected: Sequence[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing {what}(s): {_list(missing)}")
    if unexpected:
        parts.append(f"unexpected {what}(s): {_list(unexpected)}")
    return f"{'; '.join(parts)}. The model expects {what}s: {_list(list(expected))}."


def _list(items: Sequence[Any], limit: int = 20) -> str:
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def _shape(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("N" if s is None else str(s) for s in shape) + "]"


def _first_bad(arr: np.ndarray) -> Any:
    for v in arr.tolist():
        try:
            float(v)
        except (TypeError, ValueError):
            return v
    return None
