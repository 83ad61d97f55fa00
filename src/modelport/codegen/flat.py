"""Tree ensembles as node arrays, shared by the targets that walk trees in a loop (C, Java,
JavaScript): the fast form for numeric splits (every split rewritten as ``x <= t`` on the float32
grid, children adjacent, leaves looping on themselves) and a general table for any node mode.
:class:`Blob` packs such arrays into one little-endian byte string for targets that embed data.
"""

from __future__ import annotations

import base64
import math
import struct
from dataclasses import dataclass, field

from modelport.codegen.ir import Ensemble, Leaf, Split, f32, floor32, next_down32


@dataclass
class FlatEnsemble:
    """Nodes as (threshold, feature | missing<<31, first child, leaf slot); children adjacent."""

    thr: list[float]
    fm: list[int]
    nxt: list[int]
    leaf: list[int]
    roots: list[int]
    depths: list[int]
    leaf_values: list[float]  # n_leaves * n_targets


def canonical(s: Split) -> tuple[float, bool, bool] | None:
    """(t, swap, missing) such that 'x <= t' (float32 x) decides the split, or None if impossible."""
    t = s.threshold
    if s.mode == "LEQ":
        return floor32(t), False, s.missing_true
    if s.mode == "LT":
        lo = floor32(t)
        return (next_down32(lo) if lo == t else lo), False, s.missing_true
    if s.mode == "GT":
        return floor32(t), True, not s.missing_true
    if s.mode == "GTE":
        lo = floor32(t)
        return (next_down32(lo) if lo == t else lo), True, not s.missing_true
    return None


def flatten(ens: Ensemble) -> FlatEnsemble | None:
    for tree in ens.trees:
        stack: list[Leaf | Split] = [tree]
        while stack:
            n = stack.pop()
            if isinstance(n, Split):
                if canonical(n) is None:
                    return None
                stack.extend((n.true, n.false))
    k = ens.n_targets
    fe = FlatEnsemble([], [], [], [], [], [], [])
    missing_fill = float("nan") if ens.aggregate in ("MIN", "MAX") else 0.0

    def alloc() -> int:
        fe.thr.append(0.0)
        fe.fm.append(0)
        fe.nxt.append(0)
        fe.leaf.append(0)
        return len(fe.thr) - 1

    for tree in ens.trees:
        root = alloc()
        fe.roots.append(root)
        fe.depths.append(ens.depth(tree))
        queue: list[tuple[int, Leaf | Split]] = [(root, tree)]
        while queue:
            pos, node = queue.pop(0)
            if isinstance(node, Leaf):
                # a leaf loops on itself: +inf with 'missing goes true' is always true
                fe.thr[pos], fe.fm[pos], fe.nxt[pos] = math.inf, 1 << 31, pos
                fe.leaf[pos] = len(fe.leaf_values) // k
                fe.leaf_values.extend(node.weights.get(j, missing_fill) for j in range(k))
                continue
            canon = canonical(node)
            assert canon is not None
            t, swap, missing = canon
            first = alloc()
            alloc()
            fe.thr[pos], fe.fm[pos], fe.nxt[pos] = t, node.feature | (int(missing) << 31), first
            a, b = (node.false, node.true) if swap else (node.true, node.false)
            queue.append((first, a))
            queue.append((first + 1, b))
    return fe


# --------------------------------------------------------------------------- any node mode

#: node mode codes of :class:`GeneralEnsemble` (LEAF marks a leaf)
MODE_CODES = {"LEQ": 0, "LT": 1, "GTE": 2, "GT": 3, "EQ": 4, "NEQ": 5, "MEMBER": 6, "LEAF": 7}


@dataclass
class GeneralEnsemble:
    """Every node as ``mode | missing_true << 3, feature, true child, false child, aux, count``
    (six ints; a leaf's aux is its leaf slot, a MEMBER split's aux/count index ``members``),
    ``thr`` its threshold in the ensemble's precision; tree ``t`` starts at ``roots[t]``."""

    nodes: list[int] = field(default_factory=list)
    thr: list[float] = field(default_factory=list)
    members: list[float] = field(default_factory=list)
    roots: list[int] = field(default_factory=list)
    leaf_values: list[float] = field(default_factory=list)


