"""Shared by the targets: numbering the expression DAG and deciding which nodes get a name."""

from __future__ import annotations

from collections.abc import Sequence

from modelport.codegen.ir import Col, Expr, Num, Text, topo


class Numbering:
    """Every non-trivial node reachable from ``roots`` in dependency order, with a stable name."""

    def __init__(self, roots: Sequence[Expr], *, prefix: str = "t") -> None:
        order, self.uses = topo(roots)
        self.order = [e for e in order if not isinstance(e, (Num, Text, Col))]
        self.names = {id(e): f"{prefix}{i}" for i, e in enumerate(self.order)}

    def name(self, e: Expr) -> str:
        return self.names[id(e)]
