"""``modelport stream MODEL --source URL --sink URL``: score a message stream (Redis Streams, NATS
JetStream, JSON lines) and write the results back."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import click

#: options every stream consumer command takes (modelport stream, modelport feedback), declared once
MAX_WAIT_MS = click.option(
    "--max-wait-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
    help="How long a batch may wait for more messages once it has one (0: take what is there).")
MAX_DELIVERIES = click.option(
    "--max-deliveries", type=click.IntRange(min=1), default=5, show_default=True,
    help="A message delivered more often than this goes to the dead letters.")
REDELIVER_AFTER = click.option(
    "--redeliver-after", type=click.FloatRange(min=0.001), default=30.0, show_default=True, metavar="SECONDS",
    help="An unacknowledged message is delivered again (to any consumer of the group) after this long.")
MAX_MESSAGE_BYTES = click.option(
    "--max-message-bytes", default="1MB", show_default=True,
    help="Larger messages go to the dead letters ('none': no limit).")
CONSUMER_NAME = click.option(
    "--name", default=None, help="Consumer name in the group (a unique suffix is added; default HOST-PID).")
LOG_LEVEL = click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["critical", "error", "warning", "info", "debug"]))
LOG_FORMAT = click.option(
    "--log-format", default="json", show_default=True, type=click.Choice(["json", "text"]),
    help="Logs on stderr: one JSON object per line, or plain text.")

@click.command("stream")
@click.argument("model")
@click.option("--source", required=True, metavar="URL",
              help="Where messages come from: redis://HOST:PORT/DB?stream=S&group=G, "
                   "nats://HOST:PORT?stream=S&subject=X&durable=D, a .jsonl file, or - (stdin). "
                   "See docs/streaming.md.")
@click.option("--sink", required=True, metavar="URL",
              help="Where outputs go: redis://HOST:PORT/DB?stream=S, nats://HOST:PORT?subject=X, a .jsonl "
                   "file, or - (stdout).")
@click.option("--dead-letter", metavar="URL", default=None,
              help="Where messages that cannot be scored go (default: STREAM:dead-letter on Redis, "
                   "STREAM.dead-letter on NATS, stderr for JSON lines).")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Most messages per batch (one ONNX Runtime call).")
@MAX_WAIT_MS
@click.option("--max-in-flight", type=click.IntRange(min=1), default=4, show_default=True,
              help="Batches read and not yet committed; reading stops while the sink is this far behind.")
@MAX_DELIVERIES
@REDELIVER_AFTER
@MAX_MESSAGE_BYTES
@click.option("--keep", default="rest", show_default=True,
              help="Message fields copied to the output: 'rest' (those that are not model inputs, e.g. an entity key), "
                   "'all', 'none', or a comma-separated list of names.")
@click.option("--prefix", default="", help="Prefix for the prediction field names (e.g. pred_).")
@click.option("--consumers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Consumer processes sharing the group.")
@CONSUMER_NAME
@click.option("--poll", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Look for a new model version this often (default 5 for models:/NAME@ALIAS, off for files; 0: off).")
@click.option("--registry", "registry_url", default=None, help="Registry URL for models:/ sources.")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="ONNX Runtime threads per consumer (0: one per core).")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), default=None,
              help="Serve Prometheus /metrics on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address of /metrics (0.0.0.0 for all).")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True, metavar="SECONDS",
              help="On SIGTERM, how long the batches in flight may take to finish and commit.")
@click.option("--log", "log", default=None, metavar="DIR|URL",
              help="Prediction log: every scored record (sampled) as Parquet under this directory or fsspec URL, "
                   "as modelport serve --log writes it; ids are the message ids (docs/monitoring.md).")
@click.option("--log-sample", default=1.0, show_default=True, type=click.FloatRange(0, 1), metavar="RATE",
              help="Share of messages logged (by message id).")
@click.option("--log-rotate", default=300.0, show_default=True, type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Close each log file after this long (what a killed consumer may lose; SIGTERM loses nothing).")
@LOG_LEVEL
@LOG_FORMAT
@click.option("--progress/--no-progress", default=None, help="Show a progress line (default: when stderr is a terminal).")
def stream(model: str, **options: Any) -> None:
    """Score the messages of a stream with MODEL (a bundle, or models:/NAME@ALIAS) and write the results.

    \b
      modelport stream churn.mpk --source 'redis://localhost:6379/0?stream=events&group=scorers' \\
                                 --sink   'redis://localhost:6379/0?stream=scores'
      cat events.jsonl | modelport stream churn.mpk --source - --sink - > scores.jsonl

    A message is a JSON record, a JSON batch of records ({"records": [...]}) or an Arrow IPC table;
    each output carries the input's id, the prediction, the model's name, version and digest.
    SIGTERM finishes and acknowledges the batches in flight, then exits 0.
    """
    from modelport.cli.serve import parse_size
    from modelport.stream import logs
    from modelport.stream.consumer import StreamConfig, StreamConsumer

    progress = options.pop("progress")
    if progress is None:
        progress = sys.stderr.isatty()
    log_options = {"level": options.pop("log_level"), "fmt": options.pop("log_format")}
    logs.configure(**log_options)
    keep = options.pop("keep")
    threads = int(options.pop("threads"))
    consumers = int(options.pop("consumers"))
    config = StreamConfig(
        model,
        source=options.pop("source"),
        sink=options.pop("sink"),
        max_wait=float(options.pop("max_wait_ms")) / 1000.0,
        max_message_bytes=parse_size(str(options.pop("max_message_bytes"))),
        keep=keep if keep in ("rest", "all", "none") else [c.strip() for c in keep.split(",") if c.strip()],
        threads=threads if threads > 0 else None,
        **options,
    )
    runner: Any
    if consumers > 1:
        from modelport.stream.supervisor import Supervisor

        runner = Supervisor(config, consumers, log_options=log_options)
    else:
        runner = StreamConsumer(config)
    runner.start()
    if consumers == 1:
        from modelport.stream.consumer import tune_gc

        tune_gc()  # this process only streams
    stats = _run(runner, progress)
    summary = (f"{stats.messages_in:,} message(s) in, {stats.messages_out:,} out, {stats.dead:,} dead-lettered "
               f"in {stats.elapsed:.1f} s")
    logging.getLogger("modelport.stream").info("stopped: %s", summary)
    if not stats.drained:
        raise SystemExit(1)


def _run(runner: Any, progress: bool) -> Any:
    """Wait for the runner (SIGTERM / SIGINT stop it gracefully), with a progress line on a terminal."""
    import signal
    import threading

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logging.getLogger("modelport.stream").info(
            "received %s: finishing the batches in flight", signal.Signals(signum).name)
        stop.set()

    stop = threading.Event()
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if progress:
            _with_progress(runner, stop)
        else:
            while not stop.is_set() and not runner.wait(0.25):
                pass
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
    return runner.stop()


def _with_progress(runner: Any, stop: Any) -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console(stderr=True)
    last_in, last_t, rate = 0, time.monotonic(), 0.0
    with Live(Text(""), console=console, refresh_per_second=4, transient=True, redirect_stderr=True) as live:
        while not stop.is_set() and not runner.wait(0.25):
            s = runner.stats
            now = time.monotonic()
            if now - last_t >= 1.0:
                rate = (s.messages_in - last_in) / (now - last_t)
                last_in, last_t = s.messages_in, now
            version = f" · version {s.model_versions[-1]}" if s.model_versions else ""
            lag = f" · lag {s.group_lag:,}" if s.group_lag is not None else ""
            live.update(Text(
                f"stream: {s.messages_in:,} in · {s.messages_out:,} out · {s.dead:,} dead-lettered · "
                f"{rate:,.0f} msg/s{lag}{version}"
            ))
