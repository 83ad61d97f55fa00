"""``modelport compile``: a bundle as standalone C, SQL, Python, Java or JavaScript (see modelport.codegen)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from modelport.errors import VerificationError


@click.command("compile")
@click.argument("bundle")
@click.option("--target", "-t", type=click.Choice(["c", "sql", "python", "java", "javascript"]), required=True,
              help="Language to generate.")
@click.option("--output", "-o", "output", default=None,
              help="Directory (or file) to write to. Default: the current directory; SQL goes to stdout.")
@click.option("--prefix", default="model", show_default=True,
              help="Name of the files and of the C symbols (Java: the class, in CamelCase).")
@click.option("--dialect", type=click.Choice(["duckdb", "sqlite", "postgresql"]), default="duckdb", show_default=True,
              help="SQL dialect.")
@click.option("--table", default="t", show_default=True, help="SQL: the table whose columns are the model's inputs.")
@click.option("--keep", multiple=True, help="SQL: extra column of the table to pass through (repeatable), e.g. an id.")
@click.option("--shared", is_flag=True, help="C: also build lib<prefix>.so with the system C compiler and a ctypes wrapper.")
@click.option("--package", default=None, help="Java: the package of the generated class, e.g. com.acme.churn.")
@click.option("--build", is_flag=True, help="Java: also compile the class with javac (Java 11) into <prefix>.jar.")
@click.option("--check", "run_check", is_flag=True,
              help="Run the generated code on reference, random and edge-case rows and compare with ONNX Runtime.")
@click.option("--postgres", default=None, envvar="MODELPORT_POSTGRES_URL",
              help="PostgreSQL URL for --check of SQL (default: $MODELPORT_POSTGRES_URL).")
def compile_(
    bundle: str,
    target: str,
    output: str | None,
    prefix: str,
    dialect: str,
    table: str,
    keep: tuple[str, ...],
    shared: bool,
    package: str | None,
    build: bool,
    run_check: bool,
    postgres: str | None,
) -> None:
    """Compile BUNDLE (a path, .mpk or models:/ URI) into standalone code."""
    import modelport
    from modelport.codegen import compile_bundle, lower

    # options are judged before any work, so that a refused one leaves no output behind
    if shared and target != "c":
        raise click.UsageError("--shared applies to --target c only.")
    if keep and target != "sql":
        raise click.UsageError("--keep applies to --target sql only.")
    if package is not None and target != "java":
        raise click.UsageError("--package applies to --target java only.")
    if build and target != "java":
        raise click.UsageError("--build applies to --target java only.")
    b = modelport.load(bundle)
    program = lower(b)
    result = compile_bundle(b, target, prefix=prefix, dialect=dialect, table=table, keep=keep,  # type: ignore[arg-type]
                            program=program, package=package)
    written: list[Path] = []
    if target == "sql" and output is None:
        click.echo(next(iter(result.files.values())), nl=False)
    else:
        written = _write(result.files, output)
    if shared:
        from modelport.codegen.c import build_shared, wrapper

        folder = written[0].parent
        lib = build_shared(folder, prefix)
        wrap = folder / f"{prefix}_ctypes.py"
        wrap.write_text(wrapper(program, prefix))
        written += [lib, wrap]
    if build:
        from modelport.codegen.toolchain import build_jar

        source = written[0]
        written.append(build_jar(source, source.parent / f"{prefix}.jar"))
    for p in written:
        click.echo(f"wrote {p}", err=True)
    if run_check:
        from modelport.codegen.check import check

        report = check(b, targets=(target,), postgres_url=postgres, program=program)
        click.echo(report.summary(), err=True)
        if not report.passed:
            raise VerificationError(
                "the generated code does not reproduce ONNX Runtime on the check rows (see above).",
                hint="report this model to the modelport maintainers with the bundle attached",
            )


def _write(files: dict[str, str], output: str | None) -> list[Path]:
    if output is not None and len(files) == 1 and Path(output).suffix in (".sql", ".py", ".c", ".mjs", ".js", ".java"):
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(next(iter(files.values())))
        return [path]
    folder = Path(output or os.curdir)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in files.items():
        p = folder / name
        p.write_text(text)
        out.append(p)
    return out
