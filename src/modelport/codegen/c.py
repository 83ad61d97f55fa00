"""Target: C99 (libm only, no allocation).

``<prefix>_predict(const float *x, long n_rows, float *out)`` scores a row-major float32
matrix. Rows are processed in blocks: tree ensembles whose splits can all be written as
``x <= t`` (after swapping branches and moving thresholds to the float32 grid, which covers
LEQ, LT, GTE and GT) are stored as 8-byte node records and walked branch-free, one comparison
a step (missing values folded into the comparison, see :func:`_walk_layout`), eight walks at
a time (eight rows of a block per tree, or eight trees of one row), each group stopping once
all eight reached a leaf; sums are float32 like ONNX Runtime's, bit for bit, or double
(``sums="double"``). Ensembles with EQ, NEQ or MEMBER splits are written as nested ``if``s.
Everything else is straight-line code per row.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from modelport.codegen._render import Numbering
from modelport.codegen.flat import FlatEnsemble, flatten, signed
from modelport.codegen.ir import (
    ArgMax,
    Bin,
    Call,
    Cmp,
    Col,
    CouplingOut,
    Dot,
    Ensemble,
    Expr,
    IsNaN,
    Leaf,
    Logic,
    Num,
    Program,
    Round32,
    Select,
    Split,
    Switch,
    Text,
    ToFloat,
    ToInt,
    TreeOut,
    f32,
    split_condition,
)
from modelport.errors import CodegenError

_CTYPE = {"f": "float", "d": "double", "i": "long long", "b": "int", "s": "const char *"}


def flit(v: float) -> str:
    """A float32 literal, exact (hex float)."""
    v = f32(v)
    if v != v:
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return float(v).hex() + "f"


def dlit(v: float) -> str:
    if v != v:
        return "(double)NAN"
    if math.isinf(v):
        return "(double)INFINITY" if v > 0 else "-(double)INFINITY"
    return float(v).hex()


def cstr(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= o < 127:
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode("utf-8"))
    out.append('"')
    return "".join(out)


# --------------------------------------------------------------------------- expressions


class _CWriter:
    def __init__(self, roots: Sequence[Expr], p: str, row: str = "xr") -> None:
        self.num = Numbering(roots)
        self.p = p
        self.row = row
        self.couplings: dict[int, str] = {}

    def ref(self, e: Expr) -> str:
        if isinstance(e, Num):
            if e.kind == "i":
                return f"{int(e.value)}LL"
            return dlit(e.value) if e.kind == "d" else flit(e.value)
        if isinstance(e, Text):
            return cstr(e.value)
        if isinstance(e, Col):
            if e.kind == "s":
                raise CodegenError(
                    "the C target takes a float matrix and cannot read string columns.",
                    hint="compile to --target sql or --target python, which handle strings",
                )
            if e.kind == "i":
                return f"(long long){self.row}[{e.index}]"
            return f"(double){self.row}[{e.index}]" if e.kind == "d" else f"{self.row}[{e.index}]"
        return self.num.name(e)

    def statements(self) -> list[str]:
        out = []
        for e in self.num.order:
            out.extend(self.define(e))
        return out

    def define(self, e: Expr) -> list[str]:
        r, name, ty = self.ref, self.num.name(e), _CTYPE[e.kind]
        p = self.p
        if isinstance(e, Bin):
            return [f"const {ty} {name} = {r(e.a)} {e.op} {r(e.b)};"]
        if isinstance(e, Dot):
            terms = "".join(f" + {dlit(w)} * (double){r(x)}" for w, x in e.terms)
            if e.kind == "d":
                return [f"const double {name} = {dlit(e.bias)}{terms};"]
            return [f"const float {name} = (float)({dlit(e.bias)}{terms});"]
        if isinstance(e, Call):
            if e.fn == "max":
                lines = [f"{ty} {name} = -FLT_MAX;"]
                lines += [f"if ({r(a)} > {name}) {name} = {r(a)};" for a in e.args]
                return lines
            fns = {"exp": "expf", "log": "logf", "sqrt": "sqrtf", "tanh": "tanhf", "abs": "fabsf", "sigmoid": f"{p}_sigmoid",
                   "floor": "floorf", "ceil": "ceilf"}
            if e.kind == "d":
                fns = {"exp": "exp", "log": "log", "sqrt": "sqrt", "tanh": "tanh", "abs": "fabs", "sigmoid": f"{p}_sigmoidd",
                       "floor": "floor", "ceil": "ceil"}
            fn = fns.get(e.fn)
            if fn is None:
                raise CodegenError(f"the C target has no function {e.fn!r}.")
            return [f"const {ty} {name} = {fn}({', '.join(r(a) for a in e.args)});"]
        if isinstance(e, Cmp):
            if e.a.kind == "s" or e.b.kind == "s":
                op = "==" if e.op == "==" else "!="
                return [f"const int {name} = strcmp({r(e.a)}, {r(e.b)}) {op} 0;"]
            return [f"const int {name} = {r(e.a)} {e.op} {r(e.b)};"]
        if isinstance(e, IsNaN):
            return [f"const int {name} = isnan({r(e.a)}) != 0;"]
        if isinstance(e, Logic):
            if e.op == "not":
                return [f"const int {name} = !{r(e.args[0])};"]
            if not e.args:
                return [f"const int {name} = {0 if e.op == 'or' else 1};"]
            sep = " || " if e.op == "or" else " && "
            return [f"const int {name} = {sep.join(r(a) for a in e.args)};"]
        if isinstance(e, Select):
            return [f"const {ty} {name} = {r(e.cond)} ? {r(e.a)} : {r(e.b)};"]
        if isinstance(e, ArgMax):
            vt = "double" if any(a.kind == "d" for a in e.items) else ("long long" if e.items[0].kind == "i" else "float")
            lines = [f"long long {name} = 0;", f"{vt} {name}_v = {r(e.items[0])};"]
            for i, a in enumerate(e.items[1:], 1):
                lines.append(f"if ({r(a)} > {name}_v) {{ {name} = {i}; {name}_v = {r(a)}; }}")
            return lines
        if isinstance(e, Switch):
            expr = r(e.default)
            for i in reversed(range(len(e.values))):
                expr = f"{r(e.index)} == {i} ? {r(e.values[i])} : ({expr})"
            return [f"const {ty} {name} = {expr};"]
        if isinstance(e, Round32):
            return [f"const float {name} = (float){r(e.a)};"]
        if isinstance(e, ToInt):
            return [f"const long long {name} = {p}_toint({r(e.a)});"]
        if isinstance(e, ToFloat):
            return [f"const {ty} {name} = ({ty}){r(e.a)};"]
        if isinstance(e, TreeOut):
            ens = e.ensemble
            return [f"const {ty} {name} = acc{ens.index}[r * {ens.n_targets} + {e.target}];"]
        if isinstance(e, CouplingOut):
            cp = e.coupling
            key = id(cp)
            lines = []
            if key not in self.couplings:
                cn = f"cp{len(self.couplings)}"
                self.couplings[key] = cn
                k = cp.k
                lines.append(f"float {cn}_r[{k * k}] = {{0}}; float {cn}[{k}];")
                q = 0
                for i in range(k - 1):
                    for j in range(i + 1, k):
                        v = r(cp.pairs[q])
                        lines.append(f"{cn}_r[{i * k + j}] = {v}; {cn}_r[{j * k + i}] = 1.0f - {v};")
                        q += 1
                lines.append(f"{p}_coupling({k}, {cn}_r, {cn});")
            return [*lines, f"const float {name} = {self.couplings[key]}[{e.index}];"]
        raise CodegenError(f"the C target cannot render {type(e).__name__}.")


# --------------------------------------------------------------------------- ensembles


@dataclass
class _Walk:
    """A tree ensemble laid out for the C walk (see :func:`_walk_layout`)."""

    thr: list[float]
    slot: list[int]
    off: list[int]
    roots: list[int]
    dmin: list[int]  # depth of each tree's shallowest leaf
    dmax: list[int]  # depth of each tree's deepest leaf
    targets: list[int] | None  # one value per leaf: the tree's target; None: leaves index ``leaf_values``
    leaf_values: list[float]
    wide: bool  # 32-bit node fields (16-bit ones do not fit)


def _walk_layout(ens: Ensemble, fe: FlatEnsemble) -> _Walk | None:
    """Node records of one float and two small integers, walked with one comparison a step.

    The row buffer holds ``x``, ``-x``, a 0 and a -inf (:func:`flat.signed` folds the missing
    value rule into the comparison with ``-x``). A step is ``node += off + !(buf[slot] <= thr)``,
    children adjacent; a leaf has ``off`` 0 and compares the -inf, so it stays where it is, and
    its ``thr`` carries the leaf: its value where every leaf of a tree feeds one target (the
    common case: regressors, boosted multiclass trees, which then store one value per leaf,
    not one per class), else its index into ``leaf_values`` (``n_targets`` values each)."""
    n = len(ens.inputs)
    sf = signed(fe, n)
    k = ens.n_targets
    is_leaf = [nx == p for p, nx in enumerate(sf.nxt)]
    n_leaves = len(sf.leaf_values) // k if k else 0
    targets: list[int] | None = []
    for tree in ens.trees:
        keys: set[int] = set()
        stack: list[Leaf | Split] = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, Split):
                stack.extend((node.true, node.false))
            else:
                keys.update(node.weights)
                if any(v != v for v in node.weights.values()):
                    keys.update((-1, -2))  # a NaN leaf value cannot be a threshold
        if targets is not None and len(keys) == 1:
            targets.append(keys.pop())
        elif targets is not None and not keys and ens.aggregate not in ("MIN", "MAX"):
            targets.append(0)  # leaves without weights add 0
        else:
            targets = None
    inline = targets is not None and not ens.double  # a double leaf value does not fit a float field
    if not inline and n_leaves >= 1 << 24:
        return None  # leaf indices must be exact in a float
    thr, slot, off = list(sf.thr), list(sf.fm), [nx - p for p, nx in enumerate(sf.nxt)]
    tree_of = [0] * len(thr)
    for t, root in enumerate(sf.roots):
        end = sf.roots[t + 1] if t + 1 < len(sf.roots) else len(thr)
        tree_of[root:end] = [t] * (end - root)
    if targets is None:
        leaf_values = list(sf.leaf_values)
    else:
        # one value per leaf: its tree's target
        leaf_values = [0.0] * n_leaves
        for p in range(len(thr)):
            if is_leaf[p]:
                leaf_values[sf.leaf[p]] = sf.leaf_values[sf.leaf[p] * k + targets[tree_of[p]]]
    for p in range(len(thr)):
        if is_leaf[p]:
            slot[p] = 2 * n + 1
            thr[p] = leaf_values[sf.leaf[p]] if inline else float(sf.leaf[p])
    if inline:
        leaf_values = []
    dmin, dmax = [], []
    for root in sf.roots:
        lo, hi = 1 << 30, 0
        stack2 = [(root, 0)]
        while stack2:
            p, d = stack2.pop()
            if is_leaf[p]:
                lo, hi = min(lo, d), max(hi, d)
            else:
                stack2.extend(((sf.nxt[p], d + 1), (sf.nxt[p] + 1, d + 1)))
        dmin.append(lo)
        dmax.append(hi)
    wide = max(off, default=0) > 32767 or 2 * n + 1 > 65535
    return _Walk(thr, slot, off, list(sf.roots), dmin, dmax, targets, leaf_values, wide)


def _acc_type(ens: Ensemble, sums: str) -> str:
    """The accumulator's C type: the ensemble's own precision, or double for sums if asked."""
    return "double" if ens.double or (sums == "double" and ens.aggregate in ("SUM", "AVERAGE")) else "float"


def _flat_arrays(p: str, ens: Ensemble, w: _Walk) -> list[str]:
    i = ens.index
    leaf_t = "double" if ens.double else "float"
    slot_t, off_t = ("uint32_t", "int32_t") if w.wide else ("uint16_t", "int16_t")
    nodes = ",".join(f"{{{flit(t)},{s},{o}}}" for t, s, o in zip(w.thr, w.slot, w.off))

    def small(name: str, values: list[int]) -> str:
        ty = "uint8_t" if max(values, default=0) < 256 else ("uint16_t" if max(values, default=0) < 65536 else "int32_t")
        return f"static const {ty} {p}_e{i}_{name}[{max(len(values), 1)}] = {{{','.join(map(str, values)) or '0'}}};"

    groups = range(0, len(w.roots), 8)
    out = [
        f"typedef struct {{ float thr; {slot_t} slot; {off_t} off; }} {p}_e{i}_node_t;",
        f"static const {p}_e{i}_node_t {p}_e{i}_nodes[{len(w.thr)}] = {{",
        *textwrap.wrap(nodes, 2000, break_long_words=False, break_on_hyphens=False),
        "};",
        f"static const int32_t {p}_e{i}_roots[{len(w.roots)}] = {{{','.join(map(str, w.roots))}}};",
        small("dmin", w.dmin),
        small("dmax", w.dmax),
        small("gmin", [min(w.dmin[g:g + 8]) for g in groups]),
        small("gmax", [max(w.dmax[g:g + 8]) for g in groups]),
    ]
    if w.targets is not None and ens.n_targets > 1:
        out.append(small("target", w.targets))
    if w.leaf_values:
        leaves = ",".join((dlit(v) if ens.double else flit(v)) for v in w.leaf_values)
        out += [
            f"static const {leaf_t} {p}_e{i}_leaves[{len(w.leaf_values)}] = {{",
            *textwrap.wrap(leaves, 2000, break_long_words=False, break_on_hyphens=False),
            "};",
        ]
    return out


def _flat_eval(p: str, ens: Ensemble, w: _Walk, block: int, acc_t: str) -> list[str]:
    """The walk over a block of rows. Eight rows or more: tree by tree (the tree stays in
    cache), eight rows at a time; the rows left over (and single-row calls): row by row, eight
    trees at a time. Eight independent walks keep the CPU busy while nodes load; each walk
    stops once all eight have reached a leaf, not at the tree's full depth, and every row adds
    its trees' leaves in tree order, so results do not depend on how a call was split."""
    i, k = ens.index, ens.n_targets
    n = len(ens.inputs)
    agg = ens.aggregate
    init = {"MIN": "INFINITY", "MAX": "-INFINITY"}.get(agg, "0")
    E = f"{p.upper()}_E{i}"
    nodes = f"{p}_e{i}_nodes"
    nt = len(w.roots)
    W = 2 * n + 2
    chunk = max(8, min(block, 16384 // W))
    if w.leaf_values:
        per = 1 if w.targets is not None else k
        value = f"{p}_e{i}_leaves[(long)(nd)->thr * {per} + (j)]"
    else:
        value = "(nd)->thr"
    if agg in ("MIN", "MAX"):
        op = "<" if agg == "MIN" else ">"
        upd = f"do {{ const {acc_t} v_ = {value}; if (v_ {op} (a)[tg]) (a)[tg] = v_; }} while (0)"
        final = "for (long q = 0; q < nb * K; ++q) if (isinf(acc[q])) acc[q] = 0;"
    else:
        upd = f"((a)[tg] += {value})"
        final = ""
    if w.targets is None:
        # every target of the leaf, one after another
        add = f"#define {E}_ADD(nd, a, t) do {{ for (int j = 0; j < K; ++j) {{ const int tg = j; {upd}; }} }} while (0)"
    else:
        tgt = f"{p}_e{i}_target[t]" if k > 1 else "0"
        add = f"#define {E}_ADD(nd, a, t) do {{ const int j = 0, tg = {tgt}; (void)j; {upd}; }} while (0)"
    S, A = f"{E}_STEP", f"{E}_ADD"
    lanes = range(8)
    allleaf = " | ".join(f"n{j}->off" for j in lanes)
    return [
        f"#define {S}(nd, f) ((nd) += (nd)->off + !((f)[(nd)->slot] <= (nd)->thr))",
        add,
        f"static void {p}_e{i}_eval(const float *feat, long stride, long n_rows, {acc_t} *acc) {{",
        f"    enum {{ K = {k}, NT = {nt}, NF = {n}, W = {W}, CHUNK = {chunk} }};",
        "    float xs[CHUNK * W];",
        f"    for (long q = 0; q < n_rows * K; ++q) acc[q] = {init};",
        "    for (long c0 = 0; c0 < n_rows; c0 += CHUNK) {",
        "        const long nb = n_rows - c0 < CHUNK ? n_rows - c0 : CHUNK;",
        f"        {acc_t} *ac = acc + c0 * K;",
        "        /* the row buffer: x, -x, 0, -inf (see _walk_layout) */",
        "        for (long r = 0; r < nb; ++r) {",
        "            const float *f = feat + (c0 + r) * stride;",
        "            float *b = xs + r * W;",
        "            for (int j = 0; j < NF; ++j) { b[j] = f[j]; b[NF + j] = -f[j]; }",
        "            b[2 * NF] = 0.0f;",
        "            b[2 * NF + 1] = -INFINITY;",
        "        }",
        "        const long n8 = nb - nb % 8;",
        "        for (long t = 0; n8 > 0 && t < NT; ++t) {",
        f"            const {p}_e{i}_node_t *root = {nodes} + {p}_e{i}_roots[t];",
        f"            const int lo = {p}_e{i}_dmin[t], hi = {p}_e{i}_dmax[t];",
        "            for (long r = 0; r < n8; r += 8) {",
        "                const float *fb = xs + r * W;",
        f"                const {p}_e{i}_node_t " + ", ".join(f"*n{j} = root" for j in lanes) + ";",
        "                int level = 0;",
        "                for (; level < lo; ++level) {",
        "                    " + " ".join(f"{S}(n{j}, fb + {j * W});" for j in lanes),
        "                }",
        f"                for (; level < hi && ({allleaf}); ++level) {{",
        "                    " + " ".join(f"{S}(n{j}, fb + {j * W});" for j in lanes),
        "                }",
        "                " + " ".join(f"{A}(n{j}, ac + (r + {j}) * K, t);" for j in lanes),
        "            }",
        "        }",
        "        for (long r = n8; r < nb; ++r) {",
        "            const float *fb = xs + r * W;",
        f"            {acc_t} *a = ac + r * K;",
        "            long t = 0;",
        "            for (; t + 8 <= NT; t += 8) {",
        f"                const {p}_e{i}_node_t " + ", ".join(f"*n{j} = {nodes} + {p}_e{i}_roots[t + {j}]" for j in lanes) + ";",
        f"                const int lo = {p}_e{i}_gmin[t / 8], hi = {p}_e{i}_gmax[t / 8];",
        "                int level = 0;",
        "                for (; level < lo; ++level) {",
        "                    " + " ".join(f"{S}(n{j}, fb);" for j in lanes),
        "                }",
        f"                for (; level < hi && ({allleaf}); ++level) {{",
        "                    " + " ".join(f"{S}(n{j}, fb);" for j in lanes),
        "                }",
        "                " + " ".join(f"{A}(n{j}, a, t + {j});" for j in lanes),
        "            }",
        "            for (; t < NT; ++t) {",
        f"                const {p}_e{i}_node_t *nd = {nodes} + {p}_e{i}_roots[t];",
        f"                while (nd->off) {S}(nd, fb);",
        f"                {A}(nd, a, t);",
        "            }",
        "        }",
        "    }",
        f"    {final}",
        "}",
        f"#undef {S}",
        f"#undef {A}",
    ]


def _branchy_eval(p: str, ens: Ensemble, acc_t: str) -> list[str]:
    """Ensembles with EQ / NEQ / MEMBER splits: nested ifs, one row at a time."""
    i, k = ens.index, ens.n_targets
    agg = ens.aggregate
    init = {"MIN": "INFINITY", "MAX": "-INFINITY"}.get(agg, "0")
    lines = [
        f"static void {p}_e{i}_eval(const float *feat, long stride, long nb, {acc_t} *acc) {{",
        f"    for (long q = 0; q < nb * {k}; ++q) acc[q] = {init};",
        "    for (long r = 0; r < nb; ++r) {",
        "        const float *f = feat + r * stride;",
        f"        {acc_t} *a = &acc[r * {k}];",
    ]

    def cond(s: Split) -> str:
        x = f"f[{s.feature}]"
        lit = (lambda v: dlit(v)) if ens.double else flit
        xv = f"(double){x}" if ens.double else x

        def t(e: Expr) -> str:
            if isinstance(e, Cmp):
                assert isinstance(e.b, Num)
                return f"({xv} {e.op} {lit(e.b.value)})"
            if isinstance(e, IsNaN):
                return f"isnan({x})"
            if isinstance(e, Logic):
                return "(" + (" || ".join(t(a) for a in e.args) if e.args else "0") + ")"
            raise CodegenError(f"unexpected split condition {type(e).__name__}.")

        return t(split_condition(Num(0.0), s))

    def walk(node: Leaf | Split, depth: int) -> None:
        pad = "    " * depth
        if isinstance(node, Leaf):
            for j, w in sorted(node.weights.items()):
                v = dlit(w) if ens.double else flit(w)
                if agg in ("MIN", "MAX"):
                    op = "<" if agg == "MIN" else ">"
                    lines.append(f"{pad}if ({v} {op} a[{j}]) a[{j}] = {v};")
                else:
                    lines.append(f"{pad}a[{j}] += {v};")
            return
        lines.append(f"{pad}if {cond(node)} {{")
        walk(node.true, depth + 1)
        lines.append(f"{pad}}} else {{")
        walk(node.false, depth + 1)
        lines.append(f"{pad}}}")

    for tree in ens.trees:
        walk(tree, 2)
    lines.append("    }")
    if agg in ("MIN", "MAX"):
        lines.append(f"    for (long q = 0; q < nb * {k}; ++q) if (isinf(acc[q])) acc[q] = 0;")
    lines.append("}")
    return lines


# --------------------------------------------------------------------------- the program


def _runtime(p: str, program: Program) -> list[str]:
    """The C runtime (``runtime/runtime.c``) for prefix ``p``: the common helpers, and the
    pairwise coupling of SVM probabilities if the program uses it."""
    from modelport.codegen.ir import topo

    text = resources.files("modelport.codegen.runtime").joinpath("runtime.c").read_text(encoding="utf-8")
    common, coupling = text.split("/* @coupling")
    order, _ = topo(program.outputs())
    ks = [e.coupling.k for e in order if isinstance(e, CouplingOut)]
    parts = [common]
    if ks:
        parts.append("/* @coupling" + coupling.replace("KMAX", str(max(ks))))
    return "".join(parts).replace("PREFIX_", f"{p}_").rstrip("\n").splitlines()


def to_c(program: Program, *, prefix: str = "model", sums: str = "float") -> tuple[str, str]:
    """(source, header) for ``program``.

    ``sums="double"`` accumulates float32 tree ensembles (sums and averages) in double and
    rounds once: closer to the original library (LightGBM and XGBoost sum in double) than
    ONNX Runtime's float32 sums, which the default ``"float"`` reproduces bit for bit."""
    if sums not in ("float", "double"):
        raise CodegenError(f"sums must be 'float' or 'double'; got {sums!r} instead.")
    p = prefix
    P = p.upper()
    nf, no = program.n_features, program.n_outputs
    for c in program.columns:
        if c.kind == "s":
            raise CodegenError(
                f"column {c.name!r} holds strings; the C target takes a float matrix only.",
                hint="compile to --target sql or --target python, which handle string columns",
            )
    ens_list = program.ensembles
    # which ensembles read the input matrix directly (no per-row feature computation)
    direct = {
        e.index: all(isinstance(f, Col) and f.index == j for j, f in enumerate(e.inputs)) for e in ens_list
    }
    widest = max([nf, *[len(e.inputs) for e in ens_list], *[e.n_targets for e in ens_list], 1])
    # rows per block: each tree is walked for the whole block while its nodes are in cache
    block = max(8, min(256, 32768 // widest))
    src: list[str] = [
        f"/* {p}.c: model {program.name!r} compiled by modelport. C99, libm only, no allocation. */",
        "#include <float.h>",
        "#include <math.h>",
        "#include <stdint.h>",
        "#include <string.h>",
        f'#include "{p}.h"',
        "",
        f"#define {P}_BLOCK {block}",
        "",
        *_runtime(p, program),
        "",
        f"const char *const {p}_feature_names[{max(nf, 1)}] = {{{', '.join(cstr(c.name) for c in program.columns) or '0'}}};",
        f"const char *const {p}_output_names[{max(no, 1)}] = {{{', '.join(cstr(s) for s in program.score_names) or '0'}}};",
    ]
    if program.classes is not None:
        src.append(
            f"const char *const {p}_class_names[{len(program.classes)}] = {{{', '.join(cstr(str(c)) for c in program.classes)}}};"
        )
        if all(isinstance(c, int) and not isinstance(c, bool) for c in program.classes):
            src.append(
                f"const long long {p}_class_labels[{len(program.classes)}] = {{{', '.join(f'{c}LL' for c in program.classes)}}};"
            )
    src.append("")
    for ens in ens_list:
        fe = flatten(ens)
        walk = _walk_layout(ens, fe) if fe is not None else None
        if walk is not None:
            src.extend(_flat_arrays(p, ens, walk))
            src.extend(_flat_eval(p, ens, walk, block, _acc_type(ens, sums)))
        else:
            src.extend(_branchy_eval(p, ens, _acc_type(ens, sums)))
        src.append("")
    src += [
        f"long {p}_n_features(void) {{ return {nf}; }}",
        f"long {p}_n_outputs(void) {{ return {no}; }}",
        "",
        f"int {p}_predict_labels(const float *x, long n_rows, float *out, long *labels) {{",
        "    if (n_rows < 0 || (n_rows > 0 && x == 0)) return -1;",
        f"    for (long b0 = 0; b0 < n_rows; b0 += {P}_BLOCK) {{",
        f"        const long nb = n_rows - b0 < {P}_BLOCK ? n_rows - b0 : {P}_BLOCK;",
        f"        const float *xb = x + b0 * {nf};",
    ]
    for ens in ens_list:
        acc_t = _acc_type(ens, sums)
        i = ens.index
        src.append(f"        {acc_t} acc{i}[{P}_BLOCK * {ens.n_targets}];")
        if direct[ens.index]:
            src.append(f"        {p}_e{i}_eval(xb, {nf}, nb, acc{i});")
            continue
        nfe = len(ens.inputs)
        w = _CWriter(ens.inputs, p)
        if any(isinstance(e, TreeOut) for e in w.num.order):
            raise CodegenError("a tree ensemble reads the output of another ensemble; the C target does not support stacking.")
        src += [
            f"        float fb{i}[{P}_BLOCK * {nfe}];",
            "        for (long r = 0; r < nb; ++r) {",
            f"            const float *xr = xb + r * {nf};",
            *[f"            {s}" for s in w.statements()],
            *[f"            fb{i}[r * {nfe} + {j}] = (float){w.ref(f)};" for j, f in enumerate(ens.inputs)],
            "        }",
            f"        {p}_e{i}_eval(fb{i}, {nfe}, nb, acc{i});",
        ]
    w = _CWriter(program.outputs(), p)
    src += [
        "        for (long r = 0; r < nb; ++r) {",
        f"            const float *xr = xb + r * {nf};",
        "            (void)xr;",
        *[f"            {s}" for s in w.statements()],
        "            if (out) {",
        *[f"                out[(b0 + r) * {no} + {j}] = {w.ref(s) if s.kind == 'f' else '(float)' + w.ref(s)};" for j, s in enumerate(program.scores)],
        "            }",
    ]
    if program.label is not None:
        src.append(f"            if (labels) labels[b0 + r] = (long){w.ref(program.label)};")
    else:
        src.append("            if (labels) labels[b0 + r] = -1;")
    src += [
        "        }",
        "    }",
        "    return 0;",
        "}",
        "",
        f"int {p}_predict(const float *x, long n_rows, float *out) {{",
        f"    return {p}_predict_labels(x, n_rows, out, 0);",
        "}",
    ]
    return "\n".join(src) + "\n", _header(program, p)


def _header(program: Program, p: str) -> str:
    P = p.upper()
    lines = [
        f"/* {p}.h: model {program.name!r} compiled by modelport. */",
        f"#ifndef {P}_H",
        f"#define {P}_H",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        f"#define {P}_N_FEATURES {program.n_features}",
        f"#define {P}_N_OUTPUTS {program.n_outputs}",
        "",
        "/* x: n_rows x N_FEATURES float32, row-major, columns in the order of _feature_names (NaN = missing).",
        "   out: n_rows x N_OUTPUTS; for a classifier the class probabilities in _class_names order,",
        "   for a regressor the predictions. Returns 0 on success, -1 on bad arguments. */",
        f"int {p}_predict(const float *x, long n_rows, float *out);",
        "/* Like _predict; also writes each row's predicted class as an index into _class_names",
        "   (out or labels may be NULL). */",
        f"int {p}_predict_labels(const float *x, long n_rows, float *out, long *labels);",
        f"long {p}_n_features(void);",
        f"long {p}_n_outputs(void);",
        f"extern const char *const {p}_feature_names[];",
        f"extern const char *const {p}_output_names[];",
    ]
    for c in program.columns:
        if c.kind == "c":
            lines.append(f"/* column {c.name!r} is categorical: pass the category's index in {list(c.categories or ())!r} */")
    if program.classes is not None:
        lines += [
            f"#define {P}_N_CLASSES {len(program.classes)}",
            f"extern const char *const {p}_class_names[{len(program.classes)}];",
        ]
        if all(isinstance(c, int) and not isinstance(c, bool) for c in program.classes):
            lines.append(f"extern const long long {p}_class_labels[{len(program.classes)}];")
    lines += ["", "#ifdef __cplusplus", "}", "#endif", f"#endif /* {P}_H */", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- building


def compiler() -> str:
    cc = os.environ.get("CC", "cc")
    path = shutil.which(cc) or shutil.which("gcc") or shutil.which("clang")
    if path is None:
        raise CodegenError(
            "no C compiler found (looked for $CC, cc, gcc, clang).",
            hint="install one (apt-get install gcc) or build the generated .c file yourself",
        )
    return path


def build_shared(directory: str | os.PathLike[str], prefix: str, *, opt: str = "-O2", timeout: float = 600) -> Path:
    """Compile ``<prefix>.c`` in ``directory`` into ``lib<prefix>.so``; returns its path."""
    d = Path(directory)
    lib = d / f"lib{prefix}.so"
    cmd = [compiler(), opt, "-std=c99", "-fPIC", "-shared", "-o", str(lib), str(d / f"{prefix}.c"), "-lm"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise CodegenError(f"the C compiler took longer than {timeout:.0f} s on {prefix}.c.") from exc
    if res.returncode != 0:
        raise CodegenError(
            f"the C compiler failed on {d / (prefix + '.c')} (exit {res.returncode}): {res.stderr.strip()[:2000]}",
            hint=f"command: {' '.join(cmd)}",
        )
    return lib


def wrapper(program: Program, prefix: str) -> str:
    """A small ctypes wrapper for the shared library (numpy in, numpy out)."""
    return f'''"""ctypes wrapper for lib{prefix}.so, generated by modelport for model {program.name!r}.

    from {prefix}_ctypes import predict
    scores, labels = predict(x)   # x: (n_rows, {program.n_features}) array-like of float32
"""

import ctypes
import os

import numpy as np

FEATURES = {[c.name for c in program.columns]!r}
OUTPUTS = {program.score_names!r}
CLASSES = {program.classes!r}

_lib = ctypes.CDLL(os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib{prefix}.so"))
_fn = _lib.{prefix}_predict_labels
_fn.restype = ctypes.c_int
_fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def predict(x):
    """(scores, labels): scores (n_rows, {program.n_outputs}) float32; labels: class values, or None."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != {program.n_features}:
        raise ValueError(f"expected an array of shape (n_rows, {program.n_features}); got {{x.shape}}")
    n = x.shape[0]
    out = np.empty((n, {program.n_outputs}), dtype=np.float32)
    idx = np.empty(n, dtype=np.int_)
    rc = _fn(x.ctypes.data, n, out.ctypes.data, idx.ctypes.data)
    if rc != 0:
        raise RuntimeError(f"{prefix}_predict_labels returned {{rc}}")
    if CLASSES is None:
        return out, None
    return out, np.asarray(CLASSES, dtype=object)[idx]
'''
