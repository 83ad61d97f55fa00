"""The chunk scorer: model columns of one chunk -> ONNX feeds -> prediction columns, row errors isolated.

Every engine (local chunks, worker processes, Dask partitions, Spark pandas UDFs) scores through
:class:`ChunkScorer`, so all of them give the same columns, the same values and the same errors.

Feeds are built by :mod:`modelport.runtime.coerce` (the same validation and messages as
``bundle.predict``). Rows that cannot be scored are found without giving up the vectorised path:
the common per-row faults (a missing value where the model takes none, a non-numeric text in a
numeric column) are found with array operations first; anything else the runtime refuses is
narrowed down to single rows by bisection. Depending on ``on_error`` such rows stop the job
(``fail``), are left out (``skip``) or get null predictions (``null``); both of the latter report
them as rejects (global row number and reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modelport._deps import require
from modelport.bundle.reference import missing_mask
from modelport.errors import InputError, ModelportError
from modelport.runtime.session import output_columns

if TYPE_CHECKING:
    import pandas as pd

    from modelport.bundle.core import Bundle
    from modelport.runtime.session import Runtime

OnError = Literal["fail", "skip", "null"]
ON_ERROR = ("fail", "skip", "null")
#: hidden columns engines carry so that assembly can restore global row numbers and rejects
ERROR_COLUMN = "__modelport_error"
#: For runs with several ONNX Runtime threads (``--threads``): by default a run's rows are split
#: into one block per thread, so a thread that the reading and writing threads delay holds up the
#: whole run; smaller blocks handed out as threads become free keep the cores busy (measured with
#: one 2-thread scorer, bench/batch/bench_throughput.py: 0.79 -> 0.84 to 0.88 of raw session.run).
#: The default single process runs single-threaded calls side by side instead, where it is moot.
BATCH_SESSION_CONFIG = {"session.dynamic_block_base": "4"}


@dataclass
class Rejects:
    """Rows that could not be scored: global row numbers (0-based, in input order) and reasons."""

    rows: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def add(self, row: int, reason: str) -> None:
        self.rows.append(int(row))
        self.reasons.append(reason)

    def extend(self, other: Rejects) -> None:
        self.rows.extend(other.rows)
        self.reasons.extend(other.reasons)

    def __len__(self) -> int:
        return len(self.rows)


def input_columns(bundle: Bundle) -> list[str]:
    """The columns a file must have for this bundle: its tabular columns, or its graph inputs."""
    sig = bundle.signature
    return sig.column_names if sig.columns is not None else [t.name for t in sig.inputs]


def check_columns(bundle: Bundle, available: Sequence[str], *, where: str = "the input") -> None:
    """Refuse an input that lacks model columns, naming the missing ones and the unexpected ones."""
    need = input_columns(bundle)
    have = list(available)
    missing = [c for c in need if c not in have]
    if missing:
        unexpected = [c for c in have if c not in need]
        extra = f"; columns the model does not use: {_list(unexpected)}" if unexpected else ""
        raise InputError(
            f"{where} lacks the model's input column(s) {_list(missing)}{extra}. "
            f"The model expects: {_list(need)}.",
            hint="rename the columns to the names the bundle was packed with (see `modelport inspect`)",
        )


def resolve_keep(bundle: Bundle, available: Sequence[str], keep: str | Sequence[str] | None) -> list[str]:
    """Which input columns are copied to the output.

    ``None``/``"rest"``: the columns that are not model inputs (ids, timestamps); ``"all"``; ``"none"``;
    or an explicit list of names.
    """
    need = set(input_columns(bundle))
    have = list(available)
    if keep is None or keep == "rest":
        return [c for c in have if c not in need]
    if keep == "all":
        return have
    if keep == "none":
        return []
    names = [keep] if isinstance(keep, str) else list(keep)
    unknown = [c for c in names if c not in have]
    if unknown:
        raise InputError(
            f"--keep names column(s) {_list(unknown)} that the input does not have; it has {_list(have)}.",
            hint="pass existing column names, or 'rest', 'all' or 'none'",
        )
    return names


@dataclass
class Prepared:
    """One chunk after :meth:`ChunkScorer.prepare`: converted columns, the rows already known bad
    (and why), and the runtime feeds when every row is fine."""

    n_rows: int
    first_row: int
    arrays: dict[str, np.ndarray]
    bad: np.ndarray
    reasons: dict[int, str]
    feeds: dict[str, np.ndarray] | None


class ChunkScorer:
    """Scores column chunks with one bundle; shared by every engine."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        on_error: OnError = "fail",
        prefix: str = "",
        runtime: Runtime | None = None,
    ) -> None:
        if on_error not in ON_ERROR:
            raise InputError(f"on_error must be one of {', '.join(ON_ERROR)}; got {on_error!r}.")
        self.bundle = bundle
        self.runtime = runtime or bundle.runtime
        self.on_error = on_error
        self.prefix = prefix
        self.columns = input_columns(bundle)
        sig = bundle.signature
        self._specs = {}
        if sig.columns is not None:
            for c in sig.columns:
                self._specs[c.name] = (c.dtype, sig.input(c.input).dtype, c.nullable)
        else:
            for t in sig.inputs:
                self._specs[t.name] = (t.dtype, t.dtype, True)
        self.output_layout = self._layout()

    # ------------------------------------------------------------------ output description
    def _layout(self) -> list[tuple[str, np.dtype[Any]]]:
        """(column name, numpy dtype) of the prediction columns, in order."""
        ref = self.bundle.reference_outputs
        if ref and all(n in ref for n in self.runtime.output_names):
            empty = {n: ref[n][:0] for n in self.runtime.output_names}
        else:
            empty = self.runtime._empty(self.runtime.output_names)
        cols = output_columns(empty, self.bundle.classes)
        return [(self.prefix + name, arr.dtype) for name, arr in cols.items()]

    @property
    def output_names(self) -> list[str]:
        return [n for n, _ in self.output_layout]

    def arrow_fields(self) -> list[Any]:
        pa = require("pyarrow", purpose="batch scoring")
        return [pa.field(n, _arrow_type(pa, d)) for n, d in self.output_layout]

    # ------------------------------------------------------------------ scoring
    def score_columns(
        self, cols: dict[str, Any], n_rows: int, first_row: int = 0
    ) -> tuple[dict[str, np.ndarray], np.ndarray, Rejects]:
        """Score model columns (name -> 1-D values) of ``n_rows`` rows.

        Returns the prediction columns for the scored rows, a boolean mask of the rows that were
        scored, and the rejects (with ``first_row`` added to their row numbers). With
        ``on_error="fail"`` the first unscorable row raises InputError naming it.
        """
        return self.run(self.prepare(cols, n_rows, first_row))

    def prepare(self, cols: dict[str, Any], n_rows: int, first_row: int = 0) -> Prepared:
        """The numpy work of :meth:`score_columns` before ONNX Runtime runs: checks, conversion, feeds.

        Separate so that a pipeline can prepare the next chunk while the runtime scores this one.
        """
        if n_rows == 0:
            return Prepared(n_rows, first_row, {}, np.zeros(0, dtype=bool), {}, None)
        arrays: dict[str, np.ndarray] = {}
        bad = np.zeros(n_rows, dtype=bool)
        reasons: dict[int, str] = {}
        for name in self.columns:
            arr, col_bad, why = self._prepare(name, cols[name])
            arrays[name] = arr
            if col_bad is not None and col_bad.any():
                for i in np.flatnonzero(col_bad & ~bad).tolist():
                    reasons[i] = why(i)
                bad |= col_bad
        if bad.any() and self.on_error == "fail":
            first = int(np.flatnonzero(bad)[0])
            raise self._row_error(first_row + first, reasons[first])
        feeds = None
        if not bad.any():
            try:  # the common case: every row is fine, the whole chunk is one run
                feeds = self.runtime.feeds(arrays)
            except ModelportError:
                feeds = None  # narrowed down to rows by run()
        return Prepared(n_rows, first_row, arrays, bad, reasons, feeds)

    def run(self, p: Prepared) -> tuple[dict[str, np.ndarray], np.ndarray, Rejects]:
        """Run a prepared chunk; see :meth:`score_columns`."""
        n_rows, first_row = p.n_rows, p.first_row
        if n_rows == 0:
            empty = {n: np.empty(0, dtype=d) for n, d in self.output_layout}
            return empty, np.zeros(0, dtype=bool), Rejects()
        reasons = dict(p.reasons)
        parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        result = None
        if p.feeds is not None:
            try:
                result = self.runtime.run(p.feeds)
            except ModelportError:
                result = None
        if result is not None:
            parts.append((np.arange(n_rows), output_columns(result, self.bundle.classes)))
        else:
            ok_idx = np.flatnonzero(~p.bad)
            if ok_idx.size:
                self._run_or_bisect(p.arrays, ok_idx, first_row, parts, reasons)
        scored = np.zeros(n_rows, dtype=bool)
        for idx, _ in parts:
            scored[idx] = True
        rejects = Rejects()
        for i in sorted(reasons):
            rejects.add(first_row + i, reasons[i])
        out = self._merge(parts, scored)
        return out, scored, rejects

    def _run_or_bisect(
        self,
        arrays: dict[str, np.ndarray],
        idx: np.ndarray,
        first_row: int,
        parts: list[tuple[np.ndarray, dict[str, np.ndarray]]],
        reasons: dict[int, str],
    ) -> None:
        whole = idx.size == next(iter(arrays.values())).shape[0] if arrays else True
        sub = arrays if whole and np.array_equal(idx, np.arange(idx.size)) else {k: v[idx] for k, v in arrays.items()}
        try:
            result = self.runtime.run(self.runtime.feeds(sub))
        except ModelportError as exc:
            if idx.size == 1:
                reason = exc.message if isinstance(exc, ModelportError) else str(exc)
                if self.on_error == "fail":
                    raise self._row_error(first_row + int(idx[0]), reason) from exc
                reasons[int(idx[0])] = reason
                return
            half = idx.size // 2
            self._run_or_bisect(arrays, idx[:half], first_row, parts, reasons)
            self._run_or_bisect(arrays, idx[half:], first_row, parts, reasons)
            return
        parts.append((idx, output_columns(result, self.bundle.classes)))

    def _merge(
        self, parts: list[tuple[np.ndarray, dict[str, np.ndarray]]], scored: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Prediction columns for the scored rows, in row order, with our names."""
        n_ok = int(scored.sum())
        if len(parts) == 1:
            cols = parts[0][1]
            return {self.prefix + k: v for k, v in cols.items()}
        out: dict[str, np.ndarray] = {}
        # positions of each part's rows among the scored rows
        rank = np.cumsum(scored) - 1
        for (name, dtype), raw in zip(self.output_layout, output_columns(self._empty_like(), self.bundle.classes)):
            arr = np.empty(n_ok, dtype=dtype)
            for idx, cols in parts:
                arr[rank[idx]] = cols[raw]
            out[name] = arr
        return out

    def _empty_like(self) -> dict[str, np.ndarray]:
        ref = self.bundle.reference_outputs
        if ref and all(n in ref for n in self.runtime.output_names):
            return {n: ref[n][:0] for n in self.runtime.output_names}
        return self.runtime._empty(self.runtime.output_names)

    def _row_error(self, row: int, reason: str) -> InputError:
        return InputError(
            f"row {row} cannot be scored: {reason}",
            hint="fix the row, or pass --on-error skip (leave such rows out, listed in a rejects file) "
            "or --on-error null (null predictions)",
        )

    # ------------------------------------------------------------------ column preparation
    def _prepare(self, name: str, raw: Any) -> tuple[np.ndarray, np.ndarray | None, Any]:
        """1-D numpy values for a model column, the rows that cannot be scored, and why."""
        logical, tensor, nullable = self._specs[name]
        arr = _to_numpy(raw, text=logical in ("str", "category") or tensor == "str")
        if arr.ndim != 1:
            raise InputError(f"column {name!r} must be one-dimensional; got shape {arr.shape}.")
        if logical == "category" or tensor == "str" or logical == "str":
            if tensor == "str":
                missing = missing_mask(arr)
                if missing.any():
                    return arr, missing, lambda i: f"column {name!r} is missing; this model cannot take missing strings."
            return arr, None, None
        # numeric column
        if arr.dtype.kind in "OUS":
            values, bad = _parse_numbers(arr)
            if bad.any():
                shown = arr
                return values, bad, lambda i: f"column {name!r} must be numeric ({logical}); got {shown[i]!r}."
            arr = values
        if arr.dtype.kind == "f" and not nullable:
            nan = np.isnan(arr)
            if nan.any():
                return arr, nan, lambda i: (
                    f"column {name!r} is missing (NaN), and this model cannot take missing values."
                )
        if tensor.startswith("int") and arr.dtype.kind == "f":
            frac = np.isnan(arr) | (np.mod(arr, 1) != 0)
            if frac.any():
                return arr, frac, lambda i: f"column {name!r} must hold whole numbers; got {arr[i]!r}."
        return arr, None, None


def _to_numpy(raw: Any, *, text: bool) -> np.ndarray:
    mod = type(raw).__module__
    if mod.startswith("pyarrow"):
        return _arrow_to_numpy(raw, text=text)
    if mod.startswith("pandas"):
        if text or raw.dtype == object or str(raw.dtype) in ("string", "str", "category"):
            return raw.to_numpy(dtype=object, na_value=None)
        if raw.dtype.kind in "biuf":
            return raw.to_numpy()
        try:  # nullable extension dtypes (Int64, Float64, boolean)
            return raw.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            return raw.to_numpy(dtype=object, na_value=None)
    arr = np.asarray(raw)
    return arr[:, 0] if arr.ndim == 2 and arr.shape[1] == 1 else arr


def _arrow_to_numpy(col: Any, *, text: bool) -> np.ndarray:
    pa = require("pyarrow", purpose="batch scoring")
    pc = require("pyarrow.compute", purpose="batch scoring")
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.dictionary_decode()
        t = col.type
    if text or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return col.to_numpy(zero_copy_only=False)
    if pa.types.is_floating(t) or pa.types.is_integer(t):
        if col.null_count:
            col = pc.fill_null(col.cast(pa.float64()), np.nan)
        return col.to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(t):
        if col.null_count:
            return pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        return col.to_numpy(zero_copy_only=False)
    if pa.types.is_null(t):
        return np.full(len(col), np.nan)
    return col.to_numpy(zero_copy_only=False)


def _parse_numbers(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Text -> float64; missing stays NaN; returns the rows whose text is not a number."""
    try:
        return arr.astype(np.float64), np.zeros(arr.shape[0], dtype=bool)
    except (TypeError, ValueError):
        pass
    out = np.empty(arr.shape[0], dtype=np.float64)
    bad = np.zeros(arr.shape[0], dtype=bool)
    for i, v in enumerate(arr.tolist()):
        if v is None:
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            out[i] = np.nan
            bad[i] = True
    return out, bad


def _arrow_type(pa: Any, dtype: np.dtype[Any]) -> Any:
    if dtype.kind in "OUS":
        return pa.string()
    return pa.from_numpy_dtype(dtype)


def _list(items: Sequence[Any], limit: int = 20) -> str:
    shown = ", ".join(repr(x) for x in items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")


# ---------------------------------------------------------------------------- arrow chunks
class ArrowChunkScorer:
    """Scores pyarrow record batches: kept columns + prediction columns, as a record batch."""

    def __init__(
        self,
        bundle: Bundle,
        schema: Any,
        *,
        keep: Sequence[str],
        on_error: OnError = "fail",
        prefix: str = "",
        runtime: Runtime | None = None,
        error_column: bool = False,
    ) -> None:
        pa = require("pyarrow", purpose="batch scoring")
        self.pa = pa
        self.core = ChunkScorer(bundle, on_error=on_error, prefix=prefix, runtime=runtime)
        self.keep = list(keep)
        check_clash(self.core, self.keep)
        fields = [schema.field(c) for c in self.keep] + self.core.arrow_fields()
        self.error_column = error_column
        if error_column:
            fields.append(pa.field(ERROR_COLUMN, pa.string()))
        self.schema = pa.schema(fields)

    def score(self, batch: Any, first_row: int) -> tuple[Any, Rejects]:
        """Kept columns + prediction columns of ``batch`` as one record batch, and its rejects."""
        return self.finish(self.prepare(batch, first_row))

    def prepare(self, batch: Any, first_row: int) -> tuple[Any, Prepared]:
        """Everything before the runtime runs (see :meth:`ChunkScorer.prepare`)."""
        cols = {c: batch.column(c) for c in self.core.columns}
        return batch, self.core.prepare(cols, batch.num_rows, first_row)

    def finish(self, prepared: tuple[Any, Prepared]) -> tuple[Any, Rejects]:
        """Run a prepared batch and build the output record batch."""
        pa = self.pa
        batch, p = prepared
        n = batch.num_rows
        first_row = p.first_row
        preds, scored, rejects = self.core.run(p)
        all_ok = bool(scored.all())
        keep_rows = all_ok or self.core.on_error == "null" or self.error_column
        arrays: list[Any] = []
        if keep_rows:
            arrays.extend(batch.column(c) for c in self.keep)
        else:
            mask = pa.array(scored)
            arrays.extend(batch.column(c).filter(mask) for c in self.keep)
        for f in self.core.arrow_fields():
            values = preds[f.name]
            if keep_rows and not all_ok:
                arrays.append(_scatter(pa, values, scored, f.type))
            else:
                arrays.append(pa.array(values, type=f.type))
        if self.error_column:
            errs: list[str | None] = [None] * n
            for r, why in zip(rejects.rows, rejects.reasons):
                errs[r - first_row] = why
            arrays.append(pa.array(errs, type=pa.string()))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema), rejects


def _scatter(pa: Any, values: np.ndarray, mask: np.ndarray, type_: Any) -> Any:
    """Values for the rows in ``mask``, null elsewhere."""
    full: np.ndarray
    if values.dtype.kind in "OUS":
        full = np.full(mask.shape[0], None, dtype=object)
    else:
        full = np.zeros(mask.shape[0], dtype=values.dtype)
    full[mask] = values
    return pa.array(full, type=type_, mask=~mask)


# ---------------------------------------------------------------------------- in-memory API
def score(
    bundle: Bundle | str,
    data: Any,
    *,
    keep: str | Sequence[str] | None = None,
    on_error: OnError = "fail",
    prefix: str = "",
    chunk_rows: int = 131_072,
    return_rejects: bool = False,
) -> Any:
    """Score a pandas DataFrame or pyarrow Table; returns the same kind with prediction columns.

    The result holds the kept input columns (by default those that are not model inputs, such as
    ids; ``keep="all"``, ``"none"`` or a list of names) followed by the prediction columns
    (``label`` and ``proba_<class>`` for classifiers, ``prediction`` for regressors). A DataFrame
    keeps its index. ``on_error="skip"`` leaves out rows that cannot be scored and ``"null"``
    gives them null predictions; ``return_rejects=True`` also returns a DataFrame / Table of
    ``row`` (0-based position) and ``reason``.
    """
    from modelport._uri import load

    b = load(bundle)
    pa = require("pyarrow", purpose="batch scoring")
    is_pandas = type(data).__module__.startswith("pandas") and hasattr(data, "columns")
    if is_pandas:
        pd = require("pandas", purpose="batch scoring")
        names = [str(c) for c in data.columns]
    elif isinstance(data, (pa.Table, pa.RecordBatch)):
        names = list(data.schema.names)
    else:
        raise InputError(
            f"batch.score takes a pandas DataFrame or a pyarrow Table; got {type(data).__name__}.",
            hint="for arrays, dicts or records use bundle.predict()",
        )
    check_columns(b, names, where="the data")
    kept = resolve_keep(b, names, keep)
    if is_pandas:
        return _score_pandas(b, data, kept, on_error, prefix, chunk_rows, return_rejects, pd)
    table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    scorer = ArrowChunkScorer(b, table.schema, keep=kept, on_error=on_error, prefix=prefix)
    out, rejects = [], Rejects()
    for start in range(0, max(table.num_rows, 1), chunk_rows):
        piece = table.slice(start, chunk_rows).combine_chunks()
        batch = piece.to_batches()[0] if piece.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema)
        scored, rej = scorer.score(batch, start)
        out.append(scored)
        rejects.extend(rej)
    result = pa.Table.from_batches(out, schema=scorer.schema)
    if return_rejects:
        return result, pa.table({"row": pa.array(rejects.rows, pa.int64()), "reason": pa.array(rejects.reasons, pa.string())})
    return result


