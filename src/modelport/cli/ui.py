"""``modelport ui``: the monitoring dashboard (registry, live traffic, drift, performance) in a browser."""

from __future__ import annotations

import click


@click.command("ui")
@click.option("--log", "log", default=None, metavar="DIR|URL", help="The prediction log to show (drift, performance).")
@click.option("--server", default=None, metavar="URL",
              help="A running `modelport serve` whose live numbers to show (its /ui/api), e.g. http://127.0.0.1:8080.")
@click.option("--bundle", "bundles", multiple=True, metavar="PATH|URI",
              help="A bundle whose reference statistics the drift view uses for its model name (repeatable; "
                   "default: the registry's version of each logged model).")
@click.option("--registry", "registry_url", default=None, help="Registry URL (default: MODELPORT_REGISTRY / MODELPORT_HOME).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8090, show_default=True, help="HTTP port.")
@click.option("--since", default="24h", show_default=True, help="Window of the drift and performance views.")
@click.option("--by", default="hour", show_default=True, help="Window of the performance series.")
def ui(log: str | None, server: str | None, bundles: tuple[str, ...], registry_url: str | None, host: str, port: int,
       since: str, by: str) -> None:
    """Serve the dashboard at http://HOST:PORT/ui (all assets in the package: works offline).

      modelport ui --log predictions/ --server http://127.0.0.1:8080
      modelport ui --log predictions/ --bundle churn.mpk
    """
    from modelport.monitor.dashboard import run

    run(log=log, server=server, registry_url=registry_url, host=host, port=port, since=since, by=by,
        bundles=list(bundles))
