"""The IR's typed dispatch: every expression node reaches its own ExprVisitor method, and a
target that misses a node type cannot be instantiated (mypy reports it too)."""

from __future__ import annotations

import inspect

import pytest

from modelport.codegen import ir
from modelport.codegen.ir import Expr, ExprVisitor


def _node_types() -> list[type[Expr]]:
    return [c for _, c in inspect.getmembers(ir, inspect.isclass) if issubclass(c, Expr) and c is not Expr]


def test_every_node_type_has_a_visitor_method() -> None:
    methods = set(ExprVisitor.__abstractmethods__)
    nodes = _node_types()
    assert len(nodes) == len(methods) == 17
    for node in nodes:
        name = node.accept.__code__.co_names[-1]  # the visitor method accept() calls
        assert name in methods, node
        params = list(inspect.signature(getattr(ExprVisitor, name)).parameters.values())
        assert params[1].annotation in (node.__name__, node), (node, name)


def test_a_target_missing_a_node_cannot_be_built() -> None:
    class Incomplete(ExprVisitor[str]):
        def num(self, e: ir.Num) -> str:
            return "n"

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


def test_dispatch_reaches_the_right_method() -> None:
    from modelport.codegen.java import _Row

    seen: list[str] = []

    class Names(_Row):
        def bin(self, e: ir.Bin) -> list[str]:
            seen.append("bin")
            return []

    x = ir.Col(0)
    Names([ir.Bin("+", x, x)], regs=False, acc={}).visit(ir.Bin("*", x, x))
    assert seen == ["bin"]
    with pytest.raises(TypeError, match="not an IR expression node"):
        Names([], regs=False, acc={}).visit(Expr())
