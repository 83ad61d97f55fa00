"""Adaptive batching: each request gets exactly its own rows and outputs, batches really form
under concurrency, failures stay with their request; models run off the event loop, within their
concurrency bound; a timed-out request gets DeadlineExceededError and its call is stopped;
shedding is an OverloadedError."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

import modelport as mp
from modelport.errors import InputError
from modelport.serve import ServeConfig
from modelport.serve.batching import Batcher, BatchStats, ScoringThreads
from modelport.serve.errors import DeadlineExceededError, NotReadyError, OverloadedError

from .conftest import thread_server


class FakeModel:
    """Scores x -> {"double": 2x, "plus": x + 1}; records every call, its thread and how many calls
    run at once; fails on a poison value; its delay ends early, with an error, when the call's
    run options say terminate (as ONNX Runtime does)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.threads: set[int] = set()
        self.delay = delay
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0
        self.terminated = 0

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str], run_options=None) -> dict[str, np.ndarray]:
        x = feeds["x"]
        with self.lock:
            self.calls.append(x.shape[0])
            self.threads.add(threading.get_ident())
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            end = time.perf_counter() + (float(x.max()) if self.delay < 0 else self.delay)
            while time.perf_counter() < end:
                if run_options is not None and run_options.terminate:
                    with self.lock:
                        self.terminated += 1
                    raise RuntimeError("Exiting due to terminate flag being set to true.")
                time.sleep(0.002)
        finally:
            with self.lock:
                self.running -= 1
        if (x == -1).any():
            raise InputError("poison row")
        every = {"double": x * 2, "plus": x + 1}
        return {n: every[n] for n in outputs}


def batcher(model: FakeModel, **kw) -> tuple[Batcher, list[BatchStats]]:
    stats: list[BatchStats] = []
    return Batcher(model.run, ["double", "plus"], on_batch=stats.append, **kw), stats


def rows(start: int, n: int, width: int = 3) -> np.ndarray:
    return np.arange(start * 100, start * 100 + n * width, dtype=np.float64).reshape(n, width)


def test_concurrent_requests_get_their_own_rows_and_outputs():
    model = FakeModel(delay=0.01)

    async def main() -> None:
        b, stats = batcher(model, max_batch_size=64)
        sizes = [1, 5, 2, 9, 1, 3, 7, 4] * 4
        wanted = [["double"], ["plus"], ["double", "plus"], ["plus", "double"]] * 8
        results = await asyncio.gather(*(
            b.submit({"x": rows(i, n)}, n, wanted[i]) for i, n in enumerate(sizes)
        ))
        for i, (n, res) in enumerate(zip(sizes, results)):
            x = rows(i, n)
            assert list(res) == wanted[i]
            for name in wanted[i]:
                np.testing.assert_array_equal(res[name], x * 2 if name == "double" else x + 1)
        assert len(model.calls) < len(sizes)  # batches formed
        assert max(s.requests for s in stats) > 1
        assert sum(model.calls) == sum(sizes)
        assert all(c <= 64 or s.requests == 1 for c, s in zip(model.calls, stats))

    asyncio.run(main())


def test_max_batch_size_and_layouts_are_respected():
    model = FakeModel(delay=0.01)

    async def main() -> None:
        b, _ = batcher(model, max_batch_size=8)
        jobs = [b.submit({"x": rows(i, 3)}, 3, ["double"]) for i in range(10)]
        jobs.append(b.submit({"x": rows(50, 20)}, 20, ["double"]))  # larger than a batch: runs alone
        jobs.append(b.submit({"x": rows(60, 2, width=5)}, 2, ["plus"]))  # another layout: never mixed
        out = await asyncio.gather(*jobs)
        np.testing.assert_array_equal(out[10]["double"], rows(50, 20) * 2)
        np.testing.assert_array_equal(out[11]["plus"], rows(60, 2, width=5) + 1)
        assert all(c <= 8 for c in model.calls if c != 20)
        assert 20 in model.calls

    asyncio.run(main())


def test_a_failing_request_does_not_fail_its_batch_mates():
    model = FakeModel(delay=0.01)

    async def main() -> None:
        b, _ = batcher(model)
        poison = rows(0, 2)
        poison[1, 1] = -1
        jobs = [b.submit({"x": rows(i, 2)}, 2, ["plus"]) for i in range(1, 6)]
        jobs.insert(2, b.submit({"x": poison}, 2, ["plus"]))
        out = await asyncio.gather(*jobs, return_exceptions=True)
        assert isinstance(out[2], InputError)
        for i, res in enumerate(out[:2] + out[3:], start=1):
            np.testing.assert_array_equal(res["plus"], rows(i, 2) + 1)

    asyncio.run(main())


