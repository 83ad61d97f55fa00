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
                # a value outside the training categories stays a value (an extra category at the
                # end, so that the known ones keep their codes): the library then meets it exactly
                # as in a user's fresh DataFrame, and treats it its own way (LightGBM: missing,
                # XGBoost: an error)
                cats = list(s.cat.categories)
                known = set(cats)
                extra = [v for v in dict.fromkeys(_hashable(v) for v in values)
                         if v is not None and not (isinstance(v, float) and v != v) and not _known(v, known)]
                data[name] = pd.Categorical([_hashable(v) for v in values], categories=cats + extra)
            elif s.dtype.kind in "biuf":
                data[name] = np.asarray(values, dtype=s.dtype) if s.dtype.kind != "b" else np.asarray(values)
            else:
                data[name] = pd.Series(list(values), dtype=s.dtype if s.dtype != object else object)
        return pd.DataFrame(data, columns=sample.columns)
    arr = np.asarray(sample)
    names = default_column_names(arr.shape[1])
    return np.column_stack([np.asarray(columns[n], dtype=arr.dtype) for n in names]) if names else arr[:0]


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _known(value: Any, known: set[Any]) -> bool:
    try:
        return value in known
    except TypeError:  # unhashable
        return False


def with_categories(sample: Any, categories: dict[str, tuple[Any, ...]], *, source: str) -> Any:
    """``sample`` with the named columns as pandas categoricals of the model's own ``categories``.

    For samples read from files (a CSV has text, or numbers, where the model was trained on pandas
    categoricals): values are matched by value, text that spells a numeric category is that
    category, and a number read for a text category is matched by its text. A value the model does
    not know is refused (a training-like sample should only hold known ones).
    """
    if not is_dataframe(sample) or not categories:
        return sample
    import pandas as pd

    out = sample.copy()
    for name, cats in categories.items():
        if name not in out.columns or str(out[name].dtype) == "category":
            continue
        numeric = bool(cats) and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in cats)
        lookup: dict[Any, Any] = {c: c for c in cats}
        if not numeric:
            lookup.update({str(c): c for c in cats})
        values: list[Any] = []
        unknown: list[Any] = []
        for v in out[name].tolist():
            if v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip()):
                values.append(None)
                continue
            key: Any = v
            if numeric and isinstance(v, str):
                try:
                    key = float(v)
                except ValueError:
                    key = v
            elif not numeric and isinstance(v, (int, float)) and not isinstance(v, bool):
                key = str(int(v)) if float(v).is_integer() else str(v)
            if key in lookup:
                values.append(lookup[key])
            else:
                values.append(None)
                if len(unknown) < 5 and v not in unknown:
                    unknown.append(v)
        if unknown:
            shown = ", ".join(repr(c) for c in list(cats)[:20]) + (" ..." if len(cats) > 20 else "")
            raise InputError(
                f"the sample's column {name!r} holds values the model was not trained on: "
                f"{', '.join(repr(u) for u in unknown)}; {source} lists its categories as {shown}.",
                hint="pass a sample of the training data (rows the model was fitted on)",
            )
        out[name] = pd.Categorical(values, categories=list(cats))
    return out


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
