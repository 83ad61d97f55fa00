"""Elementwise math and logic the converters emit around the model operators: Abs, Neg, Exp,
Log, Sqrt, Floor, Ceil, Clip, Max, Min, Where, Equal, Less, LessOrEqual, Greater,
GreaterOrEqual, Not, And, Or, IsNaN, IsInf, ReduceSum (last axis), Unsqueeze, Squeeze."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from modelport.codegen.ir import (
    Bin,
    Call,
    Cmp,
    Expr,
    IsNaN,
    Logic,
    Lowering,
    Num,
    Select,
    Val,
    exprs_of,
    from_list,
)
from modelport.codegen.ops import register
from modelport.codegen.ops._util import unary


def _broadcast(vals: list[Val]) -> list[np.ndarray]:
    rank = max((len(v.shape) for v in vals if not v.is_const), default=0)
    arrays = [exprs_of(v, rank) for v in vals]
    return list(np.broadcast_arrays(*arrays))


def _nary(vals: list[Val], fn: Callable[..., Expr], kind: str = "f") -> Val:
    arrays = _broadcast(vals)
    out = np.empty(arrays[0].shape, dtype=object)
    for idx in np.ndindex(out.shape):
        out[idx] = fn(*(a[idx] for a in arrays))
    return Val(exprs=out, kind=kind)


def _unary_call(fn: str) -> Any:
    def emit(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
        assert ins[0] is not None
        if ins[0].is_const:
            raise lw.fail(node, "works on a constant only; constant folding of this operator is not supported.")
        return [unary(ins[0], lambda x: Call(fn, (x,)))]

    return emit


for _op, _fn in (("Abs", "abs"), ("Exp", "exp"), ("Log", "log"), ("Sqrt", "sqrt"), ("Floor", "floor"), ("Ceil", "ceil")):
    register("", _op)(_unary_call(_fn))


@register("", "Neg")
def neg(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    assert ins[0] is not None
    return [unary(ins[0], lambda x: Bin("-", Num(0.0), x, kind=x.kind))]


def _compare(op: str) -> Any:
    def emit(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
        a, b = ins[0], ins[1]
        assert a is not None and b is not None
        if a.is_const and b.is_const:
            npop = {"==": np.equal, "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}[op]
            return [Val(const=npop(np.asarray(a.const), np.asarray(b.const)))]
        return [_nary([a, b], lambda x, y: Cmp(op, x, y), kind="b")]

    return emit


for _op, _sym in (("Equal", "=="), ("Less", "<"), ("LessOrEqual", "<="), ("Greater", ">"), ("GreaterOrEqual", ">=")):
    register("", _op)(_compare(_sym))


@register("", "Not")
def not_(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    assert ins[0] is not None
    return [unary(ins[0], lambda x: Logic("not", (x,)), kind="b")]


def _logic(op: str) -> Any:
    def emit(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
        vals = [v for v in ins if v is not None]
        return [_nary(vals, lambda x, y: Logic(op, (x, y)), kind="b")]

    return emit


register("", "And")(_logic("and"))
register("", "Or")(_logic("or"))


@register("", "Where")
def where(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    c, a, b = ins[0], ins[1], ins[2]
    assert c is not None and a is not None and b is not None
    if c.is_const:
        cond = np.asarray(c.const).astype(bool)
        if a.is_const and b.is_const:
            return [Val(const=np.where(cond, np.asarray(a.const), np.asarray(b.const)))]
        rank = max((len(v.shape) for v in (a, b) if not v.is_const), default=0)
        if cond.ndim == rank + 1 and cond.shape[0] == 1:
            cond = cond[0]
        ea, eb = exprs_of(a, rank), exprs_of(b, rank)
        cond, ea, eb = np.broadcast_arrays(cond, ea, eb)
        out = np.where(cond, ea, eb).astype(object)
        kind = a.kind if not a.is_const else b.kind
        return [Val(exprs=out, kind=kind)]
    kind = a.kind if not a.is_const else b.kind
    return [_nary([c, a, b], lambda x, y, z: Select(x, y, z, kind=y.kind if y.kind != "f" else z.kind), kind=kind)]


@register("", "Clip")
def clip(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    attrs = lw.attrs(node)
    x = ins[0]
    assert x is not None
    lo = ins[1] if len(ins) > 1 else None
    hi = ins[2] if len(ins) > 2 else None
    lo_v = float(np.asarray(lo.const)) if lo is not None and lo.is_const else attrs.get("min")
    hi_v = float(np.asarray(hi.const)) if hi is not None and hi.is_const else attrs.get("max")
    if (lo is not None and not lo.is_const) or (hi is not None and not hi.is_const):
        raise lw.fail(node, "has per-row bounds; only constant bounds are supported.")

    def f(e: Expr) -> Expr:
        r = e
        if hi_v is not None:
            r = Select(Cmp(">", r, Num(float(hi_v), kind=e.kind)), Num(float(hi_v), kind=e.kind), r)
        if lo_v is not None:
            r = Select(Cmp("<", e, Num(float(lo_v), kind=e.kind)), Num(float(lo_v), kind=e.kind), r)
        return r

    return [unary(x, f)]


def _minmax(op: str) -> Any:
    def emit(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
        vals = [v for v in ins if v is not None]
        # ONNX Max/Min propagate NaN; the comparison form keeps the first operand when it is NaN
        def pick(*xs: Expr) -> Expr:
            r = xs[0]
            for x in xs[1:]:
                r = Select(Logic("or", (Cmp(op, x, r), Cmp("!=", x, x))), x, r)
            return r

        return [_nary(vals, pick)]

    return emit


register("", "Max")(_minmax(">"))
register("", "Min")(_minmax("<"))


def _axes(lw: Lowering, node: Any, ins: list[Val | None]) -> list[int] | None:
    if len(ins) > 1 and ins[1] is not None:
        if not ins[1].is_const:
            raise lw.fail(node, "has axes computed at run time.")
        return [int(a) for a in np.asarray(ins[1].const).reshape(-1)]
    axes = lw.attrs(node).get("axes")
    return None if axes is None else [int(a) for a in axes]


@register("", "ReduceSum")
def reduce_sum(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    x = ins[0]
    assert x is not None
    e = exprs_of(x)
    axes = _axes(lw, node, ins)
    keep = int(lw.attrs(node).get("keepdims", 1))
    if e.ndim != 1 or axes not in ([1], [-1]):
        raise lw.fail(node, f"reduces axes {axes} of rows shaped {e.shape}; only the last axis of [N, C] is supported.")
    total: Expr = e[0]
    for item in e[1:]:
        total = Bin("+", total, item)
    return [from_list([total], shape=(1,) if keep else ())]


def _reshape_rows(lw: Lowering, node: Any, x: Val, full: tuple[int, ...]) -> Val:
    if not full or full[0] != 1:
        raise lw.fail(node, "moves the batch axis, which compile does not support.")
    return Val(exprs=exprs_of(x).reshape(full[1:]), kind=x.kind)


@register("", "Unsqueeze")
def unsqueeze(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    x = ins[0]
    assert x is not None
    axes = _axes(lw, node, ins) or []
    if x.is_const:
        c = np.asarray(x.const)
        for a in sorted(axes):
            c = np.expand_dims(c, a)
        return [Val(const=c)]
    dummy = np.empty((1, *exprs_of(x).shape))
    for a in sorted(a if a >= 0 else a + dummy.ndim + len(axes) for a in axes):
        if a == 0:
            raise lw.fail(node, "inserts an axis before the batch axis.")
        dummy = np.expand_dims(dummy, a)
    return [_reshape_rows(lw, node, x, dummy.shape)]


@register("", "Squeeze")
def squeeze(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    x = ins[0]
    assert x is not None
    axes = _axes(lw, node, ins)
    if x.is_const:
        return [Val(const=np.squeeze(np.asarray(x.const), axis=None if axes is None else tuple(axes)))]
    shape = (1, *exprs_of(x).shape)
    drop = {a if a >= 0 else a + len(shape) for a in axes} if axes is not None else {i for i, d in enumerate(shape) if d == 1 and i > 0}
    if 0 in drop:
        raise lw.fail(node, "squeezes the batch axis.")
    return [_reshape_rows(lw, node, x, tuple(d for i, d in enumerate(shape) if i not in drop))]


@register("", "IsNaN")
def is_nan(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    x = ins[0]
    assert x is not None
    if x.is_const:
        return [Val(const=np.isnan(np.asarray(x.const, dtype=np.float64)))]
    return [unary(x, IsNaN, kind="b")]


@register("", "IsInf")
def is_inf(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    x = ins[0]
    assert x is not None
    a = lw.attrs(node)
    pos, negv = int(a.get("detect_positive", 1)), int(a.get("detect_negative", 1))
    big = float("inf")

    def f(e: Expr) -> Expr:
        parts: list[Expr] = []
        if pos:
            parts.append(Cmp("==", e, Num(big, kind=e.kind)))
        if negv:
            parts.append(Cmp("==", e, Num(-big, kind=e.kind)))
        return Logic("or", tuple(parts))

    return [unary(x, f, kind="b")]
