"""The operators of small neural networks (MLPs): MatMul, Gemm, Add, Sub, Mul, Div, Relu,
Sigmoid, Tanh, Softmax, ArgMax. Weights must be constants (initializers)."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.codegen.ir import (
    ArgMax,
    Bin,
    Call,
    Cmp,
    Dot,
    Expr,
    Lowering,
    Num,
    Select,
    Val,
    exprs_of,
    f32,
    fold,
    from_list,
)
from modelport.codegen.ops import register
from modelport.codegen.ops._util import elementwise, unary
from modelport.codegen.ops.transforms import softmax


def _matmul(lw: Lowering, node: Any, a: Val, w: np.ndarray, bias: np.ndarray | None, alpha: float = 1.0) -> Val:
    e = exprs_of(a)
    if e.ndim != 1:
        raise lw.fail(node, f"multiplies rows of shape {e.shape}; only [N, K] x [K, M] is supported.")
    if w.ndim != 2 or w.shape[0] != e.shape[0]:
        raise lw.fail(node, f"multiplies [N, {e.shape[0]}] by a weight of shape {list(w.shape)}.")
    x = list(e)
    double = any(v.kind == "d" for v in x)
    rnd = float if double else f32
    b = np.zeros(w.shape[1]) if bias is None else np.broadcast_to(np.asarray(bias, dtype=np.float64).reshape(-1), (w.shape[1],))
    out = [
        Dot(tuple((rnd(alpha * float(w[j, k])), x[j]) for j in range(len(x))), rnd(float(b[k])))
        for k in range(w.shape[1])
    ]
    return from_list(out)


@register("", "MatMul")
def matmul(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a, b = ins[0], ins[1]
    assert a is not None and b is not None
    if not b.is_const or a.is_const:
        raise lw.fail(node, "multiplies by a per-row value; only constant weight matrices are supported.")
    return [_matmul(lw, node, a, np.asarray(b.const, dtype=np.float64), None)]


@register("", "Gemm")
def gemm(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    at = lw.attrs(node)
    a, b = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    assert a is not None and b is not None
    if int(at.get("transA", 0)):
        raise lw.fail(node, "uses transA=1, which would mix rows.")
    if not b.is_const or (c is not None and not c.is_const):
        raise lw.fail(node, "has per-row weights or bias; only constants are supported.")
    w = np.asarray(b.const, dtype=np.float64)
    if int(at.get("transB", 0)):
        w = w.T
    beta = float(at.get("beta", 1.0))
    bias = None if c is None else np.asarray(c.const, dtype=np.float64) * beta
    return [_matmul(lw, node, a, w, bias, float(at.get("alpha", 1.0)))]


def _binary(op: str, npop: Any) -> Any:
    def emit(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
        a, b = ins[0], ins[1]
        assert a is not None and b is not None
        return [elementwise(a, b, lambda x, y: fold(op, x, y), npop)]

    return emit


register("", "Add")(_binary("+", np.add))
register("", "Sub")(_binary("-", np.subtract))
register("", "Mul")(_binary("*", np.multiply))
register("", "Div")(_binary("/", np.divide))


@register("", "Relu")
def relu(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    assert ins[0] is not None
    return [unary(ins[0], lambda x: Select(Cmp("<", x, Num(0.0)), Num(0.0), x))]


@register("", "Sigmoid")
def sigmoid(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    assert ins[0] is not None
    return [unary(ins[0], lambda x: Call("sigmoid", (x,)))]


@register("", "Tanh")
def tanh(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    assert ins[0] is not None
    return [unary(ins[0], lambda x: Call("tanh", (x,)))]


def _last_axis(lw: Lowering, node: Any, e: np.ndarray, default: int) -> None:
    axis = int(lw.attrs(node).get("axis", default))
    if e.ndim != 1 or axis not in (1, -1):
        raise lw.fail(node, f"works on axis {axis} of rows shaped {e.shape}; only the last axis of [N, C] is supported.")


@register("", "Softmax")
def softmax_op(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    assert ins[0] is not None
    e = exprs_of(ins[0])
    _last_axis(lw, node, e, -1 if lw.opsets.get("ai.onnx", 13) >= 13 else 1)
    return [from_list(softmax(list(e)))]


@register("", "ArgMax")
def argmax(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    assert ins[0] is not None
    e = exprs_of(ins[0])
    _last_axis(lw, node, e, 0)
    items: tuple[Expr, ...] = tuple(e)
    if int(a.get("select_last_index", 0)):
        # the last of the largest = the first of the reversed, counted from the end
        rev = ArgMax(tuple(reversed(items)))
        idx: Expr = Bin("-", Num(float(len(items) - 1), kind="i"), rev, kind="i")
    else:
        idx = ArgMax(items)
    return [from_list([idx], shape=(1,) if int(a.get("keepdims", 1)) else (), kind="i")]
