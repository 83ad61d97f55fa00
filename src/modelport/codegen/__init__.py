"""Amalgamation: compile a bundle into standalone C, SQL or plain Python.

    >>> from modelport.codegen import compile_bundle
    >>> out = compile_bundle(bundle, "c", prefix="churn")
    >>> out.files["churn.c"], out.files["churn.h"]

The bundle's ONNX graph is lowered once to a small typed IR (:mod:`modelport.codegen.ir`)
by one emitter per operator family (:mod:`modelport.codegen.ops`); each target renders that IR.
:func:`modelport.codegen.check.check` runs generated code against ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from modelport.errors import CodegenError

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle
    from modelport.codegen.ir import Program

Target = Literal["c", "sql", "python"]
Dialect = Literal["duckdb", "sqlite", "postgresql"]
TARGETS = ("c", "sql", "python")
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
) -> Compiled:
    """Generate standalone code for ``bundle``.

    ``target="c"``: ``<prefix>.c`` and ``<prefix>.h`` (C99, libm only, no allocation).
    ``target="sql"``: ``<prefix>.sql``, one SELECT over ``table`` in ``dialect``; ``keep`` names
    extra columns of the table to pass through.
    ``target="python"``: ``<prefix>.py``, a module that imports only ``math``.
    """
    if target not in TARGETS:
        raise CodegenError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}.")
    if not prefix.isidentifier() or prefix.startswith("_"):
        raise CodegenError(
            f"prefix {prefix!r} is not a valid C/Python identifier.",
            hint="use letters, digits and underscores, starting with a letter, e.g. --prefix churn",
        )
    prog = program if program is not None else lower(bundle)
    if target == "c":
        from modelport.codegen.c import to_c

        source, header = to_c(prog, prefix=prefix)
        return Compiled("c", {f"{prefix}.c": source, f"{prefix}.h": header}, prog)
    if target == "python":
        from modelport.codegen.python import to_python

        return Compiled("python", {f"{prefix}.py": to_python(prog)}, prog)
    if dialect not in DIALECTS:
        raise CodegenError(f"unknown SQL dialect {dialect!r}; expected one of {', '.join(DIALECTS)}.")
    from modelport.codegen.sql import to_sql

    return Compiled("sql", {f"{prefix}.sql": to_sql(prog, dialect=dialect, table=table, keep=keep)}, prog)
