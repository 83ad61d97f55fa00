"""Prometheus metrics of a server, exposed at ``/metrics``.

Per model and version: inference requests, successes and failures (by reason), latency
histograms for queue wait, compute and total, the batch size (rows and requests per batch), a
loaded gauge; an in-flight gauge per model; per column, the unknown categories that were scored
(``modelport_unknown_categories_total``). Per HTTP route: requests by status.

Why not ``prometheus_client``'s Counter/Histogram objects directly: each update takes a lock and
costs 3-7 µs, and a single-row request updates about ten of them, which is more than the whole
budget a server has next to a bare endpoint. Every update here happens on the event loop thread,
so plain Python numbers suffice; prometheus_client only renders them (a custom collector).

With several worker processes (``MODELPORT_METRICS_DIR`` set by the launcher) each worker writes
a snapshot of its numbers there every second, and ``/metrics`` on any worker adds up all
workers' snapshots (at most a second old for the others).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path
from typing import Any

METRICS_DIR_ENV = "MODELPORT_METRICS_DIR"

_LATENCY = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


class _Value:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class _Hist:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class Family:
    """A metric family with labels; ``labels(...)`` returns a cached child."""

    def __init__(self, name: str, doc: str, kind: str, labelnames: list[str], buckets: tuple[float, ...] = ()) -> None:
        self.name = name
        self.doc = doc
        self.kind = kind
        self.labelnames = labelnames
        self.buckets = buckets
        self.children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: Any) -> Any:
        key = tuple(str(v) for v in values)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = _Hist(self.buckets) if self.kind == "histogram" else _Value()
        return child

    def snapshot(self) -> list[Any]:
        if self.kind == "histogram":
            return [[list(k), c.counts, c.sum] for k, c in self.children.items()]
        return [[list(k), c.value] for k, c in self.children.items()]


class Metrics:
    """The server's metric families."""

    def __init__(self) -> None:
        ml = ["model", "version"]
        self.requests = Family("modelport_infer_requests", "Inference requests received", "counter", [*ml, "protocol"])
        self.success = Family("modelport_infer_success", "Inference requests answered", "counter", [*ml, "protocol"])
        self.failure = Family(
            "modelport_infer_failure", "Inference requests refused or failed", "counter", [*ml, "protocol", "reason"]
        )
        self.latency = Family(
            "modelport_infer_seconds", "Inference latency (decode, queue, compute, encode)", "histogram", ml, _LATENCY
        )
        self.queue = Family("modelport_queue_seconds", "Time a request waited for its batch", "histogram", ml, _LATENCY)
        self.compute = Family("modelport_compute_seconds", "ONNX Runtime time per batch", "histogram", ml, _LATENCY)
        self.batch_rows = Family("modelport_batch_rows", "Rows per executed batch", "histogram", ml, _SIZES)
        self.batch_requests = Family("modelport_batch_requests", "Requests per executed batch", "histogram", ml, _SIZES)
        self.inflight = Family("modelport_inflight_requests", "Inference requests being served now", "gauge", ["model"])
        self.loaded = Family("modelport_model_loaded", "1 for each model version being served", "gauge", ml)
        self.http_requests = Family(
            "modelport_http_requests", "HTTP requests by route and status", "counter", ["method", "route", "status"]
        )
        # values outside a column's categories that were scored (as missing, or as the model's
        # library treats them) rather than refused: they are never silent
        self.unknown_categories = Family(
            "modelport_unknown_categories", "Values outside a column's categories that were scored", "counter",
            [*ml, "column"],
        )
        self.families = [
            self.requests, self.success, self.failure, self.latency, self.queue, self.compute, self.batch_rows,
            self.batch_requests, self.inflight, self.loaded, self.http_requests, self.unknown_categories,
        ]
        share = os.environ.get(METRICS_DIR_ENV)
        self.share_dir = Path(share) if share else None
        #: more families for /metrics, made at render time (prometheus_client families; monitoring's gauges)
        self.collectors: list[Callable[[], list[Any]]] = []

    def model_children(self, name: str, version: str, protocol: str) -> dict[str, Any]:
        """Pre-bound children for one model version and protocol (label lookups off the hot path)."""
        return {
            "requests": self.requests.labels(name, version, protocol),
            "success": self.success.labels(name, version, protocol),
            "latency": self.latency.labels(name, version),
            "inflight": self.inflight.labels(name),
        }

    # ------------------------------------------------------------------ multi-process sharing
    def snapshot(self) -> dict[str, Any]:
        return {f.name: f.snapshot() for f in self.families}

    async def share_forever(self, every: float = 1.0) -> None:
        """Write this worker's snapshot for the other workers' ``/metrics`` (multi-worker mode)."""
        if self.share_dir is None:
            return
        path = self.share_dir / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        while True:
            tmp.write_text(json.dumps(self.snapshot()))
            os.replace(tmp, path)
            await asyncio.sleep(every)

    def _others(self) -> list[dict[str, Any]]:
        if self.share_dir is None:
            return []
        out = []
        for p in self.share_dir.glob("*.json"):
            if p.stem == str(os.getpid()):
                continue
            with contextlib.suppress(OSError, ValueError):
                snap = json.loads(p.read_text())
                snap["__alive__"] = _alive(int(p.stem))
                out.append(snap)
        return out

    # ------------------------------------------------------------------ rendering
    def render(self) -> tuple[bytes, str]:
        from modelport._deps import require

        pc = require("prometheus_client", purpose="serving metrics")
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        others = self._others()
        families = []
        for f in self.families:
            merged: dict[tuple[str, ...], Any] = {}
            for key, child in f.children.items():
                merged[key] = [list(child.counts), child.sum] if f.kind == "histogram" else child.value
            for snap in others:
                if f.kind == "gauge" and not snap["__alive__"]:
                    continue  # a finished worker has nothing in flight and nothing loaded
                for entry in snap.get(f.name, []):
                    key = tuple(entry[0])
                    if f.kind == "histogram":
                        cur = merged.setdefault(key, [[0] * (len(f.buckets) + 1), 0.0])
                        cur[0] = [a + b for a, b in zip(cur[0], entry[1])]
                        cur[1] += entry[2]
                    else:
                        merged[key] = merged.get(key, 0.0) + entry[1]
            if f.kind == "counter":
                fam: Any = CounterMetricFamily(f.name, f.doc, labels=f.labelnames)
                for key, v in merged.items():
                    fam.add_metric(list(key), v)
            elif f.kind == "gauge":
                fam = GaugeMetricFamily(f.name, f.doc, labels=f.labelnames)
                for key, v in merged.items():
                    fam.add_metric(list(key), v)
            else:
                fam = HistogramMetricFamily(f.name, f.doc, labels=f.labelnames)
                for key, (counts, total) in merged.items():
                    cum, buckets = 0, []
                    for bound, c in zip([*map(_fmt, f.buckets), "+Inf"], counts):
                        cum += c
                        buckets.append((bound, cum))
                    fam.add_metric(list(key), buckets, total)
            families.append(fam)
        for extra in self.collectors:
            families.extend(extra())

        class _Collector:
            def collect(self) -> Any:
                return families

        registry = pc.CollectorRegistry(auto_describe=False)
        registry.register(_Collector())
        return pc.generate_latest(registry), pc.CONTENT_TYPE_LATEST


def _fmt(bound: float) -> str:
    return repr(float(bound))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
