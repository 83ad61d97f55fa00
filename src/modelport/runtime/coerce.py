"""The rules for what an input may be, in one place: columns, dtypes, categories, missing values,
whole numbers, booleans, ranges and shapes.

Every way of scoring a bundle comes here: ``bundle.predict`` (a pandas DataFrame, a pyarrow Table,
a dict of columns or of graph inputs, a list of records, a numpy array), the server's V2 tensor
and column forms and its records endpoint (REST and gRPC only decode their wire format to arrays),
batch scoring and ``diff``. They differ only in how they ask:

* :meth:`FeedBuilder.build` (and calling the builder): the feeds for the whole input, or an
  InputError that names the column, the rows and what was expected;
* :meth:`FeedBuilder.check`: the feeds of the rows that can be scored, and for every other row
  why not (batch scoring turns these into rejects); the same rules, vectorised per column, with
  the same words.

What a column may hold
----------------------
* **numbers** (``float*`` / ``int*`` columns): numbers, or text that spells one (CSV files and V2
  BYTES carry numbers as text); empty text, None and NaN are a missing value, refused where the
  column is not nullable. An integer graph input takes whole numbers that fit its type.
* **booleans**: ``True``/``False``, the numbers 0 and 1, or the text ``true``/``false``/``0``/``1``;
  anything else (0.5, 2) is refused.
* **strings**: text (bytes are decoded as UTF-8); a missing string is refused, and so is a number,
  unless the column lists its categories: then a number is simply not one of them, as for the
  library, and so is a missing value where the model's encoder takes it as such (``nullable``).
* **categories**: a value is matched to the column's categories by value: strings to string
  categories (a number never matches one), numbers to numeric categories, and text that spells a
  numeric category is that category (that is how CSV files and V2 BYTES carry it). A value outside
  the categories follows the column's unknown-category policy (below).

The numpy array and the tensor form
-----------------------------------
A numpy array given for a bundle whose columns share one matrix input *is* that input, exactly as
``predict({"X": X})`` and the server's tensor form: each slot follows its column's rules (the
same as above), except that category columns hold **category codes**
(positions in the column's categories, as ``modelport inspect`` lists them), which is how XGBoost
and LightGBM themselves read a numpy array. Category *values* are passed as a DataFrame, a dict of
columns or records. A code that is not a whole number in ``0 .. k-1`` is an unknown category.

Unknown categories
------------------
Each category column carries a policy (chosen at pack time, overridable when serving or scoring):
``native`` does what the original library does (the default; see
:data:`modelport.bundle.signature.NATIVE_UNKNOWN`; a code in the tensor form goes to the graph
unchanged, as the library routes it), ``missing`` scores the value as a missing value, ``error``
refuses it. Every unknown value that is scored is counted (:attr:`Built.unknown`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.bundle.reference import missing_mask
from modelport.bundle.signature import UNKNOWN_POLICIES, Column, Signature, TensorSpec
from modelport.errors import InputError

_NP = {
    "float32": np.float32, "float64": np.float64, "float16": np.float16,
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "bool": np.bool_, "str": np.object_,
}
#: records that name only a few of the cells a batch needs are refused above this many cells
#: (each absent key would become a cell): building them costs far more than the request weighed
_SPARSE_CELLS = 1_000_000
_SPARSE_RATIO = 64
#: what an encoder is handed for a value outside its categories (never a category itself)
UNKNOWN_TEXT = "\x00modelport:unknown"
_UNKNOWN_HINT = (
    "check the spelling against the categories `modelport inspect` lists; to score values outside "
    "them as missing, pack, serve or score with unknown_categories='missing' (--unknown-categories missing)"
)
_CODES_HINT = (
    "a numpy array (and the tensor form) holds category codes (0 .. k-1) for category columns; "
    "to pass category values, use a DataFrame, a dict of columns or a list of records"
)


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    return np.dtype(_NP[dtype])


# ---------------------------------------------------------------------------------- results
@dataclass
class Checked:
    """What :meth:`FeedBuilder.check` found: feeds for the rows that can be scored (in input
    order), which rows cannot (``bad``, None when every row can) and why (first problem per row),
    and the rows whose value in a column was an unknown category that is scored anyway."""

    feeds: dict[str, np.ndarray]
    rows: int
    bad: np.ndarray | None = None
    reasons: dict[int, str] = field(default_factory=dict)
    unknown: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def ok(self) -> np.ndarray:
        """Rows that can be scored (True) among the input's rows."""
        return np.ones(self.rows, dtype=bool) if self.bad is None else ~self.bad

    @property
    def unknown_counts(self) -> dict[str, int]:
        """Per column, how many scored rows held an unknown category."""
        return {k: int(v.sum()) for k, v in self.unknown.items() if v.any()}


