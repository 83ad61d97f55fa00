"""``modelport diff A B``: what changed between two bundles, with an exit code a script can act on."""

from __future__ import annotations

import click


@click.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-behaviour", "skip_behaviour", is_flag=True,
              help="Do not score the reference rows; compare metadata, signature and graph only.")
@click.option("--max-rows", type=click.IntRange(min=1), default=5000, show_default=True,
              help="At most this many reference rows from each bundle are scored.")
@click.pass_context
def diff(ctx: click.Context, a: str, b: str, as_json: bool, skip_behaviour: bool, max_rows: int) -> None:
    """Compare bundle A (old) with bundle B (new).

    A and B are bundle directories, .mpk files or registry URIs (models:/NAME/VERSION).
    Reported: metadata, signature (breaking changes flagged), graph (operators, trees,
    initializers) and behaviour on the union of both bundles' reference inputs.

    \b
    Exit codes:
      0   identical
      10  compatible change (metadata, graph or behaviour; callers keep working)
      11  breaking change (a column, input or output removed, renamed or retyped, a new
          required input, the task or the class set or order changed)
      other non-zero: an error (e.g. 5 when a bundle cannot be loaded)
    """
    from modelport.inspect._json import dumps
    from modelport.inspect.diff import diff as diff_bundles
    from modelport.inspect.diff import render

    report = diff_bundles(a, b, behaviour=not skip_behaviour, max_rows=max_rows)
    if as_json:
        click.echo(dumps(report.to_dict()))
    else:
        from modelport.inspect._text import console

        console(soft_wrap=True).print(render(report))
    ctx.exit(report.exit_code)
