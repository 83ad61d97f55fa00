"""Prometheus metrics of a server, exposed at ``/metrics``.

Per model and version: inference requests, successes and failures (by reason), latency
histograms for queue wait, compute and total, the batch size (rows and requests per batch), and
an in-flight gauge. Per HTTP route: requests by status and latency. With several worker
processes, ``PROMETHEUS_MULTIPROC_DIR`` is set by the launcher and ``/metrics`` aggregates every
worker's files.

Label values for models are only ever names the server serves (unknown names become ``""``), so
a client cannot blow up the number of series.
"""

from __future__ import annotations

import os
from typing import Any

_LATENCY = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


class Metrics:
    """The server's metric families, in their own registry (or the multiprocess collector)."""

    def __init__(self) -> None:
        from modelport._deps import require

        pc = require("prometheus_client", purpose="serving metrics")
        self._pc = pc
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # in multiprocess mode the values live in mmap files; a private registry would be empty
        self.registry = pc.CollectorRegistry(auto_describe=True)
        reg = None if self.multiprocess else self.registry
        mlabels = ["model", "version", "protocol"]
        self.requests = pc.Counter("modelport_infer_requests", "Inference requests received", mlabels, registry=reg)
        self.success = pc.Counter("modelport_infer_success", "Inference requests answered", mlabels, registry=reg)
        self.failure = pc.Counter(
            "modelport_infer_failure", "Inference requests refused or failed", [*mlabels, "reason"], registry=reg
        )
        self.latency = pc.Histogram(
            "modelport_infer_seconds", "Inference latency end to end (decode, queue, compute, encode)",
            ["model", "version"], buckets=_LATENCY, registry=reg,
        )
        self.queue = pc.Histogram(
            "modelport_queue_seconds", "Time a request waited for its batch", ["model", "version"],
            buckets=_LATENCY, registry=reg,
        )
        self.compute = pc.Histogram(
            "modelport_compute_seconds", "ONNX Runtime time per batch", ["model", "version"],
            buckets=_LATENCY, registry=reg,
        )
        self.batch_rows = pc.Histogram(
            "modelport_batch_rows", "Rows per executed batch", ["model", "version"], buckets=_SIZES, registry=reg
        )
        self.batch_requests = pc.Histogram(
            "modelport_batch_requests", "Requests per executed batch", ["model", "version"], buckets=_SIZES,
            registry=reg,
        )
        self.inflight = pc.Gauge(
            "modelport_inflight_requests", "Inference requests being served now", ["model"], registry=reg,
            **({"multiprocess_mode": "livesum"} if self.multiprocess else {}),
        )
        self.http_requests = pc.Counter(
            "modelport_http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=reg
        )
        self.http_latency = pc.Histogram(
            "modelport_http_seconds", "HTTP request latency by route", ["route"], buckets=_LATENCY, registry=reg
        )
        self.loaded = pc.Gauge(
            "modelport_model_loaded", "1 for each model version being served", ["model", "version"], registry=reg,
            **({"multiprocess_mode": "max"} if self.multiprocess else {}),
        )

    def model_children(self, name: str, version: str, protocol: str) -> dict[str, Any]:
        """Pre-bound children for one model version and protocol (label lookups off the hot path)."""
        return {
            "requests": self.requests.labels(name, version, protocol),
            "success": self.success.labels(name, version, protocol),
            "latency": self.latency.labels(name, version),
            "inflight": self.inflight.labels(name),
        }

    def render(self) -> tuple[bytes, str]:
        pc = self._pc
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = pc.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return pc.generate_latest(registry), pc.CONTENT_TYPE_LATEST
        return pc.generate_latest(self.registry), pc.CONTENT_TYPE_LATEST
