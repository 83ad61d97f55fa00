"""Target: one ES module with no dependencies (browsers, Node.js, Deno, edge functions).

    predict(row)                       Float32Array of the scores (row: numbers in FEATURES
                                       order, or an object by column name; NaN/null = missing)
    predictLabel(row)                  the class (a CLASSES entry), null for regressors
    predictBatch(x, nRows[, out, labels])   x: Float32Array, row-major; returns {scores, labels}

Numbers are doubles in JavaScript: values the graph computes in float32 are rounded with
``Math.fround`` after every operation (exact for + - * / and sqrt, as the double result rounds
to the float32 one) and inputs are float32 (a Float32Array, or ``Math.fround`` of each value),
so split decisions on thresholds and their neighbours match the C target. Tree ensembles are
walked as in the C target, over typed arrays decoded once from base64.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from importlib import resources

from modelport.codegen._render import Numbering
from modelport.codegen.flat import Blob, FlatEnsemble, flatten, general
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
    topo,
)
from modelport.errors import CodegenError

#: source characters of per-row code in one function before it is split (V8 does not optimise
#: functions past about 60 KB of bytecode)
FUNCTION_CHARS = 40_000
LANES = 8
_AGG = {"SUM": 0, "AVERAGE": 0, "MIN": 2, "MAX": 3}


def lit(v: float, kind: str = "f") -> str:
    if kind == "f":
        v = f32(v)
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if kind == "i":
        return str(int(v))
    text = repr(float(v))
    return f"({text})" if text.startswith("-") else text


def jsstr(s: str) -> str:
    return json.dumps(s, ensure_ascii=True)


class _Row(ExprVisitor[list[str]]):
    """JavaScript statements computing ``roots`` for one row (``regs``: values in array ``v``)."""

    def __init__(self, roots: Sequence[Expr], *, regs: bool, acc: dict[int, str]) -> None:
        self.numbering = Numbering(roots)
        self.regs = regs
        self.acc = acc
        self.slot = {id(e): i for i, e in enumerate(self.numbering.order)}

    def ref(self, e: Expr, ctx: str | None = None) -> str:
        if isinstance(e, Num):
            kind = ctx if ctx in ("f", "d", "i") else e.kind
            if ctx == "b":
                return "true" if e.value else "false"
            return lit(e.value, "i" if e.kind == "i" and kind == "i" else kind)
        if isinstance(e, Text):
            return jsstr(e.value)
        if isinstance(e, Col):
            if e.kind == "s":
                raise CodegenError(
                    "the JavaScript target takes a float32 matrix and cannot read string columns.",
                    hint="compile to --target sql or --target python, which handle strings",
                )
            x = f"x[xo + {e.index}]"
            return f"Math.trunc({x})" if e.kind == "i" else x
        if self.regs:
            return f"v[{self.slot[id(e)]}]"
        return self.numbering.name(e)

    def assign(self, e: Expr, expr: str) -> list[str]:
        if self.regs:
            return [f"v[{self.slot[id(e)]}] = {expr};"]
        return [f"const {self.numbering.name(e)} = {expr};"]

    def _f(self, e: Expr, expr: str) -> list[str]:
        """``expr`` rounded to float32 when ``e`` is a float32 value."""
        return self.assign(e, f"fround({expr})" if e.kind == "f" else expr)

    def statements(self) -> list[list[str]]:
        return [self.visit(e) for e in self.numbering.order]

    def num(self, e: Num) -> list[str]:
        return []

    def text(self, e: Text) -> list[str]:
        return []

    def col(self, e: Col) -> list[str]:
        return []

    def bin(self, e: Bin) -> list[str]:
        a, b = self.ref(e.a, e.kind), self.ref(e.b, e.kind)
        if e.kind == "i":
            return self.assign(e, f"idiv({a}, {b})" if e.op == "/" else f"{a} {e.op} {b}")
        return self._f(e, f"{a} {e.op} {b}")

    def dot(self, e: Dot) -> list[str]:
        terms = "".join(f" + {lit(w, 'd')} * {self.ref(x)}" for w, x in e.terms)
        return self._f(e, f"{lit(e.bias, 'd')}{terms}")

    def call(self, e: Call) -> list[str]:
        args = [self.ref(a, e.kind) for a in e.args]
        if e.fn == "max":
            return self.assign(e, f"maxOf([{', '.join(args)}])")
        if e.fn == "sigmoid":
            return self.assign(e, f"{'sigmoid' if e.kind == 'd' else 'sigmoidf'}({args[0]})")
        fn = {"exp": "Math.exp", "log": "Math.log", "sqrt": "Math.sqrt", "tanh": "Math.tanh", "abs": "Math.abs",
              "floor": "Math.floor", "ceil": "Math.ceil"}.get(e.fn)
        if fn is None:
            raise CodegenError(f"the JavaScript target has no function {e.fn!r}.")
        return self._f(e, f"{fn}({args[0]})")

    def cmp(self, e: Cmp) -> list[str]:
        op = {"==": "===", "!=": "!=="}.get(e.op, e.op)
        kind = "d" if "d" in (e.a.kind, e.b.kind) else ("f" if "f" in (e.a.kind, e.b.kind) else e.a.kind)
        return self.assign(e, f"{self.ref(e.a, kind)} {op} {self.ref(e.b, kind)}")

    def isnan(self, e: IsNaN) -> list[str]:
        a = self.ref(e.a)
        return self.assign(e, f"{a} !== {a}")

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
        return self.assign(e, f"argMax([{', '.join(self.ref(a) for a in e.items)}])")

    def switch(self, e: Switch) -> list[str]:
        expr = self.ref(e.default, e.kind)
        idx = self.ref(e.index, "i")
        for i in reversed(range(len(e.values))):
            expr = f"{idx} === {i} ? {self.ref(e.values[i], e.kind)} : ({expr})"
        return self.assign(e, expr)

    def round32(self, e: Round32) -> list[str]:
        return self.assign(e, f"fround({self.ref(e.a)})")

    def toint(self, e: ToInt) -> list[str]:
        return self.assign(e, f"toInt({self.ref(e.a)})")

    def tofloat(self, e: ToFloat) -> list[str]:
        return self._f(e, self.ref(e.a))

    def treeout(self, e: TreeOut) -> list[str]:
        ens = e.ensemble
        return self.assign(e, f"{self.acc[ens.index]}[r * {ens.n_targets} + {e.target}]")

    def couplingout(self, e: CouplingOut) -> list[str]:
        cp, k = e.coupling, e.coupling.k
        r = ["0"] * (k * k)
        q = 0
        for i in range(k - 1):
            for j in range(i + 1, k):
                v = self.ref(cp.pairs[q], "f")
                r[i * k + j] = v
                r[j * k + i] = f"fround(1 - {v})"
                q += 1
        return self.assign(e, f"coupling({k}, [{', '.join(r)}])[{e.index}]")


def _row_function(name: str, roots: Sequence[Expr], acc: dict[int, str], extra: Sequence[str],
                  tail: Sequence[str], ret: str | None, force_regs: bool = False) -> tuple[list[str], bool]:
    """A function of ``(x, xo, r, <acc arrays>, <extra>)`` computing ``roots`` then ``tail``;
    large programs are split over functions sharing a values array. Returns (lines, uses v)."""
    params = ["x", "xo", "r", *acc.values(), *extra]
    row = _Row(roots, regs=False, acc=acc)
    body = [ln for st in row.statements() for ln in st]
    regs = force_regs or sum(len(ln) for ln in body) > FUNCTION_CHARS
    helpers: list[str] = []
    if regs:
        row = _Row(roots, regs=True, acc=acc)
        parts: list[list[str]] = [[]]
        used = 0
        for st in row.statements():
            cost = sum(len(ln) for ln in st)
            if used + cost > FUNCTION_CHARS // 2 and parts[-1]:
                parts.append([])
                used = 0
            parts[-1].extend(st)
            used += cost
        params.append("v")
        for j, part in enumerate(parts):
            helpers += [f"function {name}_{j}({', '.join(params)}) {{", *(f"  {ln}" for ln in part), "}", ""]
        body = [f"{name}_{j}({', '.join(params)});" for j in range(len(parts))]
    refs = [row.ref(e) for e in roots]
    lines = [*helpers, f"function {name}({', '.join(params)}) {{", *(f"  {ln}" for ln in body)]
    lines += [f"  {t.format(*refs)}" for t in tail]
    if ret is not None:
        lines.append(f"  return {ret.format(*refs)};")
    lines += ["}", ""]
    return lines, regs


def _flat_eval(i: int, ens: Ensemble, fe: FlatEnsemble, stride: int) -> list[str]:
    k = ens.n_targets
    agg = ens.aggregate
    init = {"MIN": "Infinity", "MAX": "-Infinity"}.get(agg, "0")

    def add(ix: str, row: str) -> str:
        if agg in ("MIN", "MAX"):
            op = "<" if agg == "MIN" else ">"
            upd = f"{{ const w = LV[o + j]; if (w {op} acc[a + j]) acc[a + j] = w; }}"
        else:
            upd = "acc[a + j] += LV[o + j];"
        if k == 1 and agg not in ("MIN", "MAX"):
            return f"acc[{row}] += LV[ND[({ix} << 2) + 3]];"
        return f"{{ const o = ND[({ix} << 2) + 3] * {k}; const a = ({row}) * {k}; for (let j = 0; j < {k}; j++) {upd} }}"

    def step(var: str, base: str) -> str:
        # bitwise | and & on the comparisons: no branch, so random split directions cost nothing
        return (f"{{ const q = {var} << 2; const fm = ND[q + 1]; const v = feat[{base} + (fm & 0x7fffffff)]; "
                f"{var} = ND[q + 2] + 1 - ((v <= TH[q]) | ((v !== v) & (fm >>> 31))); }}")

    lanes = range(LANES)
    lines = [
        f"function e{i}(feat, fo, nb, acc) {{",
        f"  const ND = E{i}_NODES, TH = E{i}_THR, LV = E{i}_LEAVES, ROOTS = E{i}_ROOTS, DEPTH = E{i}_DEPTH;",
        f"  acc.fill({init}, 0, nb * {k});",
        f"  for (let t = 0; t < {len(fe.roots)}; t++) {{",
        "    const root = ROOTS[t], dep = DEPTH[t];",
        "    let r = 0;",
        f"    for (; r + {LANES} <= nb; r += {LANES}) {{",
        "      " + " ".join(f"let i{j} = root;" for j in lanes),
        f"      const b = fo + r * {stride};",
        "      for (let l = 0; l < dep; l++) {",
        *[f"        {step(f'i{j}', f'b + {j * stride}' if j else 'b')}" for j in lanes],
        "      }",
        *[f"      {add(f'i{j}', f'r + {j}')}" for j in lanes],
        "    }",
        "    for (; r < nb; r++) {",
        "      let ix = root;",
        f"      const b = fo + r * {stride};",
        f"      for (let l = 0; l < dep; l++) {step('ix', 'b')}",
        f"      {add('ix', 'r')}",
        "    }",
        "  }",
    ]
    if agg in ("MIN", "MAX"):
        lines.append(f"  for (let q = 0; q < nb * {k}; q++) if (acc[q] === Infinity || acc[q] === -Infinity) acc[q] = 0;")
    return [*lines, "}", ""]


def to_javascript(program: Program, *, force_regs: bool = False) -> str:
    """The source of an ES module for ``program``."""
    for c in program.columns:
        if c.kind == "s":
            raise CodegenError(
                f"column {c.name!r} holds strings; the JavaScript target takes a float32 matrix only.",
                hint="compile to --target sql or --target python, which handle string columns",
            )
    nf, no = program.n_features, program.n_outputs
    ens_list = program.ensembles
    blob = Blob()
    tables: list[str] = []
    fns: list[str] = []
    buffers: list[str] = []
    block: list[str] = []
    uses_v = False
    widest = max([nf, *[len(e.inputs) for e in ens_list], *[e.n_targets for e in ens_list], 1])
    block_rows = max(8, min(256, 32768 // widest))
    acc = {e.index: f"acc{e.index}" for e in ens_list}
    for ens in ens_list:
        i, k = ens.index, ens.n_targets
        real = "Float64Array" if ens.double else "Float32Array"
        add_real = blob.add_doubles if ens.double else blob.add_floats
        buffers.append(f"const acc{i} = new {real}(Math.min(BLOCK, nRows) * {k});")
        direct = all(isinstance(f, Col) and f.index == j for j, f in enumerate(ens.inputs))
        stride = nf if direct else len(ens.inputs)
        fe = flatten(ens)
        if fe is not None:
            words: list[int] = []
            for t, fm, n, lf in zip(fe.thr, fe.fm, fe.nxt, fe.leaf):
                bits = struct.unpack("<i", struct.pack("<f", f32(t)))[0]
                words.extend((bits, fm - (1 << 32) if fm >= 1 << 31 else fm, n, lf))
            # four int32 words per node; the first is the threshold, read through a float32 view
            tables += [
                f"const E{i}_NODES = view(Int32Array, DATA, {blob.add_ints(words)}, {len(words)});",
                f"const E{i}_THR = new Float32Array(E{i}_NODES.buffer);",
                f"const E{i}_ROOTS = view(Int32Array, DATA, {blob.add_ints(fe.roots)}, {len(fe.roots)});",
                f"const E{i}_DEPTH = view(Int32Array, DATA, {blob.add_ints(fe.depths)}, {len(fe.depths)});",
                f"const E{i}_LEAVES = view({real}, DATA, {add_real(fe.leaf_values)}, {len(fe.leaf_values)});",
            ]
            fns += _flat_eval(i, ens, fe, stride)
            call = f"e{i}({{feat}}, {{fo}}, nb, acc{i});"
        else:
            g = general(ens)
            tables += [
                f"const E{i}_NODES = view(Int32Array, DATA, {blob.add_ints(g.nodes)}, {len(g.nodes)});",
                f"const E{i}_THR = view({real}, DATA, {add_real(g.thr)}, {len(g.thr)});",
                f"const E{i}_MEMBERS = view({real}, DATA, {add_real(g.members)}, {len(g.members)});",
                f"const E{i}_ROOTS = view(Int32Array, DATA, {blob.add_ints(g.roots)}, {len(g.roots)});",
                f"const E{i}_LEAVES = view({real}, DATA, {add_real(g.leaf_values)}, {len(g.leaf_values)});",
            ]
            call = (f"walkGeneral(E{i}_NODES, E{i}_THR, E{i}_MEMBERS, E{i}_ROOTS, E{i}_LEAVES, {k}, {_AGG[ens.aggregate]}, "
                    f"{{feat}}, {{fo}}, {stride}, nb, acc{i});")
        if direct:
            block.append(call.format(feat="x", fo=f"b0 * {nf}"))
            continue
        order, _ = topo(ens.inputs)
        if any(isinstance(e, TreeOut) for e in order):
            raise CodegenError("a tree ensemble reads the output of another ensemble; the JavaScript target does not support stacking.")
        nfe = len(ens.inputs)
        tail = [f"fb[r * {nfe} + {j}] = {{{j}}};" for j in range(nfe)]
        lines, regs = _row_function(f"features{i}", ens.inputs, {}, ["fb"], tail, None, force_regs)
        uses_v |= regs
        fns += lines
        buffers.append(f"const fb{i} = new Float32Array(Math.min(BLOCK, nRows) * {nfe});")
        block += [
            f"for (let r = 0; r < nb; r++) features{i}(x, (b0 + r) * {nf}, r, fb{i}{', v' if regs else ''});",
            call.format(feat=f"fb{i}", fo="0"),
        ]
    tail = [f"if (out) out[oo + {j}] = {{{j}}};" for j in range(len(program.scores))]
    ret = f"{{{len(program.scores)}}}" if program.label is not None else "-1"
    lines, regs = _row_function("outputs", program.outputs(), acc, ["out", "oo"], tail, ret, force_regs)
    uses_v |= regs
    fns += lines
    out_call = f"outputs(x, (b0 + r) * {nf}, r, {''.join(f'{a}, ' for a in acc.values())}out, (b0 + r) * {no}{', v' if regs else ''})"
    classes = program.classes
    cats = [list(map(str, c.categories or ())) if c.kind == "c" else None for c in program.columns]
    src = [
        f"// model {program.name!r} ({program.task}) compiled by modelport: an ES module with no dependencies.",
        "// Rows are float32 in FEATURES order (NaN or null = missing); a categorical column takes its",
        "// category's index in CATEGORIES (see categoryCode). Scores come in OUTPUTS order.",
        "",
        f"export const MODEL = {jsstr(program.name)};",
        f"export const FEATURES = {json.dumps([c.name for c in program.columns])};",
        f"export const OUTPUTS = {json.dumps(program.score_names)};",
        f"export const CLASSES = {json.dumps(classes) if classes is not None else 'null'};",
        f"export const CATEGORIES = {json.dumps(cats)};",
        f"export const N_FEATURES = {nf};",
        f"export const N_OUTPUTS = {no};",
        f"const BLOCK = {block_rows};",
        "",
        resources.files("modelport.codegen.runtime").joinpath("helpers.mjs").read_text(encoding="utf-8").rstrip("\n"),
        "",
        "// node tables, decoded once",
        "const DATA = decode([",
        *[f"  {jsstr(p)}," for p in blob.base64_chunks()],
        "]);",
        *tables,
        "",
        *fns,
        "/** Scores (into out, a Float32Array of nRows * N_OUTPUTS) and class indexes (into labels, an",
        " *  Int32Array of nRows) of nRows row-major rows of the Float32Array x. */",
        "export function predictBatch(x, nRows, out, labels) {",
        "  if (!(x instanceof Float32Array)) x = Float32Array.from(x, (v) => (v === null || v === undefined ? NaN : v));",
        "  if (nRows === undefined) nRows = Math.floor(x.length / N_FEATURES);",
        "  if (!Number.isInteger(nRows) || nRows < 0 || nRows * N_FEATURES > x.length) {",
        "    throw new RangeError(`x must hold nRows * ${N_FEATURES} values; got ${x.length} for nRows = ${nRows} instead`);",
        "  }",
        "  out = out || new Float32Array(nRows * N_OUTPUTS);",
        "  labels = labels || new Int32Array(nRows);",
        "  if (out.length < nRows * N_OUTPUTS || labels.length < nRows) {",
        "    throw new RangeError(`out must hold nRows * ${N_OUTPUTS} values and labels nRows`);",
        "  }",
        *([f"  const v = new Array({max(1, _largest_program(program))}).fill(0);"] if uses_v else []),
        *[f"  {ln}" for ln in buffers],
        "  for (let b0 = 0; b0 < nRows; b0 += BLOCK) {",
        "    const nb = Math.min(BLOCK, nRows - b0);",
        *[f"    {ln}" for ln in block],
        f"    for (let r = 0; r < nb; r++) labels[b0 + r] = {out_call};",
        "  }",
        "  return { scores: out, labels };",
        "}",
        "",
        "function rowOf(row) {",
        "  const values = Array.isArray(row) || ArrayBuffer.isView(row) ? row : FEATURES.map((name) => {",
        "    if (!(name in row)) throw new RangeError(`missing column ${name}; expected ${FEATURES.join(', ')}`);",
        "    return row[name];",
        "  });",
        "  if (values.length !== N_FEATURES) {",
        "    throw new RangeError(`a row must hold ${N_FEATURES} values (${FEATURES.join(', ')}); got ${values.length} instead`);",
        "  }",
        "  return Float32Array.from(values, (v) => (v === null || v === undefined ? NaN : v));",
        "}",
        "",
        "/** The scores of one row, in OUTPUTS order. */",
        "export function predict(row) {",
        "  return predictBatch(rowOf(row), 1).scores;",
        "}",
        "",
        "/** The predicted class of one row (null for a regressor). */",
        "export function predictLabel(row) {",
        "  const k = predictBatch(rowOf(row), 1).labels[0];",
        "  return CLASSES === null || k < 0 ? null : CLASSES[k];",
        "}",
        "",
        "/** The code of a category of a categorical column (its index, as rows take it; NaN if unknown). */",
        "export function categoryCode(column, value) {",
        "  const i = typeof column === 'number' ? column : FEATURES.indexOf(column);",
        "  if (i < 0 || CATEGORIES[i] === null) throw new RangeError(`column ${column} is not categorical`);",
        "  const k = CATEGORIES[i].indexOf(String(value));",
        "  return k < 0 ? NaN : k;",
        "}",
        "",
    ]
    return "\n".join(src)


def _largest_program(program: Program) -> int:
    sizes = [len(Numbering(program.outputs()).order)]
    sizes += [len(Numbering(e.inputs).order) for e in program.ensembles]
    return max(sizes)
