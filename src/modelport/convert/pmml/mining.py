"""MiningModel: a Segmentation of models combined by sum, average, weightedAverage, median, max,
majorityVote, weightedMajorityVote, modelChain or selectFirst.

A segment applies to the rows where its predicate is TRUE. Segments that are plain TreeModels (the
forests and boosted ensembles that sklearn2pmml and the JPMML converters write) are routed together,
as one tree ensemble, and their leaves looked up as one table; any other segment is evaluated by
:func:`~.document.run_model` like a top model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modelport.convert.pmml import trees as tr
from modelport.convert.pmml.reader import Element
from modelport.convert.pmml.semantics import (
    Env,
    Result,
    attr,
    bad,
    class_list,
    known_children,
    normalize_label,
    number,
    predicate,
    predicate_of,
    probs_label,
    unsupported,
)

METHODS = ("sum", "average", "weightedAverage", "median", "max", "majorityVote", "weightedMajorityVote",
           "modelChain", "selectFirst")


def mining_model(el: Element, env: Env) -> Result:
    from modelport.convert.pmml.document import run_model, target_def

    known_children(el, ("MiningSchema", "Output", "ModelStats", "ModelExplanation", "Targets", "LocalTransformations",
                        "Segmentation", "ModelVerification", "Regression", "DecisionTree"))
    seg = el.find("Segmentation")
    if seg is None:
        raise bad(el, "the MiningModel has no Segmentation.")
    known_children(seg, ("Segment", "LocalTransformations"))
    lt = seg.find("LocalTransformations")
    if lt is not None:
        env = env.child()
        env.define(lt)
    method = attr(seg, "multipleModelMethod", required=True) or ""
    if method not in METHODS:
        raise unsupported(seg, f"multipleModelMethod {method!r} is not supported",
                          hint=f"modelport combines segments by {', '.join(METHODS)}")
    mpt = attr(seg, "missingPredictionTreatment", "returnMissing")
    if mpt not in ("returnMissing", "skipSegment"):
        raise unsupported(seg, f"missingPredictionTreatment {mpt!r} is not supported")
    if number(seg, "missingThreshold", 1.0) != 1.0:
        raise unsupported(seg, "a missingThreshold other than 1 is not supported")
    function = attr(el, "functionName") or ""
    segments = seg.findall("Segment")
    if not segments:
        raise bad(seg, "the Segmentation has no Segment.")
    b = env.b
    target = target_def(el, env)
    numeric = target is not None and target.numeric

    if method in ("modelChain", "selectFirst"):
        result: Result | None = None
        taken = b.false()
        for s in segments:
            model = _segment_model(s)
            t, _ = predicate(predicate_of(s), env)
            r = run_model(model, env)
            if method == "modelChain":
                # the last segment that applies answers (its Output fields feed the next ones)
                result = r if result is None else _choose(b, t, r, result, target, numeric)
                if result is not r:
                    pass
            else:
                here = b.logic("and", t, b.logic("not", taken))
                result = _mask(b, r, here) if result is None else _choose(b, here, r, result, target, numeric)
                taken = b.logic("or", taken, t)
        assert result is not None
        if method == "modelChain":
            last_t, _ = predicate(predicate_of(segments[-1]), env)
            result = _mask_unless(b, result, last_t, segments)
        return _relabel(b, result)

    # aggregation: every segment's result with the rows it applies to
    parts: list[tuple[Result, Any, float]] = []
    batch = _tree_batch(segments)
    if batch:
        parts.extend(_tree_segments(batch, env, function, target, numeric))
    else:
        for s in segments:
            model = _segment_model(s)
            t, _ = predicate(predicate_of(s), env)
            parts.append((run_model(model, env), t, float(number(s, "weight", 1.0) or 0.0)))
    if function == "regression":
        return _aggregate_regression(b, method, parts, mpt, seg)
    if function == "classification":
        return _aggregate_classification(b, method, parts, mpt, seg, target, numeric)
    raise unsupported(el, f"a MiningModel with functionName {function!r} is not supported")


def _segment_model(s: Element) -> Element:
    from modelport.convert.pmml.document import MODEL_TAGS

    models = [c for c in s.children if c.tag in MODEL_TAGS]
    for c in s.children:
        if c.tag not in (*MODEL_TAGS, "Extension", *tr.PREDICATES, "VariableWeight"):
            raise unsupported(c, f"the PMML element <{c.tag}> inside <Segment> is not supported")
    if s.find("VariableWeight") is not None:
        raise unsupported(s.find("VariableWeight"), "a Segment with a VariableWeight is not supported")  # type: ignore[arg-type]
    if len(models) != 1:
        raise bad(s, f"a Segment must hold one model; it holds {len(models)}.")
    return models[0]


def _tree_batch(segments: list[Element]) -> list[tuple[Element, Element, float]]:
    """The segments, when all are plain TreeModels that apply to every row (routed as one ensemble)."""
    out = []
    for s in segments:
        model = _segment_model(s)
        if model.tag != "TreeModel" or predicate_of(s).tag != "True":
            return []
        if any(model.find(t) is not None for t in ("LocalTransformations", "Targets", "Output")):
            return []
        ms = model.find("MiningSchema")
        if ms is None:
            return []
        for mf in ms.findall("MiningField"):
            if any(k in mf.attrs for k in ("missingValueReplacement", "outliers", "invalidValueTreatment")):
                return []
        out.append((s, model, float(number(s, "weight", 1.0) or 0.0)))
    return out


def _tree_segments(batch: list[tuple[Element, Element, float]], env: Env, function: str, target: Any,
                   numeric: bool) -> list[tuple[Result, Any, float]]:
    b = env.b
    trees = [tr.read_tree(m) for _, m, _ in batch]
    for _, m, _ in batch:
        if (attr(m, "functionName") or "") != function:
            raise unsupported(m, "a segment whose functionName differs from its MiningModel's is not supported")
    matrix = tr.indicators(trees, env)
    idx = tr.route(trees, env, matrix)
    out: list[tuple[Result, Any, float]] = []
    true = b.true()
    if function == "regression":
        for t, i, (_, _, w) in zip(trees, idx, batch):
            values, _, _ = tr.outcome_tables(t, "regression", None, True, b.float_context)
            out.append((Result("regression", value=b.lookup(values, i)), true, w))
        return out
    classes = tr.tree_classes(trees, env, target)
    for t, i, (_, _, w) in zip(trees, idx, batch):
        _, probs, labels = tr.outcome_tables(t, "classification", classes, numeric, b.float_context)
        cols = [b.lookup([p[k] for p in probs], i) for k in range(len(classes))]
        label = b.lookup(labels, i)
        label = b.where(b.isnan(label), probs_label(b, cols), label)
        out.append((Result("classification", classes=classes, probs=cols, label=label,
                           class_values=tuple(_num(c) for c in classes) if numeric else ()), true, w))
    return out


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _mask(b: Any, r: Result, keep: Any) -> Result:
    """``r`` where ``keep``, no prediction elsewhere."""
    drop = b.logic("not", keep)
    if r.kind == "regression":
        return Result(r.kind, value=b.nan_where(drop, r.value), extras=r.extras)
    return Result(r.kind, classes=r.classes, probs=[b.nan_where(drop, p) for p in r.probs],
                  label=b.nan_where(drop, r.label), extras=r.extras, class_values=r.class_values)


def _mask_unless(b: Any, r: Result, t: Any, segments: list[Element]) -> Result:
    # a chain's answer is its last segment's: rows it does not apply to get no prediction
    if predicate_of(segments[-1]).tag == "True":
        return r
    return _mask(b, r, t)


def _choose(b: Any, cond: Any, a: Result, other: Result, target: Any, numeric: bool) -> Result:
    """Per row: ``a`` where ``cond``, else ``other``."""
    if a.kind != other.kind:
        # a chain's earlier segments may be of another kind (a regression feeding a classifier)
        return _mask(b, a, cond)
    if a.kind == "regression":
        return Result(a.kind, value=b.where(cond, a.value, other.value), extras={**other.extras, **a.extras})
    classes = class_list(target, [*other.classes, *a.classes])
    from modelport.convert.pmml.document import widen

    a2 = widen(b, a, classes) if a.classes != classes else a
    o2 = widen(b, other, classes) if other.classes != classes else other
    return Result(a.kind, classes=classes, probs=[b.where(cond, x, y) for x, y in zip(a2.probs, o2.probs)],
                  label=b.where(cond, a2.label, o2.label), extras={**o2.extras, **a2.extras},
                  class_values=a2.class_values)


def _relabel(b: Any, r: Result) -> Result:
    return r


def _aggregate_regression(b: Any, method: str, parts: list[tuple[Result, Any, float]], mpt: str | None,
                          seg: Element) -> Result:
    for r, _, _ in parts:
        if r.kind != "regression":
            raise bad(seg, "a regression MiningModel combines a segment that is not a regression.")
    if method in ("majorityVote", "weightedMajorityVote"):
        raise bad(seg, f"multipleModelMethod {method} applies to classification, not regression.")
    values, applies, weights = [], [], []
    any_missing = b.false()
    for r, t, w in parts:
        miss = b.logic("and", t, b.isnan(r.value))
        any_missing = b.logic("or", any_missing, miss)
        use = b.logic("and", t, b.logic("not", b.isnan(r.value)))
        values.append(r.value)
        applies.append(use)
        weights.append(w)
    zero = b.const(0.0)
    if method in ("sum", "average", "weightedAverage"):
        total = None
        wsum = None
        for v, use, w in zip(values, applies, weights):
            wv = w if method == "weightedAverage" else 1.0
            term = b.where(use, v if wv == 1.0 else b.mul(v, b.const(wv)), zero)
            total = term if total is None else b.add(total, term)
            wt = b.where(use, b.const(wv), zero)
            wsum = wt if wsum is None else b.binary("+", wsum, wt)
        assert total is not None and wsum is not None
        out = total if method == "sum" else b.binary("/", total, wsum)
        if method != "sum" and b.float_context:
            out = b.f32(out)
        none = b.compare("eq", wsum, zero)
    elif method == "median":
        from modelport.convert.pmml.semantics import median

        if len(values) > 32:
            raise unsupported(seg, "median over more than 32 segments is not supported")
        out = median(b, [b.nan_where(b.logic("not", u), v) for v, u in zip(values, applies)])
        count = b.sum([b.to_float(u) for u in applies])
        none = b.compare("eq", count, zero)
    else:
        raise unsupported(seg, f"multipleModelMethod {method!r} for regression is not supported")
    out = b.nan_where(none, out)
    if mpt == "returnMissing":
        out = b.nan_where(any_missing, out)
    return Result("regression", value=out)


def _aggregate_classification(b: Any, method: str, parts: list[tuple[Result, Any, float]], mpt: str | None,
                              seg: Element, target: Any, numeric: bool) -> Result:
    from modelport.convert.pmml.document import widen

    if method in ("sum", "median"):
        raise bad(seg, f"multipleModelMethod {method} applies to regression, not classification.")
    found: list[str] = []
    for r, _, _ in parts:
        if r.kind != "classification":
            raise bad(seg, "a classification MiningModel combines a segment that is not a classifier.")
        found.extend(r.classes)
    classes = class_list(target, found)
    rs = []
    any_missing = b.false()
    for r, t, w in parts:
        r2 = widen(b, r, classes) if r.classes != classes else r
        miss = b.isnan(r2.label) if method in ("majorityVote", "weightedMajorityVote") else b.isnan(r2.probs[0])
        any_missing = b.logic("or", any_missing, b.logic("and", t, miss))
        use = b.logic("and", t, b.logic("not", miss))
        rs.append((r2, use, w))
    zero = b.const(0.0)
    k = len(classes)
    first: list[Any] = [b.const(math.inf)] * k  # the first segment that voted for each class
    if method in ("majorityVote", "weightedMajorityVote", "average", "weightedAverage"):
        sums = [None] * k
        wsum = None
        for pos, (r, use, w) in enumerate(rs):
            if method in ("majorityVote", "weightedMajorityVote"):
                for j in range(k):
                    voted = b.logic("and", use, b.compare("eq", r.label, b.const(float(j))))
                    first[j] = b.where(b.logic("and", voted, b.compare("eq", first[j], b.const(math.inf))),
                                       b.const(float(pos)), first[j])
            wv = w if method in ("weightedMajorityVote", "weightedAverage") else 1.0
            for j in range(k):
                if method in ("majorityVote", "weightedMajorityVote"):
                    vote = b.compare("eq", r.label, b.const(float(j)))
                    term = b.where(b.logic("and", use, vote), b.const(wv), zero)
                else:
                    p = r.probs[j]
                    term = b.where(use, p if wv == 1.0 else b.mul(p, b.const(wv)), zero)
                s = sums[j]
                sums[j] = term if s is None else b.add(s, term)
            wt = b.where(use, b.const(wv), zero)
            wsum = wt if wsum is None else b.binary("+", wsum, wt)
        assert wsum is not None
        probs = [b.binary("/", s, wsum) for s in sums]
        if b.float_context:
            probs = [b.f32(p) for p in probs]
        none = b.compare("eq", wsum, zero)
    elif method == "max":
        # the segment whose best class is the most probable answers
        best = b.full(-math.inf)
        probs = [b.nan() for _ in range(k)]
        for r, use, _ in rs:
            top = r.probs[0]
            for p in r.probs[1:]:
                top = b.where(b.compare("gt", p, top), p, top)
            better = b.logic("and", use, b.compare("gt", top, best))
            best = b.where(better, top, best)
            probs = [b.where(better, p, q) for p, q in zip(r.probs, probs)]
        none = b.compare("eq", best, b.const(-math.inf))
    else:
        raise unsupported(seg, f"multipleModelMethod {method!r} for classification is not supported")
    if mpt == "returnMissing":
        none = b.logic("or", none, any_missing)
    probs = [b.nan_where(none, p) for p in probs]
    if method in ("majorityVote", "weightedMajorityVote"):
        # ties go to the class voted for first (by segment order), as JPMML counts votes
        best, best_first, code = probs[0], first[0], b.const(0.0)
        for j in range(1, k):
            better = b.logic("or", b.compare("gt", probs[j], best),
                             b.logic("and", b.compare("eq", probs[j], best), b.compare("lt", first[j], best_first)))
            code = b.where(better, b.const(float(j)), code)
            best = b.where(better, probs[j], best)
            best_first = b.where(better, first[j], best_first)
        label = b.nan_where(b.isnan(probs[0]), b.add(code, b.const(0.0)))
    else:
        label = probs_label(b, probs)
    return Result("classification", classes=classes, probs=probs, label=label,
                  class_values=tuple(_num(c) for c in classes) if numeric else ())


__all__ = ["mining_model", "normalize_label", "np"]
