"""Streaming: score messages from Redis Streams, NATS JetStream or JSON lines, and write the
results where the next service reads them.

    >>> import modelport.stream as ms
    >>> ms.run("churn.mpk", source="redis://localhost:6379/0?stream=events&group=scorers",
    ...        sink="redis://localhost:6379/0?stream=scores")          # until SIGTERM; returns StreamStats
    >>> consumer = ms.StreamConsumer(ms.StreamConfig("models:/churn@production", source=..., sink=...))
    >>> consumer.start(); ...; stats = consumer.stop()

Layout: ``base`` (Message, Source / Sink, the URL scheme table), one module per broker (``redis``,
``nats``, ``jsonl``), ``messages`` (what a message holds and what the outputs look like),
``consumer`` (the broker-agnostic loop), ``model`` (hot swap via serving's repository),
``metrics``, ``supervisor`` (``consumers=N`` processes), ``logs``. See docs/streaming.md.
"""

from modelport.stream.base import Message, OutMessage, Sink, Source, SourceOptions, open_sink, open_source
from modelport.stream.consumer import StreamConfig, StreamConsumer, StreamStats, run

__all__ = [
    "Message",
    "OutMessage",
    "Sink",
    "Source",
    "SourceOptions",
    "StreamConfig",
    "StreamConsumer",
    "StreamStats",
    "open_sink",
    "open_source",
    "run",
]
