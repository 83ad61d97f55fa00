"""Reading a user's sample data: its kind (DataFrame or array) and its columns."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.bundle.signature import default_column_names
from modelport.errors import InputError


def is_dataframe(data: Any) -> bool:
    return type(data).__module__.startswith("pandas") and hasattr(data, "columns") and hasattr(data, "iloc")


def column_kinds(sample: Any) -> list[tuple[str, str, tuple[Any, ...] | None]]:
    """(name, logical dtype, categories) for each column of a DataFrame or 2-D array."""
    if is_dataframe(sample):
        out: list[tuple[str, str, tuple[Any, ...] | None]] = []
        for name in sample.columns:
            s = sample[name]
            kind = s.dtype.kind if hasattr(s.dtype, "kind") else "O"
            if str(s.dtype) == "category":
                cats = tuple(_py(c) for c in s.cat.categories.tolist())
                out.append((str(name), "category", cats))
            elif kind == "b":
                out.append((str(name), "bool", None))
            elif kind in "iu":
                out.append((str(name), "int64", None))
            elif kind == "f":
                out.append((str(name), "float64" if s.dtype.itemsize >= 8 else "float32", None))
            else:
                out.append((str(name), "str", None))
        return out
    arr = np.asarray(sample)
    if arr.ndim != 2:
        raise InputError(f"the sample must be a DataFrame or a 2-D array; got an array of shape {arr.shape}.")
    if arr.dtype.kind not in "biuf":
        raise InputError(
            f"a sample array must be numeric; got dtype {arr.dtype}.",
            hint="pass a pandas DataFrame to keep string columns and their names",
        )
    kind = "float32" if arr.dtype == np.float32 else "float64"
    return [(n, kind, None) for n in default_column_names(arr.shape[1])]


def n_rows(sample: Any) -> int:
    return int(sample.shape[0]) if hasattr(sample, "shape") else len(sample)


def head(sample: Any, n: int) -> Any:
    if is_dataframe(sample):
        return sample.iloc[:n]
    return np.asarray(sample)[:n]


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def to_columns(sample: Any) -> dict[str, np.ndarray]:
    """The sample as column name -> 1-D numpy array (object arrays for strings, raw values for categories)."""
    if is_dataframe(sample):
        out: dict[str, np.ndarray] = {}
        for name in sample.columns:
            s = sample[name]
            if str(s.dtype) == "category" or s.dtype.kind not in "biuf":
                out[str(name)] = s.to_numpy(dtype=object, na_value=None)
            else:
                out[str(name)] = s.to_numpy()
        return out
    arr = np.asarray(sample)
    return {n: arr[:, i] for i, n in enumerate(default_column_names(arr.shape[1]))}


def like(sample: Any, columns: dict[str, np.ndarray]) -> Any:
    """Columns rebuilt in the form (DataFrame with the same dtypes, or array) of ``sample``."""
    if is_dataframe(sample):
        import pandas as pd

        data = {}
        for name in sample.columns:
            s = sample[name]
            values = columns[str(name)]
            if str(s.dtype) == "category":
                # a value outside the categories is missing in a Categorical; say so explicitly, since
                # pandas >= 3 warns (and will raise) when it has to do that itself
                known = set(s.cat.categories)
                data[name] = pd.Categorical([v if _known(v, known) else None for v in values],
                                            categories=s.cat.categories)
            elif s.dtype.kind in "biuf":
                data[name] = np.asarray(values, dtype=s.dtype) if s.dtype.kind != "b" else np.asarray(values)
            else:
                data[name] = pd.Series(list(values), dtype=s.dtype if s.dtype != object else object)
        return pd.DataFrame(data, columns=sample.columns)
    arr = np.asarray(sample)
    names = default_column_names(arr.shape[1])
    return np.column_stack([np.asarray(columns[n], dtype=arr.dtype) for n in names]) if names else arr[:0]


def _known(value: Any, known: set[Any]) -> bool:
    try:
        return value in known
    except TypeError:  # unhashable
        return False


def concat_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = list(parts[0])
    out = {}
    for k in keys:
        arrays = [np.asarray(p[k]) for p in parts]
        if any(a.dtype == object for a in arrays):
            out[k] = np.concatenate([a.astype(object) for a in arrays])
        else:
            out[k] = np.concatenate(arrays)
    return out
