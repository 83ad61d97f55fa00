"""Target: one dependency-free Java 11+ source file (a final class of static methods).

    float[] predict(float[] row)                  the scores of one row (NaN = missing)
    float[][] predict(float[][] rows)
    void predict(float[] x, int nRows, float[] out)          row-major batch
    int predictLabel(float[] row)                 index into CLASS_NAMES (-1 for regressors)
    void predictLabels(float[] x, int nRows, float[] out, int[] labels)

Semantics are the C target's: float32 inputs, tree ensembles with numeric splits walked
branch-free over node arrays (eight rows at a time per tree, for a block of rows), the same
canonical ``x <= t`` thresholds on the float32 grid and the same missing-value rule; other
ensembles walk a general node table. Node data lives in base64 string constants decoded once
(a static array initialiser would hit Java's 64 KB method limit), and per-row code that would
grow past a safe method size is split into methods that keep values in a scratch array.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from modelport.codegen._render import Numbering
from modelport.codegen.flat import Blob, FlatEnsemble, flatten, general, signed
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
    ExprVisitor,
    IsNaN,
    Logic,
    Num,
    Program,
    Round32,
    Select,
    Switch,
    Text,
    ToFloat,
    ToInt,
    TreeOut,
    f32,
)
from modelport.errors import CodegenError

_TYPE = {"f": "float", "d": "double", "i": "long", "b": "boolean", "s": "String"}
#: source characters of per-row code in one method before it is split (bytecode is about a
#: third of the source, and a method holds at most 64 KB of it)
METHOD_CHARS = 60_000
_AGG = {"SUM": 0, "AVERAGE": 0, "MIN": 2, "MAX": 3}


def class_name(prefix: str) -> str:
    """``churn_model`` -> ``ChurnModel`` (the class, and the file's name)."""
    name = "".join(part[:1].upper() + part[1:] for part in re.split(r"_+", prefix) if part)
    return name or "Model"


def flit(v: float) -> str:
    """An exact float literal."""
    v = f32(v)
    if v != v:
        return "Float.NaN"
    if math.isinf(v):
        return "Float.POSITIVE_INFINITY" if v > 0 else "Float.NEGATIVE_INFINITY"
    text = float(v).hex() + "f"
    return f"({text})" if text.startswith("-") else text


def dlit(v: float) -> str:
    if v != v:
        return "Double.NaN"
    if math.isinf(v):
        return "Double.POSITIVE_INFINITY" if v > 0 else "Double.NEGATIVE_INFINITY"
    text = float(v).hex()
    return f"({text})" if text.startswith("-") else text


def jstr(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= o < 127:
            out.append(ch)
        elif o > 0xFFFF:
            hi, lo = divmod(o - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + hi:04x}\\u{0xDC00 + lo:04x}")
        else:
            out.append(f"\\u{o:04x}")
    out.append('"')
    return "".join(out)


# --------------------------------------------------------------------------- per-row code


class _Row(ExprVisitor[list[str]]):
    """Java statements computing ``roots`` for one row.

    ``regs``: values live in scratch arrays (``v`` doubles, ``lv`` longs, ``sv`` strings)
    instead of locals, so the statements can be spread over several methods."""

    def __init__(self, roots: Sequence[Expr], *, regs: bool, acc: dict[int, str]) -> None:
        self.numbering = Numbering(roots)
        self.regs = regs
        self.acc = acc
        self.slot = {id(e): i for i, e in enumerate(self.numbering.order)}
        self.dots: list[tuple[int, Dot]] = []  # regs mode: Dots written as table lookups

    # references
    def ref(self, e: Expr, ctx: str | None = None) -> str:
        """``e`` as an operand (``ctx``: the kind the consuming expression computes in)."""
        if isinstance(e, Num):
            kind = ctx or e.kind
            if kind == "i" or (e.kind == "i" and kind not in ("f", "d")):
                return f"{int(e.value)}L"
            if kind == "b":
                return "true" if e.value else "false"
            return dlit(e.value) if kind == "d" else flit(e.value)
        if isinstance(e, Text):
            return jstr(e.value)
        if isinstance(e, Col):
            if e.kind == "s":
                raise CodegenError(
                    "the Java target takes a float matrix and cannot read string columns.",
                    hint="compile to --target sql or --target python, which handle strings",
                )
            x = f"x[xo + {e.index}]"
            return {"i": f"((long) {x})", "d": f"((double) {x})"}.get(e.kind, x)
        if not self.regs:
            return self.numbering.name(e)
        i = self.slot[id(e)]
        return {"f": f"((float) v[{i}])", "d": f"v[{i}]", "i": f"lv[{i}]", "b": f"(v[{i}] != 0)", "s": f"sv[{i}]"}[e.kind]

    def assign(self, e: Expr, expr: str) -> list[str]:
        if not self.regs:
            return [f"final {_TYPE[e.kind]} {self.numbering.name(e)} = {expr};"]
        i = self.slot[id(e)]
        if e.kind == "b":
            return [f"v[{i}] = ({expr}) ? 1 : 0;"]
        store = {"i": "lv", "s": "sv"}.get(e.kind, "v")
        return [f"{store}[{i}] = {expr};"]

    def statements(self) -> list[list[str]]:
        return [self.visit(e) for e in self.numbering.order]

    # nodes
    def num(self, e: Num) -> list[str]:
        return []

    def text(self, e: Text) -> list[str]:
        return []

    def col(self, e: Col) -> list[str]:
        return []

    def bin(self, e: Bin) -> list[str]:
        k = e.kind
        a, b = self.ref(e.a, k), self.ref(e.b, k)
        if k == "i" and e.op == "/":
            return self.assign(e, f"({b} == 0L ? 0L : {a} / {b})")
        if k == "f" and (e.a.kind == "d" or e.b.kind == "d"):
            return self.assign(e, f"(float) ({a} {e.op} {b})")
        return self.assign(e, f"{a} {e.op} {b}")

    def dot(self, e: Dot) -> list[str]:
        if self.regs and len(e.terms) > 32:
            self.dots.append((self.slot[id(e)], e))
            expr = f"dot(v, x, xo, DOT_IDX, DOT_W, DOT{len(self.dots) - 1}, {len(e.terms)}, {dlit(e.bias)})"
        else:
            terms = "".join(f" + {dlit(w)} * (double) {self.ref(x)}" for w, x in e.terms)
            expr = f"{dlit(e.bias)}{terms}"
        return self.assign(e, expr if e.kind == "d" else f"(float) ({expr})")

    def call(self, e: Call) -> list[str]:
        d = e.kind == "d"
        args = [self.ref(a, e.kind) for a in e.args]
        if e.fn == "max":
            arr = "new double[] {" if d else "new float[] {"
            return self.assign(e, f"maxOf({arr}{', '.join(args)}}})")
        if e.fn == "sigmoid":
            return self.assign(e, f"sigmoid({args[0]})")
        if e.fn == "abs":
            return self.assign(e, f"Math.abs({args[0]})")
        fn = {"exp": "Math.exp", "log": "Math.log", "sqrt": "Math.sqrt", "tanh": "Math.tanh",
              "floor": "Math.floor", "ceil": "Math.ceil"}.get(e.fn)
        if fn is None:
            raise CodegenError(f"the Java target has no function {e.fn!r}.")
        call = f"{fn}({args[0]})"
        return self.assign(e, call if d else f"(float) {call}")

    def cmp(self, e: Cmp) -> list[str]:
        if e.a.kind == "s" or e.b.kind == "s":
            eq = f"{self.ref(e.a)}.equals({self.ref(e.b)})"
            return self.assign(e, eq if e.op == "==" else f"!{eq}")
        kind = "d" if "d" in (e.a.kind, e.b.kind) else ("f" if "f" in (e.a.kind, e.b.kind) else e.a.kind)
        return self.assign(e, f"{self.ref(e.a, kind)} {e.op} {self.ref(e.b, kind)}")

    def isnan(self, e: IsNaN) -> list[str]:
        a = self.ref(e.a)
        return self.assign(e, f"{a} != {a}")

    def logic(self, e: Logic) -> list[str]:
        if e.op == "not":
            return self.assign(e, f"!{self.ref(e.args[0], 'b')}")
        if not e.args:
            return self.assign(e, "false" if e.op == "or" else "true")
        sep = " || " if e.op == "or" else " && "
        return self.assign(e, sep.join(f"({self.ref(a, 'b')})" for a in e.args))

    def select(self, e: Select) -> list[str]:
        return self.assign(e, f"{self.ref(e.cond, 'b')} ? {self.ref(e.a, e.kind)} : {self.ref(e.b, e.kind)}")

    def argmax(self, e: ArgMax) -> list[str]:
        items = ", ".join(f"(double) {self.ref(a)}" for a in e.items)
        return self.assign(e, f"(long) argMax(new double[] {{{items}}})")

    def switch(self, e: Switch) -> list[str]:
        expr = self.ref(e.default, e.kind)
        idx = self.ref(e.index, "i")
        for i in reversed(range(len(e.values))):
            expr = f"{idx} == {i}L ? {self.ref(e.values[i], e.kind)} : ({expr})"
        return self.assign(e, expr)

    def round32(self, e: Round32) -> list[str]:
        return self.assign(e, f"(float) {self.ref(e.a)}")

    def toint(self, e: ToInt) -> list[str]:
        return self.assign(e, f"toInt({self.ref(e.a)})")

    def tofloat(self, e: ToFloat) -> list[str]:
        return self.assign(e, f"({_TYPE[e.kind]}) {self.ref(e.a)}")

    def treeout(self, e: TreeOut) -> list[str]:
        ens = e.ensemble
        return self.assign(e, f"{self.acc[ens.index]}[r * {ens.n_targets} + {e.target}]")

    def couplingout(self, e: CouplingOut) -> list[str]:
        cp = e.coupling
        k = cp.k
        sets, q = [], 0
        r = ["0.0f"] * (k * k)
        for i in range(k - 1):
            for j in range(i + 1, k):
                v = self.ref(cp.pairs[q], "f")
                r[i * k + j] = v
                r[j * k + i] = f"1.0f - {v}"
                q += 1
        sets.append(f"coupling({k}, new float[] {{{', '.join(r)}}})[{e.index}]")
        return self.assign(e, sets[0])


# --------------------------------------------------------------------------- ensembles


#: rows walked at once per tree (independent walks hide the latency of each node load)
LANES = 8


def _flat_eval(i: int, ens: Ensemble, fe: FlatEnsemble, stride: int, packed: bool) -> list[str]:
    """Tree by tree over the block's rows, eight rows at a time (as the C target). ``stride``
    (values per row) is a constant, so the eight rows' offsets fold into the addressing."""
    k = ens.n_targets
    acc_t = "double" if ens.double else "float"
    agg = ens.aggregate
    init = {"MIN": f"{acc_t.capitalize()}.POSITIVE_INFINITY", "MAX": f"{acc_t.capitalize()}.NEGATIVE_INFINITY"}.get(agg, "0")

    def add(ix: str, row: str) -> str:
        if agg in ("MIN", "MAX"):
            op = "<" if agg == "MIN" else ">"
            upd = f"{{ final {acc_t} w = lv[o + j]; if (w {op} acc[a + j]) acc[a + j] = w; }}"
        else:
            upd = "acc[a + j] += lv[o + j];"
        slot = ix if packed else f"nd[({ix} << 2) + 3]"
        if k == 1 and agg not in ("MIN", "MAX"):
            return f"acc[{row}] += lv[{slot}];"
        return f"{{ final int o = {slot} * {k}; final int a = ({row}) * {k}; for (int j = 0; j < {k}; j++) {upd} }}"

    lanes = range(LANES)
    lines = [
        f"    private static void e{i}(float[] feat, int fo, int nb, {acc_t}[] acc) {{",
        f"        final {'long' if packed else 'int'}[] nd = E{i}_NODES;",
        f"        final {acc_t}[] lv = E{i}_LEAVES;",
        f"        final int[] roots = E{i}_ROOTS;",
        f"        final int[] depth = E{i}_DEPTH;",
        f"        java.util.Arrays.fill(acc, 0, nb * {k}, {init});",
        f"        for (int t = 0; t < {len(fe.roots)}; t++) {{",
        "            final int root = roots[t];",
        "            final int dep = depth[t];",
        "            int r = 0;",
        f"            for (; r + {LANES} <= nb; r += {LANES}) {{",
        "                " + " ".join(f"int i{j} = root;" for j in lanes),
        f"                final int b0 = fo + r * {stride};",
        "                for (int l = 0; l < dep; l++) {",
        *[f"                    i{j} = step(nd, feat, b0{f' + {j * stride}' if j else ''}, i{j});" for j in lanes],
        "                }",
        *[f"                {add(f'i{j}', f'r + {j}')}" for j in lanes],
        "            }",
        "            for (; r < nb; r++) {",
        "                int ix = root;",
        f"                final int b = fo + r * {stride};",
        "                for (int l = 0; l < dep; l++) {",
        "                    ix = step(nd, feat, b, ix);",
        "                }",
        f"                {add('ix', 'r')}",
        "            }",
        "        }",
    ]
    if agg in ("MIN", "MAX"):
        lines.append(f"        for (int q = 0; q < nb * {k}; q++) if ({acc_t.capitalize()}.isInfinite(acc[q])) acc[q] = 0;")
    lines.append("    }")
    return lines


_STEP = [
    "    /** One branch-free step: node i's first child, or the second when x > threshold (or",
    "     *  x is missing and the node sends missing values there). */",
    "    private static int step(int[] nd, float[] f, int base, int i) {",
    "        final int q = i << 2;",
    "        final int fm = nd[q + 1];",
    "        final float v = f[base + (fm & 0x7fffffff)];",
    "        return nd[q + 2] + (((v <= Float.intBitsToFloat(nd[q])) | ((v != v) & (fm < 0))) ? 0 : 1);",
    "    }",
    "",
    "    /** The same step over nodes packed into one long (threshold | buffer slot | child) and a row",
    "     *  buffer of x, -x and 0, where missing values need no test (see flat.signed). */",
    "    private static int step(long[] nd, float[] f, int base, int i) {",
    "        final long w = nd[i];",
    "        final float v = f[base + (int) ((w >>> 20) & 0x7ffL)];",
    "        return (int) (w & 0xfffffL) + ((v <= Float.intBitsToFloat((int) (w >>> 32))) ? 0 : 1);",
    "    }",
]


def packable(fe: FlatEnsemble, n_inputs: int) -> bool:
    """Whether every node fits one long: fewer than 2**20 nodes, the row buffer (x, -x, 0) below
    2048 values."""
    return len(fe.thr) < (1 << 20) and 2 * n_inputs < 2048


def _f32_bits(v: float) -> int:
    import struct

    return int(struct.unpack("<I", struct.pack("<f", f32(v)))[0])


@dataclass
class _Tables:
    blob: Blob
    fields: list[str]


def _tables(program: Program) -> tuple[_Tables, dict[int, FlatEnsemble | None]]:
    blob = Blob()
    fields: list[str] = []
    flats: dict[int, FlatEnsemble | None] = {}
    for ens in program.ensembles:
        i = ens.index
        fe = flatten(ens)
        flats[i] = fe
        real = "doubles" if ens.double else "floats"
        real_t = "double" if ens.double else "float"
        add_real = blob.add_doubles if ens.double else blob.add_floats
        if fe is not None and packable(fe, len(ens.inputs)):
            # missing values folded into the comparisons (x and -x in the row buffer); one long per
            # node: threshold bits << 32 | buffer slot << 20 | first child
            fe = signed(fe, len(ens.inputs))
            flats[i] = fe
            packed = []
            for t, slot, n in zip(fe.thr, fe.fm, fe.nxt):
                word = (_f32_bits(t) << 32) | (slot << 20) | n
                packed.append(word - (1 << 64) if word >= 1 << 63 else word)
            # leaf values indexed by node (K per node), so a leaf's value needs no slot lookup
            k = ens.n_targets
            fill = math.nan if ens.aggregate in ("MIN", "MAX") else 0.0
            by_node = [fill] * (len(fe.thr) * k)
            for pos, (n, lf) in enumerate(zip(fe.nxt, fe.leaf)):
                if n == pos:  # leaves loop on themselves
                    by_node[pos * k:(pos + 1) * k] = fe.leaf_values[lf * k:(lf + 1) * k]
            fields += [
                f"    private static final long[] E{i}_NODES = longs(DATA, {blob.add_longs(packed)}, {len(packed)});",
                f"    private static final int[] E{i}_ROOTS = ints(DATA, {blob.add_ints(fe.roots)}, {len(fe.roots)});",
                f"    private static final int[] E{i}_DEPTH = ints(DATA, {blob.add_ints(fe.depths)}, {len(fe.depths)});",
                f"    private static final {real_t}[] E{i}_LEAVES = {real}(DATA, {add_real(by_node)}, {len(by_node)});",
            ]
        elif fe is not None:
            nodes: list[int] = []
            for t, fm, n, lf in zip(fe.thr, fe.fm, fe.nxt, fe.leaf):
                bits = _f32_bits(t)
                nodes.extend((bits - (1 << 32) if bits >= 1 << 31 else bits, fm - (1 << 32) if fm >= 1 << 31 else fm, n, lf))
            fields += [
                f"    private static final int[] E{i}_NODES = ints(DATA, {blob.add_ints(nodes)}, {len(nodes)});",
                f"    private static final int[] E{i}_ROOTS = ints(DATA, {blob.add_ints(fe.roots)}, {len(fe.roots)});",
                f"    private static final int[] E{i}_DEPTH = ints(DATA, {blob.add_ints(fe.depths)}, {len(fe.depths)});",
                f"    private static final {real_t}[] E{i}_LEAVES = {real}(DATA, {add_real(fe.leaf_values)}, {len(fe.leaf_values)});",
            ]
        else:
            g = general(ens)
            fields += [
                f"    private static final int[] E{i}_NODES = ints(DATA, {blob.add_ints(g.nodes)}, {len(g.nodes)});",
                f"    private static final {real_t}[] E{i}_THR = {real}(DATA, {add_real(g.thr)}, {len(g.thr)});",
                f"    private static final {real_t}[] E{i}_MEMBERS = {real}(DATA, {add_real(g.members)}, {len(g.members)});",
                f"    private static final int[] E{i}_ROOTS = ints(DATA, {blob.add_ints(g.roots)}, {len(g.roots)});",
                f"    private static final {real_t}[] E{i}_LEAVES = {real}(DATA, {add_real(g.leaf_values)}, {len(g.leaf_values)});",
            ]
    return _Tables(blob, fields), flats


# --------------------------------------------------------------------------- the class


@dataclass
class _RowMethod:
    """A method computing some expressions for row ``r`` (inputs at ``x[xo..]``)."""

    name: str
    lines: list[str]
    scratch: int  # slots of the v / lv / sv scratch arrays it needs (0: values in locals)
    acc: list[str]  # accumulator arrays it reads

    def call(self, xo: str, extra: Sequence[str]) -> str:
        args = ["x", xo, "r", *self.acc, *extra]
        if self.scratch:
            args += ["v", "lv", "sv"]
        return f"{self.name}({', '.join(args)})"


def _row_method(name: str, roots: Sequence[Expr], acc: dict[int, str], acc_types: dict[int, str],
                extra: Sequence[str], tail: Sequence[str], ret: str | None, tables: _Tables,
                force_regs: bool = False) -> tuple[_RowMethod, list[str]]:
    """Java computing ``roots`` for one row, then ``tail`` (statements in which ``{j}`` stands
    for root ``j``), returning ``ret`` (an int expression, same placeholders) if given.

    Small programs keep every value in a local; larger ones (past METHOD_CHARS of source) are
    spread over several methods that keep values in scratch arrays."""
    params = ["float[] x", "int xo", "int r", *(f"{acc_types[i]}[] {a}" for i, a in acc.items()), *extra]
    rtype = "int" if ret is not None else "void"
    row = _Row(roots, regs=False, acc=acc)
    body = [ln for stmts in row.statements() for ln in stmts]
    regs = force_regs or sum(len(ln) for ln in body) > METHOD_CHARS
    helpers: list[str] = []
    if regs:
        row = _Row(roots, regs=True, acc=acc)
        parts: list[list[str]] = [[]]
        used = 0
        for stmts in row.statements():
            cost = sum(len(ln) for ln in stmts)
            if used + cost > METHOD_CHARS // 2 and parts[-1]:
                parts.append([])
                used = 0
            parts[-1].extend(stmts)
            used += cost
        params += ["double[] v", "long[] lv", "String[] sv"]
        names = [p.split()[-1] for p in params]
        for j, part in enumerate(parts):
            helpers += [f"    private static void {name}_{j}({', '.join(params)}) {{", *(f"        {ln}" for ln in part), "    }"]
        body = [f"{name}_{j}({', '.join(names)});" for j in range(len(parts))]
        if row.dots:
            idx: list[int] = []
            w: list[float] = []
            for k, (_, dot) in enumerate(row.dots):
                tables.fields.append(f"    private static final int DOT{k} = {len(idx)};")
                for wt, xe in dot.terms:
                    if isinstance(xe, Num):
                        raise CodegenError("a large dot product has a constant operand, which the Java target cannot table.")
                    w.append(wt)
                    idx.append(-1 - xe.index if isinstance(xe, Col) else row.slot[id(xe)])
            tables.fields += [
                f"    private static final int[] DOT_IDX = ints(DATA, {tables.blob.add_ints(idx)}, {len(idx)});",
                f"    private static final double[] DOT_W = doubles(DATA, {tables.blob.add_doubles(w)}, {len(w)});",
            ]
    refs = [row.ref(e) for e in roots]
    lines = [f"    private static {rtype} {name}({', '.join(params)}) {{", *(f"        {ln}" for ln in body)]
    lines += [f"        {t.format(*refs)}" for t in tail]
    if ret is not None:
        lines.append(f"        return {ret.format(*refs)};")
    lines.append("    }")
    method = _RowMethod(name, helpers + lines, len(row.numbering.order) if regs else 0, list(acc.values()))
    return method, method.lines


def to_java(program: Program, *, class_name_: str = "Model", package: str | None = None, force_regs: bool = False) -> str:
    """The source of ``<class_name_>.java`` for ``program``."""
    from modelport.codegen.ir import topo

    cls = class_name_
    if not re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", cls):
        raise CodegenError(f"{cls!r} is not a valid Java class name.")
    if package is not None and not re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*", package):
        raise CodegenError(
            f"package {package!r} is not a valid Java package name.",
            hint="use dot-separated identifiers, e.g. --package com.acme.churn",
        )
    for c in program.columns:
        if c.kind == "s":
            raise CodegenError(
                f"column {c.name!r} holds strings; the Java target takes a float matrix only.",
                hint="compile to --target sql or --target python, which handle string columns",
            )
    nf, no = program.n_features, program.n_outputs
    ens_list = program.ensembles
    tables, flats = _tables(program)
    widest = max([nf, *[len(e.inputs) for e in ens_list], *[e.n_targets for e in ens_list], 1])
    block = max(8, min(256, 32768 // widest))
    acc = {e.index: f"acc{e.index}" for e in ens_list}
    acc_types = {e.index: ("double" if e.double else "float") for e in ens_list}
    methods: list[str] = []
    buffers: list[str] = []  # allocated once per call
    block_lines: list[str] = []  # run for each block of rows
    scratch = 0
    for ens in ens_list:
        i = ens.index
        k = ens.n_targets
        buffers.append(f"final {acc_types[i]}[] acc{i} = new {acc_types[i]}[Math.min(BLOCK, nRows) * {k}];")
        fe = flats[i]
        packed = fe is not None and packable(fe, len(ens.inputs))
        direct = all(isinstance(f, Col) and f.index == j for j, f in enumerate(ens.inputs))
        nfe = len(ens.inputs)
        stride = 2 * nfe + 1 if packed else (nf if direct else nfe)
        if fe is not None:
            methods += _flat_eval(i, ens, fe, stride, packed)
            call = f"e{i}({{feat}}, {{fo}}, nb, acc{i});"
        else:
            call = (f"walkGeneral(E{i}_NODES, E{i}_THR, E{i}_MEMBERS, E{i}_ROOTS, E{i}_LEAVES, {k}, {_AGG[ens.aggregate]}, "
                    f"{{feat}}, {{fo}}, {{stride}}, nb, acc{i});")
        if direct and not packed:
            block_lines.append(call.format(feat="x", fo="b0 * N_FEATURES", stride="N_FEATURES"))
            continue
        buffers.append(f"final float[] fb{i} = new float[Math.min(BLOCK, nRows) * {stride}];")
        if direct:  # the row buffer: x, then -x (then a 0 that is never written)
            block_lines += [
                "for (int r = 0; r < nb; r++) {",
                "    final int xo = (b0 + r) * N_FEATURES;",
                f"    for (int j = 0; j < {nfe}; j++) {{",
                f"        fb{i}[r * {stride} + j] = x[xo + j];",
                f"        fb{i}[r * {stride} + {nfe} + j] = -x[xo + j];",
                "    }",
                "}",
                call.format(feat=f"fb{i}", fo="0", stride=str(stride)),
            ]
            continue
        order, _ = topo(ens.inputs)
        if any(isinstance(e, TreeOut) for e in order):
            raise CodegenError("a tree ensemble reads the output of another ensemble; the Java target does not support stacking.")
        tail = [f"fb[r * {stride} + {j}] = (float) {{{j}}};" for j in range(nfe)]
        if packed:
            tail += [f"fb[r * {stride} + {nfe + j}] = -fb[r * {stride} + {j}];" for j in range(nfe)]
        m, lines = _row_method(f"features{i}", ens.inputs, {}, acc_types, ["float[] fb"], tail, None, tables, force_regs)
        methods += lines
        scratch = max(scratch, m.scratch)
        block_lines += [
            "for (int r = 0; r < nb; r++) {",
            f"    {m.call('(b0 + r) * N_FEATURES', [f'fb{i}'])};",
            "}",
            call.format(feat=f"fb{i}", fo="0", stride=str(stride)),
        ]
    tail = [f"if (out != null) out[oo + {j}] = {'' if s.kind == 'f' else '(float) '}{{{j}}};" for j, s in enumerate(program.scores)]
    ret = f"(int) {{{len(program.scores)}}}" if program.label is not None else "-1"
    m, lines = _row_method("outputs", program.outputs(), acc, acc_types, ["float[] out", "int oo"], tail, ret, tables, force_regs)
    methods += lines
    scratch = max(scratch, m.scratch)
    call_out = m.call("(b0 + r) * N_FEATURES", ["out", "(b0 + r) * N_OUTPUTS"])
    alloc = [f"        final double[] v = new double[{scratch}];", f"        final long[] lv = new long[{scratch}];",
             f"        final String[] sv = new String[{scratch}];"] if scratch else []
    src: list[str] = [
        f"// {cls}.java: model {program.name!r} compiled by modelport. Java 11+, no dependencies.",
        "// Thread-safe: every method is static and keeps its state on the stack.",
    ]
    if package:
        src += [f"package {package};", ""]
    classes = program.classes
    int_classes = classes is not None and all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
    cats = ", ".join(
        "null" if c.kind != "c" else "new String[] {" + ", ".join(jstr(str(v)) for v in (c.categories or ())) + "}"
        for c in program.columns
    )
    src += [
        "/**",
        f" * Model {program.name!r} ({program.task}) compiled by modelport: reproduces ONNX Runtime on float32 rows.",
        " *",
        " * <p>Rows are float32, columns in {@link #FEATURES} order; NaN is a missing value. A categorical",
        " * column takes the index of its category in {@link #CATEGORIES} (see {@link #categoryCode}).",
        " * Scores are in {@link #OUTPUTS} order: class probabilities in {@link #CLASS_NAMES} order for a",
        " * classifier, predictions for a regressor.",
        " */",
        f"public final class {cls} {{",
        f"    public static final String MODEL = {jstr(program.name)};",
        f"    public static final int N_FEATURES = {nf};",
        f"    public static final int N_OUTPUTS = {no};",
        f"    public static final String[] FEATURES = {{{', '.join(jstr(c.name) for c in program.columns)}}};",
        f"    public static final String[] OUTPUTS = {{{', '.join(jstr(s) for s in program.score_names)}}};",
        "    /** Class names of a classifier (null for a regressor). */",
        "    public static final String[] CLASS_NAMES = "
        + ("null;" if classes is None else f"{{{', '.join(jstr(str(c)) for c in classes)}}};"),
        "    /** Integer class labels, when the classes are integers (else null). */",
        "    public static final long[] CLASS_LABELS = "
        + (f"{{{', '.join(f'{c}L' for c in classes)}}};" if int_classes and classes is not None else "null;"),
        "    /** The categories of each categorical column (null for numeric columns). */",
        f"    public static final String[][] CATEGORIES = {{{cats}}};",
        f"    private static final int BLOCK = {block};",
        "",
        f"    private {cls}() {{",
        "    }",
        "",
        "    // node tables, decoded once (a static array initialiser would hit the 64 KB method limit)",
        "    private static final java.nio.ByteBuffer DATA = data(new String[] {",
    ]
    # data fields are decided while writing methods (large dot products): collect them first
    src_tail: list[str] = [
        "",
        "    /** The scores of one row (N_FEATURES values; NaN = missing). */",
        "    public static float[] predict(float[] row) {",
        "        checkRow(row);",
        "        final float[] out = new float[N_OUTPUTS];",
        "        predictLabels(row, 1, out, null);",
        "        return out;",
        "    }",
        "",
        "    /** The scores of each row. */",
        "    public static float[][] predict(float[][] rows) {",
        "        if (rows == null) {",
        '            throw new IllegalArgumentException("rows must be an array of rows; got null instead");',
        "        }",
        "        final float[] x = new float[rows.length * N_FEATURES];",
        "        for (int i = 0; i < rows.length; i++) {",
        "            checkRow(rows[i]);",
        "            System.arraycopy(rows[i], 0, x, i * N_FEATURES, N_FEATURES);",
        "        }",
        "        final float[] flat = new float[rows.length * N_OUTPUTS];",
        "        predictLabels(x, rows.length, flat, null);",
        "        final float[][] out = new float[rows.length][];",
        "        for (int i = 0; i < rows.length; i++) {",
        "            out[i] = java.util.Arrays.copyOfRange(flat, i * N_OUTPUTS, (i + 1) * N_OUTPUTS);",
        "        }",
        "        return out;",
        "    }",
        "",
        "    /** Scores of nRows row-major rows of x into out (nRows * N_OUTPUTS values). */",
        "    public static void predict(float[] x, int nRows, float[] out) {",
        "        predictLabels(x, nRows, out, null);",
        "    }",
        "",
        "    /** The predicted class of one row as an index into CLASS_NAMES (-1 for a regressor). */",
        "    public static int predictLabel(float[] row) {",
        "        checkRow(row);",
        "        final int[] label = new int[1];",
        "        predictLabels(row, 1, null, label);",
        "        return label[0];",
        "    }",
        "",
        "    /** Scores (out, may be null) and class indexes (labels, may be null) of nRows rows of x. */",
        "    public static void predictLabels(float[] x, int nRows, float[] out, int[] labels) {",
        "        if (x == null || nRows < 0 || (long) nRows * N_FEATURES > x.length) {",
        '            throw new IllegalArgumentException("x must hold nRows * " + N_FEATURES + " values; got "',
        '                + (x == null ? "null" : x.length + " values") + " for nRows = " + nRows + " instead");',
        "        }",
        "        if ((out != null && out.length < (long) nRows * N_OUTPUTS) || (labels != null && labels.length < nRows)) {",
        '            throw new IllegalArgumentException("out must hold nRows * " + N_OUTPUTS + " values and labels nRows");',
        "        }",
        *alloc,
        *[f"        {ln}" for ln in buffers],
        "        for (int b0 = 0; b0 < nRows; b0 += BLOCK) {",
        "            final int nb = Math.min(BLOCK, nRows - b0);",
        *[f"            {ln}" for ln in block_lines],
        "            for (int r = 0; r < nb; r++) {",
        f"                final int label = {call_out};",
        "                if (labels != null) {",
        "                    labels[b0 + r] = label;",
        "                }",
        "            }",
        "        }",
        "    }",
        "",
        "    /** The code of a category of a categorical column (its index, as the row takes it; NaN if unknown). */",
        "    public static float categoryCode(int column, String value) {",
        "        final String[] cats = CATEGORIES[column];",
        "        if (cats == null) {",
        '            throw new IllegalArgumentException("column " + FEATURES[column] + " is not categorical");',
        "        }",
        "        for (int i = 0; i < cats.length; i++) {",
        "            if (cats[i].equals(value)) {",
        "                return i;",
        "            }",
        "        }",
        "        return Float.NaN;",
        "    }",
        "",
        "    private static void checkRow(float[] row) {",
        "        if (row == null || row.length != N_FEATURES) {",
        '            throw new IllegalArgumentException("a row must hold " + N_FEATURES + " values ("',
        '                + String.join(", ", FEATURES) + "); got " + (row == null ? "null" : row.length + " values") + " instead");',
        "        }",
        "    }",
        "",
        *_STEP,
        "",
        *methods,
        "",
        resources.files("modelport.codegen.runtime").joinpath("Helpers.java").read_text(encoding="utf-8").rstrip("\n"),
        "}",
        "",
    ]
    src += [f"        {jstr(p)}," for p in tables.blob.base64_chunks()]
    src += ["    });", *tables.fields]
    return "\n".join(src + src_tail)
