"""The chunk scorer: model columns of one chunk -> ONNX feeds -> prediction columns, row errors isolated.

Every engine (local chunks, worker processes, Dask partitions, Spark pandas UDFs) scores through
:class:`ChunkScorer`, so all of them give the same columns, the same values and the same errors.

This module only decodes a chunk's columns (pyarrow or pandas) to numpy arrays. Whether a row can
be scored is decided by :meth:`modelport.runtime.coerce.FeedBuilder.check`, the same rules and
words as ``bundle.predict`` and the server, vectorised per column: it returns the feeds of the
rows that pass and a reason for each row that does not. Should ONNX Runtime still refuse rows,
:meth:`~modelport.runtime.session.Runtime.run_rows` narrows that down to single rows. Depending on
``on_error`` such rows stop the job (``fail``), are left out (``skip``) or get null predictions
(``null``); both of the latter report them as rejects (global row number and reason). Values
outside a column's categories that are scored anyway are counted (:attr:`Rejects.unknown`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modelport._deps import require
from modelport.errors import InputError
from modelport.runtime.coerce import FeedBuilder
from modelport.runtime.session import output_columns

if TYPE_CHECKING:
    import pandas as pd

    from modelport.bundle.core import Bundle
    from modelport.runtime.session import Runtime

OnError = Literal["fail", "skip", "null"]
ON_ERROR = ("fail", "skip", "null")
#: hidden columns engines carry so that assembly can restore global row numbers and rejects
ERROR_COLUMN = "__modelport_error"
#: ... and count the unknown categories that were scored (the names of the columns, per row)
UNKNOWN_COLUMN = "__modelport_unknown"
#: For runs with several ONNX Runtime threads (``--threads``): by default a run's rows are split
#: into one block per thread, so a thread that the reading and writing threads delay holds up the
#: whole run; smaller blocks handed out as threads become free keep the cores busy (measured with
#: one 2-thread scorer, bench/batch/bench_throughput.py: 0.79 -> 0.84 to 0.88 of raw session.run).
#: The default single process runs single-threaded calls side by side instead, where it is moot.
BATCH_SESSION_CONFIG = {"session.dynamic_block_base": "4"}


@dataclass
class Rejects:
    """Rows that could not be scored: global row numbers (0-based, in input order) and reasons;
    and, per column, how many scored rows held a value outside the column's categories."""

    rows: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    unknown: dict[str, int] = field(default_factory=dict)
    #: for one chunk: per column, which of its rows held an unknown category (not merged by extend)
    unknown_rows: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def add(self, row: int, reason: str) -> None:
        self.rows.append(int(row))
        self.reasons.append(reason)

    def extend(self, other: Rejects) -> None:
        self.rows.extend(other.rows)
        self.reasons.extend(other.reasons)
        add_counts(self.unknown, other.unknown)

    def __len__(self) -> int:
        return len(self.rows)


def add_counts(into: dict[str, int], more: Mapping[str, int]) -> None:
    """Add per-column counts ``more`` to ``into``."""
    for k, v in more.items():
        into[k] = into.get(k, 0) + int(v)


def unknown_summary(counts: Mapping[str, int]) -> str | None:
    """One line for a job's summary about the unknown categories it scored, or None."""
    if not counts:
        return None
    total = sum(counts.values())
    shown = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10])
    return f"{total:,} value(s) outside their column's categories were scored (not refused): {shown}"


def with_unknown_policy(bundle: Bundle, unknown_categories: str | None) -> Bundle:
    """``bundle`` with every categorical column's unknown-category policy set to ``unknown_categories``
    (None: ``bundle`` itself). The policy then travels with the bundle to every worker and engine;
    its digest changes with it, so a resumed job cannot mix policies."""
    if unknown_categories is None:
        return bundle
    FeedBuilder(bundle.signature, unknown_categories=unknown_categories)  # refuses what a column cannot do
    from modelport.bundle import manifest as mf
    from modelport.bundle.core import Bundle as _Bundle

    manifest = dict(bundle.manifest)
    signature = dict(manifest["signature"])
    columns = signature.get("columns")
    if not columns or not any(c.get("categories") is not None for c in columns):
        return bundle
    signature["columns"] = [
        {**c, "unknown": unknown_categories} if c.get("categories") is not None else c for c in columns
    ]
    manifest["signature"] = signature
    files = {**bundle.files, "manifest.json": mf.dumps(manifest)}
    return _Bundle(files, origin=f"{bundle.origin} (unknown categories: {unknown_categories})")


