"""Adaptive batching for one served model version.

Requests queue while the model is busy; when it frees up, everything queued (up to
``max_batch_size`` rows) runs as one ONNX Runtime call and the result rows are handed back to each
request in order. A request that arrives while the model is idle is scored on the next turn of
the event loop, together with whatever other requests arrived in the same turn (under load that
is many: the per-call cost of ONNX Runtime and of this code is then shared), and never waits
for a timer: the ``max_queue_delay`` wait is only spent when the model has just run a
multi-request batch, i.e. when more requests are likely on their way. Each request keeps its own requested outputs, and one
request's rows never reach another request. If a batch fails, its requests are re-run one by one
so that only the faulty one gets the error.

Where a call runs adapts to the model: small calls of a fast model (a moving average under
``inline_seconds``) run on the event loop itself, because a thread hop costs more than a tree
ensemble on a few rows, and an idle model then adds nothing to a request's latency. Larger or
slower calls run in a worker thread; requests arriving meanwhile queue and form the next batch,
and health checks stay answered.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.serve.errors import OverloadedError

RunFn = Callable[[dict[str, np.ndarray], list[str]], dict[str, np.ndarray]]


@dataclass
class BatchStats:
    """What the batcher reports per batch (for metrics): rows, requests, queue waits, compute time."""

    rows: int
    requests: int
    queue_seconds: list[float]
    compute_seconds: float


@dataclass
class _Item:
    feeds: dict[str, np.ndarray]
    rows: int
    outputs: list[str]
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float
    key: tuple[Any, ...] = field(default=())


class Batcher:
    """Queue and batch scoring calls for one runtime. Create it inside the running event loop."""

    def __init__(
        self,
        run: RunFn,
        output_order: list[str],
        *,
        max_batch_size: int = 8,
        max_queue_delay: float = 0.0,
        max_queue: int = 2048,
        inline_rows: int = 256,
        inline_seconds: float = 0.002,
        executor: Executor | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self._run = run
        self._order = output_order
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_queue_delay = max(0.0, float(max_queue_delay))
        self.max_queue = max(1, int(max_queue))
        self.inline_rows = inline_rows
        self.inline_seconds = inline_seconds
        # the model's own cost of a small call: the fastest of recent calls, because being
        # descheduled (a busy machine) only ever adds time and must not flip the mode
        self._call_seconds = 0.0
        self._recent: list[float] = []
        self._executor = executor
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._task: asyncio.Task[None] | None = None
        self._recent_multi = False  # the last batch held several requests: load is on
        self.inflight = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(
        self, feeds: dict[str, np.ndarray], rows: int, outputs: list[str], *, timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """Score ``feeds`` (``rows`` rows) and return the ``outputs`` for exactly these rows.

        With ``timeout``, a request not answered in time gets OverloadedError (and is skipped if it
        is still queued); a timer is cheaper than wrapping every request in a task.
        """
        if len(self._queue) >= self.max_queue:
            raise OverloadedError(
                f"the model's queue is full ({self.max_queue} requests waiting); request shed.",
                hint="retry after a short back-off, or run more workers / raise --max-queue",
            )
        loop = asyncio.get_running_loop()
        item = _Item(feeds, rows, outputs, loop.create_future(), time.perf_counter(), _key(feeds))
        self._queue.append(item)
        if self._task is None:
            self._task = loop.create_task(self._drain())
        timer = loop.call_later(timeout, _expire, item, timeout) if timeout else None
        self.inflight += 1
        try:
            return await item.future
        finally:
            self.inflight -= 1
            if timer is not None:
                timer.cancel()

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                if (
                    self.max_queue_delay > 0
                    and self._recent_multi
                    and sum(i.rows for i in batch) < self.max_batch_size
                ):
                    await asyncio.sleep(self.max_queue_delay)
                    batch.extend(self._take(sum(i.rows for i in batch), batch[0].key if batch else None))
                if not batch:
                    continue
                self._recent_multi = len(batch) > 1
                await self._execute(batch)
                if self._queue:
                    await asyncio.sleep(0)  # let the loop read new requests and answer probes between batches
        finally:
            self._task = None

    def _take(self, rows: int = 0, key: tuple[Any, ...] | None = None) -> list[_Item]:
        """Pop queued requests with the same feed layout, up to max_batch_size rows in all."""
        batch: list[_Item] = []
        skipped: list[_Item] = []
        while self._queue:
            item = self._queue.popleft()
            if item.future.done():  # timed out or cancelled while queued
                continue
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

    async def _execute(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        waits = [started - i.enqueued for i in batch]
        rows = sum(i.rows for i in batch)
        if len(batch) == 1:
            feeds = batch[0].feeds
            wanted = batch[0].outputs
        else:
            feeds = {k: np.concatenate([i.feeds[k] for i in batch]) for k in batch[0].feeds}
            union = set().union(*(i.outputs for i in batch))
            wanted = [n for n in self._order if n in union]
        try:
            result = await self._call(feeds, wanted, rows)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
            else:  # find the culprit: nobody else's request fails because of it
                for item in batch:
                    try:
                        single = await self._call(item.feeds, item.outputs, item.rows)
                        if not item.future.done():
                            item.future.set_result(single)
                    except Exception as single_exc:
                        _fail(item, single_exc)
            return
        compute = time.perf_counter() - started
        if len(batch) == 1:
            item = batch[0]
            if not item.future.done():
                item.future.set_result(result)
        else:
            offset = 0
            for item in batch:
                _succeed(item, result, offset, item.rows)
                offset += item.rows
        if self._on_batch is not None:
            self._on_batch(BatchStats(rows, len(batch), waits, compute))

    async def _call(self, feeds: dict[str, np.ndarray], outputs: list[str], rows: int) -> dict[str, np.ndarray]:
        if rows <= self.inline_rows and self._call_seconds < self.inline_seconds:
            started = time.perf_counter()
            result = self._run(feeds, outputs)
            elapsed = time.perf_counter() - started
        else:
            loop = asyncio.get_running_loop()
            result, elapsed = await loop.run_in_executor(self._executor, self._timed, feeds, outputs)
        if rows <= self.inline_rows:
            self._learn(elapsed)
        return result

    def _timed(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> tuple[dict[str, np.ndarray], float]:
        started = time.perf_counter()  # measured in the thread: the hop itself is not the model's cost
        result = self._run(feeds, outputs)
        return result, time.perf_counter() - started

    def _learn(self, elapsed: float) -> None:
        recent = self._recent
        recent.append(elapsed)
        if len(recent) >= 16:
            self._call_seconds = min(recent)
            recent.clear()

    async def idle(self) -> None:
        """Wait until nothing is queued or running (used when draining a swapped-out version)."""
        while self._queue or self._task is not None or self.inflight:
            await asyncio.sleep(0.005)


def _key(feeds: dict[str, np.ndarray]) -> tuple[Any, ...]:
    return tuple((k, v.dtype.str, v.shape[1:]) for k, v in feeds.items())


def _succeed(item: _Item, result: dict[str, np.ndarray], offset: int, rows: int) -> None:
    if item.future.done():
        return
    item.future.set_result({n: result[n][offset:offset + rows] for n in item.outputs})


def _expire(item: _Item, timeout: float) -> None:
    if not item.future.done():
        item.future.set_exception(
            OverloadedError(
                f"the request was not answered within the {timeout:g} s request timeout.",
                hint="retry later; the server is overloaded or the request is too large for the timeout",
            )
        )


def _fail(item: _Item, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
