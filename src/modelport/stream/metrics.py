"""Prometheus metrics of a stream consumer, at ``/metrics`` on ``--metrics-port``.

The families, their plain-number children and the rendering (with the numbers of sibling
processes under ``--consumers N``, shared through ``MODELPORT_METRICS_DIR``) are serving's
(:mod:`modelport.serve.metrics`); only the families differ. Each child is updated by one thread
of the consumer (reader or scorer), so plain numbers stay exact without a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from modelport.errors import StreamError
from modelport.serve.metrics import Family, Metrics

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


def observe_many(hist: Any, values: np.ndarray) -> None:
    """``hist.observe(v)`` for every value, in one numpy pass (a batch's end-to-end lags)."""
    idx = np.searchsorted(np.asarray(hist.bounds), values, side="left")  # bisect_left, as observe() does
    for i, c in enumerate(np.bincount(idx, minlength=len(hist.counts)).tolist()):
        if c:
            hist.counts[i] += c
    hist.sum += float(values.sum())
    hist.count += int(values.size)


class StreamMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()  # the multi-process share directory
        ml = ["model", "version"]
        self.messages_in = Family("modelport_stream_messages_in", "Messages received", "counter", ["source"])
        self.redelivered = Family(
            "modelport_stream_messages_redelivered", "Messages received more than once", "counter", ["source"]
        )
        self.messages_out = Family("modelport_stream_messages_out", "Output messages written", "counter", ml)
        self.dead = Family(
            "modelport_stream_dead_letters", "Messages sent to the dead-letter destination", "counter", ["reason"]
        )
        self.batch_messages = Family("modelport_stream_batch_messages", "Messages per batch", "histogram", ml, _SIZES)
        self.batch_rows = Family("modelport_stream_batch_rows", "Records scored per batch", "histogram", ml, _SIZES)
        self.score = Family(
            "modelport_stream_score_seconds", "Decode + ONNX Runtime + encode time per batch", "histogram", ml, _LATENCY
        )
        self.commit = Family(
            "modelport_stream_commit_seconds", "Time to write outputs and acknowledge a batch", "histogram", [], _LATENCY
        )
        self.lag = Family(
            "modelport_stream_end_to_end_seconds",
            "From the message's broker timestamp to its output being written", "histogram", [], _LATENCY,
        )
        self.group_lag = Family(
            "modelport_stream_group_lag", "Messages in the stream not yet delivered to the consumer group",
            "gauge", ["source"],
        )
        self.group_pending = Family(
            "modelport_stream_group_pending", "Messages delivered to the group and not yet acknowledged",
            "gauge", ["source"],
        )
        self.inflight = Family("modelport_stream_inflight_batches", "Batches read and not yet committed", "gauge", [])
        self.model_info = Family(
            "modelport_stream_model", "1 for the model version scoring now", "gauge", ["model", "version", "digest"]
        )
        self.swaps = Family("modelport_stream_model_swaps", "Model version changes", "counter", [])
        self.errors = Family(
            "modelport_stream_errors", "Broker or scoring failures retried", "counter", ["stage"]
        )
        self.fenced = Family(
            "modelport_stream_taken_over",
            "Times another consumer took this one's messages over (presumed dead)", "counter", [],
        )
        self.families = [
            self.messages_in, self.redelivered, self.messages_out, self.dead, self.batch_messages, self.batch_rows,
            self.score, self.commit, self.lag, self.group_lag, self.group_pending, self.inflight, self.model_info,
            self.swaps, self.errors, self.fenced,
        ]

    def total(self, family: Family) -> float:
        return float(sum(c.value for c in family.children.values()))

    def share_in_background(self) -> None:
        """Write snapshots for the supervisor's ``/metrics`` (no-op without MODELPORT_METRICS_DIR)."""
        if self.share_dir is None:
            return
        threading.Thread(
            target=lambda: asyncio.run(self.share_forever()), name="modelport-metrics-share", daemon=True
        ).start()


class MetricsServer:
    """``GET /metrics`` (Prometheus text) and ``GET /health`` on a background thread."""

    def __init__(self, metrics: Metrics, port: int, host: str = "127.0.0.1") -> None:
        render = metrics.render

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    body, ctype = render()
                    self._send(200, body, ctype)
                elif self.path.split("?")[0] in ("/health", "/healthz"):
                    self._send(200, b'{"live":true}', "application/json")
                else:
                    self._send(404, b"not found; try /metrics", "text/plain")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise StreamError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}.",
                hint="pick another --metrics-port, or stop what listens there",
            ) from None
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="modelport-metrics", daemon=True)
        self.thread.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.httpd.shutdown()
            self.httpd.server_close()