def input_columns(bundle: Bundle) -> list[str]:
    """The columns a file must have for this bundle: its tabular columns, or its graph inputs."""
    sig = bundle.signature
    return sig.column_names if sig.columns is not None else [t.name for t in sig.inputs]


def check_columns(bundle: Bundle, available: Sequence[str], *, where: str = "the input") -> None:
    """Refuse an input that lacks model columns, naming the missing ones and the unexpected ones."""
    need = input_columns(bundle)
    have = set(available)
    missing = [c for c in need if c not in have]
    if missing:
        wanted = set(need)
        unexpected = [c for c in available if c not in wanted]
        # the words of the runtime's own refusal; columns the model does not use are copied, not refused
        what = "column" if bundle.signature.columns is not None else "input"
        extra = f" (it also has {_list(unexpected)}, which the model does not use)" if unexpected else ""
        raise InputError(
            f"{where}: missing {what}(s): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}{extra}. "
            f"The model expects {what}s: {', '.join(need[:20])}{' ...' if len(need) > 20 else ''}.",
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
    """One chunk after :meth:`ChunkScorer.prepare`: the runtime feeds of the rows that can be
    scored, the rows that cannot (and why), and the unknown categories among the scored rows."""

    n_rows: int
    first_row: int
    bad: np.ndarray
    reasons: dict[int, str]
    feeds: dict[str, np.ndarray]
    unknown: dict[str, int] = field(default_factory=dict)
    unknown_rows: dict[str, np.ndarray] = field(default_factory=dict)


class ChunkScorer:
    """Scores column chunks with one bundle; shared by every engine.

    ``unknown_categories`` overrides the bundle's policy for values outside a column's
    categories (``native``, ``missing`` or ``error``).
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        on_error: OnError = "fail",
        prefix: str = "",
        runtime: Runtime | None = None,
        unknown_categories: str | None = None,
    ) -> None:
        if on_error not in ON_ERROR:
            raise InputError(f"on_error must be one of {', '.join(ON_ERROR)}; got {on_error!r}.")
        self.bundle = bundle
        self.runtime = runtime or bundle.runtime
        self.builder = (self.runtime.builder if unknown_categories is None
                        else FeedBuilder(bundle.signature, unknown_categories=unknown_categories))
        self.on_error = on_error
        self.prefix = prefix
        self.columns = input_columns(bundle)
        sig = bundle.signature
        self._form = "columns" if sig.columns is not None else "tensors"
        if sig.columns is not None:
            self._text = {c.name: c.dtype in ("str", "category") or sig.input(c.input).dtype == "str" for c in sig.columns}
        else:
            self._text = {t.name: t.dtype == "str" for t in sig.inputs}
        self.output_layout = self._layout()

    # ------------------------------------------------------------------ output description
    def _layout(self) -> list[tuple[str, np.dtype[Any]]]:
        """(column name, numpy dtype) of the prediction columns, in order."""
        cols = output_columns(self._empty_outputs(), self.bundle.classes)
        return [(self.prefix + name, arr.dtype) for name, arr in cols.items()]

    def _empty_outputs(self) -> dict[str, np.ndarray]:
        ref = self.bundle.reference_outputs
        if ref and all(n in ref for n in self.runtime.output_names):
            return {n: ref[n][:0] for n in self.runtime.output_names}
        return self.runtime.empty_outputs()

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
        """The numpy work of :meth:`score_columns` before ONNX Runtime runs: decoding, checks, feeds.

        Separate so that a pipeline can prepare the next chunk while the runtime scores this one.
        """
        if n_rows == 0:
            return Prepared(n_rows, first_row, np.zeros(0, dtype=bool), {}, {})
        arrays = {name: _to_numpy(cols[name], text=self._text[name]) for name in self.columns}
        checked = self.builder.check(arrays, form=self._form)
        bad = checked.bad if checked.bad is not None else np.zeros(n_rows, dtype=bool)
        if checked.bad is not None and self.on_error == "fail":
            first = int(np.flatnonzero(bad)[0])
            raise self._row_error(first_row + first, checked.reasons[first])
        unknown = checked.unknown_counts
        if unknown:
            self.runtime.count_unknown(unknown)
        rows = {k: v for k, v in checked.unknown.items() if k in unknown}
        return Prepared(n_rows, first_row, bad, checked.reasons, checked.feeds, unknown, rows)

    def run(self, p: Prepared) -> tuple[dict[str, np.ndarray], np.ndarray, Rejects]:
        """Run a prepared chunk; see :meth:`score_columns`."""
        n_rows, first_row = p.n_rows, p.first_row
        rejects = Rejects(unknown=dict(p.unknown), unknown_rows=p.unknown_rows)
        if n_rows == 0:
            empty = {n: np.empty(0, dtype=d) for n, d in self.output_layout}
            return empty, np.zeros(0, dtype=bool), rejects
        reasons = dict(p.reasons)
        ok_idx = np.flatnonzero(~p.bad)
        scored = np.zeros(n_rows, dtype=bool)
        if ok_idx.size:
            # rows ONNX Runtime refuses although the input rules let them through are found by bisection
            result, ran, refused = self.runtime.run_rows(p.feeds)
            if refused:
                first = min(refused)
                if self.on_error == "fail":
                    raise self._row_error(first_row + int(ok_idx[first]), refused[first])
                for j, why in refused.items():
                    reasons[int(ok_idx[j])] = why
            scored[ok_idx[ran]] = True
        else:
            result = self.runtime.empty_outputs()
        for i in sorted(reasons):
            rejects.add(first_row + i, reasons[i])
        out = {self.prefix + k: v for k, v in output_columns(result, self.bundle.classes).items()}
        return out, scored, rejects

    def _row_error(self, row: int, reason: str) -> InputError:
        return InputError(
            f"row {row} cannot be scored: {reason}",
            hint="fix the row, or pass --on-error skip (leave such rows out, listed in a rejects file) "
            "or --on-error null (null predictions)",
        )


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
        #: ``score --log``: a :class:`modelport.monitor.log.ScoredChunks` that gets each chunk's scored rows
        self.log: Any = None
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
        if self.log is not None:
            self.log.write(batch, p, preds, scored, self.core.prefix)
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
    unknown_categories: str | None = None,
) -> Any:
    """Score a pandas DataFrame or pyarrow Table; returns the same kind with prediction columns.

    The result holds the kept input columns (by default those that are not model inputs, such as
    ids; ``keep="all"``, ``"none"`` or a list of names) followed by the prediction columns
    (``label`` and ``proba_<class>`` for classifiers, ``prediction`` for regressors). A DataFrame
    keeps its index. ``on_error="skip"`` leaves out rows that cannot be scored and ``"null"``
    gives them null predictions; ``return_rejects=True`` also returns a DataFrame / Table of
    ``row`` (0-based position) and ``reason``, whose ``attrs["unknown_categories"]`` (DataFrame) or
    schema metadata (Table) counts, per column, the values outside its categories that were
    scored. ``unknown_categories`` (``native``, ``missing``, ``error``) overrides the bundle's
    policy for such values; ``error`` makes them rejects.
    """
    from modelport._uri import load

    b = with_unknown_policy(load(bundle), unknown_categories)
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
        import json

        table = pa.table({"row": pa.array(rejects.rows, pa.int64()), "reason": pa.array(rejects.reasons, pa.string())})
        return result, table.replace_schema_metadata({"unknown_categories": json.dumps(rejects.unknown)})
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
        frame = pd.DataFrame({"row": pd.Series(rejects.rows, dtype="int64"), "reason": pd.Series(rejects.reasons, dtype=object)})
        frame.attrs["unknown_categories"] = dict(rejects.unknown)
        return result, frame
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
        if error_column == ERROR_COLUMN:  # an engine's part: say which rows held unknown categories
            marks = np.full(len(part), None, dtype=object)
            for name, rows in rejects.unknown_rows.items():
                for i in np.flatnonzero(rows).tolist():
                    marks[i] = name if marks[i] is None else f"{marks[i]},{name}"
            pred_frame[UNKNOWN_COLUMN] = pd.Series(marks, index=base.index, dtype="string")
    return (pd.concat([base, pred_frame], axis=1) if kept else pred_frame), rejects


def _nullable_dtype(pd: Any, dtype: np.dtype[Any]) -> Any:
    if dtype.kind == "f":
        return dtype
    if dtype.kind in "iu":
        return pd.Int64Dtype()
    if dtype.kind == "b":
        return pd.BooleanDtype()
    return object
