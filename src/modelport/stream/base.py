"""The broker interface of streaming: a :class:`Source` of messages and a :class:`Sink` for results,
one module per broker, chosen by the URL's scheme.

    redis://HOST:PORT/DB?stream=events&group=scorers      Redis Streams (consumer group)   stream/redis.py
    nats://HOST:PORT?stream=EVENTS&subject=events.>&durable=scorers   NATS JetStream  stream/nats.py
    -   |  PATH.jsonl  |  file:///PATH                      JSON lines (stdin/stdout, files) stream/jsonl.py

A broker module provides ``open_source(url, options)`` and ``open_sink(url, options)`` and is
listed in :data:`SCHEMES`; nothing else in modelport knows about brokers. The consumer loop
(:mod:`modelport.stream.consumer`) only calls the methods below. Delivery is decided by
:meth:`Source.commit`: the default writes every output to its sink (each write returns once the
broker has stored it) and then acknowledges the inputs, which is at-least-once; a broker that can
do better overrides it (Redis: one MULTI/EXEC when the sinks live on the source's server).

A Kafka adapter would be one more module, ``stream/kafka.py``, listed here under ``kafka``: a
Source whose ``read`` polls a consumer in a group, whose ``ack`` commits, per partition, the
highest offset below which every message is done, and whose ``commit`` uses a transactional
producer (``send_offsets_to_transaction``) for an exactly-once effect when the sink is Kafka too;
and a Sink whose ``write`` produces with the output's ``key`` and flushes. See docs/streaming.md.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from modelport.errors import InputError

#: URL scheme -> broker module (each has ``open_source`` and ``open_sink``)
SCHEMES: dict[str, str] = {
    "redis": "modelport.stream.redis",
    "rediss": "modelport.stream.redis",
    "nats": "modelport.stream.nats",
    "tls": "modelport.stream.nats",
    "file": "modelport.stream.jsonl",
    "jsonl": "modelport.stream.jsonl",
}


@dataclass(slots=True)
class Message:
    """One message as a source delivered it.

    ``id`` is the broker's id (a Redis entry id, a JetStream stream sequence, a line number);
    ``timestamp`` when the broker stored it (seconds since the epoch; None when unknown);
    ``deliveries`` counts this delivery (1 the first time); ``handle`` is the broker's own object.
    """

    id: str
    payload: bytes
    timestamp: float | None = None
    deliveries: int = 1
    headers: Mapping[str, str] | None = None
    handle: Any = None


@dataclass(slots=True)
class OutMessage:
    """A message to write. ``key`` is unique per input message (source name + input id): a broker
    that drops duplicates uses it as the message id (NATS ``Nats-Msg-Id``). ``meta`` holds extra
    string fields (Redis entry fields, NATS headers): the content type, a dead letter's error."""

    key: str
    payload: bytes
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceOptions:
    """What every source is told by the consumer."""

    consumer: str  # this consumer's name in its group (unique per process)
    redeliver_after: float = 30.0  # seconds a delivered, unacknowledged message waits before redelivery


@dataclass(frozen=True)
class GroupLag:
    """Consumer-group position: messages not delivered to any consumer yet, and delivered but not acknowledged."""

    lag: int | None
    pending: int | None


#: a source sets this header on a message it could not even unpack (say, a Redis entry without its
#: payload field); the consumer dead-letters the message as malformed with this text
PROBLEM_HEADER = "modelport-problem"


class Fenced(Exception):
    """Control flow inside the consumer, never raised to users: another consumer took this one's
    messages over (it was presumed dead), so its commit was refused."""


class PartlyCommitted(Exception):
    """Control flow inside the consumer: the inputs were acknowledged but these outputs were not
    written (a Redis transaction does not roll back a command that fails inside EXEC).
    ``failed``: (sink, output, error text); the consumer dead-letters their inputs."""

    def __init__(self, failed: list[tuple[Sink, OutMessage, str]]) -> None:
        super().__init__(f"{len(failed)} output(s) not written")
        self.failed = failed


class Sink(ABC):
    """Where results (or dead letters) go."""

    #: whether a payload may be binary (Arrow IPC); a text sink gets JSON instead
    binary: ClassVar[bool] = True
    #: whether writing the same ``key`` twice keeps one copy (NATS duplicate window)
    deduplicates: bool = False
    name: str = ""

    @abstractmethod
    def write(self, messages: Sequence[OutMessage]) -> None:
        """Write ``messages``; returns once the broker has stored every one (or raises StreamError)."""

    def close(self) -> None:  # noqa: B027 - optional for sinks without a connection
        """Release connections."""


