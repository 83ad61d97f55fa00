"""Delayed labels from a stream: ``modelport feedback --source URL --log DIR``.

    >>> from modelport.monitor.labels_stream import run
    >>> stats = run("redis://localhost:6379/0?stream=labels&group=feedback", "predictions/", model="churn")

Each message is one label ``{"id": "<request id>", "label": ..., "ts": optional}`` or a batch
``{"records": [...]}``: the body of the feedback endpoint, checked by the same rule
(:func:`modelport.serve.monitoring.parse_feedback`). The sources are the stream's
(:func:`modelport.stream.base.open_source`: Redis Streams, NATS JetStream, JSON lines).

One batch at a time: read (up to ``batch_size`` messages, waiting up to ``max_wait`` seconds for
more once one came), queue the labels with :meth:`PredictionLog.write_labels` (``source="stream"``),
flush the log (the labels file is complete and readable), then dead-letter the bad messages and
acknowledge the batch. At-least-once: a crash before the acknowledgement delivers the batch again,
and its labels are stored twice, which changes nothing (``read_labels`` keeps the last label of
an id). A message that is not a valid label goes to the dead letters with its error and is
acknowledged; a flush that fails acknowledges nothing (the messages come again). SIGTERM / SIGINT
finish the batch in hand, then stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from modelport.errors import InputError, ModelportError
from modelport.monitor.log import PredictionLog
from modelport.stream import messages as mm
from modelport.stream.base import (
    PROBLEM_HEADER,
    Fenced,
    Message,
    OutMessage,
    PartlyCommitted,
    Sink,
    Source,
    SourceOptions,
    graceful_signals,
    open_sink,
    open_source,
)

log = _log = logging.getLogger("modelport.feedback")  # _log: where a parameter is named log

_READ_TIMEOUT = 0.25  # how long one read waits (and how quickly a stop is seen)


@dataclass
class LabelStreamStats:
    """What a run did: messages read, labels stored, messages dead-lettered, batches committed,
    batches given back (their flush or commit failed; they are delivered again)."""

    messages: int = 0
    labels: int = 0
    dead_letters: int = 0
    batches: int = 0
    retried: int = 0
    elapsed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "labels": self.labels, "dead_letters": self.dead_letters,
                "batches": self.batches, "retried": self.retried, "elapsed": self.elapsed}


class MalformedMessage(InputError):
    """A message that is not JSON at all (dead-lettered as ``malformed``, not ``input``)."""


def parse_message(payload: bytes) -> list[tuple[str, Any, float | None]]:
    """One message -> ``(id, label, ts)`` tuples; InputError when it is not a label or a batch of them."""
    from modelport.serve.monitoring import parse_feedback

    if mm.is_arrow(payload, None):
        raise MalformedMessage("label messages are JSON ({\"id\": ..., \"label\": ...} or {\"records\": [...]}); "
                         "got an Arrow table.")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"the message is not valid JSON: {exc}") from None
    if isinstance(doc, dict) and "records" not in doc:
        doc = {"records": [doc]}
    return parse_feedback(doc)


class LabelConsumer:
    """Reads label messages from ``source`` into the prediction log ``log`` until stopped or the
    source ends. ``log``: a directory / fsspec URL (opened and closed here) or a PredictionLog
    of your own (flushed, not closed)."""

    def __init__(
        self,
        source: str | Source,
        log: str | os.PathLike[str] | PredictionLog,
        *,
        model: str | None = None,
        dead_letter: str | Sink | None = None,
        batch_size: int = 500,
        max_wait: float = 0.0,
        max_deliveries: int = 5,
        redeliver_after: float = 30.0,
        max_message_bytes: int | None = 1 << 20,
        name: str | None = None,
        flush_timeout: float = 30.0,
    ) -> None:
        for what, value, zero in (("batch_size", batch_size, False), ("max_wait", max_wait, True),
                                  ("max_deliveries", max_deliveries, False),
                                  ("redeliver_after", redeliver_after, False),
                                  ("flush_timeout", flush_timeout, False)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not zero):
                raise InputError(f"{what} must be {'at least 0' if zero else 'positive'}; got {value!r}.")
        if max_message_bytes is not None and max_message_bytes <= 0:
            raise InputError(f"max_message_bytes must be positive; got {max_message_bytes!r}.")
        self.model = model
        self.batch_size = int(batch_size)
        self.max_wait = float(max_wait)
        self.max_deliveries = int(max_deliveries)
        self.redeliver_after = float(redeliver_after)
        self.max_message_bytes = max_message_bytes
        self.flush_timeout = float(flush_timeout)
        self.stats = LabelStreamStats()
        self.stopping = threading.Event()
        self._base = name or f"{socket.gethostname()}-{os.getpid()}"
        self.consumer_name = self._new_name()
        self._own_log = not isinstance(log, PredictionLog)
        self.log: PredictionLog | None = None
        self.source: Source | None = None
        self.dead_sink: Sink | None = None
        try:
            self.log = PredictionLog(log, source="feedback-stream") if not isinstance(log, PredictionLog) else log
            opts = SourceOptions(consumer=self.consumer_name, redeliver_after=self.redeliver_after)
            self.source = open_source(source, opts) if isinstance(source, str) else source
            if dead_letter is None:
                self.dead_sink = self.source.dead_letter_sink()
            elif isinstance(dead_letter, str):
                self.dead_sink = open_sink(dead_letter, role="dead-letter")
            else:
                self.dead_sink = dead_letter
        except BaseException:
            self.close()
            raise

    def _new_name(self) -> str:
        return f"{self._base}-{uuid.uuid4().hex[:6]}"

    # ------------------------------------------------------------------ the loop
    def run(self) -> LabelStreamStats:
        """Consume until :meth:`stop` (or SIGTERM / SIGINT in the main thread) or the source ends."""
        src, dead = self.source, self.dead_sink
        assert src is not None and dead is not None and self.log is not None
        log.info("storing labels from %s in %s (dead letters: %s) as %s; at-least-once (a label delivered twice "
                 "is stored twice; the last label of an id counts)", src.name, self.log.url, dead.name,
                 self.consumer_name, extra={"consumer": self.consumer_name, "source": src.name})
        started = time.monotonic()
        next_reclaim = 0.0
        reclaim_every = max(0.05, min(self.redeliver_after / 2, 5.0))
        backoff = 0.0
        try:
            while not self.stopping.is_set():
                try:
                    msgs: list[Message] = []
                    now = time.monotonic()
                    if now >= next_reclaim:
                        msgs = src.confirm(src.reclaim(self.batch_size))
                        next_reclaim = now if len(msgs) >= self.batch_size else now + reclaim_every
                    if not msgs:
                        msgs = self._read(src)
                    backoff = 0.0
                except ModelportError as exc:
                    backoff = min(max(backoff * 2, 0.1), 5.0)
                    log.error("reading failed (retrying in %.1f s): %s", backoff, exc)
                    self.stopping.wait(backoff)
                    continue
                if msgs:
                    self._batch(src, dead, msgs)
                if src.exhausted and not msgs:
                    break
        finally:
            self.stats.elapsed = time.monotonic() - started
        return self.stats

    def _read(self, src: Source) -> list[Message]:
        msgs = src.read(self.batch_size, _READ_TIMEOUT)
        if msgs and self.max_wait > 0 and len(msgs) < self.batch_size and not src.exhausted:
            deadline = time.monotonic() + self.max_wait
            while len(msgs) < self.batch_size and not self.stopping.is_set() and not src.exhausted:
                remaining = deadline - time.monotonic()
                if remaining < 0.001:
                    break
                msgs += src.read(self.batch_size - len(msgs), remaining)
        return msgs

    def _batch(self, src: Source, dead_sink: Sink, msgs: list[Message]) -> None:
        assert self.log is not None
        self.stats.messages += len(msgs)
        if src.stale(msgs):  # read before this consumer was fenced: another one has them now
            src.release(msgs)
            return
        records: list[tuple[str, Any, float | None]] = []
        dead: list[OutMessage] = []
        for m in msgs:
            reason, error = self._check(m)
            if reason is None:
                try:
                    records += parse_message(m.payload)
                    continue
                except InputError as exc:
                    reason, error = (mm.MALFORMED if isinstance(exc, MalformedMessage) else mm.INPUT), exc.message
            dead.append(self._dead(src, m, reason, error))
        if records:
            before = self.log.stats.errors
            stored = 0
            for i in range(0, len(records), self.log.max_pending_rows):  # never more than the queue holds
                chunk = records[i:i + self.log.max_pending_rows]
                stored += self.log.write_labels(chunk, model=self.model, source="stream")
                if not self.log.flush(self.flush_timeout) or self.log.stats.errors > before:
                    stored = -1
                    break
            if stored != len(records):
                self.stats.retried += 1
                log.error("could not store the labels of %d message(s) in %s; they are not acknowledged and "
                          "will be delivered again", len(msgs), self.log.url)
                src.release(msgs)
                self.stopping.wait(0.5)
                return
        try:
            src.commit(msgs, [(dead_sink, dead)])
        except PartlyCommitted as exc:
            log.error("LOST %d dead letter(s) (acknowledged, not written to %s): %s", len(exc.failed),
                      dead_sink.name, "; ".join(f[2] for f in exc.failed[:3]))
        except Fenced:
            old, self.consumer_name = self.consumer_name, self._new_name()
            src.rename(self.consumer_name)
            log.warning("another consumer took over the messages of %s; going on as %s (its labels are stored "
                        "twice, which changes nothing)", old, self.consumer_name)
            return
        except ModelportError as exc:
            self.stats.retried += 1
            log.error("acknowledging %d message(s) failed; they will be delivered again (their labels are "
                      "stored): %s", len(msgs), exc)
            src.release(msgs)
            self.stopping.wait(0.5)
            return
        self.stats.batches += 1
        self.stats.labels += len(records)
        self.stats.dead_letters += len(dead)
        if dead:
            log.warning("%d message(s) dead-lettered to %s; first: %s (%s)", len(dead), dead_sink.name,
                        dead[0].meta.get("error"), dead[0].meta.get("id"))

    def _check(self, m: Message) -> tuple[str | None, str]:
        if m.deliveries > self.max_deliveries:
            return mm.MAX_DELIVERIES, (f"the message was delivered {m.deliveries} times without being acknowledged "
                                       f"(max_deliveries {self.max_deliveries}).")
        if m.headers and PROBLEM_HEADER in m.headers:
            return mm.MALFORMED, m.headers[PROBLEM_HEADER]
        if self.max_message_bytes is not None and len(m.payload) > self.max_message_bytes:
            return mm.TOO_LARGE, f"the message has {len(m.payload):,} bytes; the limit is {self.max_message_bytes:,}."
        return None, ""

    def _dead(self, src: Source, m: Message, reason: str, error: str) -> OutMessage:
        meta = mm.dead_letter_meta(reason=reason, error=error, message_id=m.id, deliveries=m.deliveries,
                                   source=src.name, model=None)
        if self.model is not None:
            meta["model_name"] = self.model
        return OutMessage(f"{src.key_prefix}:{m.id}:dead-letter", m.payload, meta)

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self.stopping.set()

    def close(self) -> None:
        for closeable in (self.source, self.dead_sink):
            if closeable is not None:
                with contextlib.suppress(Exception):
                    closeable.close()
        self.source = self.dead_sink = None
        if self.log is not None:
            if self._own_log:
                self.log.close()
            else:
                self.log.flush(self.flush_timeout)
            self.log = None

    def __enter__(self) -> LabelConsumer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def run(source: str | Source, log: str | os.PathLike[str] | PredictionLog, **options: Any) -> LabelStreamStats:
    """Store the labels of ``source`` in the prediction log ``log`` until the source ends (a file,
    stdin) or SIGTERM / SIGINT arrives (in the main thread). ``options``: :class:`LabelConsumer`'s
    (``model``, ``dead_letter``, ``batch_size``, ``max_wait`` seconds, ``max_deliveries``,
    ``redeliver_after``, ``max_message_bytes``, ``name``)."""
    with LabelConsumer(source, log, **options) as consumer, \
            graceful_signals(consumer.stopping.is_set, consumer.stop, "the batch in hand", _log):
        return consumer.run()