def test_idle_request_is_not_delayed_but_load_waits_for_companions():
    model = FakeModel()

    async def main() -> None:
        b, _ = batcher(model, max_queue_delay=0.5)
        t = time.perf_counter()
        await b.submit({"x": rows(0, 1)}, 1, ["double"])
        assert time.perf_counter() - t < 0.1  # idle: no queue delay

    asyncio.run(main())


def test_timeout_is_a_deadline_error_and_shedding_an_overload_error():
    model = FakeModel(delay=0.3)

    async def main() -> None:
        b, _ = batcher(model, max_queue=2)
        first = asyncio.ensure_future(b.submit({"x": rows(0, 1)}, 1, ["double"]))
        await asyncio.sleep(0.05)  # now running in the thread; the next ones queue
        queued = [asyncio.ensure_future(b.submit({"x": rows(i, 1)}, 1, ["double"], timeout=0.1)) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError, match="queue is full"):
            await b.submit({"x": rows(3, 1)}, 1, ["double"])
        for q in queued:
            with pytest.raises(DeadlineExceededError, match=r"timed out .* in the model.s queue"):
                await q
        np.testing.assert_array_equal((await first)["double"], rows(0, 1) * 2)
        await b.idle()
        assert sum(model.calls) == 1  # the timed-out requests were never scored

    asyncio.run(main())


def test_models_never_run_on_the_event_loop():
    model = FakeModel()  # instant: the old batcher ran such calls on the loop itself

    async def main() -> None:
        b, _ = batcher(model)
        for i in range(40):  # past any calibration of "fast" models
            await b.submit({"x": rows(i, 1)}, 1, ["double"])
        assert threading.get_ident() not in model.threads

    asyncio.run(main())


def test_a_timed_out_call_is_stopped_and_the_model_serves_the_next_request():
    model = FakeModel(delay=-1.0)  # seconds = the largest input value: x=30 is half a minute

    async def main() -> None:
        b, _ = batcher(model)
        t = time.perf_counter()
        with pytest.raises(DeadlineExceededError, match="while the model was scoring it"):
            await b.submit({"x": np.full((1, 3), 30.0)}, 1, ["double"], timeout=0.2)
        assert time.perf_counter() - t < 1.0  # answered at the deadline, not when the call ends
        # with one slot, the next request can only be scored if the stuck call was really stopped
        out = await b.submit({"x": np.full((1, 3), 0.01)}, 1, ["double"], timeout=5)
        np.testing.assert_array_equal(out["double"], np.full((1, 3), 0.02))
        assert model.terminated == 1

    asyncio.run(main())


def test_a_batch_is_stopped_only_when_every_request_in_it_gave_up():
    model = FakeModel(delay=-1.0)

    async def main() -> None:
        b, _ = batcher(model, max_batch_size=8)
        blocker = asyncio.ensure_future(b.submit({"x": np.full((1, 3), 0.3)}, 1, ["double"]))
        await asyncio.sleep(0.05)
        # these two queue behind the blocker and then run as one batch of 0.5 s
        short = asyncio.ensure_future(b.submit({"x": np.full((1, 3), 0.5)}, 1, ["double"], timeout=0.5))
        patient = asyncio.ensure_future(b.submit({"x": np.full((1, 3), 0.5)}, 1, ["plus"], timeout=10))
        await blocker
        with pytest.raises(DeadlineExceededError):
            await short
        np.testing.assert_array_equal((await patient)["plus"], np.full((1, 3), 1.5))
        assert model.terminated == 0  # the patient request still wanted the batch's answer

    asyncio.run(main())


def test_a_cancelled_caller_stops_its_call():
    model = FakeModel(delay=-1.0)

    async def main() -> None:
        b, _ = batcher(model)
        task = asyncio.ensure_future(b.submit({"x": np.full((1, 3), 30.0)}, 1, ["double"]))
        await asyncio.sleep(0.1)
        task.cancel()  # e.g. a gRPC client that went away
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(b.idle(), 2)
        assert model.terminated == 1

    asyncio.run(main())


def test_concurrency_is_bounded_per_model_and_a_slow_model_does_not_starve_another():
    slow, fast = FakeModel(delay=0.4), FakeModel()
    pool = ScoringThreads(per_model=2)

    async def main() -> None:
        bs = Batcher(slow.run, ["double", "plus"], executor=pool, max_batch_size=1)
        bf = Batcher(fast.run, ["double", "plus"], executor=pool, max_batch_size=1)
        assert bs.max_concurrency == 2
        jobs = [asyncio.ensure_future(bs.submit({"x": rows(i, 1)}, 1, ["double"])) for i in range(6)]
        await asyncio.sleep(0.05)
        t = time.perf_counter()
        for i in range(5):
            await bf.submit({"x": rows(i, 1)}, 1, ["plus"])
        assert time.perf_counter() - t < 0.3  # not behind the slow model's 6 x 0.4 s
        await asyncio.gather(*jobs)
        assert slow.most_at_once == 2  # its bound, reached and never passed
        assert bs.running == 0

    asyncio.run(main())
    pool.shutdown()


