"""``modelport feedback --source URL --log DIR``: delayed labels from a stream into the prediction log."""

from __future__ import annotations

import json
from typing import Any

import click

from modelport.cli.stream import (
    CONSUMER_NAME,
    LOG_FORMAT,
    LOG_LEVEL,
    MAX_DELIVERIES,
    MAX_MESSAGE_BYTES,
    MAX_WAIT_MS,
    REDELIVER_AFTER,
)


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
@MAX_WAIT_MS
@MAX_DELIVERIES
@REDELIVER_AFTER
@MAX_MESSAGE_BYTES
@CONSUMER_NAME
@LOG_LEVEL
@LOG_FORMAT
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
