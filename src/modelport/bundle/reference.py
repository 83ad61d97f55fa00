"""Reference data stored in a bundle: columns <-> pickle-free arrays, and summary statistics.

String columns are stored as fixed-width unicode arrays; where they hold missing values a
boolean ``<name>::missing`` mask is stored beside them. Statistics of the training sample
(quantiles, histograms, category frequencies) are what drift monitoring compares against.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

MASK_SUFFIX = "::missing"


def is_missing(v: Any) -> bool:
    """None or a float NaN: what a missing value looks like in an object column."""
    return v is None or (isinstance(v, float) and v != v)


def missing_mask(arr: np.ndarray) -> np.ndarray:
    """Which entries of a 1-D column are missing (NaN in float columns, None/NaN in object ones)."""
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    if arr.dtype == object:
        return np.fromiter((is_missing(v) for v in arr), dtype=bool, count=arr.size)
    return np.zeros(arr.shape[0], dtype=bool)


def encode_columns(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        arr = np.asarray(values)
        if arr.dtype.kind in "OUS":
            objs = arr.astype(object).reshape(-1)
            mask = np.array([is_missing(v) for v in objs], dtype=bool)
            if all(isinstance(v, (int, float, np.number)) or is_missing(v) for v in objs) and not all(mask):
                out[name] = np.array([np.nan if is_missing(v) else float(v) for v in objs], dtype=np.float64)
                continue
            out[name] = np.array(["" if m else str(v) for v, m in zip(objs, mask)], dtype=str)
            if mask.any():
                out[name + MASK_SUFFIX] = mask
        else:
            out[name] = arr
    return out


def decode_columns(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        if name.endswith(MASK_SUFFIX):
            continue
        mask = arrays.get(name + MASK_SUFFIX)
        if mask is not None and (mask.dtype != bool or mask.shape != arr.shape[:1] or arr.ndim != 1):
            from modelport.errors import IntegrityError

            raise IntegrityError(
                f"reference data: {name + MASK_SUFFIX!r} must be a boolean vector as long as column {name!r} "
                f"({arr.shape[:1]}); got {mask.dtype} of shape {mask.shape}.",
                hint="the bundle was modified after packing; re-pack the model",
            )
        if arr.dtype.kind == "U":
            objs = arr.astype(object)
            if mask is not None:
                objs[mask] = None
            out[name] = objs
        else:
            out[name] = arr
    return out


def statistics(columns: Mapping[str, np.ndarray], *, bins: int = 10, top: int = 50) -> dict[str, Any]:
    """Per-column statistics of a sample, for drift detection and for people."""
    n = None
    stats: dict[str, Any] = {}
    for name, values in columns.items():
        arr = np.asarray(values)
        n = arr.shape[0] if n is None else n
        if arr.ndim > 1:
            arr = arr.reshape(arr.shape[0], -1)
            if arr.shape[1] != 1:
                continue
            arr = arr[:, 0]
        if arr.dtype.kind in "biuf":
            x = arr.astype(np.float64)
            finite = x[np.isfinite(x)]
            entry: dict[str, Any] = {"kind": "numeric", "count": int(x.size), "missing": int(np.isnan(x).sum())}
            if finite.size:
                qs = np.quantile(finite, np.linspace(0, 1, bins + 1))
                edges = np.unique(qs)
                hist = np.histogram(finite, bins=edges)[0] if edges.size > 1 else np.array([finite.size])
                entry.update(
                    mean=float(finite.mean()),
                    std=float(finite.std()),
                    min=float(finite.min()),
                    max=float(finite.max()),
                    quantiles=[float(q) for q in qs],
                    histogram={"edges": [float(e) for e in edges], "counts": [int(c) for c in hist]},
                )
            stats[name] = entry
        else:
            objs = arr.astype(object)
            missing = sum(1 for v in objs if is_missing(v))
            values_, counts = np.unique(np.array([str(v) for v in objs if not is_missing(v)], dtype=str), return_counts=True)
            order = np.argsort(-counts, kind="stable")[:top]
            stats[name] = {
                "kind": "categorical",
                "count": int(objs.size),
                "missing": int(missing),
                "distinct": int(values_.size),
                "frequencies": {str(values_[i]): int(counts[i]) for i in order},
            }
    return {"rows": int(n or 0), "columns": stats}
