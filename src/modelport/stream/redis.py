"""Redis Streams: a consumer group as the source, streams as sinks.

    redis://[USER:PASSWORD@]HOST:PORT/DB?stream=events&group=scorers[&field=data][&start=0]   source
    redis://HOST:PORT/DB?stream=scores[&field=data][&maxlen=1000000]                          sink

The message is the value of one entry field (``field``, default ``data``); outputs are written
the same way, dead letters with their reason and error in further fields. ``start`` is where a
new group begins: ``0`` (everything in the stream, the default) or ``$`` (only new entries).

Delivery (see docs/streaming.md):
  * When every sink is on the source's server (same host, port and database), a batch's outputs,
    its dead letters and the XACK of its inputs are one MULTI/EXEC: after a crash either all of
    them happened or none did, and the inputs are delivered again.
  * Entries a consumer received and never acknowledged (it died) are taken over with XAUTOCLAIM
    once they have waited ``redeliver_after`` seconds. So that a consumer that was only slow
    cannot commit what another now scores, the taker first *fences* the previous owner (a key
    that the owner's commit WATCHes and checks), then confirms that the entries are still pending;
    a fenced consumer drops its batches and goes on under a new name.
  * With a sink on another server the outputs are written first and the inputs acknowledged
    after: at-least-once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from modelport._deps import require
from modelport.errors import InputError, StreamError
from modelport.stream.base import (
    PROBLEM_HEADER,
    Fenced,
    GroupLag,
    Message,
    OutMessage,
    PartlyCommitted,
    Sink,
    Source,
    SourceOptions,
    StreamURL,
)

log = logging.getLogger("modelport.stream")

_CLIENTS: dict[str, Any] = {}
_CLIENTS_LOCK = threading.Lock()
_FENCE_SECONDS = 7 * 24 * 3600
_ACK_CHUNK = 10_000


def _base_url(url: StreamURL) -> str:
    parts = urlsplit(url.raw)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _client(url: StreamURL) -> Any:
    """One client (connection pool) per server and database in this process."""
    redis = require("redis", purpose="Redis Streams")
    base = _base_url(url)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(base)
        if client is None:
            try:
                client = redis.Redis.from_url(base, socket_connect_timeout=5, socket_keepalive=True)
            except ValueError as exc:
                raise InputError(f"cannot read the Redis URL {url.safe}: {exc}") from None
            _CLIENTS[base] = client
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StreamError(
            f"cannot reach Redis at {_where(client)}: {exc}.",
            hint="is redis-server running there? (scripts/services.sh start runs the test servers)",
        ) from None
    return client


def _where(client: Any) -> str:
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"{kw['path']} (database {kw.get('db', 0)})"
    return f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def _server(client: Any) -> tuple[Any, ...]:
    kw = client.connection_pool.connection_kwargs
    return (kw.get("path"), kw.get("host"), kw.get("port"), kw.get("db", 0), kw.get("username"))


def _error(what: str, client: Any, exc: Exception) -> StreamError:
    return StreamError(f"Redis at {_where(client)}: {what} failed: {exc}")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisSink(Sink):
    """XADD of each output to one stream."""

    def __init__(self, client: Any, stream: str, field: str = "data", maxlen: int | None = None) -> None:
        self.client = client
        self.stream = stream
        self.field = field.encode()
        self.maxlen = maxlen
        self.name = f"redis {_where(client)} stream {stream}"
        redis = require("redis", purpose="Redis Streams")
        try:
            kind = _text(client.type(stream))
        except redis.RedisError as exc:
            raise _error(f"TYPE {stream}", client, exc) from None
        if kind not in ("stream", "none"):
            raise InputError(f"the Redis key {stream!r} at {_where(client)} holds a {kind}, not a stream.",
                             hint="give another stream= name, or delete that key")

    def add_to(self, pipe: Any, messages: Sequence[OutMessage]) -> None:
        stream, field, maxlen = self.stream, self.field, self.maxlen
        for m in messages:
            fields: dict[Any, Any] = {field: m.payload}
            if m.meta:
                fields.update(m.meta)
            pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)

    def write(self, messages: Sequence[OutMessage]) -> None:
        redis = require("redis", purpose="Redis Streams")
        try:
            with self.client.pipeline(transaction=False) as pipe:
                self.add_to(pipe, messages)
                pipe.execute()
        except redis.RedisError as exc:
            raise _error(f"XADD to {self.stream}", self.client, exc) from None

    def same_server(self, client: Any) -> bool:
        return _server(self.client) == _server(client)


class RedisSource(Source):
    """A member of a consumer group (XREADGROUP), which takes over entries of dead members (XAUTOCLAIM)."""

    def __init__(self, url: StreamURL, options: SourceOptions) -> None:
        self.redis = require("redis", purpose="Redis Streams")
        self.stream = url.require("stream", "redis://localhost:6379/0?stream=events&group=scorers")
        self.group = url.get("group") or "modelport"
        self.field = url.get("field") or "data"
        self._field = self.field.encode()
        start = url.get("start") or "0"
        url.check_unused("source")
        if start not in ("0", "$") and not start.replace("-", "").isdigit():
            raise InputError(f"{url.safe}: start must be 0 (the whole stream), $ (new entries) or an entry id; got {start!r}.")
        self.client = _client(url)
        self.consumer = options.consumer
        self.generation = 0
        self.redeliver_ms = max(1, int(options.redeliver_after * 1000))
        self.name = f"redis {_where(self.client)} stream {self.stream} group {self.group}"
        self.key_prefix = self.stream
        self._fenced_others: set[str] = set()
        self._lock = threading.Lock()
        try:
            self.client.xgroup_create(self.stream, self.group, id=start, mkstream=True)
            log.info("created consumer group %s on stream %s (from %s)", self.group, self.stream, start)
        except self.redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise _error(f"XGROUP CREATE {self.stream} {self.group}", self.client, exc) from None
        except self.redis.RedisError as exc:
            raise _error(f"XGROUP CREATE {self.stream} {self.group}", self.client, exc) from None

    # ------------------------------------------------------------------ reading
    def read(self, max_messages: int, timeout: float) -> list[Message]:
        block = max(1, int(timeout * 1000)) if timeout > 0 else None
        with self._lock:
            consumer, generation = self.consumer, self.generation
        try:
            resp = self.client.xreadgroup(self.group, consumer, {self.stream: ">"}, count=max_messages, block=block)
        except self.redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream or group was deleted under us: make them again
                with contextlib.suppress(self.redis.ResponseError):
                    self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            raise _error("XREADGROUP", self.client, exc) from None
        except self.redis.RedisError as exc:
            raise _error("XREADGROUP", self.client, exc) from None
        if not resp:
            return []
        entries = resp[0][1]
        return [self._message(eid, fields, 1, generation) for eid, fields in entries]

    def _message(self, eid: bytes, fields: dict[bytes, bytes] | None, deliveries: int, generation: int) -> Message:
        mid = eid.decode()
        ts = int(mid.partition("-")[0]) / 1000.0
        fields = fields or {}
        payload = fields.get(self._field)
        if payload is not None and len(fields) == 1:
            return Message(mid, payload, ts, deliveries, None, generation)
        headers = {_text(k): _text(v) for k, v in fields.items() if k != self._field and len(v) <= 4096}
        msg = Message(mid, payload if payload is not None else b"", ts, deliveries, headers, generation)
        if payload is None:
            have = ", ".join(_text(k) for k in fields) or "none"
            headers[PROBLEM_HEADER] = (
                f"the entry has no {self.field!r} field (it has: {have}); the message is read from that field."
            )
            msg.payload = _entry_json(fields)
        return msg

    def reclaim(self, max_messages: int) -> list[Message]:
        """Entries pending longer than ``redeliver_after``: claimed with XAUTOCLAIM, their previous
        owners fenced (see the module docstring). :meth:`confirm` must follow before scoring them."""
        with self._lock:
            consumer, generation = self.consumer, self.generation
        try:
            with self.client.pipeline(transaction=True) as pipe:
                # XAUTOCLAIM scans at most 10 x COUNT entries from the start of the pending list;
                # the same range of XPENDING, in the same transaction, names their owners
                pipe.xpending_range(self.stream, self.group, "-", "+", max_messages * 10)
                pipe.xautoclaim(self.stream, self.group, consumer, self.redeliver_ms, "0-0", count=max_messages)
                pending, claim = pipe.execute()
        except self.redis.RedisError as exc:
            raise _error("XAUTOCLAIM", self.client, exc) from None
        claimed = claim[1]
        deleted = claim[2] if len(claim) > 2 else []
        if deleted:
            log.warning("%d pending entries of %s were deleted from the stream before anyone acknowledged them",
                        len(deleted), self.stream)
        if not claimed:
            return []
        owners = {p["message_id"]: (_text(p["consumer"]), int(p["times_delivered"])) for p in pending}
        others = {owners[eid][0] for eid, _ in claimed if eid in owners and owners[eid][0] != consumer}
        if others:
            try:
                with self.client.pipeline(transaction=False) as pipe:
                    for name in others:
                        pipe.set(self._fence_key(name), b"1", ex=_FENCE_SECONDS)
                    pipe.execute()
            except self.redis.RedisError as exc:
                raise _error("SET (fence)", self.client, exc) from None
            self._fenced_others |= others
            log.warning("took over %d message(s) of %s from %s (not acknowledged for %.1f s)", len(claimed),
                        self.stream, ", ".join(sorted(others)), self.redeliver_ms / 1000)
        out = []
        for eid, fields in claimed:
            if eid not in owners:
                continue  # cannot happen inside one transaction; left pending for the next round
            out.append(self._message(eid, fields, owners[eid][1] + 1, generation))
        return out

    def confirm(self, messages: Sequence[Message]) -> list[Message]:
        """The reclaimed ``messages`` that are still pending here: the previous owner may have
        committed them between the claim and its fence."""
        if not messages:
            return []
        with self._lock:
            consumer = self.consumer
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for m in messages:
                    pipe.xpending_range(self.stream, self.group, m.id, m.id, 1)
                found = pipe.execute()
        except self.redis.RedisError as exc:
            raise _error("XPENDING", self.client, exc) from None
        return [m for m, rows in zip(messages, found) if rows and _text(rows[0]["consumer"]) == consumer]

    def stale(self, messages: Sequence[Message]) -> bool:
        return any(m.handle != self.generation for m in messages)

    # ------------------------------------------------------------------ acknowledging
    def ack(self, messages: Sequence[Message]) -> None:
        ids = [m.id for m in messages]
        try:
            for i in range(0, len(ids), _ACK_CHUNK):
                self.client.xack(self.stream, self.group, *ids[i:i + _ACK_CHUNK])
        except self.redis.RedisError as exc:
            raise _error("XACK", self.client, exc) from None

    def _same_server(self, sinks: Sequence[Sink]) -> bool:
        return all(isinstance(s, RedisSink) and s.same_server(self.client) for s in sinks)

    def commit(self, messages: Sequence[Message], writes: Sequence[tuple[Sink, Sequence[OutMessage]]]) -> None:
        if not self._same_server([s for s, _ in writes]):
            super().commit(messages, writes)
            return
        with self._lock:
            fence = self._fence_key(self.consumer)
        ids = [m.id for m in messages]
        queued: list[tuple[Sink, OutMessage]] = []
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(fence)
                if pipe.exists(fence):
                    raise Fenced(self.consumer)
                pipe.multi()
                for sink, outs in writes:
                    if outs:
                        assert isinstance(sink, RedisSink)
                        sink.add_to(pipe, outs)
                        queued += [(sink, o) for o in outs]
                if ids:
                    pipe.xack(self.stream, self.group, *ids)
                results = pipe.execute(raise_on_error=False)
        except self.redis.WatchError:
            raise Fenced(self.consumer) from None
        except self.redis.RedisError as exc:
            raise _error("MULTI/EXEC (outputs + XACK)", self.client, exc) from None
        # EXEC runs every queued command even when one fails (a key of the wrong type): the XACK
        # happened, so the outputs that failed must be accounted for by the caller
        if ids and isinstance(results[-1], Exception):
            raise _error("XACK in MULTI/EXEC", self.client, results[-1])
        failed = [(sink, out, str(r)) for (sink, out), r in zip(queued, results) if isinstance(r, Exception)]
        if failed:
            raise PartlyCommitted(failed)

    def delivery(self, sinks: Sequence[Sink]) -> str:
        if self._same_server(sinks):
            return (f"exactly-once effect: outputs, dead letters and XACK in one MULTI/EXEC on {_where(self.client)}; "
                    f"entries of a dead consumer are taken over after {self.redeliver_ms / 1000:g} s")
        return super().delivery(sinks)

    # ------------------------------------------------------------------ the group
    def rename(self, consumer: str) -> None:
        with self._lock:
            self.consumer = consumer
            self.generation += 1

    def lag(self) -> GroupLag | None:
        try:
            groups = self.client.xinfo_groups(self.stream)
        except self.redis.RedisError as exc:
            raise _error("XINFO GROUPS", self.client, exc) from None
        for g in groups:
            if _text(g.get("name")) == self.group:
                self._forget_dead()
                lag = g.get("lag")
                return GroupLag(None if lag is None else int(lag), int(g.get("pending", 0)))
        return None

    def _forget_dead(self) -> None:
        """Remove the consumers this one fenced once nothing is pending for them any more."""
        if not self._fenced_others:
            return
        try:
            for c in self.client.xinfo_consumers(self.stream, self.group):
                name = _text(c.get("name"))
                if name in self._fenced_others and int(c.get("pending", 0)) == 0:
                    self.client.xgroup_delconsumer(self.stream, self.group, name)
                    self._fenced_others.discard(name)
        except self.redis.RedisError as exc:
            log.debug("could not tidy the consumer group %s: %s", self.group, exc)

    def dead_letter_sink(self) -> Sink:
        return RedisSink(self.client, f"{self.stream}:dead-letter", self.field)

    def _fence_key(self, consumer: str) -> str:
        return f"modelport:fence:{self.stream}:{self.group}:{consumer}"

    def close(self) -> None:
        """Leave the group when nothing is pending for this consumer (a clean stop)."""
        with self._lock:
            consumer = self.consumer
        with contextlib.suppress(self.redis.RedisError):
            summary = self.client.xpending(self.stream, self.group)
            busy = {_text(c["name"]) for c in summary.get("consumers") or [] if int(c["pending"])}
            if consumer not in busy:
                self.client.xgroup_delconsumer(self.stream, self.group, consumer)


def _entry_json(fields: dict[bytes, bytes]) -> bytes:
    import json

    return json.dumps({_text(k): _text(v) for k, v in fields.items()}).encode()


def open_source(url: StreamURL, options: SourceOptions) -> Source:
    return RedisSource(url, options)


def open_sink(url: StreamURL, role: str) -> Sink:
    stream = url.require("stream", "redis://localhost:6379/0?stream=scores")
    field = url.get("field") or "data"
    maxlen_text = url.get("maxlen")
    url.check_unused(role)
    maxlen = None
    if maxlen_text:
        if not maxlen_text.isdigit() or int(maxlen_text) < 1:
            raise InputError(f"{url.safe}: maxlen must be a positive whole number; got {maxlen_text!r}.")
        maxlen = int(maxlen_text)
    return RedisSink(_client(url), stream, field, maxlen)
