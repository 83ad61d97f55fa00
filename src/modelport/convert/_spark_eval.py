"""Spark ML's ``transform``, re-done in numpy from a read pipeline, for verification without a JVM.

This is the "original model" a Spark bundle is compared with when it is packed: each stage does
what Spark's own code does, in double precision, including what it does with **null** and with
**NaN** (they differ), and which rows it refuses (``handleInvalid='error'``) or drops
(``'skip'``). The test suite holds it to Spark's real ``transform`` in local mode.

==================  =========================================  ==========================================
stage               null                                       NaN
==================  =========================================  ==========================================
StringIndexer       keep: index numLabels; error: fails;       (numeric input: cast to "NaN", an unseen
                    skip: row dropped                          label) as an unseen label
OneHotEncoder       null vector                                keep: the invalid slot; error: fails
Imputer             the surrogate                              the surrogate when missingValue is NaN,
                                                               else stays NaN
Bucketizer          null (skip: row dropped)                   keep: bucket numBuckets; error: fails;
                                                               skip: row dropped
VectorAssembler     keep: NaN (vectors: NaN x size);           keep: NaN; error: fails; skip: dropped
                    error: fails; skip: row dropped
scalers, models     a null vector fails                        propagates (trees: NaN <= t is false)
==================  =========================================  ==========================================

A bundle cannot tell a missing value from NaN (both are a missing value to it); it scores every
missing value as Spark scores **null**, the missing value of Parquet, CSV and JSON data. So
``evaluate`` reads NaN in an input column as null unless told otherwise (``nan_is_null=False``,
which the tests use to check the NaN column of the table against Spark).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.convert._spark_plan import Plan, Step, splits
from modelport.convert._spark_read import Stage, Tree
from modelport.errors import InputError


@dataclass
class Col:
    """One Spark column over N rows: float64 values ([N] scalar or [N, k] vector; object [N] for
    text) and which rows are null."""

    values: np.ndarray
    null: np.ndarray


@dataclass
class Outcome:
    """The pipeline's outputs for every row (rows Spark refuses or drops hold placeholders), and
    per row why Spark refuses (``failed``) or drops (``dropped``) it."""

    outputs: dict[str, np.ndarray]
    failed: dict[int, str] = field(default_factory=dict)
    dropped: dict[int, str] = field(default_factory=dict)

    @property
    def refused(self) -> dict[int, str]:
        return {**self.dropped, **self.failed}


class _Rows:
    def __init__(self, n: int) -> None:
        self.n = n
        self.failed: dict[int, str] = {}
        self.dropped: dict[int, str] = {}

    def fail(self, mask: np.ndarray, why: Any) -> None:
        self._mark(self.failed, mask, why)

    def drop(self, mask: np.ndarray, why: Any) -> None:
        self._mark(self.dropped, mask, why)

    def invalid(self, mode: str, mask: np.ndarray, why: Any) -> None:
        """Rows Spark refuses (``error``) or drops (``skip``)."""
        (self.drop if mode == "skip" else self.fail)(mask, why)

    def _mark(self, into: dict[int, str], mask: np.ndarray, why: Any) -> None:
        for i in np.flatnonzero(mask).tolist():
            if i not in self.failed and i not in self.dropped:
                into[i] = why(i) if callable(why) else str(why)


def evaluate(plan: Plan, columns: Mapping[str, Any], *, nan_is_null: bool = True) -> Outcome:
    """Run ``plan`` on input ``columns`` (name -> 1-D values; None is null, and so is NaN unless
    ``nan_is_null`` is False)."""
    n = _length(columns, plan)
    rows = _Rows(n)
    frame: dict[str, Col] = {c.name: _input(c, columns[c.name], nan_is_null) for c in plan.inputs}
    for step in plan.steps:
        _STEPS[step.stage.kind](step, frame, rows, plan)
    outputs = _predict(plan, frame, rows)
    return Outcome(outputs=outputs, failed=rows.failed, dropped=rows.dropped)


def refusal(outcome: Outcome) -> InputError | None:
    """The error for rows Spark refuses or drops, naming the first few, or None."""
    refused = outcome.refused
    if not refused:
        return None
    first = sorted(refused)[:3]
    reasons = "; ".join(f"row {i}: {refused[i]}" for i in first)
    more = f" (and {len(refused) - len(first)} more)" if len(refused) > len(first) else ""
    return InputError(
        f"the Spark pipeline refuses {len(refused)} of {_rows_word(outcome)} row(s){more}: {reasons}",
        hint="a bundle refuses such rows too (batch scoring writes them to its rejects file with the reason)",
    )


def _rows_word(outcome: Outcome) -> str:
    first = next(iter(outcome.outputs.values()), None)
    return str(len(first)) if first is not None else "the"


def _length(columns: Mapping[str, Any], plan: Plan) -> int:
    lengths = {len(columns[c.name]) for c in plan.inputs if c.name in columns}
    missing = [c.name for c in plan.inputs if c.name not in columns]
    if missing:
        raise InputError(f"the data lacks the column(s) {', '.join(map(repr, missing))} the Spark pipeline reads.")
    if len(lengths) != 1:
        raise InputError(f"the columns given to the Spark pipeline have different lengths {sorted(lengths)}.")
    return lengths.pop()


def _input(column: Any, raw: Any, nan_is_null: bool) -> Col:
    if column.kind == "text":
        values = np.empty(len(raw), dtype=object)
        values[:] = list(raw)
        return Col(values, np.array([_is_null(v, True) for v in values.tolist()], dtype=bool))
    if column.kind == "codes":
        items = list(raw)
        out = np.full(len(items), np.nan)
        null = np.zeros(len(items), dtype=bool)
        unseen = np.zeros(len(items), dtype=bool)
        for i, v in enumerate(items):
            if _is_null(v, nan_is_null):
                null[i] = True
            elif isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
                unseen[i] = True  # text (or anything else) in a numeric column: no category
            else:
                out[i] = float(v)
        return _CodesCol(out, null, unseen)
    arr = np.asarray(raw)
    if arr.dtype.kind in "biuf":
        numbers = arr.astype(np.float64)
        null = np.isnan(numbers) if nan_is_null else np.zeros(len(numbers), dtype=bool)
    else:  # objects: None is null
        items = arr.tolist()
        null = np.array([_is_null(v, nan_is_null) for v in items], dtype=bool)
        numbers = np.array([np.nan if _is_null(v, True) else float(v) for v in items], dtype=np.float64)
    if column.spark_type == "float":
        numbers = numbers.astype(np.float32).astype(np.float64)
    elif column.spark_type == "integer":  # a fraction in an integer column: Spark's cast, toward zero
        numbers = np.trunc(numbers)
    return Col(numbers, null)


@dataclass
class _CodesCol(Col):
    """A numeric column read as categories; ``unseen`` rows hold something that is not a number."""

    unseen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def _is_null(v: Any, nan_is_null: bool) -> bool:
    if v is None or type(v).__name__ in ("NAType", "NaTType"):
        return True
    return nan_is_null and isinstance(v, (float, np.floating)) and math.isnan(v)


# ------------------------------------------------------------------------------ feature stages
def _string_indexer(step: Step, frame: dict[str, Col], rows: _Rows, plan: Plan) -> None:
    s = step.stage
    mode = str(s.param("handleInvalid"))
    for pos, src, out in step.pairs:
        labels = s.data["labels"][pos]
        col = frame[src]
        n = len(col.null)
        index = np.full(n, float(len(labels)))
        if isinstance(col, _CodesCol):
            lookup = {v: float(i) for i, v in enumerate(plan.input(src).categories or ())}
            known = np.zeros(n, dtype=bool)
            for i, v in enumerate(col.values.tolist()):
                if not col.null[i] and not col.unseen[i] and v in lookup:
                    index[i] = lookup[v]
                    known[i] = True
        else:
            text = {label: float(i) for i, label in enumerate(labels)}
            known = np.zeros(n, dtype=bool)
            for i, v in enumerate(col.values.tolist()):
                if not col.null[i] and isinstance(v, str) and v in text:
                    index[i] = text[v]
                    known[i] = True
        if mode != "keep":
            unseen = ~known & ~col.null
            rows.invalid(mode, col.null, f"{s.name} {s.uid!r} (handleInvalid={mode!r}) meets a null in {src!r}")
            rows.invalid(mode, unseen, lambda i, c=col, src=src, m=mode: (
                f"{s.name} {s.uid!r} (handleInvalid={m!r}) meets {_show(c.values[i])} in {src!r}, "
                "which is not one of its labels"))
        frame[out] = Col(index, np.zeros(n, dtype=bool))


def _one_hot(step: Step, frame: dict[str, Col], rows: _Rows, plan: Plan) -> None:
    s = step.stage
    keep = s.param("handleInvalid") == "keep"
    for pos, src, out in step.pairs:
        size = int(s.data["sizes"][pos])
        width = plan.widths[out]
        col = frame[src]
        unseen = col.unseen if isinstance(col, _CodesCol) else np.zeros(len(col.null), dtype=bool)
        x = col.values.astype(np.float64)
        with np.errstate(invalid="ignore"):
            valid = ~col.null & ~unseen & (x >= 0) & (x < size)
        invalid = ~valid & ~col.null
        if not keep:
            rows.fail(invalid, lambda i, x=x, src=src, size=size, u=unseen: (
                f"{s.name} {s.uid!r} (handleInvalid='error') meets "
                f"{'a value that is not a number' if u[i] else repr(float(x[i]))} in {src!r}, "
                f"which is not a category index 0..{size - 1}"))
        idx = np.where(valid, np.trunc(np.where(valid, x, 0.0)), float(size)).astype(np.int64)
        vec = np.zeros((len(x), width))
        hit = idx < width
        vec[np.flatnonzero(hit), idx[hit]] = 1.0
        frame[out] = Col(vec, col.null.copy())


def _imputer(step: Step, frame: dict[str, Col], rows: _Rows, plan: Plan) -> None:
    s = step.stage
    missing_value = float(s.param("missingValue", math.nan))
    for _, src, out in step.pairs:
        col = frame[src]
        surrogate = float(s.data["surrogates"][src])
        x = col.values.astype(np.float64)
        missing = col.null | (np.isnan(x) if math.isnan(missing_value) else (x == missing_value))
        y = np.where(missing, surrogate, x)
        # the output has the input column's type (Spark casts it back)
        spark_type = _type_of(plan, src)
        if spark_type == "integer":
            y = np.trunc(y)
        elif spark_type == "float":
            y = y.astype(np.float32).astype(np.float64)
        frame[out] = Col(y, np.zeros(len(y), dtype=bool))


def _bucketizer(step: Step, frame: dict[str, Col], rows: _Rows, plan: Plan) -> None:
    s = step.stage
    mode = str(s.param("handleInvalid"))
    for pos, src, out in step.pairs:
        edges = splits(s, pos)
        col = frame[src]
        x = col.values.astype(np.float64)
        nan = np.isnan(x) & ~col.null
        if mode == "skip":
            rows.drop(col.null, f"{s.name} {s.uid!r} (handleInvalid='skip') drops rows with a null in {src!r}")
        if mode != "keep":
            rows.invalid(mode, nan, f"{s.name} {s.uid!r} (handleInvalid={mode!r}) meets NaN in {src!r}")
        bucket = np.zeros(len(x))
        for edge in edges[1:-1]:
            bucket += _java_le(edge, x)
        bucket = np.where(x == edges[-1], float(len(edges) - 2), bucket)
        below = ~np.isnan(x) & ~_java_le(edges[0], x)
        above = ~np.isnan(x) & (x > edges[-1])
        rows.fail(below | above, lambda i, x=x, src=src, e=edges: (
            f"{s.name} {s.uid!r} meets {float(x[i])!r} in {src!r}, outside its splits [{e[0]}, {e[-1]}]"))
        bucket = np.where(nan, float(len(edges) - 1), bucket)
        frame[out] = Col(bucket, col.null.copy())


def _java_le(edge: float, x: np.ndarray) -> np.ndarray:
    """``Double.compare(edge, x) <= 0``: IEEE ``<=`` except that -0.0 sorts below 0.0 (NaN: False)."""
    le = edge <= x
    if edge == 0.0 and not math.copysign(1.0, edge) < 0:
        le = le & ~((x == 0.0) & np.signbit(x))
    return le


def _assembler(step: Step, frame: dict[str, Col], rows: _Rows, plan: Plan) -> None:
    s = step.stage
    mode = str(s.param("handleInvalid"))
    parts = []
    for name in s.param("inputCols"):
        col = frame[str(name)]
        bad = col.null.copy()
        values = col.values.astype(np.float64)
        if values.ndim == 1:
            bad |= np.isnan(values)
            values = values[:, None]
        if mode == "keep":
            values = np.where(col.null[:, None], np.nan, values)
        else:
            rows.invalid(mode, bad, lambda i, c=col, name=name, m=mode: (
                f"{s.name} {s.uid!r} (handleInvalid={m!r}) meets "
                f"{'a null' if c.null[i] else 'NaN'} in {name!r}"))
        parts.append(values)
    vec = np.concatenate(parts, axis=1) if parts else np.zeros((rows.n, 0))
    frame[step.pairs[0][2]] = Col(vec, np.zeros(rows.n, dtype=bool))


def _null_vectors(stage: Stage, col: Col, src: str, rows: _Rows) -> None:
    rows.fail(col.null, f"{stage.name} {stage.uid!r} meets a null vector in {src!r}")


def _standard_scaler(step: Step, frame: dict[str, Col], rows: _Rows, plan: Plan) -> None:
    s = step.stage
    _, src, out = step.pairs[0]
    col = frame[src]
    _null_vectors(s, col, src, rows)
    x = col.values
    std, mean = s.data["std"], s.data["mean"]
    with np.errstate(divide="ignore"):
        scale = np.where(std == 0.0, 0.0, 1.0 / np.where(std == 0.0, 1.0, std))
    with_mean, with_std = bool(s.param("withMean")), bool(s.param("withStd"))
    with np.errstate(invalid="ignore", over="ignore"):
        if with_mean and with_std:
            y = (x - mean) * scale
        elif with_mean:
            y = x - mean
        elif with_std:
            y = x * scale
        else:
            y = x.copy()
    frame[out] = Col(y, col.null.copy())


def _min_max_scaler(step: Step, frame: dict[str, Col], rows: _Rows, plan: Plan) -> None:
    s = step.stage
    _, src, out = step.pairs[0]
    col = frame[src]
    _null_vectors(s, col, src, rows)
    lo, hi = s.data["original_min"], s.data["original_max"]
    low, high = float(s.param("min")), float(s.param("max"))
    span = high - low
    rng = hi - lo
    scale = np.where(rng != 0, span / np.where(rng != 0, rng, 1.0), 0.0)
    x = col.values
    with np.errstate(invalid="ignore", over="ignore"):
        y = (x - lo) * scale + low
    constant = (low + high) / 2
    y = np.where(np.isnan(x), x, np.where(scale != 0, y, constant))
    frame[out] = Col(y, col.null.copy())


_STEPS = {
    "string_indexer": _string_indexer,
    "one_hot": _one_hot,
    "imputer": _imputer,
    "bucketizer": _bucketizer,
    "assembler": _assembler,
    "standard_scaler": _standard_scaler,
    "min_max_scaler": _min_max_scaler,
}


def _type_of(plan: Plan, column: str) -> str:
    for c in plan.inputs:
        if c.name == column:
            return c.spark_type
    return "double"


# ------------------------------------------------------------------------------ predictors
def _predict(plan: Plan, frame: dict[str, Col], rows: _Rows) -> dict[str, np.ndarray]:
    p = plan.predictor
    features = str(p.param("featuresCol", "features"))
    col = frame[features]
    _null_vectors(p, col, features, rows)
    x = col.values.astype(np.float64)
    if p.kind == "linear":
        with np.errstate(invalid="ignore", over="ignore"):
            return {"prediction": x @ p.data["coefficients"] + p.data["intercept"]}
    if p.kind == "logistic":
        return _logistic(plan, x)
    margins = _tree_margins(p, x, plan)
    if plan.task == "regression":
        return {"prediction": margins}
    if p.kind == "gbt":
        m = margins
        with np.errstate(over="ignore", invalid="ignore"):
            p1 = 1.0 / (1.0 + np.exp(-2.0 * m))
        proba = np.column_stack([1.0 - p1, p1])
        raw = np.column_stack([-m, m])
    else:
        raw = margins
        with np.errstate(invalid="ignore", divide="ignore"):
            proba = raw / raw.sum(axis=1, keepdims=True)
    return _classified(plan, raw, proba, p)


def _logistic(plan: Plan, x: np.ndarray) -> dict[str, np.ndarray]:
    p = plan.predictor
    coef, intercepts = p.data["coefficients"], p.data["intercepts"]
    with np.errstate(invalid="ignore", over="ignore"):
        margins = x @ coef.T + intercepts
    if not p.data["multinomial"]:
        m = margins[:, 0]
        raw = np.column_stack([-m, m])
        with np.errstate(over="ignore"):
            proba = 1.0 / (1.0 + np.exp(-raw))
        t = logistic_threshold(p)
        raw_threshold = -math.inf if t == 0.0 else math.inf if t == 1.0 else math.log(t / (1.0 - t))
        index = (m > raw_threshold).astype(np.int64)
        return {"label": _labels(plan, index), "probabilities": proba}
    proba = _softmax(margins)
    return _classified(plan, margins, proba, p, thresholds=_thresholds(p))


def logistic_threshold(p: Stage) -> float:
    """A binomial LogisticRegression's threshold (from ``thresholds`` when those are set)."""
    ts = p.params.get("thresholds")
    if isinstance(ts, list) and len(ts) == 2:
        return 1.0 / (1.0 + float(ts[0]) / float(ts[1])) if float(ts[1]) != 0 else 0.0
    return float(p.param("threshold", 0.5))