def test_stop_fails_queued_and_running_requests():
    model = FakeModel(delay=-1.0)

    async def main() -> None:
        b, _ = batcher(model)
        running = asyncio.ensure_future(b.submit({"x": np.full((1, 3), 30.0)}, 1, ["double"]))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(b.submit({"x": np.full((1, 3), 0.1)}, 1, ["double"]))
        await asyncio.sleep(0.01)
        b.stop(NotReadyError("shutting down"))
        for job in (running, queued):
            with pytest.raises(NotReadyError):
                await job
        await asyncio.wait_for(b.idle(), 2)
        assert model.terminated == 1

    asyncio.run(main())


@pytest.mark.integration
def test_batching_over_http_under_concurrency(bundles):
    bundle = mp.load(bundles.iris_v1)
    config = ServeConfig(sources=[str(bundles.iris_v1)], max_batch_size=32)
    rng = np.random.default_rng(0)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        n = int(rng.integers(1, 12))
        X = rng.uniform(0.1, 8, size=(n, 4)).astype(np.float32)
        outputs = [["label"], ["probabilities"], ["probabilities", "label"], None][i % 4]
        body = {"id": str(i), "inputs": [{"name": "X", "shape": [n, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
        if outputs:
            body["outputs"] = [{"name": o} for o in outputs]
        r = await client.post("/v2/models/iris/infer", json=body)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["id"] == str(i)
        got = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in doc["outputs"]}
        assert list(got) == (outputs or ["label", "probabilities"])
        want = bundle.predict(X)
        for name, arr in got.items():
            np.testing.assert_allclose(arr, want[name], rtol=1e-6)

    with thread_server(config) as url:
        async def main() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=64)) as c:
                await asyncio.gather(*(one(c, i) for i in range(120)))

        asyncio.run(main())
        text = httpx.get(url + "/metrics").text
        from .test_http import scrape

        m = scrape(text)
        labels = frozenset({"model": "iris", "version": "1"}.items())
        batches = m[("modelport_batch_requests_count", labels)]
        requests = m[("modelport_batch_requests_sum", labels)]
        assert requests == 120 and batches < 120  # several requests shared a batch


def test_queue_delay_gathers_companions_only_under_load():
    model = FakeModel(delay=0.02)

    async def main() -> None:
        b, stats = batcher(model, max_batch_size=64, max_queue_delay=0.05)
        # a first burst makes the batcher see load (a multi-request batch) ...
        await asyncio.gather(*(b.submit({"x": rows(i, 1)}, 1, ["double"]) for i in range(3)))
        # ... so a lone request that arrives next waits up to the delay for companions
        first = asyncio.ensure_future(b.submit({"x": rows(10, 1)}, 1, ["double"]))
        await asyncio.sleep(0.01)
        late = asyncio.ensure_future(b.submit({"x": rows(11, 1)}, 1, ["double"]))
        out = await asyncio.gather(first, late)
        np.testing.assert_array_equal(out[1]["double"], rows(11, 1) * 2)
        assert stats[-1].requests == 2  # the late one joined the waiting batch

    asyncio.run(main())


def test_a_stopped_pool_refuses_cleanly_even_with_a_long_queue():
    model = FakeModel()
    pool = ScoringThreads()

    async def main() -> None:
        b = Batcher(model.run, ["double", "plus"], executor=pool, max_batch_size=1, max_queue=5000)
        pool.shutdown(wait=False)
        jobs = [asyncio.ensure_future(b.submit({"x": rows(i, 1)}, 1, ["double"])) for i in range(3000)]
        out = await asyncio.gather(*jobs, return_exceptions=True)
        assert all(isinstance(o, NotReadyError) for o in out), {type(o) for o in out}  # no RecursionError

    asyncio.run(main())


def test_stop_also_fails_a_batch_waiting_for_companions():
    model = FakeModel(delay=0.05)

    async def main() -> None:
        b, _ = batcher(model, max_batch_size=64, max_queue_delay=5.0)
        await asyncio.gather(*(b.submit({"x": rows(i, 1)}, 1, ["double"]) for i in range(3)))  # load is on
        waiting = asyncio.ensure_future(b.submit({"x": rows(9, 1)}, 1, ["double"]))
        await asyncio.sleep(0.05)  # held for companions for up to 5 s
        b.stop(NotReadyError("shutting down"))
        with pytest.raises(NotReadyError):
            await asyncio.wait_for(waiting, 1)

    asyncio.run(main())


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_max_concurrency_must_be_a_positive_integer(bundles, bad):
    from modelport.serve.dataplane import DataPlane

    with pytest.raises(mp.ServingError, match="max_concurrency must be a positive integer"):
        DataPlane([str(bundles.iris_v1)], max_concurrency=bad)
