"""Strict-JSON conversion for reports: numpy values become Python ones, NaN/inf become null or strings."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        # strict JSON has no NaN/Infinity; keep the information as text
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def dumps(x: Any) -> str:
    """``x`` as indented, strict JSON (parsable by any JSON reader), safe to print: characters a terminal
    would obey are written as ``\\uXXXX`` escapes (the same JSON value)."""
    from modelport.inspect._text import clean_json

    return clean_json(json.dumps(jsonable(x), indent=2, allow_nan=False, ensure_ascii=False))
