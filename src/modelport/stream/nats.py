"""NATS JetStream: a durable pull consumer as the source, subjects (captured by streams) as sinks.

    nats://[USER:PASSWORD@]HOST:PORT?stream=EVENTS&subject=events.>&durable=scorers    source
    nats://HOST:PORT?subject=scores[&stream=SCORES][&duplicate_window=120]            sink

The source binds to (or creates) the durable pull consumer ``durable`` of ``stream``, filtered by
``subject``; it creates the stream when it does not exist. Acknowledgements are explicit; a
message not acknowledged within ``redeliver_after`` seconds is delivered again (``ack_wait``);
the consumer itself counts deliveries and dead-letters a message past ``--max-deliveries``.

A sink publishes to ``subject`` and waits for JetStream's acknowledgement of every message. Each
output carries ``Nats-Msg-Id`` = source + input id, so the stream's duplicate window drops a
re-publish after a crash; the inputs are acknowledged only after the publishes are. When no
stream captures the subject, one is created (named ``stream``, or after the subject).

nats-py is asyncio-only; the consumer is not, so one event loop runs on a background thread of
the process and the methods here hand coroutines to it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from modelport._deps import require
from modelport.errors import InputError, StreamError
from modelport.stream.base import GroupLag, Message, OutMessage, Sink, Source, SourceOptions, StreamURL

log = logging.getLogger("modelport.stream")

T = TypeVar("T")
_TIMEOUT = 30.0
_TOP_UP = 0.002  # how long the second fetch of a read may wait for its batch to fill
_HEADERS = {"content_type": "Content-Type"}


class _Loop:
    """One asyncio loop on a daemon thread, shared by every NATS source and sink of the process."""

    _instance: _Loop | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="modelport-nats", daemon=True)
        self.thread.start()
        self.connections: dict[str, Any] = {}

    @classmethod
    def get(cls) -> _Loop:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = _TIMEOUT) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise StreamError(f"NATS did not answer within {timeout:g} s.") from None


def _servers(url: StreamURL) -> str:
    parts = urlsplit(url.raw)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


async def _connect(servers: str, display: str) -> Any:
    nats = require("nats", purpose="NATS JetStream")

    async def on_error(exc: Exception) -> None:
        log.warning("NATS %s: %s", display, exc)

    async def on_disconnect() -> None:
        log.warning("NATS %s: disconnected; reconnecting", display)

    async def on_reconnect() -> None:
        log.info("NATS %s: reconnected", display)

    try:
        # a few tries at start (a wrong address should be an error, not a wait), then reconnect forever
        nc = await nats.connect(
            servers, name="modelport-stream", connect_timeout=3, max_reconnect_attempts=2,
            reconnect_time_wait=0.5, allow_reconnect=True, error_cb=on_error,
            disconnected_cb=on_disconnect, reconnected_cb=on_reconnect,
        )
    except Exception as exc:  # nats raises its own NoServersError, OSError, TimeoutError ...
        raise StreamError(
            f"cannot reach NATS at {display}: {type(exc).__name__}: {exc or 'no server answered'}.",
            hint="is nats-server -js running there? (scripts/services.sh start runs the test servers)",
        ) from None
    nc.options["max_reconnect_attempts"] = -1
    return nc


def _connection(url: StreamURL) -> tuple[_Loop, Any, Any]:
    loop = _Loop.get()
    servers = _servers(url)
    nc = loop.connections.get(servers)
    if nc is None or nc.is_closed:
        nc = loop.call(_connect(servers, _display(url)))
        loop.connections[servers] = nc
    return loop, nc, nc.jetstream(timeout=10)


def _display(url: StreamURL) -> str:
    parts = urlsplit(url.safe)
    return parts.netloc or "localhost:4222"


def _api_error(what: str, exc: Exception) -> StreamError:
    return StreamError(f"NATS {what} failed: {type(exc).__name__}: {exc}")


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more trailing tokens."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def _overlaps(a: str, b: str) -> bool:
    """Whether some subject matches both patterns (enough for the cases a user writes)."""
    return subject_matches(a, b) or subject_matches(b, a)


def _stream_name(subject: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", subject).upper().strip("_") or "MODELPORT"


async def _ensure_stream(js: Any, subject: str, stream: str | None, duplicate_window: float | None) -> tuple[str, float]:
    """The stream that captures ``subject`` (created when none does) and its duplicate window (s)."""
    errors = require("nats.js.errors", purpose="NATS JetStream")
    try:
        name = await js.find_stream_name_by_subject(subject)
    except errors.NotFoundError:
        name = None
    if name is not None and stream is not None and name != stream:
        raise InputError(f"the subject {subject!r} is captured by the stream {name!r}, not {stream!r}.",
                         hint=f"drop stream= or write stream={name}")
    if name is None:
        name = stream or _stream_name(subject)
        params: dict[str, Any] = {"name": name, "subjects": [subject]}
        if duplicate_window is not None:
            params["duplicate_window"] = duplicate_window
        try:
            await js.add_stream(**params)
        except errors.BadRequestError as exc:
            raise StreamError(f"cannot create the stream {name!r} for {subject!r}: {exc.description}") from None
        log.info("created the JetStream stream %s for subject %s", name, subject)
    info = await js.stream_info(name)
    return name, float(getattr(info.config, "duplicate_window", None) or 0.0)


class NatsSink(Sink):
    deduplicates = True

    def __init__(self, loop: _Loop, nc: Any, js: Any, subject: str, stream: str, window: float, where: str) -> None:
        self.loop, self.nc, self.js = loop, nc, js
        self.subject = subject
        self.stream = stream
        self.window = window
        self.deduplicates = window > 0
        self.name = f"nats {where} subject {subject} (stream {stream})"

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        js, subject = self.js, self.subject
        limit = self.nc.max_payload
        futures = []
        for m in messages:
            headers = {"Nats-Msg-Id": m.key}
            payload = m.payload
            for k, v in m.meta.items():
                headers[_HEADERS.get(k, "Modelport-" + k.replace("_", "-").title())] = v
            if len(payload) + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 64 > limit:
                if "Modelport-Reason" not in headers:
                    raise StreamError(f"an output of {len(payload)} bytes exceeds the NATS server's max_payload ({limit}).")
                headers["Modelport-Payload-Truncated"] = str(len(payload))  # a dead letter keeps what fits
                payload = payload[: max(0, limit - 8192)]
            futures.append(await js.publish_async(subject, payload, headers=headers))
        try:
            await asyncio.gather(*futures)
        except Exception as exc:
            raise _api_error(f"publish to {subject}", exc) from None

    def write(self, messages: Sequence[OutMessage]) -> None:
        self.loop.call(self.publish(messages))

    def same_connection(self, nc: Any) -> bool:
        return self.nc is nc


class NatsSource(Source):
    def __init__(self, url: StreamURL, options: SourceOptions) -> None:
        self.where = _display(url)
        self.subject = url.get("subject")
        stream = url.get("stream")
        self.durable = url.get("durable") or "modelport"
        url.check_unused("source")
        if not stream and not self.subject:
            raise InputError(f"{url.safe} names neither a stream nor a subject.",
                             hint="for example nats://localhost:4222?stream=EVENTS&subject=events.>&durable=scorers")
        self.loop, self.nc, self.js = _connection(url)
        self.stream: str = self.loop.call(self._setup(stream, options))
        self.name = f"nats {self.where} stream {self.stream} consumer {self.durable}"
        self.key_prefix = self.stream

    async def _setup(self, stream: str | None, options: SourceOptions) -> str:
        api = require("nats.js.api", purpose="NATS JetStream")
        errors = require("nats.js.errors", purpose="NATS JetStream")
        js = self.js
        if stream is None:
            assert self.subject is not None
            stream, _ = await _ensure_stream(js, self.subject, None, None)
        else:
            try:
                info = await js.stream_info(stream)
            except errors.NotFoundError:
                if not self.subject:
                    raise InputError(f"the JetStream stream {stream!r} does not exist; give subject= to create it.") from None
                stream, _ = await _ensure_stream(js, self.subject, stream, None)
            else:
                subjects = info.config.subjects or []
                if self.subject and not any(_overlaps(s, self.subject) for s in subjects):
                    raise InputError(f"the stream {stream!r} holds subjects {', '.join(subjects)}, not {self.subject!r}.")
        try:
            cinfo = await js.consumer_info(stream, self.durable)
        except errors.NotFoundError:
            config = api.ConsumerConfig(
                durable_name=self.durable, filter_subject=self.subject, ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL, ack_wait=options.redeliver_after,
                max_deliver=-1,  # the consumer dead-letters past --max-deliveries; the server never drops
                max_ack_pending=-1,  # each consumer bounds its own in-flight messages
            )
            try:
                await js.add_consumer(stream, config)
            except errors.BadRequestError as exc:
                raise StreamError(f"cannot create the consumer {self.durable!r} on {stream!r}: {exc.description}") from None
            log.info("created the durable consumer %s on stream %s", self.durable, stream)
        else:
            cfg = cinfo.config
            if cfg.deliver_subject:
                raise InputError(f"the consumer {self.durable!r} of {stream!r} is a push consumer; modelport pulls.",
                                 hint="give another durable= name")
            if self.subject and cfg.filter_subject and cfg.filter_subject != self.subject:
                raise InputError(
                    f"the consumer {self.durable!r} of {stream!r} filters {cfg.filter_subject!r}, not {self.subject!r}.",
                    hint="give the same subject, or another durable= name",
                )
            ack_wait = float(cfg.ack_wait or 30.0)
            if abs(ack_wait - options.redeliver_after) > 1e-3:
                log.warning("the existing consumer %s redelivers after %g s (its ack_wait), not --redeliver-after %g",
                            self.durable, ack_wait, options.redeliver_after)
        self.sub = await js.pull_subscribe_bind(durable=self.durable, stream=stream)
        self.filter = self.subject or ">"
        return stream

    # ------------------------------------------------------------------ reading
    async def _fetch(self, max_messages: int, timeout: float) -> list[Message]:
        nats_errors = require("nats.errors", purpose="NATS JetStream")
        waited = (nats_errors.TimeoutError, asyncio.TimeoutError)
        # one message, waiting up to `timeout` for it; then what else is there, waiting about a
        # millisecond. (One fetch of the whole batch would wait out its timeout for the batch to
        # fill whenever the stream runs dry: latency up to the timeout at a modest rate.)
        try:
            msgs = await self.sub.fetch(1, timeout=max(timeout, 0.001))
        except waited:
            return []
        if max_messages > 1:
            try:
                msgs += await self.sub.fetch(max_messages - 1, timeout=_TOP_UP)
            except waited:
                pass
        out = []
        for msg in msgs:
            md = msg.metadata
            ts = md.timestamp.timestamp() if md.timestamp is not None else None
            out.append(Message(str(md.sequence.stream), msg.data, ts, md.num_delivered, msg.headers, msg))
        return out

    def read(self, max_messages: int, timeout: float) -> list[Message]:
        try:
            return self.loop.call(self._fetch(max_messages, timeout), timeout=timeout + _TIMEOUT)
        except StreamError:
            raise
        except Exception as exc:
            raise _api_error("fetch", exc) from None

    # ------------------------------------------------------------------ acknowledging
    async def _ack(self, messages: Sequence[Message]) -> None:
        for m in messages:
            if not m.handle._ackd:
                await m.handle.ack()

    def ack(self, messages: Sequence[Message]) -> None:
        try:
            self.loop.call(self._ack(messages))
        except StreamError:
            raise
        except Exception as exc:
            raise _api_error("ack", exc) from None

    async def _commit(self, messages: Sequence[Message], writes: Sequence[tuple[NatsSink, Sequence[OutMessage]]]) -> None:
        for sink, outs in writes:
            if outs:
                await sink.publish(outs)
        await self._ack(messages)

    def commit(self, messages: Sequence[Message], writes: Sequence[tuple[Sink, Sequence[OutMessage]]]) -> None:
        if all(isinstance(s, NatsSink) and s.same_connection(self.nc) for s, _ in writes):
            # one trip to the loop: publish, wait for every PubAck, then acknowledge the inputs
            nats_writes = [(s, o) for s, o in writes if isinstance(s, NatsSink)]
            try:
                self.loop.call(self._commit(messages, nats_writes))
            except StreamError:
                raise
            except Exception as exc:
                raise _api_error("commit", exc) from None
            return
        super().commit(messages, writes)

    async def _nak(self, messages: Sequence[Message]) -> None:
        for m in messages:
            if not m.handle._ackd:
                await m.handle.nak()

    def release(self, messages: Sequence[Message]) -> None:
        try:
            self.loop.call(self._nak(messages))
        except Exception as exc:
            log.debug("could not nak %d message(s): %s", len(messages), exc)

    def delivery(self, sinks: Sequence[Sink]) -> str:
        if sinks and all(isinstance(s, NatsSink) and s.deduplicates for s in sinks):
            window = min(s.window for s in sinks if isinstance(s, NatsSink))
            return (f"exactly-once effect: outputs carry Nats-Msg-Id from the input, deduplicated within "
                    f"{window:g} s; inputs acknowledged after the publish acknowledgements")
        return super().delivery(sinks)

    def lag(self) -> GroupLag | None:
        try:
            info = self.loop.call(self.js.consumer_info(self.stream, self.durable))
        except Exception as exc:
            raise _api_error("consumer info", exc) from None
        return GroupLag(int(info.num_pending or 0), int(info.num_ack_pending or 0))

    def dead_letter_sink(self) -> Sink:
        subject = f"{self.stream}.dead-letter"
        if _overlaps(self.filter, subject):
            raise InputError(
                f"the default dead-letter subject {subject!r} would be read again by this source ({self.filter!r}).",
                hint="give --dead-letter nats://...?subject=SOMETHING.ELSE",
            )
        name, window = self.loop.call(_ensure_stream(self.js, subject, f"{self.stream}_DEAD_LETTER", None))
        return NatsSink(self.loop, self.nc, self.js, subject, name, window, self.where)

    async def _close(self) -> None:
        await self.nc.flush(timeout=5)  # the last acknowledgements reach the server
        await self.sub.unsubscribe()

    def close(self) -> None:
        try:
            self.loop.call(self._close(), timeout=10)
        except Exception as exc:
            log.debug("NATS flush at close failed: %s", exc)


def open_source(url: StreamURL, options: SourceOptions) -> Source:
    return NatsSource(url, options)


def open_sink(url: StreamURL, role: str) -> Sink:
    subject = url.require("subject", "nats://localhost:4222?subject=scores")
    stream = url.get("stream")
    window_text = url.get("duplicate_window")
    url.check_unused(role)
    window = url.number("duplicate_window", 120.0) if window_text else None
    loop, nc, js = _connection(url)
    try:
        name, actual = loop.call(_ensure_stream(js, subject, stream, window))
    except (InputError, StreamError):
        raise
    except Exception as exc:
        raise _api_error(f"finding a stream for {subject}", exc) from None
    return NatsSink(loop, nc, js, subject, name, actual, _display(url))