def _thresholds(p: Stage) -> list[float] | None:
    ts = p.params.get("thresholds")
    return [float(t) for t in ts] if isinstance(ts, list) and ts else None


def _softmax(margins: np.ndarray) -> np.ndarray:
    out = np.empty_like(margins)
    idx = java_argmax(margins)
    top = margins[np.arange(len(margins)), idx]
    inf = top == np.inf
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        # Spark subtracts the largest margin only when it is positive
        e = np.exp(margins - np.where(top > 0, top, 0.0)[:, None])
        out[:] = e * (1.0 / e.sum(axis=1, keepdims=True))
    if inf.any():
        out[inf] = 0.0
        out[np.flatnonzero(inf), idx[inf]] = 1.0
    return out


def java_argmax(v: np.ndarray) -> np.ndarray:
    """Spark's ``Vector.argmax`` per row: the first index whose value is greater than all before it."""
    best = np.zeros(len(v), dtype=np.int64)
    top = v[:, 0].copy()
    for k in range(1, v.shape[1]):
        better = v[:, k] > top
        best[better] = k
        top[better] = v[better, k]
    return best


def _classified(plan: Plan, raw: np.ndarray, proba: np.ndarray, p: Stage,
                thresholds: list[float] | None = None) -> dict[str, np.ndarray]:
    ts = thresholds if thresholds is not None else _thresholds(p)
    if ts is None:
        index = java_argmax(raw)
    else:
        t = np.asarray(ts, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = np.where(t == 0.0, np.inf, proba / np.where(t == 0.0, 1.0, t))
        index = java_argmax(scaled)
    return {"label": _labels(plan, index), "probabilities": proba}


def _labels(plan: Plan, index: np.ndarray) -> np.ndarray:
    classes = list(plan.classes or ())
    if classes and isinstance(classes[0], str):
        return np.array([classes[i] for i in index.tolist()], dtype=object)
    return np.asarray(classes, dtype=np.int64)[index]


def _tree_margins(p: Stage, x: np.ndarray, plan: Plan) -> np.ndarray:
    trees: list[Tree] = p.data["trees"]
    weights = np.asarray(p.data["weights"], dtype=np.float64)
    classifier = plan.task == "classification" and p.kind != "gbt"
    n = len(x)
    if classifier:
        k = plan.num_classes
        raw = np.zeros((n, k))
        for tree in trees:
            leaf = route(tree, x)
            for i in np.unique(leaf).tolist():
                stats = tree.stats[i]
                total = stats.sum()
                if p.kind == "tree":
                    contribution = stats
                elif total != 0:
                    contribution = stats / total
                else:
                    continue
                raw[leaf == i, :contribution.size] += contribution[:k]
        return raw
    preds = np.stack([tree.prediction[route(tree, x)] for tree in trees], axis=1)
    if p.kind == "forest":
        return preds.sum(axis=1) / len(trees)
    if p.kind == "gbt":
        return preds @ weights
    return preds[:, 0]


def route(tree: Tree, x: np.ndarray) -> np.ndarray:
    """The leaf (node position) each row of ``x`` reaches: x <= threshold, or x among the
    left categories, goes left; NaN goes right."""
    position = np.empty(int(tree.ids.max()) + 1, dtype=np.int64)
    position[tree.ids] = np.arange(tree.ids.size)
    node = np.full(len(x), int(position[0]), dtype=np.int64)
    active = tree.left[node] >= 0
    while active.any():
        rows = np.flatnonzero(active)
        cur = node[rows]
        left = np.empty(rows.size, dtype=bool)
        for j in np.unique(cur).tolist():
            at = cur == j
            v = x[rows[at], int(tree.feature[j])]
            if int(tree.num_categories[j]) == -1:
                left[at] = v <= tree.split_values[j][0]
            else:
                left[at] = np.isin(v, tree.split_values[j])
        child = np.where(left, tree.left[cur], tree.right[cur])
        node[rows] = position[child]
        active = tree.left[node] >= 0
    return node


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
