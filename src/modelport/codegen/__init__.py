"""Amalgamation: compile a bundle into standalone C, SQL, Python, Java or JavaScript.

    >>> from modelport.codegen import compile_bundle
    >>> out = compile_bundle(bundle, "c", prefix="churn")
    >>> out.files["churn.c"], out.files["churn.h"]
    >>> compile_bundle(bundle, "java", prefix="churn", package="com.acme").files["Churn.java"]

The bundle's ONNX graph is lowered once to a small typed IR (:mod:`modelport.codegen.ir`)
by one emitter per operator family (:mod:`modelport.codegen.ops`); each target renders that IR
(the Java and JavaScript targets as :class:`~modelport.codegen.ir.ExprVisitor` subclasses).
:func:`modelport.codegen.check.check` runs generated code against ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from modelport.errors import CodegenError

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle
    from modelport.codegen.ir import Program

Target = Literal["c", "sql", "python", "java", "javascript"]
Dialect = Literal["duckdb", "sqlite", "postgresql"]
TARGETS = ("c", "sql", "python", "java", "javascript")
DIALECTS = ("duckdb", "sqlite", "postgresql")

__all__ = ["DIALECTS", "TARGETS", "Compiled", "compile_bundle", "lower"]


@dataclass
class Compiled:
    """Generated source files (name -> text) and the IR they came from."""

    target: str
    files: dict[str, str]
    program: Program
    notes: list[str] = field(default_factory=list)


def lower(bundle: Bundle) -> Program:
    """The bundle's graph as an IR :class:`~modelport.codegen.ir.Program`."""
    from modelport.codegen.ir import lower as _lower

    return _lower(bundle)


def compile_bundle(
    bundle: Bundle,
    target: Target,
    *,
    prefix: str = "model",
    dialect: Dialect = "duckdb",
    table: str = "t",
    keep: tuple[str, ...] = (),
    program: Program | None = None,
    package: str | None = None,
    sql_trees: Literal["auto", "case", "walk"] = "auto",
    sums: Literal["float", "double"] = "float",
) -> Compiled:
    """Generate standalone code for ``bundle``.

    ``target="c"``: ``<prefix>.c`` and ``<prefix>.h`` (C99, libm only, no allocation);
    ``sums="double"`` accumulates float32 tree ensembles in double (closer to XGBoost and
    LightGBM than ONNX Runtime's float32 sums, which the default reproduces bit for bit).
    ``target="sql"``: ``<prefix>.sql``, one SELECT over ``table`` in ``dialect`` (PostgreSQL
    scripts of large tree ensembles start with ``SET jit = off``); ``keep`` names extra columns
    of the table to pass through; ``sql_trees`` how tree ensembles are written
    (:mod:`modelport.codegen.sql_trees`).
    ``target="python"``: ``<prefix>.py``, a module that imports only ``math``.
    ``target="java"``: ``<Prefix>.java``, one dependency-free Java 11 class (``prefix`` in
    CamelCase names it) in ``package``.
    ``target="javascript"``: ``<prefix>.mjs``, one ES module without dependencies.
    """
    if target not in TARGETS:
        raise CodegenError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}.")
    if not prefix.isidentifier() or prefix.startswith("_") or not prefix.isascii():
        raise CodegenError(
            f"prefix {prefix!r} is not a valid C/Python identifier.",
            hint="use letters, digits and underscores, starting with a letter, e.g. --prefix churn",
        )
    if package is not None and target != "java":
        raise CodegenError(f"package applies to the Java target only; got target {target!r}.")
    prog = program if program is not None else lower(bundle)
    if target == "c":
        from modelport.codegen.c import to_c

        source, header = to_c(prog, prefix=prefix, sums=sums)
        return Compiled("c", {f"{prefix}.c": source, f"{prefix}.h": header}, prog)
    if target == "python":
        from modelport.codegen.python import to_python

        return Compiled("python", {f"{prefix}.py": to_python(prog)}, prog)
    if target == "java":
        from modelport.codegen.java import class_name, to_java

        cls = class_name(prefix)
        return Compiled("java", {f"{cls}.java": to_java(prog, class_name_=cls, package=package)}, prog)
    if target == "javascript":
        from modelport.codegen.javascript import to_javascript

        return Compiled("javascript", {f"{prefix}.mjs": to_javascript(prog)}, prog)
    if dialect not in DIALECTS:
        raise CodegenError(f"unknown SQL dialect {dialect!r}; expected one of {', '.join(DIALECTS)}.")
    from modelport.codegen.sql import to_sql

    return Compiled("sql", {f"{prefix}.sql": to_sql(prog, dialect=dialect, table=table, keep=keep, trees=sql_trees)}, prog)
