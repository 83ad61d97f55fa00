"""Post transforms shared by the ONNX-ML operators (NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO,
PROBIT), written with ONNX Runtime's formulas so that every target reproduces them."""

from __future__ import annotations

from collections.abc import Sequence

from modelport.codegen.ir import Bin, Call, Cmp, Expr, Logic, Num, Round32, Select, ToFloat, f32


def logistic(x: Expr) -> Expr:
    return Call("sigmoid", (x,))


def softmax(xs: Sequence[Expr]) -> list[Expr]:
    m = Call("max", tuple(xs)) if len(xs) > 1 else xs[0]
    es = [Call("exp", (Bin("-", x, m),)) for x in xs]
    total = _sum(es)
    return [Bin("/", e, total) for e in es]


def softmax_zero(xs: Sequence[Expr]) -> list[Expr]:
    m = Call("max", tuple(xs)) if len(xs) > 1 else xs[0]
    exp_neg_m = Call("exp", (Bin("-", Num(0.0), m),))
    eps = Num(f32(1e-7))
    outs, parts = [], []
    for x in xs:
        nonzero = Logic("or", (Cmp(">", x, eps), Cmp("<", x, Bin("-", Num(0.0), eps))))
        e = Call("exp", (Bin("-", x, m),))
        outs.append(Select(nonzero, e, Bin("*", x, exp_neg_m)))
        parts.append(Select(nonzero, e, Num(0.0)))
    total = _sum(parts)
    return [Bin("/", o, total) for o in outs]


def probit(x: Expr) -> Expr:
    """sqrt(2) * ErfInv(2x - 1) with ONNX Runtime's closed-form ErfInv approximation.

    The formula cancels (v*v - v2), so float32 evaluation orders differ by more than 1e-6;
    evaluating it in double and rounding once lands closest to ONNX Runtime."""
    out_kind = x.kind
    x = ToFloat(x, kind="d") if x.kind == "f" else x
    y = Bin("-", Bin("*", Num(2.0), x), Num(1.0))
    sgn = Select(Cmp("<", y, Num(0.0)), Num(-1.0), Num(1.0))
    z = Bin("*", Bin("-", Num(1.0), y), Bin("+", Num(1.0), y))
    lg = Call("log", (z,))
    a = f32(f32(2.0) / f32(f32(3.14159) * f32(0.147)))
    v = Bin("+", Num(a), Bin("*", Num(0.5), lg))
    v2 = Bin("*", Num(f32(1.0 / f32(0.147))), lg)
    v3 = Bin("+", Bin("-", Num(0.0), v), Call("sqrt", (Bin("-", Bin("*", v, v), v2),)))
    r = Bin("*", Num(f32(1.41421356)), Bin("*", sgn, Call("sqrt", (v3,))))
    return Round32(r) if out_kind == "f" else r


def post_transform(xs: Sequence[Expr], post: str) -> list[Expr]:
    if post == "NONE":
        return list(xs)
    if post == "LOGISTIC":
        return [logistic(x) for x in xs]
    if post == "SOFTMAX":
        return softmax(xs)
    if post == "SOFTMAX_ZERO":
        return softmax_zero(xs)
    if post == "PROBIT":
        return [probit(x) for x in xs]
    from modelport.errors import CodegenError

    raise CodegenError(f"unknown post_transform {post!r}; expected NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO or PROBIT.")


def _sum(xs: Sequence[Expr]) -> Expr:
    total = xs[0]
    for x in xs[1:]:
        total = Bin("+", total, x)
    return total