def _score_pandas(
    b: Bundle, df: pd.DataFrame, kept: list[str], on_error: OnError, prefix: str, chunk_rows: int,
    return_rejects: bool, pd: Any,
) -> Any:
    core = ChunkScorer(b, on_error=on_error, prefix=prefix)
    check_clash(core, kept)
    frames = []
    rejects = Rejects()
    for start in range(0, max(len(df), 1), chunk_rows):
        frame, rej = score_frame(core, df.iloc[start:start + chunk_rows], kept, first_row=start)
        frames.append(frame)
        rejects.extend(rej)
    result = pd.concat(frames) if len(frames) > 1 else frames[0]
    if return_rejects:
        return result, pd.DataFrame({"row": pd.Series(rejects.rows, dtype="int64"), "reason": pd.Series(rejects.reasons, dtype=object)})
    return result


def check_clash(core: ChunkScorer, kept: Sequence[str]) -> None:
    clash = [n for n in core.output_names if n in kept]
    if clash:
        raise InputError(
            f"the input already has column(s) {_list(clash)}, which the prediction columns would overwrite.",
            hint="drop them with --keep / keep=..., or name the predictions differently with --prefix / prefix='pred_'",
        )


def score_frame(
    core: ChunkScorer, part: pd.DataFrame, kept: Sequence[str], *, first_row: int = 0, error_column: str | None = None
) -> tuple[pd.DataFrame, Rejects]:
    """Score one pandas chunk: kept columns + prediction columns (+ a reason column), index kept.

    Prediction columns use numpy dtypes when every row has a value, and nullable dtypes (``Int64``,
    NaN for floats) when rows may lack one (``on_error="null"`` or an error column), so that all
    partitions of a distributed frame share one schema.
    """
    pd = require("pandas", purpose="batch scoring")
    cols = {c: part[c] for c in core.columns}
    preds, scored, rejects = core.score_columns(cols, len(part), first_row)
    base = part[list(kept)] if kept else pd.DataFrame(index=part.index)
    nullable = core.on_error == "null" or error_column is not None
    if not nullable:
        if not scored.all():
            base = base[scored]
        pred_frame = pd.DataFrame({n: preds[n] for n, _ in core.output_layout}, index=base.index)
    else:
        data = {}
        for name, dtype in core.output_layout:
            col = pd.Series(np.nan if dtype.kind == "f" else pd.NA, index=base.index, dtype=_nullable_dtype(pd, dtype))
            if scored.any():
                col[scored] = preds[name]
            data[name] = col
        pred_frame = pd.DataFrame(data, index=base.index)
        if error_column is not None:
            errs = np.full(len(part), None, dtype=object)
            for r, why in zip(rejects.rows, rejects.reasons):
                errs[r - first_row] = why
            pred_frame[error_column] = pd.Series(errs, index=base.index, dtype="string")
    return (pd.concat([base, pred_frame], axis=1) if kept else pred_frame), rejects


def _nullable_dtype(pd: Any, dtype: np.dtype[Any]) -> Any:
    if dtype.kind == "f":
        return dtype
    if dtype.kind in "iu":
        return pd.Int64Dtype()
    if dtype.kind == "b":
        return pd.BooleanDtype()
    return object
