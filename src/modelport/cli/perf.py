"""``modelport perf BUNDLE LOG``: realised (labels) and estimated (CBPE) performance per version and window."""

from __future__ import annotations

import click


@click.command("perf")
@click.argument("bundle")
@click.argument("log")
@click.option("--name", "model", default=None, help="The logged model name (default: the bundle's name).")
@click.option("--labels", default=None, type=click.Path(dir_okay=False),
              help="Labels file (Parquet, CSV or JSON lines with id and label), besides the feedback endpoint's.")
@click.option("--by", default="day", show_default=True, help="Window: minute, hour, day, week or a duration (6h).")
@click.option("--since", default=None, help="Start: 7d (back from now) or an ISO time.")
@click.option("--until", default=None, help="End (default: now).")
@click.option("--version", "versions", multiple=True, help="Only this logged version (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def perf(bundle: str, log: str, model: str | None, labels: str | None, by: str, since: str | None,
         until: str | None, versions: tuple[str, ...], as_json: bool) -> None:
    """Accuracy, log loss, ROC AUC and F1 (classifiers) or RMSE, MAE and R² (regressors) of the
    predictions LOG holds, joined with their labels by id, per model version and window; for
    classifiers also the performance estimated from the probabilities (CBPE) before labels arrive.

      modelport perf churn.mpk predictions/ --labels labels.parquet --by day
    """
    from modelport._uri import load
    from modelport.monitor.feedback import perf as run

    b = load(bundle)
    report = run(log, model=model or b.name, bundle=b, labels=labels, by=by, since=since, until=until,
                 versions=list(versions) or None)
    if as_json:
        import json

        click.echo(json.dumps(report.to_dict(), indent=1))
        return
    from modelport.monitor.report import render_perf, text_console

    text_console().print(render_perf(report))
