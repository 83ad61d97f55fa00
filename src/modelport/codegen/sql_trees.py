"""Tree ensembles in SQL: nested ``CASE`` for small ensembles, a level-by-level walk over node
lists for large ones.

Every numeric split becomes "go to child A iff ``x <= bound``" on the double the table holds:
for a value the graph reads as float32, ``bound`` is the largest double that rounds to a float32
at or below the split's float32 threshold (ties to even), so ``f32(x) <= t`` is decided exactly
without a float32 type. Missing values (NULL; NaN is turned into NULL first) go where the split
says.

* ``CASE`` form: one nested ``CASE`` per tree and score column. The missing direction is the
  ``ELSE`` branch (``CASE WHEN x > bound THEN b ELSE a END`` sends NULL to ``a``), so a split is
  one comparison. Fine for every planner up to a few thousand splits; the only form SQLite gets.
* Walk form (DuckDB, PostgreSQL): the trees become per-level node lists in one materialised
  CTE (``feature slot, bound, first child`` per node; a leaf above the last level passes through),
  and each level of every tree is one step ``child[n] + (xs[slot[n]] > bound[n])`` in a subquery
  of its own, where ``xs`` holds the row's inputs twice: NULL as ``-inf`` (always goes to A) and
  NULL as ``NaN`` (both databases order NaN above every number, so it always goes to B). The top
  levels of every tree are still a small ``CASE`` (cheap: few nodes), the leaves' values are
  looked up at the end. DuckDB steps all trees of a group at once with ``list_transform``;
  PostgreSQL steps one column per tree. The query text grows with the number of trees and levels,
  not with the number of nodes, so planning stays in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from modelport.codegen.ir import (
    Col,
    Ensemble,
    Expr,
    Leaf,
    Round32,
    Split,
    f32_bits,
    floor32,
    next_down32,
    next_up32,
)

_F32_MAX = 3.4028234663852886e38
_F32_ROUNDS_TO_INF = 2.0**128 - 2.0**103  # the smallest double that rounds to float32 +inf
NUMERIC_MODES = ("LEQ", "LT", "GTE", "GT")


def _prev_double(v: float) -> float:
    return float(np.nextafter(v, -math.inf))


def f32_bound(t: float) -> float:
    """The largest double ``x`` with ``f32(x) <= t``, for a float32 ``t`` (so ``f32(x) <= t`` iff ``x <= bound``)."""
    if t == math.inf:
        return math.inf
    if t == -math.inf:
        return -_F32_ROUNDS_TO_INF
    up = next_up32(t)
    mid = _F32_ROUNDS_TO_INF if up == math.inf else (t + up) / 2.0
    # a tie rounds to the even neighbour: the midpoint belongs to t when t's bit pattern is even
    inclusive = f32_bits(t) % 2 == 0 and t != _F32_MAX
    return mid if inclusive else _prev_double(mid)


@dataclass(frozen=True)
class Canonical:
    """A numeric split as "go to ``a`` iff x <= bound"; NULL goes to ``a`` when ``missing_to_a``."""

    bound: float
    a: Leaf | Split
    b: Leaf | Split
    missing_to_a: bool


def reads_float32(x: Expr) -> bool:
    """Whether the ensemble input ``x`` is a column the graph reads as float32 (comparisons on the float32 grid)."""
    while isinstance(x, Round32):
        x = x.a
    return isinstance(x, Col) and (x.kind == "c" or (x.kind == "f" and x.f32))


def canonical(s: Split, float32: bool) -> Canonical | None:
    """``s`` as a single ``<=`` comparison on the double value, or None for EQ / NEQ / MEMBER splits."""
    if s.mode not in NUMERIC_MODES:
        return None
    t = s.threshold
    if t != t:  # every comparison with NaN is false: non-missing rows take the false branch
        return Canonical(math.inf, s.false, s.true, not s.missing_true)
    swap = s.mode in ("GT", "GTE")
    strict = s.mode in ("LT", "GTE")  # x < t (LT), or not(x < t) (GTE)
    if float32:
        lo = floor32(t)  # largest float32 <= t
        t32 = (next_down32(lo) if lo == t else lo) if strict else lo
        bound = f32_bound(t32)
    else:
        bound = _prev_double(t) if strict else t
    if swap:
        return Canonical(bound, s.false, s.true, not s.missing_true)
    return Canonical(bound, s.true, s.false, s.missing_true)


def numeric_only(ens: Ensemble) -> bool:
    """True when every split of ``ens`` is LEQ, LT, GTE or GT (the walk form needs that)."""
    for tree in ens.trees:
        stack: list[Leaf | Split] = [tree]
        while stack:
            n = stack.pop()
            if isinstance(n, Split):
                if n.mode not in NUMERIC_MODES:
                    return False
                stack.extend((n.true, n.false))
    return True


def count_splits(ens: Ensemble) -> int:
    total = 0
    for tree in ens.trees:
        stack: list[Leaf | Split] = [tree]
        while stack:
            n = stack.pop()
            if isinstance(n, Split):
                total += 1
                stack.extend((n.true, n.false))
    return total


def depth_of(node: Leaf | Split) -> int:
    depth, stack = 0, [(node, 0)]
    while stack:
        n, d = stack.pop()
        if isinstance(n, Split):
            stack.extend(((n.true, d + 1), (n.false, d + 1)))
        else:
            depth = max(depth, d)
    return depth


# --------------------------------------------------------------------------- per-level layout


@dataclass
class Chunk:
    """Trees walked together, all ``depth`` levels deep; node lists per level (0-based indices).

    Level ``d`` holds every tree's nodes at depth ``d``, plus a pass-through copy of each leaf
    that sits above the last level. Node ``i`` of level ``d`` reads ensemble input
    ``feature[d][i]`` and goes to ``child[d][i]`` (x <= bound, or missing with ``missing_to_a``)
    or ``child[d][i] + 1`` of level ``d + 1``; ``leaves`` are the nodes of level ``depth``.

    ``heap``: the levels are laid out as complete binary trees, tree ``i``'s node ``l`` of level
    ``d`` at 1-based position ``2**d * (i + 1) + l``, so the first child of position ``s`` is
    ``2 * s`` and the walk needs no child list (unused positions hold pass-through dummies)."""

    trees: list[int]
    depth: int
    heap: bool = False
    feature: list[list[int]] = field(default_factory=list)
    bound: list[list[float]] = field(default_factory=list)
    missing_to_a: list[list[bool]] = field(default_factory=list)
    child: list[list[int]] = field(default_factory=list)
    passthrough: list[list[bool]] = field(default_factory=list)
    leaves: list[Leaf | None] = field(default_factory=list)
    #: per level 0..depth, the positions [start, end) each tree owns (they are contiguous)
    spans: list[list[tuple[int, int]]] = field(default_factory=list)


def layout(ens: Ensemble, trees: Sequence[int], depth: int, float32: Sequence[bool], *, heap: bool = False) -> Chunk:
    """Per-level node lists of ``trees`` (each at most ``depth`` deep)."""
    ch = Chunk(list(trees), depth, heap)
    n = len(trees)

    # level 0: tree i at position i in both layouts (heap: 1-based 2**0 * (i + 1))
    level: list[Leaf | Split | None] = [ens.trees[t] for t in trees]
    for d in range(depth):
        size_next = (2 ** (d + 1)) * (n + 1) - 1
        feat, bnd, miss, child, thru = [], [], [], [], []
        nxt: list[Leaf | Split | None] = [None] * size_next if heap else []
        for p, node in enumerate(level):
            first = 2 * (p + 1) - 1 if heap else len(nxt)
            child.append(first)
            if node is None or isinstance(node, Leaf):
                feat.append(0)
                bnd.append(math.inf)
                miss.append(True)
                thru.append(True)
                if heap:
                    if node is not None:
                        nxt[first] = node
                else:
                    nxt.append(node)
                continue
            c = canonical(node, float32[node.feature])
            if c is None:
                raise ValueError("the walk form takes numeric splits only")
            feat.append(node.feature)
            bnd.append(c.bound)
            miss.append(c.missing_to_a)
            thru.append(False)
            if heap:
                nxt[first], nxt[first + 1] = c.a, c.b
            else:
                nxt.extend((c.a, c.b))
        ch.feature.append(feat)
        ch.bound.append(bnd)
        ch.missing_to_a.append(miss)
        ch.child.append(child)
        ch.passthrough.append(thru)
        level = nxt
    if any(isinstance(x, Split) for x in level):
        raise ValueError("a tree is deeper than its chunk")
    spans = [[(i, i + 1) for i in range(n)]]
    for d in range(depth):
        if heap:
            spans.append([((2 ** (d + 1)) * (i + 1) - 1, (2 ** (d + 1)) * (i + 2) - 1) for i in range(n)])
        else:
            spans.append([(ch.child[d][a], ch.child[d][b - 1] + (1 if ch.passthrough[d][b - 1] else 2)) for a, b in spans[-1]])
    ch.spans = spans
    ch.leaves = [x if isinstance(x, Leaf) else None for x in level]
    return ch


#: a group is laid out as complete binary trees when that takes at most this many times the
#: positions of its actual leaves (full-ish trees: scikit-learn forests, XGBoost), and at most
#: HEAP_MAX_POSITIONS positions in its last level
HEAP_SLACK = 4
HEAP_MAX_POSITIONS = 1 << 21


def chunks(ens: Ensemble, float32: Sequence[bool], *, max_trees: int, heap: bool | None = None) -> list[Chunk]:
    """The ensemble's trees grouped by depth (and by target when every tree scores one target),
    at most ``max_trees`` per group, so no group walks levels its trees do not have."""
    depths = [depth_of(t) for t in ens.trees]
    targets = [_single_target(t) for t in ens.trees]
    by_target = all(k is not None for k in targets)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, dep in enumerate(depths):
        target = targets[i]
        key = (target if by_target and target is not None else -1, dep)
        groups.setdefault(key, []).append(i)
    out = []
    for (_, dep), members in sorted(groups.items()):
        for j in range(0, len(members), max_trees):
            part = members[j:j + max_trees]
            leaves = sum(_n_leaves(ens.trees[t]) for t in part)
            positions = (2 ** dep) * (len(part) + 1)
            use_heap = heap if heap is not None else (positions <= HEAP_SLACK * leaves and positions <= HEAP_MAX_POSITIONS)
            out.append(layout(ens, part, dep, float32, heap=use_heap))
    return out


def _n_leaves(tree: Leaf | Split) -> int:
    count, stack = 0, [tree]
    while stack:
        n = stack.pop()
        if isinstance(n, Split):
            stack.extend((n.true, n.false))
        else:
            count += 1
    return count


def _single_target(tree: Leaf | Split) -> int | None:
    """The one target every leaf of ``tree`` scores, or None (several, or none)."""
    found: set[int] = set()
    stack: list[Leaf | Split] = [tree]
    while stack:
        n = stack.pop()
        if isinstance(n, Split):
            stack.extend((n.true, n.false))
        else:
            found.update(n.weights)
            if len(found) > 1:
                return None
    return next(iter(found)) if len(found) == 1 else None


def top_case(
    ch: Chunk, tree_pos: int, k: int, x: Callable[[int], str], num: Callable[[float], str]
) -> str:
    """A ``CASE`` expression for the 1-based index, at level ``k``, of the node that tree
    ``tree_pos`` of ``ch`` reaches after its first ``k`` levels (``x(feature)``: the input's SQL)."""

    def rec(d: int, i: int) -> str:
        if d == k:
            return str(i + 1)
        a = rec(d + 1, ch.child[d][i])
        if ch.passthrough[d][i]:
            return a
        b = rec(d + 1, ch.child[d][i] + 1)
        if a == b:
            return a
        xs, bound = x(ch.feature[d][i]), ch.bound[d][i]
        if ch.missing_to_a[d][i]:
            return f"CASE WHEN {xs} > {num(bound)} THEN {b} ELSE {a} END"
        return f"CASE WHEN {xs} <= {num(bound)} THEN {a} ELSE {b} END"

    return rec(0, tree_pos)


def balanced(op: str, items: Sequence[str]) -> str:
    """``items`` joined by ``op`` as a balanced tree (parsers limit expression depth: SQLite to 1000)."""
    if not items:
        raise ValueError("nothing to join")
    if len(items) == 1:
        return items[0]
    mid = len(items) // 2
    return f"({balanced(op, items[:mid])} {op} {balanced(op, items[mid:])})"
