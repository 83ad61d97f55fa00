"""Target: one plain Python module (only ``import math``) that scores rows like ONNX Runtime.

Arithmetic is rounded to float32 after every operation (``_f32``), as ONNX Runtime computes in
float32, so split decisions on thresholds and their neighbours come out the same.
"""

from __future__ import annotations

import math

from modelport.codegen._render import Numbering
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
    split_condition,
)
from modelport.errors import CodegenError

_RUNTIME = '''
_INF = float("inf")
_NAN = float("nan")
_F32_MAX = 3.4028234663852886e38


def _f32(v):
    """v rounded to the nearest float32 (ties to even), with only the math module."""
    if v != v or v == 0.0 or v in (_INF, -_INF):
        return v
    m, e = math.frexp(v)
    if e < -125:  # float32 subnormals: a fixed quantum of 2**-149
        return math.ldexp(round(math.ldexp(v, 149)), -149)
    r = math.ldexp(round(math.ldexp(m, 24)), e - 24)
    if r > _F32_MAX:
        return _INF
    if r < -_F32_MAX:
        return -_INF
    return r


def _num(v):
    if v is None:
        return _NAN
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise ValueError(f"expected a number, got {v!r}") from None
    return float(v)


def _r(v, double):
    return v if double else _f32(v)


def _exp(x, double=False):
    try:
        return _r(math.exp(x), double)
    except OverflowError:
        return _INF


def _log(x, double=False):
    if x != x or x < 0:
        return _NAN
    return -_INF if x == 0 else _r(math.log(x), double)


def _sqrt(x, double=False):
    return _NAN if x != x or x < 0 else _r(math.sqrt(x), double)


def _div(a, b, double=False):
    if b == 0:
        if a != a or a == 0:
            return _NAN
        return math.copysign(_INF, a) * math.copysign(1.0, b)
    return _r(a / b, double)


def _sigmoid(x, double=False):
    if x != x:
        return x
    v = _r(1.0 / _r(1.0 + _exp(-abs(x), double), double), double)
    return _r(1.0 - v, double) if x < 0 else v


def _tanh(x, double=False):
    return x if x != x else _r(math.tanh(x), double)


def _max(*xs):
    m = -_F32_MAX
    for v in xs:
        if v > m:
            m = v
    return m


def _argmax(*xs):
    best, bv = 0, xs[0]
    for i in range(1, len(xs)):
        if xs[i] > bv:
            best, bv = i, xs[i]
    return best


def _floor(x):
    return x if x != x or x in (_INF, -_INF) else float(math.floor(x))


def _ceil(x):
    return x if x != x or x in (_INF, -_INF) else float(math.ceil(x))


def _toint(x):
    if x != x or x in (_INF, -_INF):
        return -(2**63)
    return int(x)


def _coupling(k, pairs):
    """ONNX Runtime's multiclass_probability in float32: pairwise probabilities -> k classes."""
    r = [0.0] * (k * k)
    q = 0
    for i in range(k - 1):
        for j in range(i + 1, k):
            r[i * k + j] = pairs[q]
            r[j * k + i] = _f32(1.0 - pairs[q])
            q += 1
    Q = [0.0] * (k * k)
    Qp = [0.0] * k
    p = [0.0] * k
    eps = _f32(_f32(0.005) / k)
    for i in range(k):
        p[i] = _f32(1.0 / k)
        for j in range(i):
            Q[i * k + i] = _f32(Q[i * k + i] + _f32(r[j * k + i] * r[j * k + i]))
            Q[i * k + j] = Q[j * k + i]
        for j in range(i + 1, k):
            Q[i * k + i] = _f32(Q[i * k + i] + _f32(r[j * k + i] * r[j * k + i]))
            Q[i * k + j] = _f32(-r[j * k + i] * r[i * k + j])
    for _ in range(100):
        pQp = 0.0
        for i in range(k):
            Qp[i] = 0.0
            for j in range(k):
                Qp[i] = _f32(Qp[i] + _f32(Q[i * k + j] * p[j]))
            pQp = _f32(pQp + _f32(p[i] * Qp[i]))
        max_error = 0.0
        for i in range(k):
            err = abs(_f32(Qp[i] - pQp))
            if err > max_error:  # NaN never counts, as in ONNX Runtime's loop
                max_error = err
        if max_error < eps:
            break
        for i in range(k):
            diff = _f32(_f32(-Qp[i] + pQp) / Q[i * k + i])
            p[i] = _f32(p[i] + diff)
            one = _f32(1.0 + diff)
            pQp = _f32(_f32(_f32(pQp + _f32(diff * _f32(_f32(diff * Q[i * k + i]) + _f32(2.0 * Qp[i])))) / one) / one)
            for j in range(k):
                Qp[j] = _f32(_f32(Qp[j] + _f32(diff * Q[i * k + j])) / one)
                p[j] = _f32(p[j] / one)
    return p


def _switch(i, values, default):
    return values[i] if 0 <= i < len(values) else default
'''


