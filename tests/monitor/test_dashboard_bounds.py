"""The dashboard's API does bounded work: a burst of requests (distinct, so none is a cache hit)
runs one log scan per view at a time, and a repeated one is answered from the cache."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx

import modelport as mp
from modelport.monitor.dashboard import Dashboard, LogSource
from modelport.monitor.log import PredictionLog

from .conftest import churn_frame


class Counting(LogSource):
    """The real log source, counting how many of its drift scans run at once."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.active = self.most = self.calls = 0

    def drift(self, model, version):
        with self.lock:
            self.active += 1
            self.calls += 1
            self.most = max(self.most, self.active)
        try:
            time.sleep(0.01)
            return super().drift(model, None)
        finally:
            with self.lock:
                self.active -= 1


def test_a_burst_of_drift_requests_scans_the_log_one_at_a_time(tmp_path, churn_path):
    bundle = mp.load(churn_path)
    frame = churn_frame(500, 3)
    log = PredictionLog(tmp_path / "log", rotate_seconds=3600)
    log.model(bundle).write("r", len(frame), data=frame, outputs=bundle.predict(frame))
    log.close()
    source = Counting(str(tmp_path / "log"), bundles={"churn": bundle})
    app = Dashboard(source)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui") as client:
            distinct = [client.get("/ui/api/drift", params={"model": "churn", "version": f"v{i}"}) for i in range(12)]
            first = await asyncio.gather(*distinct)
            again = await asyncio.gather(*[client.get("/ui/api/drift", params={"model": "churn", "version": "v0"})
                                           for _ in range(12)])
            return [*first, *again]

    answers = asyncio.run(burst())
    assert all(r.status_code == 200 and r.json()["rows"] == 500 for r in answers)
    assert source.most == 1  # never two scans at once
    assert source.calls == 12  # the repeated request came from the cache
