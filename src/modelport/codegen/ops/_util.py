"""Helpers shared by the operator emitters: broadcasting elementwise ops over per-row values."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from modelport.codegen.ir import Expr, Val, exprs_of


def elementwise(a: Val, b: Val, fn: Callable[[Expr, Expr], Expr], const_fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Val:
    """Apply ``fn`` elementwise with numpy broadcasting; constants stay constants."""
    if a.is_const and b.is_const:
        return Val(const=const_fn(np.asarray(a.const), np.asarray(b.const)))
    rank = len(a.shape) if not a.is_const else len(b.shape)
    ea = exprs_of(a, rank)
    eb = exprs_of(b, rank)
    out = np.frompyfunc(fn, 2, 1)(ea, eb)
    if not isinstance(out, np.ndarray):
        arr = np.empty((), dtype=object)
        arr[()] = out
        out = arr
    return Val(exprs=out.astype(object), kind="f")


def unary(a: Val, fn: Callable[[Expr], Expr], kind: str = "f") -> Val:
    """``fn`` applied to each element of ``a``; ``kind`` of the result ("f" numbers, "b" booleans)."""
    ea = exprs_of(a)
    out = np.empty(ea.shape, dtype=object)
    idx: tuple[int, ...]
    for idx in np.ndindex(ea.shape):
        out[idx] = fn(ea[idx])
    return Val(exprs=out, kind=kind)


def as_matrix_row(v: Val) -> list[Expr]:
    """The features of a row as a flat list (for ops that read [N, F] inputs)."""
    return list(exprs_of(v).reshape(-1))