def _lit(v: float) -> str:
    if v != v:
        return "_NAN"
    if v in (math.inf, -math.inf):
        return "_INF" if v > 0 else "-_INF"
    return repr(float(v))


class _PyWriter:
    def __init__(self, program: Program) -> None:
        self.p = program
        self.num = Numbering(program.outputs())
        self.col_names = [f"c{i}" for i in range(program.n_features)]

    def ref(self, e: Expr) -> str:
        if isinstance(e, Num):
            return str(int(e.value)) if e.kind == "i" else _lit(e.value)
        if isinstance(e, Text):
            return repr(e.value)
        if isinstance(e, Col):
            return self.col_names[e.index]
        return self.num.name(e)

    def define(self, e: Expr) -> str:
        r = self.ref
        d = e.kind == "d"
        if isinstance(e, Bin):
            if e.kind == "i":
                return f"{r(e.a)} {e.op} {r(e.b)}" if e.op != "/" else f"{r(e.a)} // {r(e.b)}"
            if e.op == "/":
                return f"_div({r(e.a)}, {r(e.b)}, {d})"
            return f"{r(e.a)} {e.op} {r(e.b)}" if d else f"_f32({r(e.a)} {e.op} {r(e.b)})"
        if isinstance(e, Dot):
            terms = " + ".join(f"{_lit(w)} * {r(x)}" for w, x in e.terms) or "0.0"
            return f"({_lit(e.bias)} + {terms})" if d else f"_f32({_lit(e.bias)} + {terms})"
        if isinstance(e, Call):
            args = ", ".join(r(a) for a in e.args)
            if d and e.fn in ("exp", "log", "sqrt", "tanh", "sigmoid"):
                args += ", True"
            fn = {"exp": "_exp", "log": "_log", "sqrt": "_sqrt", "tanh": "_tanh", "sigmoid": "_sigmoid",
                  "abs": "abs", "max": "_max", "floor": "_floor", "ceil": "_ceil"}.get(e.fn)
            if fn is None:
                raise CodegenError(f"the Python target has no function {e.fn!r}.")
            return f"{fn}({args})"
        if isinstance(e, Cmp):
            return f"{r(e.a)} {e.op} {r(e.b)}"
        if isinstance(e, IsNaN):
            return f"{r(e.a)} != {r(e.a)}"
        if isinstance(e, Logic):
            if e.op == "not":
                return f"not {r(e.args[0])}"
            if not e.args:
                return "False" if e.op == "or" else "True"
            return f" {e.op} ".join(f"({r(a)})" for a in e.args)
        if isinstance(e, Select):
            return f"{r(e.a)} if {r(e.cond)} else {r(e.b)}"
        if isinstance(e, ArgMax):
            return f"_argmax({', '.join(r(a) for a in e.items)})"
        if isinstance(e, Switch):
            return f"_switch({r(e.index)}, ({', '.join(r(v) for v in e.values)},), {r(e.default)})"
        if isinstance(e, Round32):
            return f"_f32({r(e.a)})"
        if isinstance(e, ToInt):
            return f"_toint({r(e.a)})"
        if isinstance(e, ToFloat):
            return f"float({r(e.a)})" if d else f"_f32(float({r(e.a)}))"
        if isinstance(e, TreeOut):
            return f"_e{e.ensemble.index}[{e.target}]"
        if isinstance(e, CouplingOut):
            return f"_coupling({e.coupling.k}, ({', '.join(r(x) for x in e.coupling.pairs)},))[{e.index}]"
        raise CodegenError(f"the Python target cannot render {type(e).__name__}.")

    # ------------------------------------------------------------------ trees
    def ensemble_fn(self, ens: Ensemble) -> list[str]:
        n = ens.n_targets
        init = {"MIN": "_INF", "MAX": "-_INF"}.get(ens.aggregate, "0.0")
        lines = [f"def _ensemble_{ens.index}(f):", f"    s = [{init}] * {n}"]
        for t, tree in enumerate(ens.trees):
            lines.append(f"    # tree {t}")
            self._node(ens, tree, lines, 1)
        if ens.aggregate in ("MIN", "MAX"):
            # a target no tree voted for keeps no score (0), like ONNX Runtime
            lines.append("    s = [0.0 if v in (_INF, -_INF) else v for v in s]")
        lines.append("    return s")
        return lines

    def _node(self, ens: Ensemble, node: Leaf | Split, lines: list[str], depth: int) -> None:
        pad = "    " * depth
        if depth > 90:
            raise CodegenError("a tree is too deep for the Python target (more than 90 levels).")
        if isinstance(node, Leaf):
            if not node.weights:
                lines.append(f"{pad}pass")
            for k, w in sorted(node.weights.items()):
                if ens.aggregate in ("SUM", "AVERAGE"):
                    acc = f"s[{k}] + {_lit(w)}"
                    lines.append(f"{pad}s[{k}] = {acc if ens.double else f'_f32({acc})'}")
                else:
                    fn = "min" if ens.aggregate == "MIN" else "max"
                    lines.append(f"{pad}s[{k}] = {fn}(s[{k}], {_lit(w)})")
            return
        cond = _cond_text(split_condition(_F, node), f"f[{node.feature}]")
        lines.append(f"{pad}if {cond}:")
        self._node(ens, node.true, lines, depth + 1)
        lines.append(f"{pad}else:")
        self._node(ens, node.false, lines, depth + 1)


