"""``modelport feedback --source URL --log DIR``: delayed labels from a stream into the prediction log."""

from __future__ import annotations

import json
from typing import Any

import click


@click.command("feedback")
@click.option("--source", required=True, metavar="URL",
              help="Where label messages come from: redis://HOST:PORT/DB?stream=S&group=G, "
                   "nats://HOST:PORT?stream=S&subject=X&durable=D, a .jsonl file, or - (stdin).")
@click.option("--log", "log", required=True, metavar="DIR|URL",
              help="The prediction log the labels join (a directory or fsspec URL, as serve --log writes it).")
@click.option("--model", default=None, help="The model name stored with the labels (informational; perf joins by id).")
@click.option("--dead-letter", metavar="URL", default=None,
              help="Where messages that are not labels go (default: STREAM:dead-letter on Redis, "
                   "STREAM.dead-letter on NATS, stderr for JSON lines).")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Most messages per batch (one labels file each, written before the batch is acknowledged).")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="How long a batch may wait for more messages once it has one (0: take what is there).")
@click.option("--max-deliveries", type=click.IntRange(min=1), default=5, show_default=True,
              help="A message delivered more often than this goes to the dead letters.")
@click.option("--redeliver-after", type=click.FloatRange(min=0.001), default=30.0, show_default=True, metavar="SECONDS",
              help="An unacknowledged message is delivered again (to any consumer of the group) after this long.")
@click.option("--max-message-bytes", default="1MB", show_default=True,
              help="Larger messages go to the dead letters ('none': no limit).")
@click.option("--name", default=None, help="Consumer name in the group (a unique suffix is added; default HOST-PID).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--log-format", default="json", show_default=True, type=click.Choice(["json", "text"]),
              help="Logs on stderr: one JSON object per line, or plain text.")
def feedback(**options: Any) -> None:
    """Store labels that arrive on a stream in the prediction log, where modelport perf joins them.

    \b
      modelport feedback --source 'redis://localhost:6379/0?stream=labels&group=feedback' --log predictions/
      cat labels.jsonl | modelport feedback --source - --log predictions/

    A message is {"id": "<request id>", "label": ..., "ts": optional} or {"records": [...]}, as the
    feedback endpoint takes. Labels are written and flushed before their messages are acknowledged
    (at-least-once; a repeated label changes nothing). SIGTERM finishes the batch in hand and exits 0.
    Prints a JSON summary on stdout.
    """
    from modelport.cli.serve import parse_size
    from modelport.monitor.labels_stream import run
    from modelport.stream import logs

    logs.configure(level=options.pop("log_level"), fmt=options.pop("log_format"))
    stats = run(options.pop("source"), options.pop("log"),
                max_wait=float(options.pop("max_wait_ms")) / 1000.0,
                max_message_bytes=parse_size(str(options.pop("max_message_bytes"))), **options)
    click.echo(json.dumps(stats.to_dict()))
