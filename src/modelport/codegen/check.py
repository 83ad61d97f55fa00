"""Run generated code against ONNX Runtime on the bundle's reference data plus random,
missing-value and split-threshold rows (each threshold and its float32 neighbours).

    >>> report = check(bundle, targets=("c", "python", "sql"))
    >>> report.passed, report.summary()

Labels must be identical; scores must agree within ``rtol`` relative to the larger of the
value and the largest magnitude in its output column (so that float32 rounding of a result
near zero, which is noise relative to the column, is not counted as a relative error).
A target whose tool is missing (no C compiler, no duckdb, no PostgreSQL URL) is reported as
skipped, with the reason.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.codegen.ir import Col, Program, Round32, Split, next_down32, next_up32
from modelport.errors import CodegenError, MissingDependencyError

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle

ROW_ID = "__mp_row"


@dataclass
class TargetResult:
    target: str
    rows: int = 0
    label_mismatches: int = 0
    nan_mismatches: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst_rows: list[int] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None
    passed: bool = False
    error: str | None = None  # the generated code failed to build or run

    def line(self) -> str:
        if self.skipped:
            return f"{self.target:<18} skipped: {self.skipped}"
        if self.error:
            return f"{self.target:<18} FAIL {self.error}"
        verdict = "ok  " if self.passed else "FAIL"
        return (
            f"{self.target:<18} {verdict} {self.rows} rows, label mismatches {self.label_mismatches}, "
            f"NaN mismatches {self.nan_mismatches}, max abs err {self.max_abs_error:.3g}, "
            f"max rel err {self.max_rel_error:.3g} ({self.seconds:.2f} s)"
            + (f"; worst rows {self.worst_rows[:5]}" if not self.passed else "")
        )


@dataclass
class CodegenCheck:
    bundle: str
    rows: dict[str, int]
    results: list[TargetResult]
    rtol: float

    @property
    def passed(self) -> bool:
        ran = [r for r in self.results if not r.skipped]
        return bool(ran) and all(r.passed for r in ran)

    def summary(self) -> str:
        head = f"{self.bundle}: " + ", ".join(f"{v} {k}" for k, v in self.rows.items()) + f" rows; rtol {self.rtol:g}"
        return "\n".join([head, *(r.line() for r in self.results)])


# --------------------------------------------------------------------------- rows


def evaluation_rows(
    bundle: Bundle, program: Program, *, n_random: int = 200, max_threshold_rows: int = 3000, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Columns of test rows: reference, random, missing values, split thresholds and neighbours."""
    from modelport.bundle.reference import decode_columns

    rng = np.random.default_rng(seed)
    ref = decode_columns(bundle.reference_inputs)
    names = [c.name for c in program.columns]
    missing = [n for n in names if n not in ref]
    if missing:
        raise CodegenError(f"the bundle's reference data lacks column(s) {missing}; it cannot be checked.")
    base = {n: np.asarray(ref[n]).reshape(-1) for n in names}
    n_ref = len(base[names[0]])
    if n_ref == 0:
        raise CodegenError("the bundle has no reference rows to check against.")
    parts: list[dict[str, list[Any]]] = []
    counts: dict[str, int] = {"reference": n_ref}

    def rows_from(idx: np.ndarray) -> dict[str, list[Any]]:
        return {n: [base[n][i] for i in idx] for n in names}

    # random rows: numbers uniform over each column's range, other kinds drawn from the reference
    rnd = rows_from(rng.integers(0, n_ref, n_random))
    for c in program.columns:
        vals = base[c.name]
        if c.kind == "f":
            finite = np.asarray([v for v in vals if isinstance(v, (int, float, np.number)) and np.isfinite(v)], dtype=np.float64)
            if finite.size:
                lo, hi = float(finite.min()), float(finite.max())
                span = (hi - lo) or 1.0
                rnd[c.name] = list(rng.uniform(lo - 0.1 * span, hi + 0.1 * span, n_random).astype(np.float32).astype(np.float64))
        elif c.kind == "i":
            iv = np.asarray(vals, dtype=np.int64)
            rnd[c.name] = list(rng.integers(iv.min(), iv.max() + 1, n_random))
    parts.append(rnd)
    counts["random"] = n_random
    # missing values in every column that can hold them, one at a time and all at once
    nan_rows: dict[str, list[Any]] = {n: [] for n in names}
    numeric = [c for c in program.columns if c.kind in ("f", "c")]
    for c in numeric:
        for _ in range(3):
            i = int(rng.integers(n_ref))
            for n in names:
                nan_rows[n].append(base[n][i])
            nan_rows[c.name][-1] = float("nan") if c.kind == "f" else None
    if numeric:
        i = int(rng.integers(n_ref))
        for n in names:
            col = program.columns[names.index(n)]
            nan_rows[n].append(float("nan") if col.kind == "f" else (None if col.kind == "c" else base[n][i]))
    parts.append(nan_rows)
    counts["missing"] = len(nan_rows[names[0]])
    # thresholds of splits that read an input column, and their float32 neighbours
    seen: set[tuple[int, float]] = set()
    for ens in program.ensembles:
        for tree in ens.trees:
            stack = [tree]
            while stack:
                nd = stack.pop()
                if not isinstance(nd, Split):
                    continue
                stack.extend((nd.true, nd.false))
                x = ens.inputs[nd.feature]
                while isinstance(x, Round32):
                    x = x.a
                if isinstance(x, Col) and program.columns[x.index].kind == "f" and np.isfinite(nd.threshold):
                    seen.add((x.index, float(np.float32(nd.threshold))))
                    for m in nd.members:
                        seen.add((x.index, float(np.float32(m))))
    values = sorted(seen)
    if len(values) * 3 > max_threshold_rows:
        pick = rng.choice(len(values), max_threshold_rows // 3, replace=False)
        values = [values[i] for i in sorted(pick)]
    thr: dict[str, list[Any]] = {n: [] for n in names}
    for col_idx, t in values:
        for v in (t, next_down32(t), next_up32(t)):
            i = int(rng.integers(n_ref))
            for n in names:
                thr[n].append(base[n][i])
            thr[names[col_idx]][-1] = v
    parts.append(thr)
    counts["threshold"] = len(thr[names[0]])
    out: dict[str, np.ndarray] = {}
    for c in program.columns:
        col_vals = list(base[c.name]) + [v for p in parts for v in p[c.name]]
        if c.kind == "f":
            out[c.name] = np.asarray([np.nan if v is None else float(v) for v in col_vals], dtype=np.float64)
        elif c.kind == "i":
            out[c.name] = np.asarray(col_vals, dtype=np.int64)
        else:
            out[c.name] = np.asarray(col_vals, dtype=object)
    return out, counts


def expected_outputs(bundle: Bundle, program: Program, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """ONNX Runtime's (scores, label index) on ``cols``; NaN allowed in every numeric column."""
    from modelport.bundle.signature import Column, Signature
    from modelport.runtime.coerce import feeds

    sig = bundle.signature
    assert sig.columns is not None
    relaxed = Signature(sig.inputs, sig.outputs, tuple(
        Column(c.name, c.dtype, c.input, c.index, c.categories, nullable=True) for c in sig.columns
    ))
    res = bundle.runtime.run(feeds(relaxed, cols))
    n = len(next(iter(cols.values())))
    if program.classes is not None:
        scores = np.asarray(res["probabilities"], dtype=np.float64).reshape(n, -1)
        lookup = {_key(c): i for i, c in enumerate(program.classes)}
        labels = np.asarray([lookup.get(_key(v), -1) for v in np.asarray(res["label"]).reshape(-1).tolist()])
        return scores, labels
    if "prediction" in res:
        return np.asarray(res["prediction"], dtype=np.float64).reshape(n, -1), None
    return np.column_stack([np.asarray(v, dtype=np.float64).reshape(n, -1) for v in res.values()]), None


def _key(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        return float(v)
    return str(v)


# --------------------------------------------------------------------------- runners


def run_c(program: Program, cols: dict[str, np.ndarray], *, workdir: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    from modelport.codegen.c import build_shared, to_c

    source, header = to_c(program, prefix="mpcheck")
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        with open(os.path.join(d, "mpcheck.c"), "w") as f:
            f.write(source)
        with open(os.path.join(d, "mpcheck.h"), "w") as f:
            f.write(header)
        lib = ctypes.CDLL(str(build_shared(d, "mpcheck")))
        x = np.ascontiguousarray(c_matrix(program, cols))
        n = x.shape[0]
        out = np.empty((n, program.n_outputs), dtype=np.float32)
        labels = np.empty(n, dtype=np.int_)
        fn = lib.mpcheck_predict_labels
        fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        rc = fn(x.ctypes.data, n, out.ctypes.data, labels.ctypes.data)
        if rc != 0:
            raise CodegenError(f"the generated C returned {rc}.")
    return out.astype(np.float64), (labels if program.label is not None else None)


def c_matrix(program: Program, cols: dict[str, np.ndarray]) -> np.ndarray:
    """The float32 matrix the C code takes: numbers as they are, categories as their index."""
    mats = []
    for c in program.columns:
        v = cols[c.name]
        if c.kind == "c":
            cats = list(c.categories or ())
            v = np.asarray([float(cats.index(x)) if x in cats else np.nan for x in v.tolist()])
        mats.append(np.asarray(v, dtype=np.float32))
    return np.column_stack(mats) if mats else np.zeros((0, 0), dtype=np.float32)


def run_python(program: Program, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    from modelport.codegen.python import to_python

    mod = types.ModuleType("modelport_generated")
    exec(compile(to_python(program), "<generated>", "exec"), mod.__dict__)  # our own generated source
    names = [c.name for c in program.columns]
    n = len(cols[names[0]])
    scores = np.empty((n, program.n_outputs))
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        s, lab = mod._compute([_py(cols[c][i]) for c in names])
        scores[i] = s
        labels[i] = -1 if lab is None else lab
    return scores, (labels if program.label is not None else None)


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _sql_rows(program: Program, cols: dict[str, np.ndarray], *, nan_as_null: bool) -> list[tuple[Any, ...]]:
    names = [c.name for c in program.columns]
    n = len(cols[names[0]])
    rows = []
    for i in range(n):
        row: list[Any] = []
        for c in program.columns:
            v = _py(cols[c.name][i])
            if isinstance(v, float) and v != v and (nan_as_null or i % 2 == 0):
                v = None  # half the missing values as NULL, half as NaN, where the database has NaN
            row.append(v)
        row.append(i)
        rows.append(tuple(row))
    return rows


def _sql_types(program: Program, dialect: str) -> list[str]:
    out = []
    for c in program.columns:
        if c.kind == "f":
            out.append({"duckdb": "DOUBLE", "postgresql": "DOUBLE PRECISION", "sqlite": "REAL"}[dialect])
        elif c.kind == "i":
            out.append("BIGINT")
        elif c.kind == "c" and all(isinstance(v, (int, float)) for v in (c.categories or ())):
            out.append({"duckdb": "DOUBLE", "postgresql": "DOUBLE PRECISION", "sqlite": "REAL"}[dialect])
        else:
            out.append("TEXT")
    return out


def run_sql(
    program: Program, cols: dict[str, np.ndarray], dialect: str, *, postgres_url: str | None = None,
    trees: str = "auto", top_levels: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    from modelport.codegen.sql import quote, sql_script

    table = "mp_check_rows"
    script = sql_script(program, dialect=dialect, table=table, keep=(ROW_ID,), trees=trees, top_levels=top_levels)
    query = script.query
    defs = ", ".join(f"{quote(c.name)} {t}" for c, t in zip(program.columns, _sql_types(program, dialect)))
    defs += f", {quote(ROW_ID)} BIGINT"
    rows = _sql_rows(program, cols, nan_as_null=dialect == "sqlite")
    width = program.n_features + 1
    if dialect == "sqlite":
        import sqlite3

        con = sqlite3.connect(":memory:")
        try:
            for statement in script.setup:
                con.execute(statement)
            con.execute(f"CREATE TABLE {table} ({defs})")
            con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", rows)
            result = con.execute(query).fetchall()
        finally:
            con.close()
    elif dialect == "duckdb":
        from modelport._deps import require

        duckdb = require("duckdb", purpose="checking SQL in DuckDB")
        con = duckdb.connect()
        try:
            for statement in script.setup:
                con.execute(statement)
            con.execute(f"CREATE TABLE {table} ({defs})")
            try:
                import pyarrow as pa

                # through Arrow: fast, and NaN stays NaN (distinct from NULL)
                arrays = [pa.array([r[j] for r in rows]) for j in range(width)]
                src = pa.table(arrays, names=[f"c{j}" for j in range(width)])  # noqa: F841 (read by DuckDB)
                con.execute(f"INSERT INTO {table} SELECT * FROM src")
            except ImportError:
                con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", rows)
            result = con.execute(query).fetchall()
        finally:
            con.close()
    else:
        from modelport._deps import require

        psycopg = require("psycopg", purpose="checking SQL in PostgreSQL")
        if not postgres_url:
            raise CodegenError("no PostgreSQL URL was given.")
        with psycopg.connect(postgres_url, autocommit=True) as con:
            for statement in script.setup:
                con.execute(statement)
            # a temporary table: private to this session, gone when it ends
            con.execute(f"CREATE TEMP TABLE {table} ({defs})")
            with con.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
            result = con.execute(query).fetchall()
    result.sort(key=lambda r: r[0])
    off = 1 + program.n_features
    labels = None
    if program.classes is not None:
        lookup = {_key(c): i for i, c in enumerate(program.classes)}
        labels = np.asarray([-1 if r[off] is None else lookup.get(_key(r[off]), -1) for r in result])
        off += 1
    scores = np.asarray([[np.nan if v is None else float(v) for v in r[off:]] for r in result], dtype=np.float64)
    return scores.reshape(len(result), program.n_outputs), labels


# --------------------------------------------------------------------------- comparing


def compare(
    name: str, expected: tuple[np.ndarray, np.ndarray | None], got: tuple[np.ndarray, np.ndarray | None], rtol: float
) -> TargetResult:
    es, el = expected
    gs, gl = got
    res = TargetResult(name, rows=es.shape[0])
    bad = np.zeros(es.shape[0], dtype=bool)
    if el is not None and gl is not None:
        lm = el != gl
        res.label_mismatches = int(lm.sum())
        bad |= lm
    en, gn = np.isnan(es), np.isnan(gs)
    nm = (en != gn).any(axis=1)
    res.nan_mismatches = int(nm.sum())
    bad |= nm
    both = ~en & ~gn
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(both, np.abs(gs - es), 0.0)
        inf_bad = both & np.isinf(es) & (gs != es)
        err = np.where(np.isinf(es) & both, np.where(inf_bad, np.inf, 0.0), err)
        col_scale = np.nanmax(np.where(np.isfinite(es), np.abs(es), 0.0), axis=0, initial=0.0)
        scale = np.maximum(np.abs(np.where(np.isfinite(es), es, 0.0)), col_scale)
        rel = np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), err)
    res.max_abs_error = float(err.max(initial=0.0))
    res.max_rel_error = float(rel.max(initial=0.0))
    off = (rel > rtol).any(axis=1)
    bad |= off
    res.worst_rows = [int(i) for i in np.argsort(-rel.max(axis=1, initial=0.0))[:10] if bad[i]]
    res.passed = not bad.any()
    return res


def check(
    bundle: Bundle,
    *,
    targets: Sequence[str] = ("c", "python", "sql"),
    dialects: Sequence[str] = ("sqlite", "duckdb", "postgresql"),
    postgres_url: str | None = None,
    rtol: float = 1e-6,
    n_random: int = 200,
    max_threshold_rows: int = 3000,
    seed: int = 0,
    program: Program | None = None,
    skip_unsupported: bool = True,
    sql_trees: str = "auto",
    sql_top_levels: int | None = None,
) -> CodegenCheck:
    """Compile ``bundle`` for ``targets`` (c, python, sql, java, javascript), run the code, and
    compare with ONNX Runtime.

    A target that refuses the model (CodegenError) is reported as skipped with the reason
    unless ``skip_unsupported=False``."""
    (report,) = check_many(
        [bundle], programs=[program], targets=targets, dialects=dialects, postgres_url=postgres_url, rtol=rtol,
        n_random=n_random, max_threshold_rows=max_threshold_rows, seed=seed, skip_unsupported=skip_unsupported,
        sql_trees=sql_trees, sql_top_levels=sql_top_levels,
    )
    return report


@dataclass
class _Prepared:
    bundle: Bundle
    prog: Program
    cols: dict[str, np.ndarray]
    counts: dict[str, int]
    expected: tuple[np.ndarray, np.ndarray | None]
    cols32: dict[str, np.ndarray]
    expected32: tuple[np.ndarray, np.ndarray | None]


_TARGET_NAMES = {"java": "java (javac)", "javascript": "javascript (node)"}


def check_many(
    bundles: Sequence[Bundle],
    *,
    programs: Sequence[Program | None] | None = None,
    targets: Sequence[str] = ("c", "python", "sql"),
    dialects: Sequence[str] = ("sqlite", "duckdb", "postgresql"),
    postgres_url: str | None = None,
    rtol: float = 1e-6,
    n_random: int = 200,
    max_threshold_rows: int = 3000,
    seed: int = 0,
    skip_unsupported: bool = True,
    sql_trees: str = "auto",
    sql_top_levels: int | None = None,
) -> list[CodegenCheck]:
    """:func:`check` of several bundles; the Java programs are compiled with one ``javac`` and
    run in one JVM, the JavaScript ones in one ``node`` (each tool costs a second or more to start)."""
    from modelport.codegen import lower

    unknown = [t for t in targets if t not in ("c", "python", "sql", "java", "javascript")]
    if unknown:
        raise CodegenError(f"unknown target {unknown[0]!r}; expected c, python, sql, java or javascript.")
    progs = list(programs) if programs is not None else [None] * len(bundles)
    prepared: list[_Prepared] = []
    for b, given in zip(bundles, progs):
        prog = given if given is not None else lower(b)
        cols, counts = evaluation_rows(b, prog, n_random=n_random, max_threshold_rows=max_threshold_rows, seed=seed)
        expected = expected_outputs(b, prog, cols)
        # C, Java and JavaScript take float32: their reference is ONNX Runtime on the same float32 values
        cols32 = {
            c.name: (cols[c.name].astype(np.float32).astype(np.float64) if c.kind == "f" else cols[c.name])
            for c in prog.columns
        }
        expected32 = expected_outputs(b, prog, cols32) if any(c.kind == "f" for c in prog.columns) else expected
        prepared.append(_Prepared(b, prog, cols, counts, expected, cols32, expected32))
    results: list[list[TargetResult]] = [[] for _ in prepared]
    for t in targets:
        if t in ("java", "javascript"):
            for i, r in enumerate(_run_batched(t, prepared, rtol, skip_unsupported)):
                results[i].append(r)
            continue
        for i, pr in enumerate(prepared):
            jobs: list[tuple[str, Any]] = []
            if t == "c":
                jobs.append(("c (gcc)", lambda pr=pr: run_c(pr.prog, pr.cols32)))
            elif t == "python":
                jobs.append(("python", lambda pr=pr: run_python(pr.prog, pr.cols)))
            else:
                for d in dialects:
                    jobs.append((f"sql ({d})", lambda d=d, pr=pr: run_sql(
                        pr.prog, pr.cols, d, postgres_url=postgres_url, trees=sql_trees, top_levels=sql_top_levels)))
            for name, job in jobs:
                results[i].append(_run_one(name, job, pr, rtol, postgres_url, skip_unsupported))
    return [CodegenCheck(pr.bundle.name, pr.counts, res, rtol) for pr, res in zip(prepared, results)]


def _run_one(name: str, job: Any, pr: _Prepared, rtol: float, postgres_url: str | None, skip_unsupported: bool) -> TargetResult:
    if name == "sql (postgresql)" and not postgres_url:
        return TargetResult(name, skipped="no PostgreSQL URL (pass --postgres URL or set MODELPORT_POSTGRES_URL)")
    if name == "c (gcc)" and any(c.kind == "s" for c in pr.prog.columns):
        return TargetResult(name, skipped="the C target does not take string columns")
    t0 = time.perf_counter()
    try:
        got = job()
    except MissingDependencyError as exc:
        return TargetResult(name, skipped=str(exc).splitlines()[0])
    except CodegenError as exc:
        if not skip_unsupported:
            raise
        # a documented refusal of this target (e.g. SVM coupling in SQL), not a wrong answer
        return TargetResult(name, skipped=f"not compilable: {str(exc).splitlines()[0]}")
    r = compare(name, pr.expected32 if name.startswith("c ") else pr.expected, got, rtol)
    r.seconds = time.perf_counter() - t0
    return r


def _run_batched(target: str, prepared: Sequence[_Prepared], rtol: float, skip_unsupported: bool) -> list[TargetResult]:
    """Java or JavaScript for every prepared bundle, through one compiler / runtime start."""
    from modelport.codegen import toolchain

    name = _TARGET_NAMES[target]
    out: list[TargetResult | None] = [None] * len(prepared)
    jobs: list[toolchain.Job] = []
    owners: list[int] = []
    for i, pr in enumerate(prepared):
        if any(c.kind == "s" for c in pr.prog.columns):
            out[i] = TargetResult(name, skipped=f"the {target} target does not take string columns")
            continue
        try:
            if target == "java":
                from modelport.codegen.java import to_java

                cls = f"ModelportCheck{i}"
                source = to_java(pr.prog, class_name_=cls)
            else:
                from modelport.codegen.javascript import to_javascript

                cls, source = f"model{i}", to_javascript(pr.prog)
        except CodegenError as exc:
            if not skip_unsupported:
                raise
            out[i] = TargetResult(name, skipped=f"not compilable: {str(exc).splitlines()[0]}")
            continue
        jobs.append(toolchain.Job(cls, source, c_matrix(pr.prog, pr.cols32)))
        owners.append(i)
    if jobs:
        t0 = time.perf_counter()
        try:
            runs = _run_jobs(target, jobs)
        except MissingDependencyError as exc:
            for i in owners:
                out[i] = TargetResult(name, skipped=str(exc).splitlines()[0])
            runs = []
        seconds = (time.perf_counter() - t0) / len(jobs)
        for i, run in zip(owners, runs):
            pr = prepared[i]
            if isinstance(run, CodegenError):  # generated code the tool rejects is a bug, not a refusal
                out[i] = TargetResult(name, error=str(run).splitlines()[0][:500])
                continue
            scores, labels = run
            r = compare(name, pr.expected32, (scores, labels if pr.prog.label is not None else None), rtol)
            r.seconds = seconds
            out[i] = r
    return [r if r is not None else TargetResult(name, skipped="not run") for r in out]


def _run_jobs(target: str, jobs: Sequence[Any]) -> list[Any]:
    """Run the jobs together; if that fails, one by one, so that one failure names its program."""
    from modelport.codegen import toolchain

    runner = toolchain.run_java if target == "java" else toolchain.run_javascript
    try:
        return list(runner(jobs))
    except MissingDependencyError:
        raise
    except CodegenError:
        if len(jobs) == 1:
            return [_as_error(runner, jobs[0])]
        return [_as_error(runner, job) for job in jobs]


def _as_error(runner: Any, job: Any) -> Any:
    try:
        return runner([job])[0]
    except CodegenError as exc:
        return exc
