"""The transport-agnostic data plane: health, metadata, inference, records and the repository.

REST (:mod:`modelport.serve.http`) and gRPC (:mod:`modelport.serve.grpc`) decode their wire
format into :class:`~modelport.serve.codec.InferRequest`, call this object, and encode what it
returns. Errors are raised from the :mod:`modelport.errors` tree; each transport maps them to
its own statuses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport import __version__
from modelport.bundle.core import Bundle
from modelport.errors import InputError, ModelNotFoundError, ModelportError, ServingError
from modelport.serve.batching import BatchStats, ScoringThreads
from modelport.serve.codec import InferOutput, InferRequest, InferResponse
from modelport.serve.errors import DeadlineExceededError, NotReadyError, OverloadedError, PayloadTooLargeError
from modelport.serve.metrics import Metrics
from modelport.serve.model import PLATFORM, BatchingConfig, ServedModel
from modelport.serve.repository import ModelRepository, Source, VersionPolicy

if TYPE_CHECKING:
    from modelport.serve.monitoring import ServingMonitor
    from modelport.signing import SignaturePolicy

SERVER_NAME = "modelport"
MAX_ERROR_TEXT = 4000
EXTENSIONS = ["binary_tensor_data", "model_repository", "parameters", "records", "metrics"]


class DataPlane:
    """Everything a server does, independent of how requests arrive."""

    def __init__(
        self,
        sources: Sequence[str | Source],
        *,
        policy: VersionPolicy = VersionPolicy(),
        default_versions: dict[str, str] | None = None,
        batching: BatchingConfig = BatchingConfig(),
        max_rows: int | None = None,
        request_timeout: float | None = None,
        max_concurrency: int = 1,
        intra_op_threads: int | None = None,
        registry_url: str | None = None,
        metrics: Metrics | None = None,
        signature_policy: SignaturePolicy | None = None,
        unknown_categories: str | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.unknown_categories = unknown_categories  # overrides every bundle's unknown-category policy
        self.batching = batching
        self.max_rows = max_rows
        self.request_timeout = request_timeout
        self.intra_op_threads = intra_op_threads
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ServingError(
                f"max_concurrency must be a positive integer; got {max_concurrency!r}.",
                hint="1 (the default) runs one call of a model version at a time; raise it where cores are free",
            )
        # models run in these threads, never on the event loop; each model version may use at most
        # max_concurrency of them at once, so a slow model cannot take another model's turn
        self.executor = ScoringThreads(per_model=max_concurrency)
        self.repository = ModelRepository(
            sources, self._make_model, policy=policy, default_versions=default_versions, registry_url=registry_url,
            signature_policy=signature_policy,
        )
        #: the prediction log and live monitoring (``--log``; serve/monitoring.py), or None
        self.monitor: ServingMonitor | None = None
        self.draining = False  # scoring requests are refused (the last step of a shutdown)
        self.stopping = False  # a drain has begun: readiness says no, in-flight requests finish
        self.started = time.time()

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        """Load every source (blocking). Errors here stop the server before it listens."""
        self.repository.load_all()

    def _make_model(self, bundle: Bundle, name: str, version: str, origin: str) -> ServedModel:
        model = ServedModel(
            # metadata shows clients where a model came from without the server's paths
            bundle, name=name, version=version, source=self.repository.public_text(origin), batching=self.batching,
            intra_op_threads=self.intra_op_threads, executor=self.executor, on_batch=self._on_batch,
            unknown_categories=self.unknown_categories, unknown_counter=self.metrics.unknown_categories,
        )
        m = self.metrics
        model.stats = {  # type: ignore[attr-defined]
            "queue": m.queue.labels(name, version),
            "compute": m.compute.labels(name, version),
            "rows": m.batch_rows.labels(name, version),
            "requests": m.batch_requests.labels(name, version),
        }
        model.children = {}  # type: ignore[attr-defined]
        m.loaded.labels(name, version).set(1)
        return model

    def _on_batch(self, model: ServedModel, stats: BatchStats) -> None:
        s = model.stats  # type: ignore[attr-defined]
        for w in stats.queue_seconds:
            s["queue"].observe(w)
        s["compute"].observe(stats.compute_seconds)
        s["rows"].observe(stats.rows)
        s["requests"].observe(stats.requests)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def stop(self, error: Exception) -> None:
        """Fail every queued and running request with ``error`` and stop the running ONNX Runtime
        calls (the end of a drain: nothing may keep the process alive)."""
        self.draining = True
        self.executor.stop_all(error)

    def public_text(self, text: str | None) -> str | None:
        """``text`` as a client may see it: server paths and registry URLs removed (they stay in the
        log), and at most MAX_ERROR_TEXT characters (a message may repeat a client's megabyte-long name)."""
        if not text:
            return text
        total = len(text)
        text = self.repository.public_text(text[: 2 * MAX_ERROR_TEXT])
        if total > MAX_ERROR_TEXT:
            text = text[:MAX_ERROR_TEXT] + f"... ({total} characters in all)"
        return text

    def deadline(self, client_timeout: float | None = None) -> float | None:
        """When a request arriving now must be answered (``time.monotonic()``): after
        ``request_timeout``, or sooner if the client set a shorter deadline of its own (gRPC)."""
        limit = self.request_timeout
        if client_timeout is not None and (limit is None or client_timeout < limit):
            limit = client_timeout
        return None if limit is None else time.monotonic() + limit

    # ------------------------------------------------------------------ health and metadata
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return not (self.draining or self.stopping) and bool(self.repository.names())

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def model(self, name: str, version: str | None = None) -> ServedModel:
        return self.repository.get(name, version)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        self.repository.get(name, version)  # 404 for what is not served
        return not (self.draining or self.stopping)

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self.repository.get(name, version)
        inputs, outputs = model.tensor_metadata()
        return {
            "name": name,
            "versions": self.repository.versions(name),
            "platform": PLATFORM,
            "inputs": inputs,
            "outputs": outputs,
            "parameters": {"version": model.version, **model.properties()},
        }

    # ------------------------------------------------------------------ inference
    async def infer(
        self, request: InferRequest, protocol: str = "rest", *, deadline: float | None = None, offload: bool = False
    ) -> InferResponse:
        """Score one V2 request. Raises InputError (400), ModelNotFoundError (404), ... .

        ``deadline`` (``time.monotonic()``) bounds the whole request (:meth:`deadline`); ``offload``
        prepares the feeds in a worker thread (large requests: the event loop stays free).
        """

        def prepare(model: ServedModel) -> tuple[dict[str, np.ndarray], int, list[str]]:
            wanted = model.check_outputs([o.name for o in request.outputs] if request.outputs else None)
            feeds, rows = model.feeds_from_v2(request.inputs)
            return feeds, rows, wanted

        rid = request.id if self.monitor is None else self.monitor.request_id(request.id)
        model, result, _, wanted = await self._score(request.model, request.version, protocol, prepare, deadline, offload,
                                                     request_id=rid, raw=request.inputs)
        outputs = [
            InferOutput(name, model.output_datatypes[name], result[name].shape, result[name]) for name in wanted
        ]
        return InferResponse(model.name, model.version, outputs, id=rid)

    async def records(
        self, name: str, version: str | None, records: Any, protocol: str = "records", *,
        deadline: float | None = None, offload: bool = False, request_id: str | bytes | None = None,
    ) -> dict[str, Any]:
        """Score ``{"records": [...]}``: one prediction per record, with class names and probabilities
        (and, with a prediction log, the request's ``id``)."""

        def prepare(model: ServedModel) -> tuple[dict[str, np.ndarray], int, list[str]]:
            feeds, rows = model.feeds_from_records(records)
            return feeds, rows, model.output_names

        rid = None if self.monitor is None else self.monitor.request_id(request_id)
        model, result, rows, _ = await self._score(name, version, protocol, prepare, deadline, offload,
                                                   request_id=rid, raw=records)
        preds = _records_out(result, model.bundle.classes, rows)
        if rid is None:
            return {"model_name": model.name, "model_version": model.version, "predictions": preds}
        return {"model_name": model.name, "model_version": model.version, "id": rid, "predictions": preds}

    async def _score(
        self,
        name: str,
        version: str | None,
        protocol: str,
        prepare: Callable[[ServedModel], tuple[dict[str, np.ndarray], int, list[str]]],
        deadline: float | None = None,
        offload: bool = False,
        *,
        request_id: str | None = None,
        raw: Any = None,
    ) -> tuple[ServedModel, dict[str, np.ndarray], int, list[str]]:
        """The bookkeeping every scoring request shares: model lookup, drain check, row limit,
        batching, and the request / in-flight / failure / success / latency metrics."""
        try:
            model = self.repository.get(name, version)
        except ModelNotFoundError:
            self.metrics.failure.labels("", "", protocol, "not_found").inc()
            raise
        ch = self._children(model, protocol)
        ch["requests"].inc()
        ch["inflight"].inc()
        t0 = time.perf_counter()
        try:
            if self.draining:
                raise NotReadyError("the server is shutting down; request refused.", hint="retry on another replica")
            feeds, rows, wanted = await asyncio.to_thread(prepare, model) if offload else prepare(model)
            self._check_rows(rows)
            timeout = None
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    raise DeadlineExceededError(
                        "the request timed out before it reached the model (reading and decoding it took "
                        "the whole request timeout).",
                        hint="send smaller requests, or raise --request-timeout",
                    )
            result = await model.batcher().submit(feeds, rows, wanted, timeout=timeout)
        except ModelportError as exc:
            self.metrics.failure.labels(model.name, model.version, protocol, _reason(exc)).inc()
            raise
        finally:
            ch["inflight"].dec()
        ch["success"].inc()
        elapsed = time.perf_counter() - t0
        ch["latency"].observe(elapsed)
        if self.monitor is not None and request_id is not None:
            self.monitor.record(model, request_id, feeds, result, rows, elapsed, raw)
        return model, result, rows, wanted

    def _check_rows(self, rows: int) -> None:
        if self.max_rows is not None and rows > self.max_rows:
            raise PayloadTooLargeError(
                f"the request has {rows} rows; this server accepts at most {self.max_rows} per request.",
                hint="split the request, or use `modelport score` for batch files",
            )

    def _children(self, model: ServedModel, protocol: str) -> dict[str, Any]:
        ch = model.children.get(protocol)  # type: ignore[attr-defined]
        if ch is None:
            ch = model.children[protocol] = self.metrics.model_children(model.name, model.version, protocol)  # type: ignore[attr-defined]
        return ch

    # ------------------------------------------------------------------ repository extension
    def repository_index(self) -> list[dict[str, Any]]:
        return self.repository.index()

    async def load_model(self, name: str) -> list[str]:
        return await self.repository.load(name)

    async def unload_model(self, name: str) -> None:
        versions = self.repository.versions(name)
        await self.repository.unload(name)
        for v in versions:
            self.metrics.loaded.labels(name, v).set(0)


def _reason(exc: ModelportError) -> str:
    if isinstance(exc, PayloadTooLargeError):
        return "too_large"
    if isinstance(exc, OverloadedError):
        return "overloaded"
    if isinstance(exc, DeadlineExceededError):
        return "timeout"
    if isinstance(exc, NotReadyError):
        return "not_ready"
    if isinstance(exc, InputError):
        return "bad_input"
    return "error"


def _records_out(result: dict[str, np.ndarray], classes: list[Any] | None, rows: int) -> list[dict[str, Any]]:
    from modelport.runtime.session import output_columns

    if classes is not None and "label" in result and "probabilities" in result:
        labels = result["label"].tolist()
        probs = result["probabilities"].tolist()
        names = [str(c) for c in classes]
        return [
            {"label": _plain(labels[i]), "probabilities": dict(zip(names, probs[i]))} for i in range(rows)
        ]
    cols = {k: v.tolist() for k, v in output_columns(result, classes).items()}
    return [{k: _plain(v[i]) for k, v in cols.items()} for i in range(rows)]


def _plain(v: Any) -> Any:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v