class Source(ABC):
    """Where messages come from; a consumer group member where the broker has groups."""

    name: str = ""
    #: prefix of the output keys: identifies the input stream (``events``, ``EVENTS``, a file)
    key_prefix: str = ""
    #: True once a finite source (a file, stdin) has delivered its last message
    exhausted: bool = False
    #: this source can hand messages to several consumers of one group (``--consumers``)
    shared: ClassVar[bool] = True

    @abstractmethod
    def read(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to ``max_messages`` new messages; waits at most ``timeout`` seconds for the first."""

    @abstractmethod
    def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge ``messages``: done, never to be delivered again."""

    def reclaim(self, max_messages: int) -> list[Message]:
        """Messages another consumer received and never acknowledged (it died); [] by default,
        where the broker redelivers them through :meth:`read` on its own."""
        return []

    def confirm(self, messages: Sequence[Message]) -> list[Message]:
        """Of the messages :meth:`reclaim` returned, those that are still this consumer's to score
        (called while the consumer holds its in-flight lock)."""
        return list(messages)

    def stale(self, messages: Sequence[Message]) -> bool:
        """True when ``messages`` were read before this consumer was fenced and renamed: their
        commit must be dropped, since another consumer may score them now."""
        return False

    def release(self, messages: Sequence[Message]) -> None:  # noqa: B027 - optional
        """Give up on ``messages`` without acknowledging them, so that they are delivered again."""

    def commit(self, messages: Sequence[Message], writes: Sequence[tuple[Sink, Sequence[OutMessage]]]) -> None:
        """Write the outputs of ``messages`` and acknowledge them. At-least-once: every write is
        stored before the acknowledgement, so a crash in between delivers the messages again."""
        for sink, outs in writes:
            if outs:
                sink.write(outs)
        self.ack(messages)

    def delivery(self, sinks: Sequence[Sink]) -> str:
        """One sentence: the guarantee this source gives with these sinks (logged at start)."""
        if all(s.deduplicates for s in sinks):
            return "exactly-once effect within the sink's duplicate window (outputs carry the input's id as message id)"
        return "at-least-once (an output may be written twice after a crash; it carries the input's id)"

    def lag(self) -> GroupLag | None:
        """The group's lag, for metrics; None where the broker has no groups."""
        return None

    def dead_letter_sink(self) -> Sink:
        """Where dead letters go when no ``--dead-letter`` URL is given."""
        raise InputError(f"{self.name}: give a dead-letter destination (--dead-letter URL).")

    def rename(self, consumer: str) -> None:  # noqa: B027 - optional
        """Go on under a new consumer name (after being fenced)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


# ----------------------------------------------------------------------------- URLs
@dataclass
class StreamURL:
    """A parsed broker URL: scheme, location and the query parameters (each used at most once)."""

    raw: str
    scheme: str
    netloc: str
    path: str
    params: dict[str, str]
    _used: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, raw: str) -> StreamURL:
        if raw == "-":
            return cls(raw, "jsonl", "", "-", {})
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        if not scheme or (len(scheme) == 1 and raw[1:3] in (":\\", ":/")):  # a bare path (or C:\...)
            return cls(raw, "jsonl", "", raw, {})
        params: dict[str, str] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if k in params:
                raise InputError(f"{_safe(raw)}: the parameter {k!r} is given twice.")
            params[k] = v
        return cls(raw, scheme, parts.netloc, parts.path, params)

    def get(self, key: str, default: str | None = None) -> str | None:
        self._used.add(key)
        return self.params.get(key, default)

    def require(self, key: str, example: str) -> str:
        value = self.get(key)
        if not value:
            raise InputError(
                f"{_safe(self.raw)} names no {key}; add ?{key}=... to the URL.", hint=f"for example {example}"
            )
        return value

    def number(self, key: str, default: float) -> float:
        text = self.get(key)
        if text is None or text == "":
            return default
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"{_safe(self.raw)}: {key} must be a number; got {text!r}.") from None
        if value < 0:
            raise InputError(f"{_safe(self.raw)}: {key} must not be negative; got {text!r}.")
        return value

    def check_unused(self, role: str) -> None:
        unknown = sorted(set(self.params) - self._used)
        if unknown:
            known = ", ".join(sorted(self._used)) or "none"
            raise InputError(
                f"the {role} URL {_safe(self.raw)} has unknown parameter(s) {', '.join(unknown)}; "
                f"this broker takes: {known}."
            )

    @property
    def safe(self) -> str:
        return _safe(self.raw)


def _safe(raw: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(raw)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return raw


def _module(url: StreamURL, role: str) -> Any:
    target = SCHEMES.get(url.scheme)
    if target is None:
        raise InputError(
            f"the {role} URL {url.safe} has the scheme {url.scheme!r}, which modelport cannot stream from or to.",
            hint="use redis://HOST:PORT/DB?stream=NAME, nats://HOST:PORT?subject=NAME, a .jsonl path, or - for stdin/stdout",
        )
    return importlib.import_module(target)


def open_source(url: str, options: SourceOptions) -> Source:
    """The source for ``url`` (connected, its consumer group created if needed)."""
    parsed = StreamURL.parse(url)
    source: Source = _module(parsed, "source").open_source(parsed, options)
    return source


def open_sink(url: str, *, role: str = "sink") -> Sink:
    """The sink for ``url`` (connected)."""
    parsed = StreamURL.parse(url)
    sink: Sink = _module(parsed, role).open_sink(parsed, role)
    return sink


@contextlib.contextmanager
def graceful_signals(stopping: Callable[[], bool], stop: Callable[[], None], doing: str,
                     log: logging.Logger) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` (the consumer finishes ``doing`` and ends; said on ``log``); a second
    SIGINT, once ``stopping()``, exits at once. Only the main thread can take signals: elsewhere
    this does nothing. The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if stopping() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.info("received %s: finishing %s", signal.Signals(signum).name, doing)
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
