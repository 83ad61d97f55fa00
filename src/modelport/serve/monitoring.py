"""Monitoring in the server: request ids, the prediction log, feedback (REST and gRPC) and ``/ui``.

Everything the server adds for ``--log`` lives here, so the data plane and the transports only
call in at a few points:

* :class:`ServingMonitor` (``DataPlane.monitor``): gives each scoring request an id (the client's
  ``id`` field or ``X-Request-ID`` header, else a new one), echoed in the response and in the
  ``X-Request-ID`` header; hands each sampled request's feeds and outputs to the prediction log
  (a queue append on the event loop; decoding and writing happen in the log's thread); keeps the
  live sketches and gauges (:class:`~modelport.monitor.live.LiveMonitor`).
* ``POST /v2/models/{name}[/versions/{v}]/feedback`` with ``{"records": [{"id": ..., "label": ...}]}``
  (:func:`handle_feedback`), and the gRPC service ``modelport.monitor.v1.FeedbackService/Feedback``
  (:func:`add_grpc_service`, on the same port as ``inference.GRPCInferenceService``, which is left
  exactly as KServe defines it).
* ``/ui``: the dashboard (:mod:`modelport.monitor.dashboard`), fed by this server's own data.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from modelport.errors import InputError, ModelportError
from modelport.monitor.log import IdMaker, PredictionLog, check_id

if TYPE_CHECKING:
    from modelport.monitor.dashboard import Source
    from modelport.monitor.live import LiveMonitor
    from modelport.serve.dataplane import DataPlane
    from modelport.serve.model import ServedModel

REQUEST_ID_HEADER = b"x-request-id"
#: labels per feedback request (the body limit bounds it too)
MAX_FEEDBACK_RECORDS = 100_000
FEEDBACK_SERVICE = "modelport.monitor.v1.FeedbackService"


class ServingMonitor:
    """The server's prediction log, live monitor and request ids (``DataPlane.monitor``)."""

    def __init__(self, log: PredictionLog, live: LiveMonitor | None = None) -> None:
        self.log = log
        self.live = live
        self._new_id = IdMaker()
        self._sample = log.sample

    # ------------------------------------------------------------------ the hot path (event loop)
    def request_id(self, given: str | bytes | None) -> str:
        """The client's id (checked: 400 for one the log cannot store), or a new one."""
        if given is None or given == "" or given == b"":
            return self._new_id()
        if isinstance(given, bytes):
            given = given.decode("latin-1")
        return check_id(given)

    def record(self, model: ServedModel, request_id: str, feeds: Any, result: Any, rows: int, latency: float,
               raw: Any = None) -> None:
        """Log one answered request if it is in the sample (a queue append, nothing more)."""
        if self._sample < 1.0 and not self.log.wants(request_id):
            return
        ml = model.__dict__.get("_monitor_log")
        if ml is None:
            ml = self.log.model(model.bundle, name=model.name, version=model.version, digest=model.digest)
            model.__dict__["_monitor_log"] = ml
            model.__dict__["_monitor_raw"] = model.runtime.builder.has_categories
        if raw is not None:
            if not model.__dict__["_monitor_raw"]:
                raw = None  # no category column: the feeds lose nothing
            elif isinstance(raw, list) and raw and not isinstance(raw[0], dict):  # V2 inputs
                raw = {i.name: i.data for i in raw}
        ml.write(request_id, rows, feeds=feeds, outputs=result, latency=latency, raw=raw)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.live is not None:
            self.live.start()

    def close(self) -> None:
        """Flush and close the log (what it holds becomes complete files), stop the live monitor."""
        self.log.close()
        if self.live is not None:
            self.live.stop()

    def families(self) -> list[Any]:
        """Prometheus families for ``/metrics``: the live gauges and the log's counts."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        out = self.live.families() if self.live is not None else []
        s = self.log.stats
        for name, doc, value in (("modelport_log_rows", "Rows accepted by the prediction log", s.accepted),
                                 ("modelport_log_written_rows", "Rows written to complete log files", s.written),
                                 ("modelport_log_dropped_rows", "Rows the prediction log dropped (its writer was behind)",
                                  s.dropped)):
            fam = CounterMetricFamily(name, doc, labels=["worker"])
            fam.add_metric([self.log.writer_id], value)
            out.append(fam)
        g = GaugeMetricFamily("modelport_log_unflushed_rows", "Rows queued or in open log files (lost on a kill)",
                              labels=["worker"])
        g.add_metric([self.log.writer_id], s.unflushed)
        out.append(g)
        if self.live is not None:
            c = self.live.counts
            for key, doc in (("labels", "Feedback labels received"), ("joined", "Feedback labels joined to a prediction"),
                             ("unknown", "Feedback labels a classifier does not know")):
                fam = CounterMetricFamily(f"modelport_feedback_{key}", doc, labels=["worker"])
                fam.add_metric([self.log.writer_id], c[key])
                out.append(fam)
        return out


def check_config(config: Any) -> None:
    """Refuse bad ``--log`` options before a server starts (the log's own checks, nothing written)."""
    from modelport.monitor.log import Storage

    Storage(config.log)
    if isinstance(config.log_sample, bool) or not 0.0 <= float(config.log_sample) <= 1.0:
        raise InputError(f"--log-sample must be from 0 to 1; got {config.log_sample!r}.",
                         hint="--log-sample 0.2 logs one request in five")
    for flag, value in (("--log-rotate", config.log_rotate), ("--drift-window", config.drift_window)):
        if not value or float(value) <= 0:
            raise InputError(f"{flag} must be a positive number of seconds; got {value!r}.")


def make_monitor(config: Any, metrics: Any) -> ServingMonitor:
    """The prediction log and live monitor of one server process (``ServeConfig.log`` and friends)."""
    from modelport.monitor.live import LiveMonitor

    check_config(config)
    log = PredictionLog(config.log, sample=float(config.log_sample), rotate_seconds=float(config.log_rotate),
                        source="serve")
    bucket = min(60.0, float(config.drift_window) / 4)
    live = LiveMonitor(log, window=float(config.drift_window), bucket=bucket, share_dir=metrics.share_dir)
    mon = ServingMonitor(log, live)
    metrics.collectors.append(mon.families)
    return mon


# ============================================================================ feedback
def parse_feedback(doc: Any) -> list[tuple[str, Any, float | None]]:
    """``{"records": [{"id": "...", "label": ..., "ts": optional}]}`` -> ``(id, label, ts)`` tuples.

    ``label`` is a class (as the model names it: a string or a number) or, for a regressor, the
    true value; ``ts`` (optional) is when it was observed (epoch seconds or ISO 8601)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise InputError('the feedback body must be an object with a list under "records", e.g. '
                         '{"records": [{"id": "<request id>", "label": "churned"}]}.')
    records = doc["records"]
    if len(records) > MAX_FEEDBACK_RECORDS:
        raise InputError(f"a feedback request may carry at most {MAX_FEEDBACK_RECORDS} records; got {len(records)}.",
                         hint="send the labels in several requests")
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise InputError(f"feedback record {i} must be an object with an id and a label; got {type(rec).__name__}.")
        rid = check_id(rec.get("id"), what=f"the id of feedback record {i}")
        label = rec.get("label", rec.get("value"))
        if label is None or isinstance(label, (dict, list)) or (isinstance(label, float) and not math.isfinite(label)):
            raise InputError(f"feedback record {i} ({rid!r}) needs a label: a class or a number; got {label!r}."[:300])
        if isinstance(label, str) and len(label) > 1024:
            raise InputError(f"the label of feedback record {i} has {len(label)} characters; at most 1024 are kept.")
        ts = rec.get("ts")
        if ts is not None:
            from modelport.monitor._time import parse_time

            if isinstance(ts, bool) or not isinstance(ts, (int, float, str)):
                raise InputError(f"the ts of feedback record {i} must be epoch seconds or an ISO time; got {ts!r}.")
            ts = parse_time(ts, what=f"the ts of feedback record {i}")
        out.append((rid, label, ts))
    return out


def feedback(dp: DataPlane, name: str, version: str | None, records: list[tuple[str, Any, float | None]]
             ) -> dict[str, Any]:
    """Store and join labels for a served model (blocking: call it in a thread)."""
    mon = dp.monitor
    if mon is None:
        raise InputError(f"model {name!r}: this server keeps no prediction log, so it has no predictions to join "
                         "labels to.", hint="start it with --log DIR (and send labels for the ids it answered with)")
    if mon.live is None:
        mon.log.write_labels(records, model=name)
        return {"received": len(records), "joined": 0, "unmatched": 0, "unknown_labels": 0}
    return mon.live.feedback(name, records)


async def handle_feedback(dp: DataPlane, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                          send: Callable[[dict[str, Any]], Awaitable[None]], name: str, version: str | None,
                          read_body: Callable[..., Awaitable[bytes]], loads: Callable[[bytes], Any]) -> None:
    """``POST /v2/models/{name}[/versions/{v}]/feedback`` (REST)."""
    import orjson

    from modelport.serve.http import send_response

    dp.model(name, version)  # 404 for a model this server does not serve
    body = await read_body(scope, receive, dp.deadline())
    records = await asyncio.to_thread(lambda: parse_feedback(loads(body)))
    result = await asyncio.to_thread(feedback, dp, name, version, records)
    await send_response(send, 200, orjson.dumps({"model_name": name, **result}))


def add_grpc_service(server: Any, dp: DataPlane) -> None:
    """Register ``modelport.monitor.v1.FeedbackService`` on a grpc.aio server."""
    from modelport._deps import require
    from modelport.serve.grpc import status_code
    from modelport.serve.proto import monitor_feedback_pb2 as pb

    grpc = require("grpc", purpose="the gRPC server")

    async def call(data: bytes, context: Any) -> Any:
        try:
            try:
                request = pb.FeedbackRequest.FromString(data)
            except Exception as exc:
                raise InputError(f"the request is not a valid {pb.FeedbackRequest.DESCRIPTOR.full_name} message "
                                 f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).") from None
            dp.model(request.model_name, request.model_version or None)
            doc = {"records": [
                {"id": r.id, "label": r.label if r.HasField("label") else (r.value if r.HasField("value") else None),
                 **({"ts": r.timestamp} if r.HasField("timestamp") else {})}
                for r in request.records
            ]}
            records = await asyncio.to_thread(parse_feedback, doc)
            result = await asyncio.to_thread(feedback, dp, request.model_name, request.model_version or None, records)
            return pb.FeedbackResponse(received=result["received"], joined=result["joined"],
                                       unmatched=result["unmatched"], unknown_labels=result["unknown_labels"])
        except ModelportError as exc:
            message, hint = dp.public_text(exc.message), dp.public_text(exc.hint)
            await context.abort(status_code(exc), message if not hint else f"{message} (hint: {hint})")

    handler = grpc.unary_unary_rpc_method_handler(call, request_deserializer=None,
                                                  response_serializer=pb.FeedbackResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(FEEDBACK_SERVICE, {"Feedback": handler}),))


# ============================================================================ /ui
async def handle_ui(dp: DataPlane, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The dashboard at ``/ui`` (its data from this server: registry, metrics, log, live sketches)."""
    app = dp.__dict__.get("_dashboard")
    if app is None:
        from modelport.monitor.dashboard import Dashboard

        app = dp.__dict__["_dashboard"] = Dashboard(cast("Source", ServerSource(dp)), prefix="/ui")
    await app(scope, receive, send)


# ============================================================================ the dashboard's data
class ServerSource:
    """What ``/ui`` shows on a server: its models (and the registry's), its live numbers from its
    metrics (every worker's), drift from its live sketches, performance from its prediction log."""

    def __init__(self, dp: DataPlane, *, by: str = "hour", since: str = "24h") -> None:
        from collections import deque

        self.dp = dp
        self.by = by
        self.since = since
        self._snaps: deque[tuple[float, dict[tuple[str, str], list[float]]]] = deque(maxlen=120)

    def models(self) -> dict[str, Any]:
        from modelport.monitor.dashboard import registry_models

        repo = self.dp.repository
        reg = registry_models(repo.registry_url) if getattr(repo, "registry_url", None) else registry_models()
        by_name = {m["name"]: m for m in reg}
        for name in repo.names():
            entry = by_name.setdefault(name, {"name": name, "versions": []})
            known = {v["version"]: v for v in entry["versions"]}
            for v in repo.versions(name):
                model = self.dp.model(name, v)
                item = known.get(v) or {"version": v, "aliases": [], "tags": {}}
                item.update({"served": True, "digest": model.digest, "task": model.bundle.task})
                if v not in known:
                    entry["versions"].append(item)
        models = list(by_name.values())
        for m in models:
            m["served"] = any(v.get("served") for v in m["versions"])
        return {"models": models}

    def _totals(self) -> dict[tuple[str, str], list[float]]:
        """Per (model, version): requests, successes, failures, latency bucket counts (all workers)."""
        m = self.dp.metrics
        out: dict[tuple[str, str], list[float]] = {}
        n_buckets = len(m.latency.buckets) + 1

        def add(key: tuple[str, str], i: int, v: float) -> None:
            out.setdefault(key, [0.0] * (3 + n_buckets))[i] += v

        snaps = [m.snapshot(), *m._others()]
        for snap in snaps:
            for labels, v in snap.get(m.requests.name, []):
                add((labels[0], labels[1]), 0, v)
            for labels, v in snap.get(m.success.name, []):
                add((labels[0], labels[1]), 1, v)
            for labels, v in snap.get(m.failure.name, []):
                if labels[0]:
                    add((labels[0], labels[1]), 2, v)
            for labels, counts, _total in snap.get(m.latency.name, []):
                for j, c in enumerate(counts):
                    add((labels[0], labels[1]), 3 + j, c)
        return out

    def live(self) -> dict[str, Any]:
        import time as _time

        now = _time.time()
        cur = self._totals()
        if not self._snaps or now - self._snaps[-1][0] >= 0.5:
            self._snaps.append((now, cur))
        base_t, base = next(((t, s) for t, s in self._snaps if now - t <= 60.0), (now, cur))
        for t, s in self._snaps:  # the oldest snapshot of the last minute that is at least a second old
            if now - t <= 60.0 and now - t >= 1.0:
                base_t, base = t, s
                break
        dt = now - base_t
        bounds = list(self.dp.metrics.latency.buckets)
        out = []
        for key in sorted(cur):
            c, b = cur[key], base.get(key, [0.0] * len(cur[key]))
            req = c[0] - b[0]
            hist = [x - y for x, y in zip(c[3:], b[3:])]
            out.append({"model": key[0], "version": key[1],
                        "requests_per_second": req / dt if dt > 0 else None,
                        "latency_p50_ms": _quantile(hist, bounds, 0.5), "latency_p95_ms": _quantile(hist, bounds, 0.95),
                        "error_rate": (c[2] - b[2]) / req if req > 0 else None,
                        "requests": c[0], "errors": c[2]})
        return {"models": out, "window_seconds": dt, "from": "server"}

    def drift(self, model: str, version: str | None) -> dict[str, Any]:
        mon = self.dp.monitor
        served = self.dp.model(model, version)
        if mon is None or mon.live is None:
            raise InputError("this server keeps no prediction log: no drift to show.", hint="start it with --log DIR")
        mon.live.refresh()
        return mon.live.drift_view(served.name, served.version)

    def perf(self, model: str) -> dict[str, Any]:
        from modelport.monitor.feedback import perf

        mon = self.dp.monitor
        served = self.dp.model(model)
        if mon is None:
            raise InputError("this server keeps no prediction log: no performance to show.",
                             hint="start it with --log DIR")
        doc: dict[str, Any] = perf(mon.log.url, model=model, bundle=served.bundle, by=self.by, since=self.since).to_dict() \
            if _has_files(mon.log.url, model) else {"model": model, "windows": []}
        if mon.live is not None:
            doc["live"] = [{"version": v, **r} for (m, v), r in mon.live.realised(model).items() if m == model]
        return doc


def _has_files(url: str, model: str) -> bool:
    from modelport.monitor.read import log_files

    return bool(log_files(url, model=model))


def _quantile(hist: list[float], bounds: list[float], q: float) -> float | None:
    """A latency quantile (ms) from histogram counts: linear within the bucket it falls in."""
    total = sum(hist)
    if total <= 0:
        return None
    target = q * total
    seen = 0.0
    lo = 0.0
    for i, c in enumerate(hist):
        hi = bounds[i] if i < len(bounds) else bounds[-1] * 2
        if seen + c >= target and c > 0:
            return (lo + (hi - lo) * (target - seen) / c) * 1000.0
        seen += c
        lo = hi
    return bounds[-1] * 1000.0
