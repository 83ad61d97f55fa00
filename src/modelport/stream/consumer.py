"""The consumer loop, the same for every broker.

Two threads hand batches along a queue:

    reader   source.read (up to ``batch_size`` messages or ``max_wait`` seconds), and every few
             seconds source.reclaim (messages a dead consumer left unacknowledged)
    scorer   decode every message, score all JSON records of the batch in one ONNX Runtime call
             (ChunkScorer: a bad row is found without giving up the batch), render the outputs,
             then source.commit: outputs + dead letters + acknowledgements (one transaction where
             the broker allows it)

Reading the next batch overlaps scoring and committing this one. (A third thread for the commit
was measured slower: the commit is Python work that the GIL serialises with scoring anyway, and
one more thread only adds hand-offs.)

Backpressure: at most ``max_in_flight`` batches are between read and commit; the reader waits
for a free slot before it reads again, so a slow sink stops the reading and the broker keeps the
messages (other consumers of the group may take them). A message the consumer cannot score
never blocks the stream: it goes to the dead-letter destination with its error and its original
payload, and is acknowledged with the batch. Hot swap happens between batches: the scorer takes
the current model when it starts a batch. ``stop()`` (SIGTERM, SIGINT) stops the reading, lets
every batch already read finish and commit, then closes the connections.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from modelport.batch.score import check_columns, resolve_keep
from modelport.bundle.core import Bundle
from modelport.errors import InputError, ModelportError
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
from modelport.stream.metrics import StreamMetrics, observe_many
from modelport.stream.model import ModelSource, StreamModel

log = logging.getLogger("modelport.stream")

_JSON_START = (b"{", b"[")
_READ_TIMEOUT = 0.25  # how long one read waits for a first message (and how quickly a stop is seen)
_LAG_INTERVAL = 5.0


@dataclass
class StreamConfig:
    """Everything a consumer needs; the CLI's options map one to one. ``source``, ``sink`` and
    ``dead_letter`` are URLs, or Source / Sink objects of your own (see :mod:`modelport.stream.base`)."""

    model: str | Bundle
    source: str | Source
    sink: str | Sink
    dead_letter: str | Sink | None = None
    batch_size: int = 500
    max_wait: float = 0.0
    max_in_flight: int = 4
    max_deliveries: int = 5
    redeliver_after: float = 30.0
    max_message_bytes: int | None = 1 << 20
    keep: str | Sequence[str] | None = "rest"
    prefix: str = ""
    poll: float | None = None
    registry_url: str | None = None
    threads: int | None = 1
    name: str | None = None
    drain_timeout: float = 30.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    report_lag: bool = True
    #: the prediction log (docs/monitoring.md): a directory or fsspec URL, or a PredictionLog of your own
    log: Any = None
    log_sample: float = 1.0
    log_rotate: float = 300.0

    def check(self) -> None:
        def positive(name: str, value: float, *, zero: bool = False) -> None:
            if value < 0 or (value == 0 and not zero):
                raise InputError(f"{name} must be {'at least 0' if zero else 'positive'}; got {value!r}.")

        positive("batch_size", self.batch_size)
        positive("max_wait", self.max_wait, zero=True)
        positive("max_in_flight", self.max_in_flight)
        positive("max_deliveries", self.max_deliveries)
        positive("redeliver_after", self.redeliver_after)
        positive("drain_timeout", self.drain_timeout, zero=True)
        if self.max_message_bytes is not None:
            positive("max_message_bytes", self.max_message_bytes)
        if self.poll is not None:
            positive("poll", self.poll, zero=True)
        positive("log_rotate", self.log_rotate)
        if isinstance(self.log_sample, bool) or not isinstance(self.log_sample, (int, float)) \
                or not 0.0 <= self.log_sample <= 1.0:
            raise InputError(f"log_sample must be a number from 0 to 1; got {self.log_sample!r}.",
                             hint="--log-sample 0.2 logs one message in five")


@dataclass
class StreamStats:
    """What a consumer did, for callers of :func:`run` and for the progress line."""

    messages_in: int = 0
    messages_out: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    redelivered: int = 0
    model_versions: list[str] = field(default_factory=list)
    taken_over: int = 0
    errors: int = 0
    elapsed: float = 0.0
    drained: bool = True
    group_lag: int | None = None  # messages in the stream not yet delivered to the group (last reading)

    @property
    def dead(self) -> int:
        return sum(self.dead_letters.values())


@dataclass
class _Batch:
    messages: list[Message]
    outputs: list[OutMessage] = field(default_factory=list)
    dead: list[OutMessage] = field(default_factory=list)
    model: StreamModel | None = None
    rows: int = 0


class StreamConsumer:
    """Scores a stream with a bundle until stopped.

        >>> c = StreamConsumer(StreamConfig("churn.mpk", source="redis://localhost:6379/0?stream=events&group=s",
        ...                                 sink="redis://localhost:6379/0?stream=scores"))
        >>> c.start()            # connects, loads the model, starts the threads; returns at once
        >>> c.stop()             # finishes and commits what was read, then closes; returns StreamStats

    ``wait()`` blocks until a finite source (a file, stdin) is done or :meth:`stop` is called.
    """

    def __init__(self, config: StreamConfig, *, metrics: StreamMetrics | None = None) -> None:
        config.check()
        self.config = config
        self.metrics = metrics or StreamMetrics()
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()
        self._slots = threading.Semaphore(config.max_in_flight)
        self._batches_open = 0
        self._to_score: queue.Queue[_Batch | None] = queue.Queue()
        self._started = 0.0
        self._finished: float | None = None
        self._stats_drained = True
        self._server: Any = None
        self.source: Source | None = None
        self.sink: Sink | None = None
        self.dead_sink: Sink | None = None
        self.models: ModelSource | None = None
        self.prediction_log: Any = None  # monitor.log.ScoredMessages with --log
        self._base_name = config.name or f"{socket.gethostname()}-{os.getpid()}"
        self.consumer_name = self._new_name()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> StreamConsumer:
        """Connect, load the model and start consuming (returns once running)."""
        cfg = self.config
        self.models = ModelSource(cfg.model, registry_url=cfg.registry_url, threads=cfg.threads)
        try:
            self._keep_names = self._check_keep(self.models.current)
            options = SourceOptions(consumer=self.consumer_name, redeliver_after=cfg.redeliver_after)
            self.source = open_source(cfg.source, options) if isinstance(cfg.source, str) else cfg.source
            self.sink = open_sink(cfg.sink) if isinstance(cfg.sink, str) else cfg.sink
            if cfg.dead_letter is None:
                self.dead_sink = self.source.dead_letter_sink()
            elif isinstance(cfg.dead_letter, str):
                self.dead_sink = open_sink(cfg.dead_letter, role="dead-letter")
            else:
                self.dead_sink = cfg.dead_letter
            if cfg.log is not None:
                from modelport.monitor.log import ScoredMessages

                self.prediction_log = ScoredMessages(cfg.log, sample=cfg.log_sample, rotate_seconds=cfg.log_rotate)
            if cfg.metrics_port is not None:
                from modelport.stream.metrics import MetricsServer

                self._server = MetricsServer(self.metrics, cfg.metrics_port, cfg.metrics_host)
        except BaseException:
            self._close_all()
            raise
        self.metrics.share_in_background()
        self._show_model(self.models.current)
        self._poll = cfg.poll if cfg.poll is not None else (5.0 if self.models.follows else 0.0)
        log.info(
            "consuming %s -> %s (dead letters: %s) as %s; %s",
            self.source.name, self.sink.name, self.dead_sink.name, self.consumer_name,
            self.source.delivery([self.sink, self.dead_sink]),
            extra={"consumer": self.consumer_name, "source": self.source.name},
        )
        self._started = time.monotonic()
        for target, name in ((self._read_loop, "reader"), (self._score_loop, "scorer"),
                             (self._housekeeping, "housekeeping")):
            t = threading.Thread(target=target, name=f"modelport-stream-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float | None = None) -> StreamStats:
        """Stop reading, finish and commit every batch already read, close; returns the stats."""
        self._stopping.set()
        limit = self.config.drain_timeout if timeout is None else timeout
        if self._threads and not self._done.wait(limit):
            log.error("gave up waiting for %d batch(es) in flight after %.1f s; they will be delivered again",
                      self._batches_open, limit)
            self._stats_drained = False
        self._close_all()
        return self.stats

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the consumer is done (finite source consumed, or stopped); True when done."""
        return self._done.wait(timeout)

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._done.is_set()

    def __enter__(self) -> StreamConsumer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def stats(self) -> StreamStats:
        m = self.metrics
        end = self._finished if self._finished is not None else time.monotonic()
        return StreamStats(
            messages_in=int(m.total(m.messages_in)),
            messages_out=int(m.total(m.messages_out)),
            dead_letters={k[0]: int(c.value) for k, c in m.dead.children.items() if c.value},
            batches=sum(c.count for c in m.batch_messages.children.values()),
            redelivered=int(m.total(m.redelivered)),
            model_versions=[k[1] for k in m.model_info.children],
            taken_over=int(m.total(m.fenced)),
            errors=int(m.total(m.errors)),
            elapsed=(end - self._started) if self._started else 0.0,
            drained=self._stats_drained,
            group_lag=next((int(c.value) for c in m.group_lag.children.values()), None),
        )

    def _close_all(self) -> None:
        for closeable in (self.source, self.sink, self.dead_sink):
            if closeable is not None:
                with contextlib.suppress(Exception):
                    closeable.close()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.models is not None:
            self.models.close()
        if self.prediction_log is not None:
            self.prediction_log.close()  # every logged row in complete files
            self.prediction_log = None

    def _new_name(self) -> str:
        return f"{self._base_name}-{uuid.uuid4().hex[:6]}"

    def _check_keep(self, model: StreamModel) -> list[str] | None:
        keep = self.config.keep
        if keep is None or keep in ("rest", "all", "none"):
            return None
        names = [keep] if isinstance(keep, str) else list(keep)
        reserved = set(mm.ENVELOPE) | set(self._prediction_names(model))
        clash = [n for n in names if n in reserved]
        if clash:
            raise InputError(
                f"--keep names field(s) {', '.join(clash)}, which every output uses already.",
                hint="name the predictions differently with --prefix pred_",
            )
        return names

    def _prediction_names(self, model: StreamModel) -> list[str]:
        return mm.Predictions(model.bundle.classes, self.config.prefix).names(model.scorer.output_names)

    def _show_model(self, model: StreamModel) -> None:
        info = self.metrics.model_info
        for child in info.children.values():
            child.set(0)
        info.labels(model.name, model.version, model.digest).set(1)

    # ------------------------------------------------------------------ reader
    def _read_loop(self) -> None:
        cfg, src = self.config, self.source
        assert src is not None
        in_counter = self.metrics.messages_in.labels(src.name)
        redelivered = self.metrics.redelivered.labels(src.name)
        errors = self.metrics.errors.labels("read")
        next_reclaim = 0.0
        reclaim_every = max(0.05, min(cfg.redeliver_after / 2, 5.0))
        backoff = 0.0
        try:
            while not self._stopping.is_set():
                if not self._slots.acquire(timeout=_READ_TIMEOUT):
                    continue
                try:
                    msgs: list[Message] = []
                    now = time.monotonic()
                    if now >= next_reclaim:
                        msgs = src.reclaim(cfg.batch_size)
                        if msgs:
                            with self._inflight_lock:
                                msgs = [m for m in src.confirm(msgs) if m.id not in self._inflight]
                                self._inflight.update(m.id for m in msgs)
                        # go on claiming at once while a dead consumer's backlog lasts
                        next_reclaim = now if len(msgs) >= cfg.batch_size else now + reclaim_every
                    if not msgs:
                        msgs = self._read_batch(src)
                        if msgs:
                            with self._inflight_lock:
                                self._inflight.update(m.id for m in msgs)
                    backoff = 0.0
                except ModelportError as exc:
                    self._slots.release()
                    errors.inc()
                    backoff = min(max(backoff * 2, 0.1), 5.0)
                    log.error("reading failed (retrying in %.1f s): %s", backoff, exc)
                    self._stopping.wait(backoff)
                    continue
                if not msgs:
                    self._slots.release()
                    if src.exhausted:
                        break
                    continue
                in_counter.inc(len(msgs))
                again = sum(1 for m in msgs if m.deliveries > 1)
                if again:
                    redelivered.inc(again)
                with self._inflight_lock:
                    self._batches_open += 1
                self._to_score.put(_Batch(msgs))
                if src.exhausted:
                    break
        except BaseException as exc:  # a bug: say so, and let what was read finish
            log.exception("the reader stopped: %s", exc)
            self.metrics.errors.labels("read").inc()
        finally:
            self._to_score.put(None)

    def _read_batch(self, src: Source) -> list[Message]:
        cfg = self.config
        msgs = src.read(cfg.batch_size, _READ_TIMEOUT)
        if msgs and cfg.max_wait > 0 and len(msgs) < cfg.batch_size and not src.exhausted:
            deadline = time.monotonic() + cfg.max_wait
            while len(msgs) < cfg.batch_size and not self._stopping.is_set() and not src.exhausted:
                remaining = deadline - time.monotonic()
                if remaining < 0.001:
                    break
                msgs += src.read(cfg.batch_size - len(msgs), remaining)
        return msgs

    # ------------------------------------------------------------------ scorer
    def _score_loop(self) -> None:
        try:
            while True:
                batch = self._to_score.get()
                if batch is None:
                    break
                model = self.models.current if self.models is not None else None
                assert model is not None
                t0 = time.perf_counter()
                try:
                    self._process(batch, model)
                except BaseException as exc:  # a bug in scoring: isolate messages, never stop the stream
                    log.exception("scoring a batch failed; scoring its messages one by one: %s", exc)
                    self.metrics.errors.labels("score").inc()
                    self._process_one_by_one(batch, model)
                ml = (model.name, model.version)
                self.metrics.score.labels(*ml).observe(time.perf_counter() - t0)
                self.metrics.batch_messages.labels(*ml).observe(len(batch.messages))
                self.metrics.batch_rows.labels(*ml).observe(batch.rows)
                self._commit(batch)
        except BaseException as exc:  # a bug: say so; what was read and not committed is delivered again
            log.exception("the scorer stopped: %s", exc)
            self.metrics.errors.labels("score").inc()
        finally:
            self._finished = time.monotonic()
            self._done.set()

    def _process_one_by_one(self, batch: _Batch, model: StreamModel) -> None:
        batch.outputs, batch.dead, batch.rows = [], [], 0
        for m in batch.messages:
            single = _Batch([m])
            try:
                self._process(single, model)
            except Exception as exc:
                single.outputs = []
                single.dead = [self._dead(m, mm.ERROR, f"{type(exc).__name__}: {exc}", model)]
            batch.outputs += single.outputs
            batch.dead += single.dead
            batch.rows += single.rows

    def _process(self, batch: _Batch, model: StreamModel) -> None:
        """Decode, score (one ONNX Runtime call for every JSON record of the batch) and render."""
        cfg = self.config
        batch.model = model
        limit = cfg.max_message_bytes
        max_deliveries = cfg.max_deliveries
        column_set = model.column_set
        dead = batch.dead
        json_msgs: list[tuple[Message, list[dict[str, Any]], bool]] = []
        arrow_msgs: list[Message] = []
        for m in batch.messages:
            payload = m.payload
            if (m.deliveries > max_deliveries or m.headers or (limit is not None and len(payload) > limit)
                    or payload[:1] not in _JSON_START):
                # the uncommon cases, in order: redelivered too often, a problem the source saw, too
                # large, Arrow (or not JSON at all, which the JSON decoder then says)
                if m.deliveries > max_deliveries:
                    dead.append(self._dead(m, mm.MAX_DELIVERIES, (
                        f"the message was delivered {m.deliveries} times without being acknowledged "
                        f"(--max-deliveries {max_deliveries}); a consumer may have crashed while scoring it."), model))
                    continue
                if m.headers and PROBLEM_HEADER in m.headers:
                    dead.append(self._dead(m, mm.MALFORMED, m.headers[PROBLEM_HEADER], model))
                    continue
                if limit is not None and len(payload) > limit:
                    dead.append(self._dead(m, mm.TOO_LARGE, (
                        f"the message has {len(payload):,} bytes; the limit is {limit:,} (--max-message-bytes)."), model))
                    continue
                if mm.is_arrow(payload, m.headers):
                    arrow_msgs.append(m)
                    continue
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                dead.append(self._dead(m, mm.MALFORMED, f"the message is not valid JSON: {exc}", model))
                continue
            try:
                if type(doc) is dict and doc.keys() >= column_set:  # the common case: one complete record
                    json_msgs.append((m, [doc], True))
                    continue
                records, single = mm.records_of(doc, column_set)
                for i, rec in enumerate(records):
                    if not rec.keys() >= column_set:
                        check_columns(model.bundle, list(rec), where="the message" if single else f"record {i} of the message")
            except mm.MalformedMessage as exc:
                dead.append(self._dead(m, mm.MALFORMED, exc.message, model))
                continue
            except InputError as exc:
                dead.append(self._dead(m, mm.INPUT, exc.message, model))
                continue
            json_msgs.append((m, records, single))
        if json_msgs:
            self._score_json(batch, model, json_msgs)
        for m in arrow_msgs:
            self._score_arrow(batch, model, m)

    def _score_json(self, batch: _Batch, model: StreamModel, json_msgs: list[tuple[Message, list[dict[str, Any]], bool]]) -> None:
        counts = [len(recs) for _, recs, _ in json_msgs]
        all_records = [r for _, recs, _ in json_msgs for r in recs]
        n = len(all_records)
        batch.rows += n
        cols = {c: [r[c] for r in all_records] for c in model.columns}
        plog = self.prediction_log
        if plog is None:
            preds, scored, rejects = model.scorer.score_columns(cols, n)
        else:
            t0 = time.perf_counter()
            prepared = model.scorer.prepare(cols, n)
            preds, scored, rejects = model.scorer.run(prepared)
            took = time.perf_counter() - t0
            logged: list[tuple[str, int, int]] = []
        starts = np.cumsum([0, *counts])
        bad_msgs: dict[int, list[str]] = {}
        if len(rejects):
            owners = np.searchsorted(starts, np.asarray(rejects.rows), side="right") - 1
            for owner, bad_row, reason in zip(owners.tolist(), rejects.rows, rejects.reasons):
                bad_msgs.setdefault(owner, []).append(
                    reason if json_msgs[owner][2] else f"record {bad_row - int(starts[owner])}: {reason}"
                )
        renderer = mm.Predictions(model.bundle.classes, self.config.prefix)
        rows = renderer.rows(preds)
        pred_names = rows[0].keys() if rows else ()
        reserved = set(mm.ENVELOPE) | set(pred_names)
        envelope = {"model_name": model.name, "model_version": model.version, "model_digest": model.digest,
                    "timestamp": mm.now_iso()}
        # position of each input row among the scored rows
        rank = (np.cumsum(scored) - 1).tolist() if len(rejects) else None
        starts_at = starts.tolist()
        keep_mode = self.config.keep if self._keep_names is None else "names"
        n_columns = len(model.column_set)
        plain_rest = keep_mode in ("rest", None)
        prefix = self.source.key_prefix if self.source is not None else ""
        dumps = orjson.dumps
        outputs = batch.outputs
        for i, (m, recs, single) in enumerate(json_msgs):
            if bad_msgs and i in bad_msgs:
                reasons = bad_msgs[i]
                text = reasons[0] if len(reasons) == 1 else f"{len(reasons)} records cannot be scored: " + "; ".join(reasons[:5])
                batch.dead.append(self._dead(m, mm.INPUT, text, model))
                continue
            start = starts_at[i]
            if single and (keep_mode == "none" or (plain_rest and len(recs[0]) == n_columns)):
                # the common case: one record with the model's columns and nothing else to pass through
                row = rows[start] if rank is None else rows[rank[start]]
                outputs.append(OutMessage(f"{prefix}:{m.id}", dumps({"id": m.id, **row, **envelope})))
                if plog is not None:
                    logged.append((m.id, start, 1))
                continue
            out_rows = []
            clash: list[str] = []
            for j, rec in enumerate(recs):
                row = rows[start + j] if rank is None else rows[rank[start + j]]
                kept = self._kept(rec, keep_mode, model.column_set)
                if kept:
                    hit = reserved.intersection(kept)
                    if hit:
                        clash = sorted(hit)
                        break
                    row = {**kept, **row}
                out_rows.append(row)
            if clash:
                batch.dead.append(self._dead(m, mm.INPUT, (
                    f"the message's field(s) {', '.join(clash)} would be overwritten by the output's own fields; "
                    "pass --prefix pred_ (renames the predictions) or --keep NAMES (the fields to pass through)."), model))
                continue
            if single:
                doc = {"id": m.id, **out_rows[0], **envelope}
            else:
                doc = {"id": m.id, "predictions": out_rows, **envelope}
            outputs.append(OutMessage(f"{prefix}:{m.id}", dumps(doc)))
            if plog is not None:
                logged.append((m.id, start, len(recs)))
        if plog is not None and logged:
            plog.write(model.bundle, model.name, model.version, model.digest, logged, prepared, preds, scored,
                       cols, model.scorer.builder.has_categories, took)

    def _kept(self, rec: dict[str, Any], mode: Any, column_set: frozenset[str]) -> dict[str, Any] | None:
        if mode == "rest" or mode is None:
            if len(rec) == len(column_set):
                return None  # it has the model's columns and nothing else
            return {k: v for k, v in rec.items() if k not in column_set}
        if mode == "all":
            return dict(rec)
        if mode == "none":
            return None
        return {k: rec.get(k) for k in self._keep_names or ()}

    def _score_arrow(self, batch: _Batch, model: StreamModel, m: Message) -> None:
        from modelport._deps import require

        try:
            table = mm.read_arrow(m.payload)
            check_columns(model.bundle, table.column_names, where="the Arrow message")
            kept = resolve_keep(model.bundle, table.column_names, self.config.keep)
        except InputError as exc:
            reason = mm.MALFORMED if isinstance(exc, mm.MalformedMessage) else mm.INPUT
            batch.dead.append(self._dead(m, reason, exc.message, model))
            return
        n = table.num_rows
        batch.rows += n
        cols = {c: table.column(c) for c in model.columns}
        t0 = time.perf_counter()
        prepared = model.scorer.prepare(cols, n)
        preds, scored, rejects = model.scorer.run(prepared)
        took = time.perf_counter() - t0
        if len(rejects):
            shown = "; ".join(f"row {r}: {why}" for r, why in zip(rejects.rows[:5], rejects.reasons[:5]))
            batch.dead.append(self._dead(m, mm.INPUT, f"{len(rejects)} of {n} rows cannot be scored: {shown}", model))
            return
        prefix = self.config.prefix
        renderer = mm.Predictions(model.bundle.classes, prefix)
        text_sink = self.sink is not None and not self.sink.binary
        taken = set(renderer.names(list(preds))) if text_sink else {prefix + k for k in preds}
        clash = [c for c in kept if c in taken]
        if clash:
            batch.dead.append(self._dead(m, mm.INPUT, (
                f"the message's column(s) {', '.join(clash)} would be overwritten by the prediction columns; "
                "pass --prefix pred_ or --keep NAMES."), model))
            return
        if self.prediction_log is not None:
            self.prediction_log.write(model.bundle, model.name, model.version, model.digest, [(m.id, 0, n)], prepared,
                                      preds, scored, cols, model.scorer.builder.has_categories, took)
        envelope = {"model_name": model.name, "model_version": model.version,
                    "model_digest": model.digest, "timestamp": mm.now_iso()}
        key = f"{self.source.key_prefix if self.source else ''}:{m.id}"
        if text_sink:  # a JSON-lines sink: the same predictions as a JSON batch would get
            kept_rows = table.select(kept).to_pylist() if kept else [{} for _ in range(n)]
            rows = [{**k, **p} for k, p in zip(kept_rows, renderer.rows(preds))]
            batch.outputs.append(OutMessage(key, orjson.dumps({"id": m.id, "predictions": rows, **envelope})))
            return
        pa = require("pyarrow", purpose="Arrow stream messages")
        out = table.select(kept)
        for name, values in preds.items():
            out = out.append_column(prefix + name, pa.array(values))
        payload = mm.write_arrow(out, {"id": m.id, **envelope})
        batch.outputs.append(OutMessage(key, payload, {"content_type": mm.ARROW_CONTENT_TYPE}))

    def _dead(self, m: Message, reason: str, error: str, model: StreamModel | None) -> OutMessage:
        source = self.source.name if self.source is not None else ""
        prefix = self.source.key_prefix if self.source is not None else ""
        meta = mm.dead_letter_meta(reason=reason, error=error, message_id=m.id, deliveries=m.deliveries,
                                   source=source, model=model)
        return OutMessage(f"{prefix}:{m.id}:dead-letter", m.payload, meta)

    # ------------------------------------------------------------------ commit
    def _commit(self, batch: _Batch) -> None:
        """Write a batch's outputs and dead letters and acknowledge its messages (one transaction where
        the broker allows it); whatever happens, its in-flight slot is freed."""
        src, sink, dead_sink = self.source, self.sink, self.dead_sink
        assert src is not None and sink is not None and dead_sink is not None
        m = self.metrics
        msgs = batch.messages
        try:
            if src.stale(msgs):
                src.release(msgs)
                return
            t0 = time.perf_counter()
            src.commit(msgs, [(sink, batch.outputs), (dead_sink, batch.dead)])
            m.commit.labels().observe(time.perf_counter() - t0)
            stamps = [x.timestamp for x in msgs if x.timestamp is not None]
            if stamps:
                observe_many(m.lag.labels(), time.time() - np.asarray(stamps))
            self._count(batch, batch.outputs, batch.dead)
        except PartlyCommitted as exc:
            self._recover(batch, exc)
        except Fenced:
            m.fenced.labels().inc()
            old = self.consumer_name
            self.consumer_name = self._new_name()
            src.rename(self.consumer_name)
            log.warning("another consumer took over the messages of %s (it did not acknowledge within %.1f s); "
                        "dropped its batches in flight, going on as %s", old, self.config.redeliver_after,
                        self.consumer_name)
        except ModelportError as exc:
            m.errors.labels("commit").inc()
            log.error("committing a batch of %d message(s) failed; they will be delivered again: %s", len(msgs), exc)
            src.release(msgs)
            self._stopping.wait(0.5)
        finally:
            with self._inflight_lock:
                self._inflight.difference_update(x.id for x in msgs)
                self._batches_open -= 1
            self._slots.release()

    def _count(self, batch: _Batch, outputs: Sequence[OutMessage], dead: Sequence[OutMessage]) -> None:
        m = self.metrics
        if outputs and batch.model is not None:
            m.messages_out.labels(batch.model.name, batch.model.version).inc(len(outputs))
        for d in dead:
            m.dead.labels(d.meta.get("reason", mm.ERROR)).inc()
        if dead:
            log.warning("%d message(s) dead-lettered to %s; first: %s (%s)", len(dead),
                        self.dead_sink.name if self.dead_sink else "", dead[0].meta.get("error"), dead[0].meta.get("id"))

    def _recover(self, batch: _Batch, exc: PartlyCommitted) -> None:
        """The inputs are acknowledged but some outputs were not written: dead-letter those inputs
        (with the original payload, so they can be sent again), or say loudly which were lost."""
        self.metrics.errors.labels("commit").inc()
        failed = {id(out) for _, out, _ in exc.failed}
        by_key = {f"{self.source.key_prefix if self.source else ''}:{m.id}": m for m in batch.messages}
        letters, lost = [], []
        for sink, out, error in exc.failed:
            msg = by_key.get(out.key)
            if msg is None:  # a dead letter itself could not be written
                lost.append(out.meta.get("id", out.key))
                continue
            letters.append(self._dead(msg, mm.ERROR, f"its output could not be written to {sink.name}: {error}",
                                      batch.model))
        if letters and self.dead_sink is not None:
            try:
                self.dead_sink.write(letters)
            except ModelportError as err:
                log.error("could not dead-letter either: %s", err)
                lost += [d.meta["id"] for d in letters]
                letters = []
        written = [o for o in batch.outputs if id(o) not in failed]
        self._count(batch, written, [d for d in batch.dead if id(d) not in failed] + letters)
        if lost:
            log.error("LOST %d message(s), acknowledged without their output or dead letter: ids %s",
                      len(lost), ", ".join(lost[:20]))

    # ------------------------------------------------------------------ housekeeping
    def _housekeeping(self) -> None:
        """Gauges (in-flight batches, the group's lag) and hot swap, a few times a second."""
        next_lag = 0.0
        next_poll = time.monotonic() + self._poll if self._poll else float("inf")
        while not self._done.wait(0.2):
            now = time.monotonic()
            self.metrics.inflight.labels().set(self._batches_open)
            try:
                if self.config.report_lag and now >= next_lag:
                    next_lag = now + _LAG_INTERVAL
                    self._read_lag()
                if now >= next_poll:
                    next_poll = now + (self._poll or 5.0)
                    self._swap()
            except Exception as exc:  # a bug here must not end the gauges or the hot swap for good
                log.exception("housekeeping failed: %s", exc)

    def _read_lag(self) -> None:
        src, m = self.source, self.metrics
        assert src is not None
        try:
            lag = src.lag()
        except ModelportError as exc:
            log.debug("could not read the group's lag: %s", exc)
            return
        if lag is not None:
            if lag.lag is not None:
                m.group_lag.labels(src.name).set(lag.lag)
            if lag.pending is not None:
                m.group_pending.labels(src.name).set(lag.pending)

    def _swap(self) -> None:
        """Make a new model version current when the alias (or the file) moved; the scorer takes it
        for its next batch, so a batch is scored by one version."""
        if self.models is None:
            return
        new = self.models.poll()
        if new is None:
            return
        try:
            self._check_keep(new)
        except InputError as exc:
            log.error("not switching to %s version %s: %s", new.name, new.version, exc)
            return
        self.models.current = new
        self.metrics.swaps.labels().inc()
        self._show_model(new)
        log.info("now scoring with %s version %s (%s)", new.name, new.version, new.digest,
                 extra={"model": new.name, "version": new.version})