@dataclass
class Built:
    """Feeds for a whole input (:meth:`FeedBuilder.build`), its row count and the unknown
    categories scored in it (column -> count)."""

    feeds: dict[str, np.ndarray]
    rows: int
    unknown: dict[str, int] = field(default_factory=dict)


class _Problem:
    """Rows of one column that break one rule; words for an error and for a single row."""

    __slots__ = ("got", "hint", "mask", "subject", "tail", "what")

    def __init__(self, subject: str, what: str, mask: np.ndarray, got: Any = None, tail: str = "",
                 hint: str | None = None) -> None:
        self.subject = subject
        self.what = what
        self.mask = mask
        self.got = got  # an array of the offending values (by row), or None
        self.tail = tail
        self.hint = hint

    def _got(self, row: int) -> str:
        if self.got is None:
            return ""
        return f"; got {_show(self.got[row])}"

    def error(self) -> InputError:
        rows = np.flatnonzero(self.mask).tolist()
        return InputError(f"{self.subject} {self.what} in row(s) {_list(rows)}{self._got(rows[0])}{self.tail}.",
                          hint=self.hint)

    def reason(self, row: int) -> str:
        return f"{self.subject} {self.what}{self._got(row)}{self.tail}."


class _Problems:
    """Problems found so far; in ``per_row`` mode they are collected, otherwise the first raises."""

    def __init__(self, per_row: bool) -> None:
        self.per_row = per_row
        self.items: list[_Problem] = []

    def add(self, p: _Problem) -> None:
        if not self.per_row:
            raise p.error()
        self.items.append(p)


# ---------------------------------------------------------------------------------- rules
_INT_RANGE = {k: (int(np.iinfo(v).min), int(np.iinfo(v).max)) for k, v in _NP.items() if k.startswith(("int", "uint"))}


