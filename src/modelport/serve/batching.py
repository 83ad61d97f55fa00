"""Adaptive batching for one served model version, with the model always off the event loop.

Requests queue per model version. Whenever one of the version's scoring slots is free, everything
queued with the same feed layout (up to ``max_batch_size`` rows) runs as one ONNX Runtime call in
a scoring thread, and the result rows are handed back to each request in order. A request that
arrives while the model is idle is scored on the next turn of the event loop, together with
whatever other requests arrived in the same turn (under load that is many: the per-call cost of
ONNX Runtime and of this code is then shared), and never waits for a timer: the
``max_queue_delay`` wait is only spent when the model has just run a multi-request batch, i.e.
when more requests are likely on their way. Each request keeps its own requested outputs, and
one request's rows never reach another request. If a batch fails, its requests are re-run one by
one so that only the faulty one gets the error.

The event loop never runs a model: it only moves requests in and answers out, so health probes
and the other models stay answered however slow one model is. The bounds that keep one model
from exhausting the server:

* **concurrency**: at most ``max_concurrency`` calls of one version run at once, each in a thread
  of a :class:`ScoringThreads` pool shared by all versions; the pool starts a thread whenever all
  of its threads are busy, so one model's calls never wait for another model's;
* **queue**: at most ``max_queue`` requests wait; more are shed (OverloadedError, HTTP 503 with
  Retry-After);
* **time**: a request not answered within its timeout gets DeadlineExceededError (HTTP 504) at
  that moment, whether it is queued or running; once every request of a running call has given
  up (timed out, or its caller cancelled), the call itself is stopped with ONNX Runtime's
  ``RunOptions.terminate``, so a runaway graph (an endless Loop) frees its thread and slot;
* **shutdown**: :meth:`Batcher.stop` fails what is queued and stops what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.serve.errors import DeadlineExceededError, NotReadyError, OverloadedError

log = logging.getLogger("modelport.serve")

# run(feeds, outputs, run_options=...) -> {output name: array}; run_options is an
# onnxruntime.RunOptions whose ``terminate`` may be set from another thread to stop the call
RunFn = Callable[..., dict[str, np.ndarray]]


@dataclass
class BatchStats:
    """What the batcher reports per batch (for metrics): rows, requests, queue waits, compute time."""

    rows: int
    requests: int
    queue_seconds: list[float]
    compute_seconds: float


@dataclass(eq=False, slots=True)
class _Item:
    feeds: dict[str, np.ndarray]
    rows: int
    outputs: list[str]
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float
    key: tuple[Any, ...] = field(default=())
    solo: bool = False  # re-run alone after its batch failed
    run: _Run | None = None  # the call scoring it, once started


class _Run:
    """One ONNX Runtime call for a batch of requests; the thread fills result/error/compute."""

    __slots__ = ("compute", "error", "finished", "items", "options", "parts", "started", "stop_error", "stopped")

    def __init__(self, items: list[_Item], options: Any) -> None:
        self.items = items
        self.options = options
        self.started = time.perf_counter()
        self.finished = False
        self.stopped = False
        self.stop_error: BaseException | None = None
        self.parts: list[dict[str, np.ndarray]] | None = None
        self.error: BaseException | None = None
        self.compute = 0.0

    def stop(self, error: BaseException | None = None) -> None:
        """Stop the call (thread-safe in ONNX Runtime); its requests get ``error`` if given."""
        if self.stopped:
            return
        self.stopped = True
        self.stop_error = error
        if self.options is not None:
            self.options.terminate = True


class ScoringThreads(Executor):
    """The threads that run models, shared by every batcher of a server.

    A thread is started whenever a call is posted and every existing thread is busy, so a call
    never waits for a thread: the bound on concurrency is each batcher's ``per_model`` slots, not
    the pool. The pool therefore never holds more threads than the busiest moment needed. The
    threads are daemons: a call that cannot be stopped must not keep the process from exiting.
    """

    def __init__(self, per_model: int = 1, *, name: str = "modelport-score") -> None:
        if int(per_model) < 1:
            raise ValueError(f"per_model must be at least 1; got {per_model!r}.")
        self.per_model = int(per_model)
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._closed = False
        self._batchers: weakref.WeakSet[Batcher] = weakref.WeakSet()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in a pool thread (the batcher's fast path: no Future)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the scoring threads are shut down")
            self._jobs.put((fn, args))
            self._busy += 1
            if self._idle:
                self._idle -= 1  # an idle thread is blocked in get() and takes it
            else:
                t = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self.post(job)
        return future

    def _work(self) -> None:
        _batch_priority()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args = job
            try:
                fn(*args)
            except BaseException:  # a job reports its own errors; this is the last resort
                log.exception("a scoring thread's job failed")
            with self._lock:
                self._busy -= 1
                self._idle += 1

    @property
    def busy(self) -> int:
        """Calls running or waiting for a thread."""
        return self._busy

    def register(self, batcher: Batcher) -> None:
        self._batchers.add(batcher)

    def stop_all(self, error: BaseException) -> None:
        """Stop every batcher that uses these threads (see :meth:`Batcher.stop`)."""
        for b in list(self._batchers):
            b.stop(error)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        if wait:
            for t in threads:
                t.join()


class Batcher:
    """Queue and batch scoring calls for one runtime. Create it inside the running event loop.

    ``max_concurrency`` defaults to the pool's ``per_model`` (1 without a pool).
    """

    def __init__(
        self,
        run: RunFn,
        output_order: list[str],
        *,
        max_batch_size: int = 8,
        max_queue_delay: float = 0.0,
        max_queue: int = 2048,
        max_concurrency: int | None = None,
        executor: Executor | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self._run = run
        self._order = output_order
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_queue_delay = max(0.0, float(max_queue_delay))
        self.max_queue = max(1, int(max_queue))
        if executor is None:
            executor = ScoringThreads(per_model=max_concurrency or 1)
        self._executor = executor
        self._post = executor.post if isinstance(executor, ScoringThreads) else executor.submit
        if max_concurrency is None:
            max_concurrency = executor.per_model if isinstance(executor, ScoringThreads) else 1
        self.max_concurrency = max(1, int(max_concurrency))
        if isinstance(executor, ScoringThreads):
            executor.register(self)
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._running = 0  # slots in use: calls running, and a batch waiting out max_queue_delay
        self._active: set[_Run] = set()
        self._held: list[list[_Item]] = []  # batches waiting out max_queue_delay
        self._recent_multi = False  # the last batch held several requests: load is on
        self._options = _run_options_factory()
        self.inflight = 0

    @property
    def queued(self) -> int:
        return sum(1 for i in self._queue if not i.future.done())

    @property
    def running(self) -> int:
        return len(self._active)

    async def submit(
        self, feeds: dict[str, np.ndarray], rows: int, outputs: list[str], *, timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """Score ``feeds`` (``rows`` rows) and return the ``outputs`` for exactly these rows.

        With ``timeout`` (seconds), a request not answered in time gets DeadlineExceededError at
        that moment; a queued one is then never scored, and a running call whose every request
        has given up is stopped.
        """
        if len(self._queue) >= self.max_queue:
            self._queue = deque(i for i in self._queue if not i.future.done())  # drop the ones that gave up
            if len(self._queue) >= self.max_queue:
                raise OverloadedError(
                    f"the model's queue is full ({self.max_queue} requests waiting); request shed.",
                    hint="retry after a short back-off, or run more workers / raise --max-queue",
                )
        if timeout is not None and timeout <= 0:
            raise DeadlineExceededError("the request timed out before it reached the model's queue.")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        item = _Item(feeds, rows, outputs, loop.create_future(), time.perf_counter(), _key(feeds))
        self._queue.append(item)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._pump)  # next turn: requests read in this turn join the batch
        timer = loop.call_later(timeout, self._expire, item) if timeout else None
        self.inflight += 1
        try:
            return await item.future
        except asyncio.CancelledError:  # the caller gave up (client gone, server stopping)
            self._maybe_stop(item)
            raise
        finally:
            self.inflight -= 1
            if timer is not None:
                timer.cancel()

    # ------------------------------------------------------------------ scheduling (event loop)
    def _pump(self) -> None:
        self._scheduled = False
        while self._running < self.max_concurrency and self._queue:
            batch = self._take()
            if not batch:
                continue
            if (
                self.max_queue_delay > 0
                and self._recent_multi
                and not batch[0].solo
                and sum(i.rows for i in batch) < self.max_batch_size
            ):
                self._running += 1  # the slot is held while the batch waits for companions
                self._held.append(batch)
                assert self._loop is not None
                self._loop.call_later(self.max_queue_delay, self._release, batch)
                continue
            self._start(batch)

    def _release(self, batch: list[_Item]) -> None:
        self._running -= 1
        self._held.remove(batch)
        batch = [i for i in batch if not i.future.done()]
        if batch:
            batch.extend(self._take(sum(i.rows for i in batch), batch[0].key))
            self._start(batch)
        self._pump()

    def _take(self, rows: int = 0, key: tuple[Any, ...] | None = None) -> list[_Item]:
        """Pop queued requests with the same feed layout, up to max_batch_size rows in all."""
        batch: list[_Item] = []
        skipped: list[_Item] = []
        while self._queue:
            item = self._queue.popleft()
            if item.future.done():  # timed out or cancelled while queued
                continue
            if item.solo or (batch and batch[0].solo):
                if batch or rows:
                    skipped.append(item)
                    break
                batch.append(item)
                break
            if key is None:
                key = item.key
            if item.key != key:  # another feed layout: it goes in a later batch
                skipped.append(item)
                continue
            if (batch or rows) and rows + item.rows > self.max_batch_size:
                skipped.append(item)
                break
            batch.append(item)
            rows += item.rows
            if rows >= self.max_batch_size:
                break
        self._queue.extendleft(reversed(skipped))
        return batch

    def _start(self, batch: list[_Item]) -> None:
        self._running += 1
        self._recent_multi = len(batch) > 1
        run = _Run(batch, self._options())
        for item in batch:
            item.run = run
        self._active.add(run)
        try:
            self._post(self._work, run)
        except RuntimeError:  # the pool is shut down: the server is stopping (no recursion via _finished)
            self._running -= 1
            self._active.discard(run)
            run.finished = True
            for item in batch:
                _fail(item, NotReadyError("the server is shutting down; request refused.",
                                          hint="retry on another replica"))

    def _finished(self, run: _Run) -> None:
        self._running -= 1
        self._active.discard(run)
        run.finished = True
        items = run.items
        if run.error is None and run.parts is not None:
            for item, part in zip(items, run.parts):
                if not item.future.done():
                    item.future.set_result(part)
            if self._on_batch is not None:
                waits = [run.started - i.enqueued for i in items]
                self._on_batch(BatchStats(sum(i.rows for i in items), len(items), waits, run.compute))
        elif run.stopped:  # everyone gave up, or the server stops: nobody waits for a re-run
            if run.stop_error is not None:
                for item in items:
                    _fail(item, run.stop_error)
        elif len(items) == 1:
            _fail(items[0], run.error or RuntimeError("the scoring call returned nothing"))
        else:  # find the culprit: each request re-runs alone, so nobody else fails because of it
            for item in reversed(items):
                if not item.future.done():
                    item.solo = True
                    item.run = None
                    self._queue.appendleft(item)
        self._pump()

    def _expire(self, item: _Item) -> None:
        if item.future.done():
            return
        waited = time.perf_counter() - item.enqueued
        if item.run is None:
            text = (f"the request timed out after {waited:.3g} s in the model's queue "
                    f"(all {self.max_concurrency} of its scoring slot(s) were busy).")
        else:
            text = f"the request timed out after {waited:.3g} s while the model was scoring it."
        item.future.set_exception(DeadlineExceededError(
            text, hint="retry later; raise --request-timeout for slow models, or --max-concurrency where cores are free",
        ))
        self._maybe_stop(item)

    def _maybe_stop(self, item: _Item) -> None:
        """Stop the call scoring ``item`` if none of its requests waits for it any more."""
        run = item.run
        if run is not None and not run.finished and all(i.future.done() for i in run.items):
            run.stop()

    def stop(self, error: BaseException) -> None:
        """Fail every queued and running request with ``error`` and stop the running calls."""
        while self._queue:
            _fail(self._queue.popleft(), error)
        for batch in self._held:
            for item in batch:
                _fail(item, error)
        for run in list(self._active):
            run.stop(error)
            for item in run.items:
                _fail(item, error)

    # ------------------------------------------------------------------ the call (scoring thread)
    def _work(self, run: _Run) -> None:
        items = run.items
        try:
            if not run.stopped:
                if len(items) == 1:
                    feeds, wanted = items[0].feeds, items[0].outputs
                else:
                    feeds = {k: np.concatenate([i.feeds[k] for i in items]) for k in items[0].feeds}
                    union = set().union(*(i.outputs for i in items))
                    wanted = [n for n in self._order if n in union]
                started = time.perf_counter()
                result = self._run(feeds, wanted, run_options=run.options)
                run.compute = time.perf_counter() - started
                if len(items) == 1:
                    run.parts = [result]
                else:
                    parts, offset = [], 0
                    for i in items:
                        parts.append({n: result[n][offset:offset + i.rows] for n in i.outputs})
                        offset += i.rows
                    run.parts = parts
        except BaseException as exc:
            run.error = exc
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._finished, run)
        except RuntimeError:  # the loop is closed: the server has stopped, nobody waits
            pass

    async def idle(self) -> None:
        """Wait until nothing is queued or running (used when draining a swapped-out version)."""
        while self.queued or self._running or self.inflight:
            await asyncio.sleep(0.005)


def _batch_priority() -> None:
    """Mark the calling scoring thread as batch work for the Linux scheduler (SCHED_BATCH): a
    thread woken with a call to run then does not preempt the event loop that woke it, which
    would only bounce back at once because the loop still holds the GIL. Nothing elsewhere."""
    setter = getattr(os, "sched_setscheduler", None)
    if setter is not None and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            setter(0, os.SCHED_BATCH, os.sched_param(0))  # 0: this thread


def _run_options_factory() -> Callable[[], Any]:
    """A maker of ``onnxruntime.RunOptions`` (the handle that stops a call from another thread)."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - onnxruntime is a core dependency
        return lambda: None
    return ort.RunOptions


def _key(feeds: dict[str, np.ndarray]) -> tuple[Any, ...]:
    return tuple((k, v.dtype.str, v.shape[1:]) for k, v in feeds.items())


def _fail(item: _Item, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
