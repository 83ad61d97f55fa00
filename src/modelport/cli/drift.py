"""``modelport drift BUNDLE LOG``: drift of a logged window against the bundle's training reference."""

from __future__ import annotations

import click


@click.command("drift")
@click.argument("bundle")
@click.argument("log")
@click.option("--name", "model", default=None, help="The logged model name (default: the bundle's name).")
@click.option("--version", "versions", multiple=True, help="Only rows answered by this version (repeatable).")
@click.option("--since", default=None, help="Start of the window: 24h, 7d (back from now) or an ISO time.")
@click.option("--until", default=None, help="End of the window (default: now).")
@click.option("--against", default=None, metavar="LOG|FILE",
              help="Compare with another log window (with --against-since/--against-until) or a data file, "
                   "instead of the bundle's training reference.")
@click.option("--against-since", default=None, help="Start of the reference window (with --against LOG).")
@click.option("--against-until", default=None, help="End of the reference window (with --against LOG).")
@click.option("--psi", type=click.FloatRange(min=0), default=0.2, show_default=True, help="Numeric columns drift at PSI >= this.")
@click.option("--js", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Categorical columns drift at a Jensen-Shannon distance >= this.")
@click.option("--missing", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="A column drifts when its missing rate moves by this much.")
@click.option("--unseen", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="A column drifts when this share of its values is outside the reference's categories.")
@click.option("--p-value", type=click.FloatRange(0, 1), default=None,
              help="Also drift when a KS / chi-square p-value is below this (off by default).")
@click.option("--share", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Exit 10 only when the share of drifted columns is above this (0: any column or the predictions).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--html", "html_path", default=None, type=click.Path(dir_okay=False), help="Also write an HTML report here.")
@click.pass_context
def drift(ctx: click.Context, bundle: str, log: str, model: str | None, versions: tuple[str, ...], since: str | None,
          until: str | None, against: str | None, against_since: str | None, against_until: str | None,
          psi: float, js: float, missing: float, unseen: float, p_value: float | None, share: float,
          as_json: bool, html_path: str | None) -> None:
    """Drift of the rows LOG holds for BUNDLE's model (PSI, KS, chi-square, Jensen-Shannon, missing and
    unseen rates, the predictions' drift, the drift share).

    \b
    Exit codes: 0 no drift, 10 drift, other non-zero: an error.
      modelport drift churn.mpk predictions/ --since 24h --html drift.html
    """
    from modelport.monitor.drift import Thresholds, drift_of_log

    report = drift_of_log(bundle, log, model=model, versions=list(versions) or None, since=since, until=until,
                          against=against, against_since=against_since, against_until=against_until,
                          thresholds=Thresholds(psi=psi, js=js, missing=missing, unseen=unseen, p_value=p_value,
                                                share=share))
    if html_path:
        from modelport.monitor.report import write_html

        write_html(report, html_path)
    if as_json:
        import json

        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        from modelport.monitor.report import render, text_console

        text_console().print(render(report))
    ctx.exit(report.exit_code)
