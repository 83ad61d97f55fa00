"""``modelport replay LOG --model URI``: re-score a logged window with any version and diff the answers."""

from __future__ import annotations

import click

from modelport.errors import InputError


def _rate(text: str) -> float:
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise InputError(f"--fail-if-labels-disagree must be a share such as 1% or 0.01; got {text!r}.") from None
    if not 0 <= value <= 1:
        raise InputError(f"--fail-if-labels-disagree must be from 0% to 100%; got {text!r}.")
    return value


@click.command("replay")
@click.argument("log")
@click.option("--model", "bundle", required=True, help="The bundle to replay with: models:/NAME/VERSION, a path, ...")
@click.option("--name", "model", default=None, help="The logged model name (default: the bundle's name).")
@click.option("--version", "versions", multiple=True, help="Only rows answered by this logged version (repeatable).")
@click.option("--since", default=None, help="Start of the window: 7d (back from now) or an ISO time.")
@click.option("--until", default=None, help="End of the window (default: now).")
@click.option("--max-rows", type=click.IntRange(min=1), default=None, help="At most this many (newest) rows.")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Write every replayed row (logged vs replayed answers) to this Parquet file.")
@click.option("--fail-if-labels-disagree", "fail_rate", default=None, metavar="RATE",
              help="Exit 10 when more than this share of labels differ (e.g. 1%): a gate for a promotion.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def replay(ctx: click.Context, log: str, bundle: str, model: str | None, versions: tuple[str, ...], since: str | None,
           until: str | None, max_rows: int | None, output: str | None, fail_rate: str | None, as_json: bool) -> None:
    """What would BUNDLE have answered to the requests in LOG? Rows are re-scored through the
    bundle's own input rules; the same version reproduces the logged answers exactly.

    \b
    Exit codes: 0 done (and within --fail-if-labels-disagree), 10 over it.
      modelport replay predictions/ --model models:/churn/4 --since 7d --fail-if-labels-disagree 1%
    """
    from modelport.monitor.replay import replay as run

    limit = _rate(fail_rate) if fail_rate is not None else None
    report = run(log, bundle, model=model, versions=list(versions) or None, since=since, until=until,
                 output=output, max_rows=max_rows)
    if as_json:
        import json

        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        from modelport.monitor.report import render_replay, text_console

        text_console().print(render_replay(report, limit))
    if limit is not None and report.label_disagreement > limit:
        ctx.exit(10)
