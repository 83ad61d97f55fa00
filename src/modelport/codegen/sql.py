"""Target: one SQL SELECT (DuckDB, SQLite or PostgreSQL) over a table of the model's columns.

The result has the table's model columns (and any ``keep`` columns), then ``label`` for
classifiers, then the score columns in the C output order. NaN and NULL inputs are both
"missing" (NaN is turned into NULL first); a missing score comes out as NULL.

Values the graph reads as float32 are compared exactly as ONNX Runtime does after its cast:
``f32(x) <= t`` is rewritten as ``x <= m`` (or ``x < m``) where ``m`` is the midpoint between
``t`` and the next float32, the point where rounding to float32 flips, so no dialect needs a
float32 type. Arithmetic runs in double precision.

Shared subexpressions become columns of nested subqueries, one level per dependency depth, and
each level carries only the columns later levels still read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
    f32,
    f32_bits,
    floor32,
    next_down32,
    next_up32,
    split_condition,
)
from modelport.errors import CodegenError

_F32_MAX = 3.4028234663852886e38


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class _Dialect:
    def __init__(self, name: str) -> None:
        self.name = name
        self.double = {"duckdb": "DOUBLE", "postgresql": "DOUBLE PRECISION", "sqlite": "REAL"}[name]
        self.bigint = {"duckdb": "BIGINT", "postgresql": "BIGINT", "sqlite": "INTEGER"}[name]
        self.text = {"duckdb": "VARCHAR", "postgresql": "TEXT", "sqlite": "TEXT"}[name]
        # keeps the planner from inlining a level's columns into the next (which would copy
        # shared subexpressions into every use); DuckDB does not inline projections that way
        self.fence = {"duckdb": "", "postgresql": "\nOFFSET 0", "sqlite": "\nLIMIT -1 OFFSET 0"}[name]

    def num(self, v: float) -> str:
        if v != v:
            return "NULL"
        if math.isinf(v):
            big = {"duckdb": "'inf'::DOUBLE", "postgresql": "'Infinity'::float8", "sqlite": "9e999"}[self.name]
            return big if v > 0 else f"(-{big})"
        r = repr(float(v))
        if self.name == "postgresql":
            return f"{r}::float8" if v >= 0 else f"({r}::float8)"
        if self.name == "duckdb":
            return f"{r}::DOUBLE" if v >= 0 else f"({r}::DOUBLE)"
        return r if v >= 0 else f"({r})"

    def greatest(self, args: Sequence[str]) -> str:
        return ("max(" if self.name == "sqlite" else "GREATEST(") + ", ".join(args) + ")"

    def least(self, args: Sequence[str]) -> str:
        return ("min(" if self.name == "sqlite" else "LEAST(") + ", ".join(args) + ")"

    def normalize(self, col: str) -> str:
        """A numeric column as a double, NaN turned into NULL."""
        c = f"CAST({col} AS {self.double})"
        if self.name == "sqlite":
            return c
        return f"NULLIF({c}, {sql_str('NaN')}::{'float8' if self.name == 'postgresql' else 'DOUBLE'})"


# --------------------------------------------------------------------------- float32 comparisons


def _upper_bound(t: float) -> tuple[float, bool] | None:
    """(m, inclusive): f32(x) <= t  <=>  x < m, or x <= m when inclusive. None: always true."""
    if t == math.inf:
        return None
    if t == -math.inf:
        # only x that round to -inf: x <= -(2**128 - 2**103) exactly (ties go to -inf, an even pattern)
        return (-(2.0**128 - 2.0**103), True)
    up = next_up32(t)
    m = 2.0**128 - 2.0**103 if up == math.inf else (t + up) / 2.0
    if t == _F32_MAX:
        return (m, False)  # the tie at the top rounds to infinity
    return (m, f32_bits(t) % 2 == 0)


def _leq32(x: str, t: float) -> str:
    b = _upper_bound(t)
    if b is None:
        return f"({x} IS NOT NULL)"
    m, inclusive = b
    return f"({x} {'<=' if inclusive else '<'} {{m}})", m  # type: ignore[return-value]


class _SqlWriter:
    def __init__(self, program: Program, dialect: _Dialect) -> None:
        self.p = program
        self.d = dialect
        self.num = Numbering(program.outputs(), prefix="__mp_t")
        self.materialized: set[int] = set()
        forced: set[int] = set()
        for e in self.num.order:
            if isinstance(e, TreeOut):
                forced.add(id(e))
                for f in e.ensemble.inputs:
                    forced.add(id(f))
            elif isinstance(e, Call) and e.fn in ("sigmoid", "exp", "log", "sqrt"):
                forced.update(id(a) for a in e.args)
            elif isinstance(e, ArgMax):
                forced.update(id(a) for a in e.items)
            elif isinstance(e, Cmp) and isinstance(e.a, Col) is False and e.op in ("==", "!="):
                pass
        trivial = (Num, Text, Col)
        for e in self.num.order:
            if isinstance(e, trivial):
                continue
            if id(e) in forced or self.num.uses.get(id(e), 0) > 1:
                self.materialized.add(id(e))

    # ----------------------------------------------------------------- expression text
    def col(self, i: int) -> str:
        return quote(f"__mp_c{i}")

    def ref(self, e: Expr) -> str:
        if isinstance(e, Num):
            return str(int(e.value)) if e.kind == "i" else self.d.num(e.value)
        if isinstance(e, Text):
            return sql_str(e.value)
        if isinstance(e, Col):
            return self.col(e.index)
        if id(e) in self.materialized:
            return quote(self.num.name(e))
        return self.render(e)

    def _f32_col(self, e: Expr) -> Col | None:
        while isinstance(e, Round32):
            e = e.a
        if isinstance(e, Col) and e.kind in ("f", "c") and (e.f32 or e.kind == "c"):
            return e
        return None

    def cmp(self, op: str, a: Expr, b: Expr) -> str:
        """A two-valued comparison with IEEE NaN rules (NULL plays NaN)."""
        col = self._f32_col(a)
        if col is not None and isinstance(b, Num) and b.kind == "f" and b.value == b.value:
            return self._cmp32(op, self.col(col.index), b.value)
        ra, rb = self.ref(a), self.ref(b)
        sop = "<>" if op == "!=" else ("=" if op == "==" else op)
        if op == "!=":
            return f"COALESCE({ra} <> {rb}, TRUE)"
        return f"COALESCE({ra} {sop} {rb}, FALSE)"

    def _cmp32(self, op: str, x: str, t: float) -> str:
        """``f32(x) op t`` for a double column x (NULL is NaN)."""

        def leq(tt: float) -> str:
            b = _upper_bound(tt)
            if b is None:
                return f"({x} IS NOT NULL)"
            m, inc = b
            return f"COALESCE({x} {'<=' if inc else '<'} {self.d.num(m)}, FALSE)"

        def gt(tt: float) -> str:
            b = _upper_bound(tt)
            if b is None:
                return "FALSE"
            m, inc = b
            return f"COALESCE({x} {'>' if inc else '>='} {self.d.num(m)}, FALSE)"

        if t == -math.inf:  # no float32 lies below -inf: f32(x) >= -inf holds for every non-NaN x
            if op in ("<", ">="):
                return "FALSE" if op == "<" else f"({x} IS NOT NULL)"
            if op in ("==", "!="):
                return leq(t) if op == "==" else f"(NOT {leq(t)})"
        lo_leq = floor32(t)  # largest float32 <= t
        lt_t = next_down32(lo_leq) if lo_leq == t else lo_leq  # largest float32 < t
        if op == "<=":
            return leq(lo_leq)
        if op == "<":
            return leq(lt_t)
        if op == ">":
            return gt(lo_leq)
        if op == ">=":
            return gt(lt_t)
        if f32(t) != t:  # no float32 equals t
            return "FALSE" if op == "==" else "TRUE"
        eq = f"({gt(lt_t)} AND {leq(t)})"
        return eq if op == "==" else f"(NOT {eq})"

    def render(self, e: Expr) -> str:
        r, d = self.ref, self.d
        if isinstance(e, Bin):
            if e.op == "/":
                den = r(e.b) if isinstance(e.b, Num) and e.b.value != 0 else f"NULLIF({r(e.b)}, 0)"
                return f"({r(e.a)} / {den})"
            return f"({r(e.a)} {e.op} {r(e.b)})"
        if isinstance(e, Dot):
            terms = " + ".join(f"{d.num(w)} * {r(x)}" for w, x in e.terms if w != 0) or "0"
            return f"({d.num(e.bias)} + {terms})"
        if isinstance(e, Call):
            a = [r(x) for x in e.args]
            if e.fn == "sigmoid":
                x = a[0]
                return (
                    f"(CASE WHEN {x} IS NULL THEN NULL WHEN {x} < -700 THEN 0.0 WHEN {x} > 700 THEN 1.0 "
                    f"WHEN {x} < 0 THEN exp({x}) / (1 + exp({x})) ELSE 1 / (1 + exp(-{x})) END)"
                )
            if e.fn == "exp":
                x = a[0]
                return f"(CASE WHEN {x} < -700 THEN 0.0 WHEN {x} > 700 THEN exp(700.0) ELSE exp({x}) END)"
            if e.fn == "log":
                return f"(CASE WHEN {a[0]} > 0 THEN ln({a[0]}) END)"
            if e.fn == "sqrt":
                return f"(CASE WHEN {a[0]} >= 0 THEN sqrt({a[0]}) END)"
            if e.fn == "tanh":
                return f"tanh({a[0]})"
            if e.fn in ("abs", "floor", "ceil"):
                return f"{e.fn}({a[0]})"
            if e.fn == "max":
                lo = d.num(-_F32_MAX)
                return d.greatest([f"COALESCE({x}, {lo})" for x in a])
            raise CodegenError(f"the SQL target has no function {e.fn!r}.")
        if isinstance(e, Cmp):
            return self.cmp(e.op, e.a, e.b)
        if isinstance(e, IsNaN):
            return f"({r(e.a)} IS NULL)"
        if isinstance(e, Logic):
            if e.op == "not":
                return f"(NOT {r(e.args[0])})"
            if not e.args:
                return "FALSE" if e.op == "or" else "TRUE"
            return "(" + f" {e.op.upper()} ".join(r(x) for x in e.args) + ")"
        if isinstance(e, Select):
            return f"(CASE WHEN {r(e.cond)} THEN {r(e.a)} ELSE {r(e.b)} END)"
        if isinstance(e, ArgMax):
            items = [r(x) for x in e.items]
            lo = d.num(-_F32_MAX)
            m = d.greatest([f"COALESCE({x}, {lo})" for x in items])
            parts = [f"WHEN {items[0]} IS NULL THEN 0"]
            parts += [f"WHEN {x} >= {m} THEN {i}" for i, x in enumerate(items)]
            return f"(CASE {' '.join(parts)} ELSE 0 END)"
        if isinstance(e, Switch):
            cases = " ".join(f"WHEN {i} THEN {r(v)}" for i, v in enumerate(e.values))
            return f"(CASE {r(e.index)} {cases} ELSE {r(e.default)} END)"
        if isinstance(e, Round32):
            return r(e.a)
        if isinstance(e, ToInt):
            if d.name == "sqlite":
                return f"CAST({r(e.a)} AS INTEGER)"
            return f"CAST(trunc({r(e.a)}) AS BIGINT)"
        if isinstance(e, ToFloat):
            return f"CAST({r(e.a)} AS {d.double})"
        if isinstance(e, TreeOut):
            return self.tree_out(e.ensemble, e.target)
        if isinstance(e, CouplingOut):
            raise CodegenError(
                "this SVM's class probabilities come from an iterative pairwise coupling (up to 100 rounds), "
                "which one SQL SELECT cannot express.",
                hint="compile to --target c or --target python, or pack the SVC with probability=False",
            )
        raise CodegenError(f"the SQL target cannot render {type(e).__name__}.")

    # ----------------------------------------------------------------- trees
    def tree_out(self, ens: Ensemble, k: int) -> str:
        agg = ens.aggregate
        missing = "NULL" if agg in ("MIN", "MAX") else "0"
        parts = []
        for tree in ens.trees:
            text = self._tree(ens, tree, k, missing)
            if text != missing:
                parts.append(text)
        if not parts:
            return "0"
        if agg in ("SUM", "AVERAGE"):
            return "(" + "\n + ".join(parts) + ")"
        big = self.d.num(1e308 if agg == "MIN" else -1e308)
        fn = self.d.least if agg == "MIN" else self.d.greatest
        v = fn([f"COALESCE({p}, {big})" for p in parts])
        return f"(CASE WHEN {v} = {big} THEN 0 ELSE {v} END)"

    def _tree(self, ens: Ensemble, node: Leaf | Split, k: int, missing: str) -> str:
        if isinstance(node, Leaf):
            w = node.weights.get(k)
            return missing if w is None else self.d.num(w)
        a = self._tree(ens, node.true, k, missing)
        b = self._tree(ens, node.false, k, missing)
        if a == b:
            return a
        cond = self._split(ens, node)
        return f"CASE WHEN {cond} THEN {a} ELSE {b} END"

    def _split(self, ens: Ensemble, s: Split) -> str:
        x = ens.inputs[s.feature]
        return self.render_bool(split_condition(x, s))

    def render_bool(self, c: Expr) -> str:
        if isinstance(c, Cmp):
            return self.cmp(c.op, c.a, c.b)
        if isinstance(c, IsNaN):
            return f"({self.ref(c.a)} IS NULL)"
        if isinstance(c, Logic):
            if not c.args:
                return "FALSE"
            return "(" + f" {c.op.upper()} ".join(self.render_bool(a) for a in c.args) + ")"
        return self.ref(c)


def to_sql(program: Program, *, dialect: str = "duckdb", table: str = "t", keep: Sequence[str] = ()) -> str:
    """One SELECT statement scoring every row of ``table``."""
    d = _Dialect(dialect)
    w = _SqlWriter(program, d)
    names = [c.name for c in program.columns]
    clash = [k for k in keep if k in names]
    if clash:
        raise CodegenError(f"keep column(s) {clash} are model columns already; they are always in the result.")
    out_names = [*(["label"] if program.classes is not None else []), *program.score_names]
    taken = set(names) | set(keep)
    dup = [n for n in out_names if n in taken]
    if dup:
        raise CodegenError(
            f"the table has column(s) {dup} with the names of the result's score columns.",
            hint="rename those columns in a view before scoring",
        )
    passthrough = [quote(k) for k in keep] + [quote(n) for n in names]
    # level 0: inputs, normalised
    base_cols = []
    for i, c in enumerate(program.columns):
        q = quote(c.name)
        if c.kind == "f":
            v = d.normalize(q)
        elif c.kind == "i":
            v = f"CAST({q} AS {d.bigint})"
        elif c.kind == "s":
            v = f"CAST({q} AS {d.text})"
        else:
            cats = list(c.categories or ())
            whens = " ".join(
                f"WHEN {sql_str(v) if isinstance(v, str) else d.num(float(v))} THEN {float(j)!r}" for j, v in enumerate(cats)
            )
            v = f"(CASE {q} {whens} END)" if cats else "NULL"
        base_cols.append(f"{v} AS {w.col(i)}")
    # levels of materialised nodes
    level: dict[int, int] = {}

    def reads(e: Expr) -> list[Expr]:
        """The materialised nodes that computing e inline reads."""
        found, stack, seen = [], list(e.children()), set()
        while stack:
            c = stack.pop()
            if id(c) in seen:
                continue
            seen.add(id(c))
            if id(c) in w.materialized:
                found.append(c)
            else:
                stack.extend(c.children())
        return found

    mats = [e for e in w.num.order if id(e) in w.materialized]
    mat_reads = {id(e): reads(e) for e in mats}
    for e in mats:  # topological order: what e reads already has its level
        level[id(e)] = max((level[id(c)] for c in mat_reads[id(e)]), default=0) + 1
    n_levels = max(level.values(), default=0)
    # which materialised columns each level reads, to carry them no further than needed
    last_use: dict[int, int] = {}
    for e in mats:
        for dep in mat_reads[id(e)]:
            last_use[id(dep)] = max(last_use.get(id(dep), 0), level[id(e)])
    final_reads = []
    for o in program.outputs():
        final_reads.extend([o] if id(o) in w.materialized else reads(o))
    for dep in final_reads:
        last_use[id(dep)] = n_levels + 1
    input_cols = [w.col(i) for i in range(program.n_features)]
    sql = f"SELECT {', '.join([*passthrough, *base_cols])}\nFROM {quote(table) if not _qualified(table) else table}"
    for lv in range(1, n_levels + 1):
        carried = [quote(w.num.name(e)) for e in mats if level[id(e)] < lv and last_use.get(id(e), 0) >= lv]
        new = [f"{w.render(e)} AS {quote(w.num.name(e))}" for e in mats if level[id(e)] == lv]
        cols = [*passthrough, *input_cols, *carried, *new]
        sql = f"SELECT {', '.join(cols)}\nFROM (\n{sql}{d.fence}\n) AS __mp_l{lv}"
    outs = []
    if program.label is not None and program.classes is not None:
        whens = " ".join(
            f"WHEN {i} THEN {sql_str(c) if isinstance(c, str) else (str(c) if isinstance(c, int) else d.num(float(c)))}"
            for i, c in enumerate(program.classes)
        )
        outs.append(f"(CASE {w.ref(program.label)} {whens} END) AS {quote('label')}")
    for name, s in zip(program.score_names, program.scores):
        outs.append(f"{w.ref(s)} AS {quote(name)}")
    header = (
        f"-- model {program.name!r} compiled by modelport for {dialect}: one row out per row of {table};\n"
        f"-- columns: {', '.join([*keep, *names, *out_names])}\n"
    )
    return header + f"SELECT {', '.join([*passthrough, *outs])}\nFROM (\n{sql}{d.fence}\n) AS __mp_out"


def _qualified(table: str) -> bool:
    # schema.table or an already quoted name is used as given
    return "." in table or table.startswith('"')
