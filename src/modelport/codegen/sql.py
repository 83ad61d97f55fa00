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
from dataclasses import dataclass

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
from modelport.codegen.sql_trees import (
    Chunk,
    balanced,
    canonical,
    chunks,
    count_splits,
    numeric_only,
    reads_float32,
    top_case,
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

    def float_list(self, values: Sequence[float | None], lower: int = 1) -> str:
        """A constant list (DuckDB) or array (PostgreSQL, first subscript ``lower``) of doubles,
        exact (shortest round-trip digits)."""
        def one(v: float | None) -> str:
            if v is None:
                return "NULL"
            if math.isinf(v):
                return ("inf" if v > 0 else "-inf") if self.name == "duckdb" else ("Infinity" if v > 0 else "-Infinity")
            return repr(float(v))

        body = ",".join(one(v) for v in values)
        if self.name == "duckdb":
            return f"'[{body}]'::DOUBLE[]"
        return f"'{self._bounds(lower, len(values))}{{{body}}}'::float8[]"

    def int_list(self, values: Sequence[int], lower: int = 1) -> str:
        body = ",".join(str(int(v)) for v in values)
        if self.name == "duckdb":
            return f"'[{body}]'::INTEGER[]"
        return f"'{self._bounds(lower, len(values))}{{{body}}}'::int4[]"

    @staticmethod
    def _bounds(lower: int, n: int) -> str:
        return "" if lower == 1 else f"[{lower}:{lower + n - 1}]="

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
    def __init__(self, program: Program, dialect: _Dialect, trees: str = "auto", top_levels: int | None = None) -> None:
        self.p = program
        self.d = dialect
        #: ensemble index -> its walk passes (ensembles written as CASE are absent)
        self.walks: dict[int, list[_Walk]] = {}
        self.forms = {ens.index: tree_form(ens, dialect.name, trees) for ens in program.ensembles}
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
        for ens in program.ensembles:
            if self.forms[ens.index] == "walk":
                self.walks[ens.index] = walks_for(self, ens, top_levels)

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
        passes = self.walks.get(ens.index)
        if passes is not None:
            if ens.aggregate in ("MIN", "MAX"):
                fn = self.d.least if ens.aggregate == "MIN" else self.d.greatest
                parts = [r for r in (w.result(k) for w in passes) if r != "NULL"]
                return f"COALESCE({fn(parts)}, 0)" if parts else "0"
            return balanced("+", [w.result(k) for w in passes])
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
            return balanced("+", parts)
        big = self.d.num(1e308 if agg == "MIN" else -1e308)
        fn = self.d.least if agg == "MIN" else self.d.greatest
        v = fn([f"COALESCE({p}, {big})" for p in parts])
        return f"(CASE WHEN {v} = {big} THEN 0 ELSE {v} END)"

    def _tree(self, ens: Ensemble, node: Leaf | Split, k: int, missing: str) -> str:
        if isinstance(node, Leaf):
            w = node.weights.get(k)
            return missing if w is None else self.d.num(w)
        x = ens.inputs[node.feature]
        c = canonical(node, reads_float32(x))
        if c is None:  # EQ, NEQ, MEMBER: a NULL-safe condition
            a = self._tree(ens, node.true, k, missing)
            b = self._tree(ens, node.false, k, missing)
            return a if a == b else f"CASE WHEN {self.render_bool(split_condition(x, node))} THEN {a} ELSE {b} END"
        a = self._tree(ens, c.a, k, missing)
        b = self._tree(ens, c.b, k, missing)
        if a == b:
            return a
        # NULL fails the comparison and takes the ELSE branch: put the missing direction there
        if c.missing_to_a:
            return f"CASE WHEN {self.ref(x)} > {self.d.num(c.bound)} THEN {b} ELSE {a} END"
        return f"CASE WHEN {self.ref(x)} <= {self.d.num(c.bound)} THEN {a} ELSE {b} END"

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


# --------------------------------------------------------------------------- the walk form

#: DuckDB: ensembles with more splits than this are walked (nested CASE costs DuckDB about
#: 10 microseconds per CASE node and 2048-row vector, the walk about 13 ns per tree level and row)
DUCKDB_CASE_MAX_SPLITS = 64
#: PostgreSQL evaluates only the path a row takes through a CASE, but its expression program
#: grows with the nodes: past this many (splits x score columns) it no longer stays in cache
POSTGRES_CASE_MAX_NODES = 8000
#: PostgreSQL: the nodes the top-level CASE of a walked ensemble may hold (all trees together)
POSTGRES_TOP_CASE_NODES = 4000
#: DuckDB: levels of every walked tree still written as CASE
DUCKDB_TOP_LEVELS = 2
#: PostgreSQL keeps one column per tree in a walk; a SELECT list holds at most 1664 entries
POSTGRES_TREES_PER_PASS = 1200


class _Walk:
    """One ensemble walked level by level over node lists held in the ``__mp_m`` CTE."""

    def __init__(self, writer: _SqlWriter, ens: Ensemble, group: list[Chunk], prefix: str, top_levels: int | None) -> None:
        self.w, self.ens, self.d = writer, ens, writer.d
        self.prefix = prefix
        self.chunks = group
        self.features = sorted({f for ch in group for lv in range(ch.depth) for f, thru in zip(ch.feature[lv], ch.passthrough[lv]) if not thru} or {0})
        self.slot = {f: i for i, f in enumerate(self.features)}
        if top_levels is None:
            top_levels = DUCKDB_TOP_LEVELS if writer.d.name == "duckdb" else self._pg_top_levels()
        self.top = top_levels
        # targets scored by each chunk's leaves
        self.targets = [sorted({k for lf in ch.leaves if lf is not None for k in lf.weights}) for ch in self.chunks]

    def _pg_top_levels(self) -> int:
        k, deepest = 0, max((ch.depth for ch in self.chunks), default=0)
        while k < deepest:
            nodes = sum(sum(1 for t in ch.passthrough[lv] if not t) for ch in self.chunks for lv in range(min(k + 1, ch.depth)))
            if nodes > POSTGRES_TOP_CASE_NODES:
                break
            k += 1
        return k

    # names
    def xs(self) -> str:
        return quote(f"{self.prefix}x")

    def state(self, c: int, t: int | None = None) -> str:
        """The node each tree of chunk ``c`` is at (DuckDB: a list; PostgreSQL: tree ``t``'s column)."""
        return quote(f"{self.prefix}c{c}" + ("n" if t is None else f"n{t}"))

    def partial(self, c: int, k: int) -> str:
        return quote(f"{self.prefix}c{c}k{k}")

    def table(self, c: int, what: str, level: int) -> str:
        """Node list ``what`` of chunk ``c``: f (input slot), t (bound), c (first child) of a
        level, or v (leaf values) of a target."""
        return quote(f"{self.prefix}c{c}{what}{'_' if what == 'v' else 'l'}{level}")

    @property
    def per_stage(self) -> int:
        """Tree levels one subquery steps: DuckDB one; PostgreSQL two (a CASE on the first
        comparison picks the second child's arrays, which saves function calls and a subquery)."""
        return 1 if self.d.name == "duckdb" else 2

    def remaining(self, c: int) -> int:
        """Subqueries of steps chunk ``c`` needs below its CASE top."""
        ch = self.chunks[c]
        levels = ch.depth - min(self.top, ch.depth)
        return -(-levels // self.per_stage)

    @property
    def n_stages(self) -> int:
        """Subquery levels the walk needs: the start, the steps, the leaf values."""
        return 2 + max((self.remaining(c) for c in range(len(self.chunks))), default=0)

    # the node lists
    def lists(self) -> list[str]:
        """Columns of the ``__mp_m`` CTE (DuckDB; PostgreSQL writes each tree's arrays inline)."""
        d, out = self.d, []
        if d.name != "duckdb":
            return []
        for c, ch in enumerate(self.chunks):
            start = min(self.top, ch.depth)
            for lv in range(start, ch.depth):
                n_in = len(self.features)
                slots = [self.slot[f] + 1 + (0 if to_a else n_in) if not thru else 1
                         for f, to_a, thru in zip(ch.feature[lv], ch.missing_to_a[lv], ch.passthrough[lv])]
                out.append(f"{d.int_list(slots)} AS {self.table(c, 'f', lv)}")
                out.append(f"{d.float_list(ch.bound[lv])} AS {self.table(c, 't', lv)}")
                if not ch.heap:
                    out.append(f"{d.int_list([i + 1 for i in ch.child[lv]])} AS {self.table(c, 'c', lv)}")
            fill = None if self.ens.aggregate in ("MIN", "MAX") else 0.0
            for k in self.targets[c]:
                values = [fill if lf is None else lf.weights.get(k, fill) for lf in ch.leaves]
                out.append(f"{d.float_list(values)} AS {self.table(c, 'v', k)}")
        return out

    # the stages: (stage number within the walk, column name, SQL)
    def columns(self, stage: int) -> list[tuple[str, str]]:
        d, out = self.d, []
        duck = d.name == "duckdb"
        n = "__mp_n"
        if stage == 0:
            ins = [self.w.ref(self.ens.inputs[f]) for f in self.features]
            lo = [f"COALESCE(CAST({x} AS {d.double}), {d.num(-math.inf)})" for x in ins]
            nan = f"{sql_str('NaN')}::{'DOUBLE' if duck else 'float8'}"
            hi = [f"COALESCE(CAST({x} AS {d.double}), {nan})" for x in ins]
            items = ", ".join([*lo, *hi])
            out.append((self.xs(), f"[{items}]" if duck else f"ARRAY[{items}]"))

            def x(f: int) -> str:
                return self.w.ref(self.ens.inputs[f])

            for c, ch in enumerate(self.chunks):
                k = min(self.top, ch.depth)
                starts = [top_case(ch, i, k, x, d.num) for i in range(len(ch.trees))]
                if duck:
                    out.append((self.state(c), f"[{', '.join(starts)}]"))
                else:
                    out.extend((self.state(c, i), s) for i, s in enumerate(starts))
            return out
        for c, ch in enumerate(self.chunks):
            r = self.remaining(c)
            if stage <= r:  # one more level (two in PostgreSQL)
                lv = min(self.top, ch.depth) + (stage - 1) * self.per_stage
                f, t, ci = (self.table(c, w, lv) for w in "ftc")
                if duck:
                    first = f"2 * {n}" if ch.heap else f"{ci}[{n}]"
                    step = f"{first} + CAST({self.xs()}[{f}[{n}]] > {t}[{n}] AS INTEGER)"
                    out.append((self.state(c), f"list_transform({self.state(c)}, lambda {n}: {step})"))
                    continue
                for i in range(len(ch.trees)):
                    out.append((self.state(c, i), self._pg_step(ch, i, lv, self.state(c, i))))
            elif stage == r + 1:  # the leaves' values
                for k in self.targets[c]:
                    v = self.table(c, "v", k)
                    if duck:
                        fn = {"MIN": "list_min", "MAX": "list_max"}.get(self.ens.aggregate, "list_sum")
                        out.append((self.partial(c, k), f"{fn}(list_select({v}, {self.state(c)}))"))
                    else:
                        terms = [f"{self._values(ch, i, k)}[{self.state(c, i)}]" for i in range(len(ch.trees))]
                        agg = self.ens.aggregate
                        if agg == "MIN":
                            expr = d.least(terms)
                        elif agg == "MAX":
                            expr = d.greatest(terms)
                        else:
                            expr = balanced("+", terms)
                        out.append((self.partial(c, k), expr))
        return out

    # PostgreSQL: each tree's node arrays are constants (with the tree's positions as subscripts)
    # in its own step; a subscript of a constant costs about half that of an array from a CTE row
    def _pg_step(self, ch: Chunk, i: int, lv: int, s: str) -> str:
        xs = self.xs()
        fi, ti = self._slice(ch, i, lv, "f"), self._slice(ch, i, lv, "t")
        if lv + 1 >= ch.depth:  # one level
            first = f"2 * {s}" if ch.heap else f"{self._slice(ch, i, lv, 'c')}[{s}]"
            return f"{first} + ({xs}[{fi}[{s}]] > {ti}[{s}])::int"
        # two levels: the children's inputs, bounds and first grandchildren, by parent position
        a, b = ch.spans[lv][i]
        n_in = len(self.features)
        nxt_len = len(ch.feature[lv + 1])
        cols: dict[str, list[float | None]] = {w: [] for w in ("fl", "fr", "tl", "tr", "gl", "gr")}
        for p in range(a, b):
            for side, q in (("l", ch.child[lv][p]), ("r", ch.child[lv][p] + 1)):
                if q < nxt_len:
                    thru = ch.passthrough[lv + 1][q]
                    slot = 1 if thru else self.slot[ch.feature[lv + 1][q]] + 1 + (0 if ch.missing_to_a[lv + 1][q] else n_in)
                    cols["f" + side].append(slot)
                    cols["t" + side].append(ch.bound[lv + 1][q])
                    cols["g" + side].append(ch.child[lv + 1][q] + 1)
                else:  # past the level's end: the second child of a pass-through, never taken
                    cols["f" + side].append(1)
                    cols["t" + side].append(math.inf)
                    cols["g" + side].append(1)

        def arr(name: str) -> str:
            if name[0] == "t":
                return f"({self.d.float_list(cols[name], lower=a + 1)})"
            return f"({self.d.int_list([int(v or 0) for v in cols[name]], lower=a + 1)})"

        gl, gr = (f"4 * {s}", f"4 * {s} + 2") if ch.heap else (f"{arr('gl')}[{s}]", f"{arr('gr')}[{s}]")
        return (f"CASE WHEN {xs}[{fi}[{s}]] > {ti}[{s}] THEN {gr} + ({xs}[{arr('fr')}[{s}]] > {arr('tr')}[{s}])::int "
                f"ELSE {gl} + ({xs}[{arr('fl')}[{s}]] > {arr('tl')}[{s}])::int END")

    def _slice(self, ch: Chunk, i: int, lv: int, what: str) -> str:
        a, b = ch.spans[lv][i]
        if what == "f":
            n_in = len(self.features)
            vals = [self.slot[f] + 1 + (0 if to_a else n_in) if not thru else 1
                    for f, to_a, thru in zip(ch.feature[lv][a:b], ch.missing_to_a[lv][a:b], ch.passthrough[lv][a:b])]
            return f"({self.d.int_list(vals, lower=a + 1)})"
        if what == "t":
            return f"({self.d.float_list(ch.bound[lv][a:b], lower=a + 1)})"
        return f"({self.d.int_list([j + 1 for j in ch.child[lv][a:b]], lower=a + 1)})"

    def _values(self, ch: Chunk, i: int, k: int) -> str:
        a, b = ch.spans[ch.depth][i]
        fill = None if self.ens.aggregate in ("MIN", "MAX") else 0.0
        return f"({self.d.float_list([fill if lf is None else lf.weights.get(k, fill) for lf in ch.leaves[a:b]], lower=a + 1)})"

    def reads(self, stage: int) -> list[str]:
        """Walk columns a stage reads (besides the ensemble inputs, read by stage 0)."""
        if stage == 0:
            return []
        names = [self.xs()]
        for c, ch in enumerate(self.chunks):
            if stage <= self.remaining(c) + 1:
                names.extend([self.state(c)] if self.d.name == "duckdb" else [self.state(c, i) for i in range(len(ch.trees))])
        return names

    def outputs(self) -> list[str]:
        return [self.partial(c, k) for c in range(len(self.chunks)) for k in self.targets[c]]

    def result(self, k: int) -> str:
        """This pass's aggregate of target ``k``: a sum, or (MIN / MAX) NULL when no leaf scores it."""
        parts = [self.partial(c, k) for c in range(len(self.chunks)) if k in self.targets[c]]
        agg = self.ens.aggregate
        if agg in ("MIN", "MAX"):
            fn = self.d.least if agg == "MIN" else self.d.greatest
            return fn(parts) if parts else "NULL"
        return balanced("+", parts) if parts else "0"


def walks_for(writer: _SqlWriter, ens: Ensemble, top_levels: int | None) -> list[_Walk]:
    """The walk of ``ens``: one pass in DuckDB; in PostgreSQL one pass per 1200 trees (one column each)."""
    float32 = [reads_float32(x) for x in ens.inputs]
    duck = writer.d.name == "duckdb"
    groups = chunks(ens, float32, max_trees=len(ens.trees) if duck else POSTGRES_TREES_PER_PASS)
    passes: list[list[Chunk]] = [[]]
    for ch in groups:
        if not duck and passes[-1] and sum(len(c.trees) for c in passes[-1]) + len(ch.trees) > POSTGRES_TREES_PER_PASS:
            passes.append([])
        passes[-1].append(ch)
    return [_Walk(writer, ens, g, f"__mp_e{ens.index}p{i}", top_levels) for i, g in enumerate(passes)]


def tree_form(ens: Ensemble, dialect: str, trees: str = "auto") -> str:
    """"case" or "walk": how ``ens`` is written in ``dialect`` (``trees`` forces one where possible)."""
    if dialect == "sqlite" or not numeric_only(ens) or trees == "case" or not ens.trees:
        return "case"
    if trees == "walk":
        return "walk"
    splits = count_splits(ens)
    if dialect == "duckdb":
        return "walk" if splits > DUCKDB_CASE_MAX_SPLITS else "case"
    multi = [len({k for k in _leaf_targets(t)}) for t in ens.trees]
    nodes = splits * max(multi, default=1)
    return "walk" if nodes > POSTGRES_CASE_MAX_NODES else "case"


def _leaf_targets(tree: Leaf | Split) -> set[int]:
    found: set[int] = set()
    stack: list[Leaf | Split] = [tree]
    while stack:
        n = stack.pop()
        if isinstance(n, Split):
            stack.extend((n.true, n.false))
        else:
            found.update(n.weights)
    return found


@dataclass
class SqlScript:
    """What the SQL target writes: statements to run first (``setup``, e.g. ``SET jit = off``),
    then one SELECT (``query``, without a trailing semicolon, so it can be wrapped)."""

    header: str
    setup: list[str]
    query: str

    def text(self) -> str:
        return self.header + "".join(f"{s};\n" for s in self.setup) + self.query


#: PostgreSQL: queries with more tree nodes than this turn JIT off first (LLVM takes minutes and
#: gigabytes on expressions this large, and a backend compiling does not answer cancel requests)
POSTGRES_NO_JIT_NODES = 1000


def to_sql(
    program: Program, *, dialect: str = "duckdb", table: str = "t", keep: Sequence[str] = (),
    trees: str = "auto", top_levels: int | None = None,
) -> str:
    """The SQL script scoring every row of ``table``: usually one SELECT (see :func:`sql_script`)."""
    return sql_script(program, dialect=dialect, table=table, keep=keep, trees=trees, top_levels=top_levels).text()


def sql_script(
    program: Program, *, dialect: str = "duckdb", table: str = "t", keep: Sequence[str] = (),
    trees: str = "auto", top_levels: int | None = None,
) -> SqlScript:
    """The SQL for ``program`` as :class:`SqlScript`.

    ``trees``: "auto" (by dialect and size), "case" (nested CASE) or "walk" (level by level
    over node lists; DuckDB and PostgreSQL, numeric splits only). ``top_levels``: levels of each
    walked tree still written as CASE (default: by dialect)."""
    if trees not in ("auto", "case", "walk"):
        raise CodegenError(f"trees must be 'auto', 'case' or 'walk'; got {trees!r} instead.")
    d = _Dialect(dialect)
    w = _SqlWriter(program, d, trees, top_levels)
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
    # stage 0: inputs, normalised
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

    # levels of materialised nodes (what a node reads is computed at lower levels)
    mats = [e for e in w.num.order if id(e) in w.materialized]
    mat_reads = {id(e): reads(e) for e in mats}
    level: dict[int, int] = {}
    for e in mats:  # topological order: what e reads already has its level
        level[id(e)] = max((level[id(c)] for c in mat_reads[id(e)]), default=0) + 1
    n_levels = max(level.values(), default=0)

    def name_of(e: Expr) -> str:
        return quote(w.num.name(e))

    # stages: (new columns [(name, sql)], names read, reads the node lists)
    stages: list[tuple[list[tuple[str, str]], list[str], bool]] = []
    walk_at: dict[int, list[int]] = {}  # level -> ensembles walked just before it
    for e in mats:
        if isinstance(e, TreeOut) and e.ensemble.index in w.walks:
            here = walk_at.setdefault(level[id(e)], [])
            if e.ensemble.index not in here:
                here.append(e.ensemble.index)
    for lv in range(1, n_levels + 1):
        for ei in walk_at.get(lv, []):
            ens = program.ensembles[ei]
            inputs = [name_of(x) for x in ens.inputs if id(x) in w.materialized]
            for walk in w.walks[ei]:
                for st in range(walk.n_stages):
                    stages.append((walk.columns(st), inputs if st == 0 else walk.reads(st), bool(walk.lists())))
        new: list[tuple[str, str]] = []
        rd: list[str] = []
        for e in mats:
            if level[id(e)] != lv:
                continue
            new.append((name_of(e), w.render(e)))
            if isinstance(e, TreeOut) and e.ensemble.index in w.walks:
                rd.extend(p for walk in w.walks[e.ensemble.index] for p in walk.outputs())
            else:
                rd.extend(name_of(c) for c in mat_reads[id(e)])
        stages.append((new, rd, False))
    final_reads = []
    for o in program.outputs():
        final_reads.extend([o] if id(o) in w.materialized else reads(o))
    # liveness: a column is carried from the stage that defines it to the last stage reading it
    defined_at: dict[str, int] = {}
    last_read: dict[str, int] = {}
    for i, (new, rd, _) in enumerate(stages, start=1):
        for n, _sql in new:
            defined_at[n] = i
        for n in rd:
            last_read[n] = max(last_read.get(n, 0), i)
    end = len(stages) + 1
    for o in final_reads:
        last_read[name_of(o)] = end
    input_cols = [w.col(i) for i in range(program.n_features)]
    sql = f"SELECT {', '.join([*passthrough, *base_cols])}\nFROM {quote(table) if not _qualified(table) else table}"
    order = list(defined_at)
    for i, (new, _rd, with_lists) in enumerate(stages, start=1):
        carried = [n for n in order if defined_at[n] < i < last_read.get(n, 0)]
        cols = [*passthrough, *input_cols, *carried, *(f"{text} AS {n}" for n, text in new)]
        joined = " CROSS JOIN __mp_m" if with_lists else ""
        sql = f"SELECT {', '.join(cols)}\nFROM (\n{sql}{d.fence}\n) AS __mp_l{i}{joined}"
    outs = []
    if program.label is not None and program.classes is not None:
        whens = " ".join(
            f"WHEN {i} THEN {sql_str(c) if isinstance(c, str) else (str(c) if isinstance(c, int) else d.num(float(c)))}"
            for i, c in enumerate(program.classes)
        )
        outs.append(f"(CASE {w.ref(program.label)} {whens} END) AS {quote('label')}")
    for name, s in zip(program.score_names, program.scores):
        outs.append(f"{w.ref(s)} AS {quote(name)}")
    query = f"SELECT {', '.join([*passthrough, *outs])}\nFROM (\n{sql}{d.fence}\n) AS __mp_out"
    lists = [c for passes in w.walks.values() for walk in passes for c in walk.lists()]
    if lists:
        query = f"WITH __mp_m AS MATERIALIZED (\nSELECT {', '.join(lists)}\n)\n{query}"
    setup = []
    tree_nodes = sum(count_splits(ens) for ens in program.ensembles)
    if d.name == "postgresql" and tree_nodes > POSTGRES_NO_JIT_NODES:
        setup.append("SET jit = off")
    header = (
        f"-- model {program.name!r} compiled by modelport for {dialect}: one row out per row of {table};\n"
        f"-- columns: {', '.join([*keep, *names, *out_names])}\n"
    )
    forms = sorted({w.forms[e.index] for e in program.ensembles})
    if w.walks:
        header += (
            "-- tree ensembles are walked level by level over the node lists of the __mp_m CTE\n"
            "-- (one subquery per tree level); see modelport.codegen.sql_trees\n"
        )
    elif forms:
        header += "-- tree ensembles are nested CASE expressions\n"
    if setup:
        header += (
            "-- SET jit = off first: PostgreSQL would JIT-compile this large expression with LLVM,\n"
            "-- which takes minutes and gigabytes; run the SELECT with jit off.\n"
        )
    return SqlScript(header, setup, query)


def _qualified(table: str) -> bool:
    # schema.table or an already quoted name is used as given
    return "." in table or table.startswith('"')