class _Feature(Expr):
    pass


_F = _Feature()


def _cond_text(c: Expr, x: str) -> str:
    def t(e: Expr) -> str:
        if e is _F:
            return x
        if isinstance(e, Num):
            return _lit(e.value)
        if isinstance(e, Cmp):
            return f"{t(e.a)} {e.op} {t(e.b)}"
        if isinstance(e, IsNaN):
            return f"{x} != {x}"
        if isinstance(e, Logic):
            if not e.args:
                return "False"
            return "(" + f" {e.op} ".join(t(a) for a in e.args) + ")"
        raise CodegenError(f"unexpected split condition {type(e).__name__}.")

    return t(c)


def _reads_f32(p: Program, i: int) -> bool:
    from modelport.codegen.ir import topo

    order, _ = topo([*p.outputs(), *[f for e in p.ensembles for f in e.inputs]])
    return any(isinstance(e, Col) and e.index == i and e.kind == "f" for e in order)


def to_python(program: Program) -> str:
    """The source of a standalone Python module for ``program``."""
    w = _PyWriter(program)
    p = program
    out: list[str] = [
        f'"""Model {p.name!r} compiled by modelport: scores rows like ONNX Runtime, needs only the math module.',
        "",
        "    predict_row(row) -> dict      row: a dict by column name, or a sequence in FEATURES order",
        "    predict(rows) -> list[dict]",
        "    scores(row) -> list[float]    the values in OUTPUTS order (probabilities or predictions)",
        '"""',
        "",
        "import math",
        "",
        f"FEATURES = {[c.name for c in p.columns]!r}",
        f"OUTPUTS = {p.score_names!r}",
        f"CLASSES = {p.classes!r}",
        f"TASK = {p.task!r}",
        f"_CATEGORIES = {[list(c.categories) if c.kind == 'c' and c.categories else None for c in p.columns]!r}",
        _RUNTIME,
    ]
    for ens in p.ensembles:
        out.extend(w.ensemble_fn(ens))
        out.append("")
        out.append("")
    body = ["def _compute(x):"]
    for i, c in enumerate(p.columns):
        if c.kind == "s":
            body.append(f"    c{i} = None if x[{i}] is None else str(x[{i}])")
        elif c.kind == "c":
            body.append(f"    c{i} = _category({i}, x[{i}])")
        elif c.kind == "i":
            body.append(f"    c{i} = _integer(x[{i}])")
        elif not _reads_f32(p, i):
            body.append(f"    c{i} = _num(x[{i}])")
        else:
            body.append(f"    c{i} = _f32(_num(x[{i}]))")
    done: set[int] = set()
    for e in w.num.order:
        if isinstance(e, TreeOut):
            ens = e.ensemble
            if ens.index not in done:
                done.add(ens.index)
                feats = ", ".join(w.ref(f) for f in ens.inputs)
                body.append(f"    _e{ens.index} = _ensemble_{ens.index}(({feats},))")
                if not ens.double:
                    pass
        body.append(f"    {w.num.name(e)} = {w.define(e)}")
    scores = ", ".join(w.ref(s) for s in p.scores)
    label = w.ref(p.label) if p.label is not None else "None"
    body.append(f"    return [{scores}], {label}")
    out.extend(body)
    out.append(_API)
    return "\n".join(out) + "\n"


_API = '''

def _category(i, v):
    if v is None or (isinstance(v, float) and v != v):
        return _NAN
    cats = _CATEGORIES[i]
    for k, c in enumerate(cats):
        if v == c or str(v) == str(c):
            return float(k)
    return _NAN


def _integer(v):
    if v is None or (isinstance(v, float) and v != v):
        raise ValueError("this model cannot take missing values in integer columns")
    return int(v)


def _row_values(row):
    if isinstance(row, dict):
        missing = [f for f in FEATURES if f not in row]
        if missing:
            raise KeyError(f"missing column(s): {', '.join(missing)}; expected {', '.join(FEATURES)}")
        return [row[f] for f in FEATURES]
    values = list(row)
    if len(values) != len(FEATURES):
        raise ValueError(f"expected {len(FEATURES)} values ({', '.join(FEATURES)}), got {len(values)}")
    return values


def scores(row):
    """The output values of one row, in OUTPUTS order."""
    return _compute(_row_values(row))[0]


def predict_row(row):
    values, label = _compute(_row_values(row))
    out = {}
    if CLASSES is not None:
        out["label"] = CLASSES[label] if 0 <= label < len(CLASSES) else None
    out.update(zip(OUTPUTS, values))
    return out


def predict(rows):
    return [predict_row(r) for r in rows]
'''