def general(ens: Ensemble) -> GeneralEnsemble:
    """Node tables for ``ens`` whatever its split modes (walked with a comparison per mode)."""
    g = GeneralEnsemble()
    k = ens.n_targets
    missing_fill = float("nan") if ens.aggregate in ("MIN", "MAX") else 0.0
    rnd = (lambda v: v) if ens.double else f32
    for tree in ens.trees:
        g.roots.append(len(g.thr))
        stack: list[tuple[int, Leaf | Split]] = []
        pos = _alloc(g)
        stack.append((pos, tree))
        while stack:
            pos, node = stack.pop()
            base = 6 * pos
            if isinstance(node, Leaf):
                g.nodes[base] = MODE_CODES["LEAF"]
                g.nodes[base + 4] = len(g.leaf_values) // k
                g.leaf_values.extend(rnd(node.weights.get(j, missing_fill)) for j in range(k))
                continue
            t, f = _alloc(g), _alloc(g)
            g.nodes[base:base + 6] = [MODE_CODES[node.mode] | (int(node.missing_true) << 3), node.feature, t, f, 0, 0]
            g.thr[pos] = rnd(node.threshold)
            if node.mode == "MEMBER":
                g.nodes[base + 4] = len(g.members)
                g.nodes[base + 5] = len(node.members)
                g.members.extend(rnd(m) for m in node.members)
            stack.append((f, node.false))
            stack.append((t, node.true))
    return g


def _alloc(g: GeneralEnsemble) -> int:
    g.nodes.extend([0] * 6)
    g.thr.append(0.0)
    return len(g.thr) - 1


# --------------------------------------------------------------------------- embedded data


class Blob:
    """Arrays packed into one little-endian byte string; each ``add_*`` returns the element
    offset (in units of its own type, 4 or 8 bytes, so readers index typed views directly)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def _add(self, fmt: str, width: int, values: list[int] | list[float]) -> int:
        pad = (-self._size) % width
        if pad:
            self._parts.append(b"\0" * pad)
            self._size += pad
        offset = self._size // width
        data = struct.pack(f"<{len(values)}{fmt}", *values)
        self._parts.append(data)
        self._size += len(data)
        return offset

    def add_ints(self, values: list[int]) -> int:
        return self._add("i", 4, values)

    def add_floats(self, values: list[float]) -> int:
        return self._add("f", 4, [f32(v) if math.isfinite(v) else v for v in values])

    def add_doubles(self, values: list[float]) -> int:
        return self._add("d", 8, values)

    def add_longs(self, values: list[int]) -> int:
        return self._add("q", 8, values)

    def data(self) -> bytes:
        return b"".join(self._parts)

    def base64_chunks(self, size: int = 60000) -> list[str]:
        """The data as base64 text in pieces of at most ``size`` characters (Java string
        constants hold at most 65535 bytes)."""
        text = base64.b64encode(self.data()).decode("ascii")
        return [text[i:i + size] for i in range(0, len(text), size)] or [""]


# --------------------------------------------------------------------------- missing values folded in


def signed(fe: FlatEnsemble, n_inputs: int) -> FlatEnsemble:
    """``fe`` for a row buffer holding ``x`` (slots ``0..n-1``), ``-x`` (``n..2n-1``) and a 0
    (slot ``2n``), where every step is just "first child iff v <= threshold": a split that sends
    missing values to its first child becomes "-x <= (largest float32 below -t)" with its
    children swapped, so NaN (which fails every comparison) still reaches the same child, and a
    leaf compares the 0 with +inf. The per-step NaN test disappears; results are identical."""
    thr, fm, nxt, leaf = list(fe.thr), list(fe.fm), list(fe.nxt), list(fe.leaf)
    is_leaf = [n == p for p, n in enumerate(nxt)]
    zero = 2 * n_inputs

    def swap(a: int, b: int) -> None:
        thr[a], thr[b] = thr[b], thr[a]
        fm[a], fm[b] = fm[b], fm[a]
        nxt[a], nxt[b] = nxt[b], nxt[a]
        leaf[a], leaf[b] = leaf[b], leaf[a]
        is_leaf[a], is_leaf[b] = is_leaf[b], is_leaf[a]
        for p in (a, b):
            if is_leaf[p]:
                nxt[p] = p

    for p in range(len(thr)):  # parents before children: a swap only moves records not yet visited
        if is_leaf[p]:
            thr[p], fm[p] = math.inf, zero
            continue
        feature, missing_first = fm[p] & 0x7FFFFFFF, bool(fm[p] >> 31)
        t = thr[p]
        if not missing_first:
            fm[p] = feature
        elif t == math.inf:  # every row, missing or not, takes the first child
            thr[p], fm[p] = math.inf, zero
        else:
            swap(nxt[p], nxt[p] + 1)
            thr[p] = math.inf if t != t else next_down32(-t)
            fm[p] = n_inputs + feature
    return FlatEnsemble(thr, fm, nxt, leaf, list(fe.roots), list(fe.depths), list(fe.leaf_values))