class _Rule:
    """What one column (or one column-less graph input) may hold, planned once per signature."""

    def __init__(self, col: Column | None, spec: TensorSpec, override: str | None) -> None:
        self.col = col
        self.spec = spec
        self.name = col.name if col is not None else spec.name
        self.subject = f"column {self.name!r}" if col is not None else f"input {spec.name!r}"
        self.tensor = spec.dtype
        self.np = numpy_dtype(spec.dtype)
        self.nullable = col.nullable if col is not None else True
        logical = col.dtype if col is not None else spec.dtype
        if spec.dtype == "str":  # a string input takes text, whatever the column is called
            self.kind = "str"
        elif logical == "category":
            self.kind = "category"
        elif logical == "str":
            self.kind = "str"
        elif logical == "bool" or spec.dtype == "bool":
            self.kind = "bool"
        else:
            self.kind = "number"
        self.logical = logical
        self.k = 0
        self.int_range = _INT_RANGE.get(spec.dtype)
        cats = col.categories if col is not None else None
        if self.kind == "category" and cats is None:
            cats = ()  # a category column that lists none: every value is unknown
        self.categories: tuple[Any, ...] | None = tuple(cats) if cats is not None else None
        self.value_policy = "pass"  # no categories: nothing is unknown
        self.code_policy = "native"
        if self.categories is not None and col is not None:
            policy = override or col.unknown_policy
            native = col.native or ("missing" if self.kind == "category" else "encoder")
            if self.kind == "category" and native == "encoder":
                native = "missing"
            if policy == "native":
                self.value_policy, self.code_policy = native, "native"
            else:
                self.value_policy = self.code_policy = policy
            if self.kind == "str" and self.value_policy == "missing":
                raise InputError(
                    f"column {self.name!r} holds strings for the model's encoder, which has no missing value: "
                    "unknown categories cannot be scored as missing there.",
                    hint="use unknown_categories 'native' (what the original model does) or 'error' for this bundle",
                )
            self._index(self.categories)

    def _index(self, cats: tuple[Any, ...]) -> None:
        self.numeric_cats = all(type(c) in (int, float, bool) for c in cats)
        self.cat_set = frozenset(cats) if not self.numeric_cats else frozenset()
        self.codes: dict[Any, float] = {}
        for i, c in enumerate(cats):
            self.codes.setdefault(c, float(i))
        self.k = len(cats)

    # ------------------------------------------------------------------ judging
    def judge(self, raw: Any, problems: _Problems, *, codes: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Values ready for the graph (bad rows hold a placeholder) and the rows holding an
        unknown category that are scored anyway (or None)."""
        arr = _column_array(raw, text=self.kind in ("str", "category"))
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise InputError(f"{self.subject} must be one-dimensional ([N] or [N, 1]); got shape {list(arr.shape)}.")
        if self.kind == "category":
            return (self._codes(arr, problems) if codes else self._categories(arr, problems))
        if self.kind == "str":
            return self._strings(arr, problems)
        if self.kind == "bool":
            return self._bools(arr, problems), None
        return self._numbers(arr, problems), None

    def _numbers(self, arr: np.ndarray, problems: _Problems) -> np.ndarray:
        values = self._parse(arr, problems, text_ok=True)
        if values.dtype.kind == "f":
            nan = np.isnan(values)
            has_nan = bool(nan.any())
            if has_nan and not self.nullable:
                problems.add(_nan_problem(self.subject, nan))
            if self.int_range is not None:
                with np.errstate(invalid="ignore"):
                    frac = ~nan & (np.mod(values, 1) != 0)  # inf too: inf mod 1 is NaN
                if has_nan and self.nullable:
                    problems.add(_Problem(self.subject, f"has missing values (NaN), which an integer input ({self.tensor}) "
                                          "cannot hold", nan))
                if frac.any():
                    problems.add(_Problem(self.subject, f"must hold whole numbers ({self.tensor})", frac, values))
                values = np.where(nan | frac, 0.0, values)
        if self.int_range is not None and values.dtype.kind in "iuf" and values.size:
            lo, hi = self.int_range
            out = (values < lo) | (values > hi)
            if out.any():
                problems.add(_Problem(self.subject, f"must hold values that fit {self.tensor} ({lo} to {hi})", out, values))
                values = np.where(out, 0, values)
        return values

    def _parse(self, arr: np.ndarray, problems: _Problems, *, text_ok: bool, what: str | None = None) -> np.ndarray:
        """Numbers from an array of numbers or (where allowed) text; None and empty text are NaN."""
        if arr.dtype.kind in "biuf":
            return arr
        if arr.dtype.kind in "US" and text_ok:
            try:
                return arr.astype(np.float64)
            except ValueError:
                pass
        elif arr.dtype.kind == "O":
            try:
                out = arr.astype(np.float64)
                if text_ok or not any(isinstance(v, (str, bytes)) for v in arr.tolist()):
                    return out
            except (TypeError, ValueError, OverflowError):
                pass
        values = np.empty(arr.shape[0], dtype=np.float64)
        bad = np.zeros(arr.shape[0], dtype=bool)
        for i, v in enumerate(arr.tolist()):
            values[i], bad[i] = _number(v, text_ok)
        if bad.any():
            if what is None:
                if self.kind == "category":
                    what = f"must hold category codes (numbers 0..{self.k - 1}) in a numpy array or the tensor form"
                else:
                    what = f"must be numeric ({self.logical})"
            problems.add(_Problem(self.subject, what, bad, arr, hint=_CODES_HINT if self.kind == "category" else None))
        return values

    def _bools(self, arr: np.ndarray, problems: _Problems) -> np.ndarray:
        if arr.dtype.kind == "b":
            return arr if self.tensor == "bool" else arr.astype(self.np)
        what = "must hold booleans (true/false, or the numbers 0 and 1)"
        shown = arr
        if arr.dtype.kind in "OUS":
            arr = np.array([_bool_text(v) for v in arr.tolist()], dtype=object)
        values = self._parse(arr, problems, text_ok=True, what=what).astype(np.float64, copy=False)
        nan = np.isnan(values)
        if nan.any():
            if not self.nullable:
                problems.add(_nan_problem(self.subject, nan))
            elif self.tensor == "bool":
                problems.add(_Problem(self.subject, "has missing values, which a boolean input cannot hold", nan))
        with np.errstate(invalid="ignore"):
            not01 = ~nan & (values != 0) & (values != 1)
        if not01.any():
            problems.add(_Problem(self.subject, what, not01, shown))
        if self.tensor == "bool":
            return np.where(nan | not01, False, values == 1)
        return np.where(not01, 0.0, values)

    def _strings(self, arr: np.ndarray, problems: _Problems) -> tuple[np.ndarray, np.ndarray | None]:
        n = arr.shape[0]
        has_cats = self.categories is not None
        if arr.dtype.kind == "U":
            objs = arr.astype(object)
            missing = notext = None
        else:
            objs = np.empty(n, dtype=object)
            missing = np.zeros(n, dtype=bool)
            notext = np.zeros(n, dtype=bool)
            badutf = None
            for i, v in enumerate(arr.tolist()):
                if type(v) is str:
                    objs[i] = v
                elif isinstance(v, bytes):
                    try:
                        objs[i] = v.decode("utf-8")
                    except UnicodeDecodeError:
                        if badutf is None:
                            badutf = np.zeros(n, dtype=bool)
                        badutf[i] = True
                        objs[i] = ""
                elif v is None or (isinstance(v, float) and v != v):
                    missing[i] = True
                    objs[i] = ""
                elif isinstance(v, str):
                    objs[i] = str(v)
                else:
                    notext[i] = True
                    objs[i] = ""
            if badutf is not None:
                problems.add(_Problem(self.subject, "holds bytes that are not valid UTF-8 text", badutf))
        unknown: np.ndarray | None = None
        if has_cats:
            known = np.fromiter((v in self.cat_set for v in objs.tolist()), dtype=bool, count=n)
            unk = ~known
            if missing is not None and missing.any():
                if self.nullable:  # the encoder takes a missing value as one more unknown one
                    unk |= missing
                else:
                    problems.add(_Problem(self.subject, "has missing values", missing,
                                          tail="; this model cannot take missing strings"))
                    unk &= ~missing
            if notext is not None:
                unk |= notext
            if unk.any():
                unknown = self._unknown(unk, arr, problems, is_value=True)
                if unknown is not None:
                    objs = objs.copy()
                    objs[unknown] = UNKNOWN_TEXT
            return objs, unknown
        if missing is not None and missing.any():
            problems.add(_Problem(self.subject, "has missing values", missing, tail="; this model cannot take missing strings"))
        if notext is not None and notext.any():
            problems.add(_Problem(self.subject, "must hold strings", notext, arr))
        return objs, None

    def _categories(self, arr: np.ndarray, problems: _Problems) -> tuple[np.ndarray, np.ndarray | None]:
        """Category values -> codes (positions in the categories); missing -> NaN."""
        n = arr.shape[0]
        if arr.dtype == object:
            absent = missing_mask(arr)
            present = arr[~absent] if absent.any() else arr
        else:
            absent, present = np.zeros(n, dtype=bool), arr
        try:  # each distinct value is looked up once
            uniq, inverse = np.unique(present, return_inverse=True)
        except TypeError:  # values of several types (text beside numbers): one by one
            uniq, inverse = present, None
        u_codes = np.array([self._code_of(v) for v in uniq.tolist()], dtype=np.float64)  # None -> NaN
        codes_present = u_codes if inverse is None else u_codes[inverse.reshape(-1)]
        if absent.any():
            codes = np.full(n, np.nan)
            codes[~absent] = codes_present
        else:
            codes = codes_present
        unk = codes < 0  # NaN compares False
        missing = np.isnan(codes)
        if missing.any() and not self.nullable:
            problems.add(_Problem(self.subject, "has missing values", missing, tail="; this model cannot take missing values",
                                  hint="impute them first, or pack a pipeline that includes an imputer"))
        unknown = None
        if unk.any():
            unknown = self._unknown(unk, arr, problems, is_value=True)
            codes = np.where(unk, np.nan, codes)
        return codes, unknown

    def _code_of(self, v: Any) -> float | None:
        """The code of a value; None for a missing value, -1 for one outside the categories."""
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                return -1.0
        if v is None or (isinstance(v, float) and v != v):
            return None
        if type(v) is str or isinstance(v, str):
            code = self.codes.get(v) if not self.numeric_cats else None
            if code is not None:
                return code
            if v.strip() == "":
                return None
            if self.numeric_cats:  # text that spells a numeric category (CSV, V2 BYTES)
                try:
                    x = float(v)
                except ValueError:
                    return -1.0
                return self.codes.get(x, -1.0) if x == x else None
            return -1.0
        if self.numeric_cats and isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
            return self.codes.get(v, -1.0)
        if self.numeric_cats and isinstance(v, (bool, np.bool_)):
            return self.codes.get(v, -1.0) if any(type(c) is bool for c in self.categories or ()) else -1.0
        return -1.0  # a number for string categories, or any other object

    def _codes(self, arr: np.ndarray, problems: _Problems) -> tuple[np.ndarray, np.ndarray | None]:
        """Category codes given directly (the tensor form): whole numbers in 0 .. k-1; NaN is missing."""
        values = self._parse(arr, problems, text_ok=False).astype(np.float64, copy=False)
        nan = np.isnan(values)
        if nan.any() and not self.nullable:
            problems.add(_nan_problem(self.subject, nan))
        with np.errstate(invalid="ignore"):
            valid = (values >= 0) & (values < self.k) & (np.mod(values, 1) == 0)
        unk = ~nan & ~valid
        unknown = None
        if unk.any():
            unknown = self._unknown(unk, values, problems, is_value=False)
            if unknown is not None and self.code_policy == "missing":
                values = np.where(unknown, np.nan, values)
        return values, unknown

    def _unknown(self, unk: np.ndarray, shown: np.ndarray, problems: _Problems, *, is_value: bool) -> np.ndarray | None:
        """Apply the policy to values outside the categories; the rows scored anyway, or None."""
        policy = self.value_policy if is_value else self.code_policy
        if policy == "error":
            known = _list([_show(c) for c in self.categories or ()], limit=12) or "no categories"
            if is_value:
                problems.add(_Problem(self.subject, "has values outside its categories", unk, shown,
                                      tail=f"; the model knows {known}", hint=_UNKNOWN_HINT))
            else:
                problems.add(_Problem(self.subject, f"has category codes outside 0..{self.k - 1}", unk, shown,
                                      tail=f" (codes of {known})", hint=_CODES_HINT))
            return None
        return unk


def _nan_problem(subject: str, mask: np.ndarray) -> _Problem:
    return _Problem(subject, "has missing values (NaN)", mask, tail="; this model cannot take missing values",
                    hint="impute them first, or pack a pipeline that includes an imputer")


def _number(v: Any, text_ok: bool) -> tuple[float, bool]:
    """(value, is_bad) for one element."""
    if v is None:
        return np.nan, False
    if isinstance(v, (float, int, np.number)) and not isinstance(v, (str, bytes)):
        try:
            return float(v), False
        except (OverflowError, TypeError, ValueError):
            return np.nan, True
    if isinstance(v, bytes):
        try:
            v = v.decode("utf-8")
        except UnicodeDecodeError:
            return np.nan, True
    if isinstance(v, str):
        if not text_ok:
            return np.nan, True
        s = v.strip()
        if not s:
            return np.nan, False
        try:
            return float(s), False
        except ValueError:
            return np.nan, True
    return np.nan, True


_BOOL_TEXT = {"true": True, "false": False}


def _bool_text(v: Any) -> Any:
    if isinstance(v, bytes):
        try:
            v = v.decode("utf-8")
        except UnicodeDecodeError:
            return v
    if isinstance(v, str):
        return _BOOL_TEXT.get(v.strip().lower(), v)
    return v


def _column_array(raw: Any, *, text: bool) -> np.ndarray:
    """A numpy array of one column's values (pandas and pyarrow columns are converted)."""
    mod = type(raw).__module__
    if mod.startswith("pandas") and hasattr(raw, "to_numpy"):
        dtype = raw.dtype
        if text or str(dtype) in ("object", "string", "str", "category"):
            return raw.to_numpy(dtype=object, na_value=None)
        if getattr(dtype, "kind", "O") in "biuf" and type(dtype).__module__.startswith("numpy"):
            return raw.to_numpy()
        try:  # nullable extension dtypes (Int64, Float64, boolean)
            return raw.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            return raw.to_numpy(dtype=object, na_value=None)
    if mod.startswith("pyarrow") and hasattr(raw, "to_numpy"):
        try:
            return raw.to_numpy(zero_copy_only=False)
        except TypeError:
            return np.asarray(raw.to_pylist(), dtype=object)
    if isinstance(raw, np.ndarray):
        return raw
    try:
        arr = np.asarray(raw)
        if arr.dtype.kind in "US":
            # numpy would turn [5, "x"] into ["5", "x"]: keep each value what it is, so that a list
            # (records, JSON) is judged like a DataFrame column holding the same values
            arr = np.array(raw, dtype=object)
        return arr
    except ValueError:  # ragged nesting
        items = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out


# ---------------------------------------------------------------------------------- building
class FeedBuilder:
    """Feeds for one signature, with the checks planned once (the one-row path stays cheap).

    ``unknown_categories`` overrides the bundle's policy for values outside a column's categories
    (``native``, ``missing`` or ``error``); None keeps the policy stored in the bundle.
    """

    def __init__(self, signature: Signature, *, unknown_categories: str | None = None) -> None:
        if unknown_categories is not None and unknown_categories not in UNKNOWN_POLICIES:
            raise InputError(
                f"unknown_categories must be one of {', '.join(UNKNOWN_POLICIES)}; got {unknown_categories!r}."
            )
        self.signature = signature
        self.unknown_categories = unknown_categories
        cols = signature.columns
        self._specs = {t.name: t for t in signature.inputs}
        self._rules: dict[str, _Rule] = {}
        if cols is not None:
            for c in cols:
                self._rules[c.name] = _Rule(c, self._specs[c.input], unknown_categories)
        self._tensor_rules = {t.name: _Rule(None, t, None) for t in signature.inputs}
        self._members: dict[str, list[Column]] = {t.name: [] for t in signature.inputs}
        for c in cols or ():
            self._members[c.input].append(c)
        self._tensor_only = frozenset(t.name for t in signature.inputs) - frozenset(signature.column_names)
        self._expected = signature.column_names if cols is not None else [t.name for t in signature.inputs]
        self._expected_set = frozenset(self._expected)
        self._n_cols = len(cols) if cols is not None else 0
        self._matrix: tuple[str, np.dtype[Any], np.ndarray | None] | None = None
        if cols is not None and len(signature.inputs) == 1:
            spec = signature.inputs[0]
            in_order = all(c.index == i and c.input == spec.name for i, c in enumerate(cols))
            plain = all(c.dtype in ("float64", "float32", "int64", "int32") for c in cols)
            width_ok = len(spec.shape) == 2 and spec.shape[1] in (None, len(cols))
            if in_order and plain and width_ok and spec.dtype.startswith("float"):
                strict: np.ndarray | None = np.array([i for i, c in enumerate(cols) if not c.nullable], dtype=np.intp)
                if strict is not None and strict.size == len(cols):
                    strict = _ALL
                elif strict is not None and strict.size == 0:
                    strict = None
                self._matrix = (spec.name, numpy_dtype(spec.dtype), strict)

    @property
    def has_categories(self) -> bool:
        return any(r.categories is not None for r in self._rules.values())

    # ------------------------------------------------------------------ public entry points
    def __call__(self, data: Any) -> dict[str, np.ndarray]:
        plan = self._matrix
        if plan is not None and type(data) is np.ndarray and data.dtype.kind in "biuf":
            # the one-row fast path, inline: one numeric matrix as the graph takes it
            name, dtype, strict = plan
            arr = data.reshape(1, -1) if data.ndim == 1 else data
            # one sum finds any NaN cheaply (NaN propagates); only then look at which columns
            if arr.ndim == 2 and arr.shape[1] == self._n_cols and (
                strict is None or arr.dtype.kind != "f" or not np.isnan(np.add.reduce(arr, axis=None))
                or not np.isnan(arr if strict is _ALL else arr[:, strict]).any()
            ):
                return {name: arr.astype(dtype, copy=False)}
        return self.build(data).feeds

    def build(self, data: Any, *, form: str = "auto") -> Built:
        """Feeds for all of ``data``; the first problem raises InputError.

        ``form``: ``auto`` (decided from what ``data`` is), ``tensors`` (a mapping of graph input
        name -> array) or ``columns`` (a mapping of column name -> values).
        """
        checked = self._build(data, per_row=False, form=form)
        return Built(checked.feeds, checked.rows, checked.unknown_counts)

    def check(self, data: Any, *, form: str = "auto") -> Checked:
        """Feeds for the rows of ``data`` that can be scored, and why the others cannot.

        Problems that concern the input as a whole (a missing column, a wrong shape) still raise.
        """
        return self._build(data, per_row=True, form=form)

    def tensor(self, name: str, arr: np.ndarray) -> np.ndarray | None:
        """The fast path of the tensor form for the one matrix input: the feed, or None when the
        full rules must decide (NaN where it is refused, other shapes or dtypes)."""
        plan = self._matrix
        if plan is None or name != plan[0]:
            return None
        return self._fast(plan, arr)

    def _fast(self, plan: tuple[str, np.dtype[Any], np.ndarray | None], data: np.ndarray) -> np.ndarray | None:
        _, dtype, strict = plan
        if data.dtype.kind not in "biuf":
            return None
        arr = data.reshape(1, -1) if data.ndim == 1 else data
        if arr.ndim != 2 or arr.shape[1] != self._n_cols:
            return None
        # one sum finds any NaN cheaply (NaN propagates); only then look at which columns
        if strict is not None and arr.dtype.kind == "f" and np.isnan(np.add.reduce(arr, axis=None)):
            sub = arr if strict is _ALL else arr[:, strict]
            if np.isnan(sub).any():
                return None  # the full rules name the column and the rows
        return arr.astype(dtype, copy=False)

    # ------------------------------------------------------------------ dispatch
    def _build(self, data: Any, *, per_row: bool, form: str) -> Checked:
        sig = self.signature
        problems = _Problems(per_row)
        if form == "tensors":
            return self._from_tensors(dict(data), problems)
        if form == "columns":
            return self._from_columns(dict(data), problems)
        if isinstance(data, (list, tuple)) and not data and sig.columns is not None:
            # an empty list of records is an empty batch (it names no columns to check)
            return Checked(self._empty_feeds(), 0)
        cols = self._to_columns(data)
        if cols is not None:
            if sig.columns is None:
                return self._from_tensors(cols, problems)
            if cols and self._tensor_only and set(cols) <= self._tensor_only:  # keyed by graph input ("X")
                return self._from_tensors(cols, problems)
            return self._from_columns(cols, problems)
        arr = data if isinstance(data, np.ndarray) else _column_array(data, text=False)
        if len(sig.inputs) != 1:
            if sig.columns is not None and arr.ndim == 2 and arr.shape[1] == len(sig.columns):
                # several [N, 1] inputs, one per column: the array's columns are their values
                return self._from_columns({c.name: arr[:, i] for i, c in enumerate(sig.columns)}, problems)
            raise InputError(
                f"this model has {len(sig.inputs)} inputs ({', '.join(t.name for t in sig.inputs)}); "
                "pass a DataFrame or a dict keyed by column or input name, not a single array."
            )
        spec = sig.inputs[0]
        members = self._members[spec.name]
        if sig.columns is not None and len(members) == 1 and members[0].index is None:
            return self._from_columns({members[0].name: arr}, problems)
        return self._from_tensors({spec.name: arr}, problems)

    def _to_columns(self, data: Any) -> dict[str, Any] | None:
        """A dict of column name -> values for table-like inputs, or None for plain arrays."""
        if isinstance(data, Mapping):
            return dict(data)
        cls = type(data)
        mod = cls.__module__
        if mod.startswith("pandas") and hasattr(data, "columns"):
            return {str(c): data[c] for c in data.columns}
        if mod.startswith("pandas") and cls.__name__ == "Series":
            return {str(k): [v] for k, v in data.items()}
        if mod.startswith("pyarrow") and hasattr(data, "column_names"):
            return {name: data.column(name) for name in data.column_names}
        if isinstance(data, (list, tuple)) and data and isinstance(data[0], Mapping):
            return records_to_columns(data, self._expected)
        return None

    def _empty_feeds(self) -> dict[str, np.ndarray]:
        return {t.name: np.empty((0, *(d or 0 for d in t.shape[1:])), dtype=numpy_dtype(t.dtype))
                for t in self.signature.inputs}

    # ------------------------------------------------------------------ the two forms
    def _from_columns(self, cols: Mapping[str, Any], problems: _Problems) -> Checked:
        sig = self.signature
        if sig.columns is None:
            return self._from_tensors(cols, problems)
        expected = self._expected
        missing = [n for n in expected if n not in cols]
        unexpected = [k for k in cols if k not in self._expected_set]
        if missing or unexpected:
            raise InputError(_mismatch("column", missing, unexpected, expected))
        n_rows: int | None = None
        values: dict[str, np.ndarray] = {}
        unknown: dict[str, np.ndarray] = {}
        for c in sig.columns:
            v, unk = self._rules[c.name].judge(cols[c.name], problems)
            if n_rows is None:
                n_rows = v.shape[0]
            elif v.shape[0] != n_rows:
                raise InputError(f"column {c.name!r} has {v.shape[0]} rows but the first column has {n_rows}.")
            values[c.name] = v
            if unk is not None:
                unknown[c.name] = unk
        return self._finish(values, unknown, n_rows or 0, problems)

    def _from_tensors(self, given: Mapping[str, Any], problems: _Problems) -> Checked:
        sig = self.signature
        names = [t.name for t in sig.inputs]
        missing = [n for n in names if n not in given]
        unexpected = [k for k in given if k not in self._specs]
        if missing or unexpected:
            raise InputError(_mismatch("input", missing, unexpected, names))
        values: dict[str, np.ndarray] = {}
        unknown: dict[str, np.ndarray] = {}
        tensors: dict[str, np.ndarray] = {}
        n_rows: int | None = None
        for spec in sig.inputs:
            raw = given[spec.name]
            arr = raw if isinstance(raw, np.ndarray) else _column_array(raw, text=spec.dtype == "str")
            members = self._members[spec.name]
            if members and members[0].index is None:  # a whole-column input: [N] or [N, 1]
                if arr.ndim == 0 or arr.ndim > 2 or (arr.ndim == 2 and arr.shape[1] != 1):
                    raise InputError(f"input {spec.name!r} must have shape {_shape(spec.shape)}; got shape {list(arr.shape)}.")
                c = members[0]
                v, unk = self._rules[c.name].judge(arr.reshape(-1), problems, codes=True)
                values[c.name] = v
                if unk is not None:
                    unknown[c.name] = unk
                rows = v.shape[0]
            elif members:  # a matrix: one column per slot
                arr = self._shaped(spec, arr)
                for c in members:
                    assert c.index is not None
                    v, unk = self._rules[c.name].judge(arr[:, c.index], problems, codes=True)
                    values[c.name] = v
                    if unk is not None:
                        unknown[c.name] = unk
                rows = arr.shape[0]
            else:
                arr = self._shaped(spec, arr)
                tensors[spec.name] = self._tensor_values(spec, arr, problems)
                rows = arr.shape[0] if arr.ndim else 1
            if n_rows is None:
                n_rows = rows
            elif rows != n_rows:
                raise InputError(
                    f"the inputs disagree on the number of rows ({n_rows} and {rows} for {spec.name!r}); "
                    "send the same N for every input."
                )
        return self._finish(values, unknown, n_rows or 0, problems, tensors=tensors)

    def _shaped(self, spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
        want = spec.shape
        if len(want) == arr.ndim + 1:
            if want[-1] == 1 and arr.ndim >= 1:  # a column vector given flat
                arr = arr.reshape(*arr.shape, 1)
            elif want[0] is None:  # one row given without its batch axis
                arr = arr.reshape((1, *arr.shape))
        ok = len(want) == arr.ndim and all(w is None or w == g for w, g in zip(want, arr.shape))
        if not ok:
            names = self._members[spec.name]
            cols = f" (columns {_list([c.name for c in names])})" if names and names[0].index is not None else ""
            raise InputError(f"input {spec.name!r} must have shape {_shape(want)}{cols}; got shape {list(arr.shape)}.")
        return arr

    def _tensor_values(self, spec: TensorSpec, arr: np.ndarray, problems: _Problems) -> np.ndarray:
        """A column-less graph input: its dtype rules applied element-wise, rows along axis 0."""
        rule = self._tensor_rules[spec.name]
        n = arr.shape[0] if arr.ndim else 1
        flat = arr.reshape(n, -1) if arr.ndim else arr.reshape(1, 1)
        width = flat.shape[1]
        sub = _Problems(True)
        if spec.dtype == "str":
            out, _ = rule._strings(flat.reshape(-1), sub)
        elif spec.dtype == "bool":
            out = rule._bools(flat.reshape(-1), sub)
        else:
            out = rule._numbers(flat.reshape(-1), sub)
        for p in sub.items:  # element problems -> row problems, each showing its first bad element
            elem = p.mask.reshape(n, width)
            if p.got is not None:
                got = np.asarray(p.got, dtype=object).reshape(n, width)
                p.got = got[np.arange(n), np.argmax(elem, axis=1)]
            p.mask = np.asarray(elem.any(axis=1))
            problems.add(p)
        if spec.dtype == "str":
            return out.reshape(arr.shape)
        return out.reshape(arr.shape).astype(numpy_dtype(spec.dtype), copy=False)

    def _finish(self, values: dict[str, np.ndarray], unknown: dict[str, np.ndarray], n_rows: int,
                problems: _Problems, *, tensors: dict[str, np.ndarray] | None = None) -> Checked:
        bad: np.ndarray | None = None
        reasons: dict[int, str] = {}
        if problems.items:
            bad = np.zeros(n_rows, dtype=bool)
            for p in problems.items:
                fresh = p.mask & ~bad
                for i in np.flatnonzero(fresh).tolist():
                    reasons[i] = p.reason(i)
                bad |= p.mask
            if not bad.any():
                bad = None
        if bad is not None:
            keep = ~bad
            values = {k: v[keep] for k, v in values.items()}
            tensors = {k: v[keep] for k, v in (tensors or {}).items()}
            unknown = {k: v & keep for k, v in unknown.items()}
        feeds = self._assemble(values, int(n_rows if bad is None else (~bad).sum()))
        feeds.update(tensors or {})
        return Checked(feeds, n_rows, bad, reasons, unknown)

    def _assemble(self, values: Mapping[str, np.ndarray], n_rows: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for spec in self.signature.inputs:
            members = self._members[spec.name]
            if not members:
                continue
            np_dtype = numpy_dtype(spec.dtype)
            if members[0].index is None:
                v = values[members[0].name]
                v = v if v.dtype == np_dtype else v.astype(np_dtype)
                out[spec.name] = v.reshape(-1, 1) if len(spec.shape) == 2 else v
                continue
            width = spec.shape[-1] if spec.shape[-1] is not None else len(members)
            # the signature guarantees that every slot has exactly one column
            mat = np.empty((n_rows, width), dtype=np_dtype)
            for c in members:
                mat[:, c.index] = values[c.name]
            out[spec.name] = mat
        return out


_ALL = np.array([], dtype=np.intp)


def feeds(signature: Signature, data: Any) -> dict[str, np.ndarray]:
    """Build the ONNX feeds for ``data`` under ``signature`` (see :class:`FeedBuilder`)."""
    return FeedBuilder(signature).build(data).feeds


def records_to_columns(records: Sequence[Any], expected: Sequence[str]) -> dict[str, list[Any]]:
    """Records (dicts) -> column name -> values, for the ``expected`` names; a key no record has
    is a missing column, a key that is not expected is refused, and an absent key is a missing
    value. Linear in the records' size: each record's keys are looked at once."""
    want = frozenset(expected)
    seen: dict[str, None] = {}
    given = 0
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise InputError(
                f"records must all be objects (dicts) mapping column names to values; record {i} is a {type(rec).__name__}."
            )
        given += len(rec)
        for k in rec:
            if k not in seen:
                seen[k] = None
    missing = [n for n in expected if n not in seen]
    unexpected = [k for k in seen if k not in want]
    if missing or unexpected:
        raise InputError(_mismatch("column", missing, unexpected, list(expected)))
    cells = len(records) * len(expected)
    if cells > _SPARSE_CELLS and cells > _SPARSE_RATIO * given:
        raise InputError(
            f"the {len(records)} records give {given} values for the {cells} cells this model needs "
            f"({len(expected)} columns per record); records must name the model's columns.",
            hint="send every column in every record (null for a missing value), or use the tensor form",
        )
    return {n: [rec.get(n) for rec in records] for n in expected}


def _mismatch(what: str, missing: list[str], unexpected: list[str], expected: Sequence[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing {what}(s): {_list(missing)}")
    if unexpected:
        parts.append(f"unexpected {what}(s): {_list([_show_name(u) for u in unexpected])}")
    return f"{'; '.join(parts)}. The model expects {what}s: {_list(list(expected))}."


def _show_name(name: Any) -> str:
    text = str(name)
    return text if len(text) <= 80 else text[:77] + f"... ({len(text)} characters)"


def _list(items: Sequence[Any], limit: int = 20) -> str:
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def _show(v: Any) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _shape(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("N" if s is None else str(s) for s in shape) + "]"
