"""LinearClassifier and LinearRegressor (ai.onnx.ml), as ONNX Runtime computes them."""

from __future__ import annotations

from typing import Any

from modelport.codegen.ir import (
    ArgMax,
    Bin,
    Cmp,
    Dot,
    Expr,
    Lowering,
    Num,
    Round32,
    Select,
    Switch,
    ToFloat,
    Val,
    const_expr,
    f32,
    from_list,
)
from modelport.codegen.ops import register
from modelport.codegen.ops._util import as_matrix_row
from modelport.codegen.ops.transforms import logistic, post_transform, probit


def _scores(lw: Lowering, node: Any, x: list[Expr], coef: list[float], intercepts: list[float], n: int) -> list[Expr]:
    # ONNX Runtime casts the input to float32 and runs a float32 GEMM
    x = [Round32(e) if e.kind == "d" else (ToFloat(e) if e.kind == "i" else e) for e in x]
    f = len(x)
    if len(coef) != n * f:
        raise lw.fail(node, f"has {len(coef)} coefficients for {n} target(s) over {f} features; expected {n * f}.")
    return [
        Dot(tuple((f32(coef[k * f + j]), x[j]) for j in range(f)), f32(intercepts[k]) if k < len(intercepts) else 0.0)
        for k in range(n)
    ]


@register("ai.onnx.ml", "LinearRegressor")
def linear_regressor(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    assert ins[0] is not None
    x = as_matrix_row(ins[0])
    n = int(a.get("targets", 1))
    scores = _scores(lw, node, x, list(a["coefficients"]), list(a.get("intercepts", [])), n)
    post = a.get("post_transform", "NONE")
    if n == 1:
        return [from_list([probit(scores[0])] if post == "PROBIT" else scores)]
    return [from_list(post_transform(scores, post))]


@register("ai.onnx.ml", "LinearClassifier")
def linear_classifier(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    assert ins[0] is not None
    x = as_matrix_row(ins[0])
    labels: list[Any] = list(a.get("classlabels_ints", [])) or list(a.get("classlabels_strings", []))
    intercepts = list(a.get("intercepts", []))
    n = len(intercepts)
    scores = _scores(lw, node, x, list(a["coefficients"]), intercepts, n)
    post = a.get("post_transform", "NONE")
    values = [const_expr(v) for v in labels]
    kind = values[0].kind if values else "i"
    if n == 1:
        s = scores[0]
        if len(labels) == 2:
            pos, neg = values[1], values[0]
        else:
            pos = Num(1.0, kind="i") if kind == "i" else const_expr("1")
            neg = Num(0.0, kind="i") if kind == "i" else const_expr("0")
        label: Expr = Select(Cmp(">", s, Num(0.0)), pos, neg, kind=kind)
        if len(labels) == 2:
            p = logistic(s) if post == "LOGISTIC" else (probit(s) if post == "PROBIT" else s)
            return [from_list([label], shape=(), kind=kind), from_list([Bin("-", Num(1.0), p), p])]
        return [from_list([label], shape=(), kind=kind), from_list(post_transform([s], post))]
    idx = ArgMax(tuple(scores))
    label = Switch(idx, tuple(values), values[0], kind=kind)
    return [from_list([label], shape=(), kind=kind), from_list(post_transform(scores, post))]