def run(model: str | Bundle, *, source: str, sink: str, **options: Any) -> StreamStats:
    """Consume ``source`` with ``model`` into ``sink`` until the source ends (a file, stdin) or
    SIGTERM / SIGINT arrives (in the main thread); finishes and acknowledges what was read.

    ``options`` are :class:`StreamConfig`'s fields (``dead_letter``, ``batch_size``, ``max_wait``,
    ``max_in_flight``, ``max_deliveries``, ``redeliver_after``, ``keep``, ``prefix``, ``poll``, ...),
    plus ``consumers=N`` to run N processes in one consumer group.
    """
    consumers = int(options.pop("consumers", 1))
    unknown = set(options) - set(StreamConfig.__dataclass_fields__)
    if unknown:
        raise InputError(f"unknown option(s) for modelport.stream.run: {', '.join(sorted(unknown))}.")
    config = StreamConfig(model, source=source, sink=sink, **options)
    if consumers > 1:
        from modelport.stream.supervisor import supervise

        return supervise(config, consumers)
    return run_config(config)


def tune_gc() -> None:
    """For a process that does nothing but stream (``modelport stream`` and its children): move
    everything loaded so far (modules, the model) out of the garbage collector's sight and collect
    the young generation less often. Measured: a quarter less CPU per message, because the full
    collections that the batches' short-lived objects keep triggering no longer walk every object
    of every imported module. Not done for a caller's own process: frozen objects are never
    collected, and their cycles would leak there."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def run_config(config: StreamConfig, *, own_process: bool = False, parent: int | None = None) -> StreamStats:
    """Run one consumer until its source ends, SIGTERM / SIGINT, or (``parent``) that process is gone."""
    consumer = StreamConsumer(config)
    consumer.start()
    if own_process:
        tune_gc()
    with graceful_signals(consumer._stopping.is_set, consumer._stopping.set, "the batches in flight", log):
        while not consumer.wait(0.5):
            if parent is not None and os.getppid() != parent:
                log.warning("the supervising process %d is gone: finishing the batches in flight", parent)
                consumer._stopping.set()
    return consumer.stop()



