"""``modelport inspect BUNDLE``: what a bundle is, reads, returns and holds."""

from __future__ import annotations

import click


@click.command("inspect")
@click.argument("bundle")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.option("--graph", "show_graph", is_flag=True,
              help="Print the ONNX graph in ONNX's textual syntax (with --json: add it as 'graph').")
def inspect(bundle: str, as_json: bool, show_graph: bool) -> None:
    """Describe BUNDLE: source, task, signature, classes, graph, size, parity and metrics.

    BUNDLE is a bundle directory, an .mpk file or a registry URI (models:/NAME@ALIAS).
    """
    from modelport import load
    from modelport.inspect._json import dumps
    from modelport.inspect.describe import describe, graph_text, print_description

    b = load(bundle)
    if as_json:
        info = describe(b)
        if show_graph:
            info["graph"] = graph_text(b)
        click.echo(dumps(info))
    elif show_graph:
        click.echo(graph_text(b))  # names cleaned of terminal controls
    else:
        print_description(describe(b))
