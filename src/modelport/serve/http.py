"""The REST transport: Open Inference Protocol (KServe V2) endpoints, the records endpoint, the
repository extension, ``/metrics`` and the OpenAPI document, as one ASGI application.

The application is a visible stack of plain ASGI layers around a router (outermost first)::

    CORS (only when origins are configured)
    Observability   Prometheus HTTP metrics and the optional JSON access log
    Auth            bearer tokens; health probes stay open
    Limits          maximum body size (413 before the body is read when Content-Length says so)
    ErrorMapping    modelport errors -> HTTP statuses; nothing a client sends yields a 5xx; error
                    texts lose the server's paths and registry URL (the log keeps them)
    Router          V2 + records + repository + metrics + docs, and the lifespan hooks

A scoring request is bounded in time from its first byte: the body must arrive, and the answer be
ready, within ``--request-timeout`` (504 otherwise). Large bodies (``OFFLOAD_BYTES``) are parsed
and decoded in a worker thread, so that the event loop keeps answering probes meanwhile.

The HTTP status mapping of the error tree lives here and nowhere else. Layers are plain ASGI
callables (no per-request objects beyond what is needed) because the router is on the hot path
of every single-row request.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from modelport.errors import (
    BundleError,
    InputError,
    ModelNotFoundError,
    ModelportError,
)
from modelport.serve import codec
from modelport.serve.codec import InferInput, InferRequest, InferResponse, RequestedOutput
from modelport.serve.errors import (
    DeadlineExceededError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    UnauthorizedError,
)

if TYPE_CHECKING:
    from modelport.serve.dataplane import DataPlane
    from modelport.serve.metrics import Metrics

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("modelport.serve")
access_log = logging.getLogger("modelport.serve.access")

HEADER_LENGTH = b"inference-header-content-length"
JSON_TYPE = b"application/json"
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
# bodies at least this large are parsed, decoded and answered in a worker thread
OFFLOAD_BYTES = 256 << 10


def status_of(exc: BaseException) -> int:
    """The HTTP status of an error (the one place this mapping lives)."""
    if isinstance(exc, PayloadTooLargeError):
        return 413
    if isinstance(exc, ModelNotFoundError):
        return 404
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, UnauthorizedError):
        return 401
    if isinstance(exc, DeadlineExceededError):
        return 504
    if isinstance(exc, (OverloadedError, NotReadyError)):
        return 503
    if isinstance(exc, BundleError):
        return 422  # a model the client asked to load is unusable; the server itself is fine
    return 500


def error_body(message: str, hint: str | None = None) -> bytes:
    doc: dict[str, Any] = {"error": message}
    if hint:
        doc["hint"] = hint
    return orjson.dumps(doc)


async def send_response(
    send: Send, status: int, body: bytes, content_type: bytes = JSON_TYPE, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


# ============================================================================ middleware
class Observability:
    """HTTP request counts by route and status, and one JSON line per request on
    ``modelport.serve.access`` if enabled (latency per model is measured by the data plane)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, access_log_enabled: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.log = access_log_enabled
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        state = {"status": 500, "bytes": 0}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                scope["modelport.started"] = True  # ErrorMapping reads this instead of wrapping send again
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - t0 if self.log else 0.0
            route = scope.get("modelport.route", "other")
            key = (scope["method"], route, state["status"])
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.metrics.http_requests.labels(*key)
            child.inc()
            if self.log:
                client = scope.get("client") or ("", 0)
                access_log.info(json.dumps({
                    "ts": round(time.time(), 3),
                    "client": client[0],
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": state["status"],
                    "bytes": state["bytes"],
                    "ms": round(elapsed * 1000, 3),
                    "model": scope.get("modelport.model"),
                    "version": scope.get("modelport.version"),
                    "id": scope.get("modelport.request_id"),
                }))


class Auth:
    """Bearer-token authentication. Health probes (and CORS preflights) stay open."""

    def __init__(self, app: ASGIApp, tokens: Sequence[str], *, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        given = header(scope, b"authorization") or b""
        scheme, _, token = given.partition(b" ")
        ok = scheme.lower() == b"bearer" and any(hmac.compare_digest(token.strip(), t) for t in self.tokens)
        if not ok:
            what = "no bearer token was sent" if not given else "the bearer token is not valid"
            await send_response(
                send, 401, error_body(f"unauthorized: {what}.", "send the header 'Authorization: Bearer <token>'"),
                headers=[(b"www-authenticate", b'Bearer realm="modelport"')],
            )
            return
        await self.app(scope, receive, send)


class Limits:
    """Maximum request body size: refused up front by Content-Length, and counted while reading."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int | None) -> None:
        self.app = app
        self.max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max is None:
            return await self.app(scope, receive, send)
        scope["modelport.max_body"] = self.max  # decompression honours the same limit
        length = header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max:
            await send_response(send, 413, error_body(self._message(int(length)), _TOO_LARGE_HINT))
            return
        limit = self.max
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLargeError(self._message(seen), hint=_TOO_LARGE_HINT)
            return message

        await self.app(scope, counted, send)

    def _message(self, size: int) -> str:
        return f"the request body ({size} bytes or more) is larger than this server accepts ({self.max} bytes)."


_TOO_LARGE_HINT = "send fewer rows per request, use the binary tensor extension, or raise --max-body-size"


class ErrorMapping:
    """Turn errors into V2 error responses (``{"error": ...}``); log the unexpected ones.

    Whether a response has started is read from ``scope["modelport.started"]``, which
    Observability (always outside this layer) sets, saving a second wrapper around ``send``.
    """

    def __init__(self, app: ASGIApp, *, public_text: Callable[[str | None], str | None] = lambda t: t) -> None:
        self.app = app
        self.public_text = public_text

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            await self.app(scope, receive, send)
        except ModelportError as exc:
            if scope.get("modelport.started"):
                raise
            status = status_of(exc)
            if status >= 500 and not isinstance(exc, (OverloadedError, NotReadyError, DeadlineExceededError)):
                log.error("request %s %s failed: %s", scope["method"], scope["path"], exc)
            elif status == 422:
                log.warning("request %s %s: %s", scope["method"], scope["path"], exc)
            headers = [(b"retry-after", b"1")] if status == 503 else []
            body = error_body(self.public_text(exc.message) or "", self.public_text(exc.hint))
            await send_response(send, status, body, headers=headers)
        except Exception:
            log.exception("unexpected error in %s %s", scope["method"], scope["path"])
            if scope.get("modelport.started"):
                raise
            await send_response(send, 500, error_body("internal server error; see the server log."))


# ============================================================================ router
class Router:
    """Dispatch by method and path; also answers the ASGI lifespan protocol."""

    def __init__(
        self,
        dataplane: DataPlane,
        *,
        on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
        on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.dp = dataplane
        self.on_startup = list(on_startup)
        self.on_shutdown = list(on_shutdown)
        self._server_meta = orjson.dumps(dataplane.server_metadata())
        self._openapi: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            return await self._http(scope, receive, send)
        if kind == "lifespan":
            return await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for fn in self.on_startup:
                        await fn()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for fn in self.on_shutdown:
                    try:
                        await fn()
                    except Exception:
                        log.exception("shutdown step failed")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        path = scope["path"]
        parts = path.strip("/").split("/")
        # /v2/models/{m}[/versions/{v}][/infer|/ready|/records]
        if len(parts) >= 3 and parts[0] == "v2" and parts[1] == "models" and parts[2]:
            name = parts[2]
            rest = parts[3:]
            version = None
            if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
                version = rest[1]
                rest = rest[2:]
            action = rest[0] if len(rest) == 1 else "" if not rest else None
            scope["modelport.model"] = name
            scope["modelport.version"] = version
            if action == "infer":
                scope["modelport.route"] = "/v2/models/{model}/infer"
                if not await self._expect(method, "POST", send):
                    await self._infer(scope, receive, send, name, version)
                return
            if action == "records":
                scope["modelport.route"] = "/v2/models/{model}/records"
                if not await self._expect(method, "POST", send):
                    await self._records(scope, receive, send, name, version)
                return
            if action == "feedback":
                scope["modelport.route"] = "/v2/models/{model}/feedback"
                if not await self._expect(method, "POST", send):
                    from modelport.serve.monitoring import handle_feedback

                    await handle_feedback(self.dp, scope, receive, send, name, version, _read_body, _json)
                return
            if action == "ready":
                scope["modelport.route"] = "/v2/models/{model}/ready"
                if not await self._expect(method, "GET", send):
                    ready = self.dp.model_ready(name, version)
                    await send_response(send, 200 if ready else 503, orjson.dumps({"name": name, "ready": ready}))
                return
            if action == "":
                scope["modelport.route"] = "/v2/models/{model}"
                if not await self._expect(method, "GET", send):
                    await send_response(send, 200, orjson.dumps(self.dp.model_metadata(name, version)))
                return
            return await self._not_found(scope, send)
        route = _STATIC.get(path)
        if route is not None:
            scope["modelport.route"] = path
            want, handler = route
            if await self._expect(method, want, send):
                return
            return await handler(self, scope, receive, send)
        if len(parts) == 5 and parts[:3] == ["v2", "repository", "models"] and parts[4] in ("load", "unload"):
            scope["modelport.route"] = "/v2/repository/models/{model}/" + parts[4]
            scope["modelport.model"] = parts[3]
            if await self._expect(method, "POST", send):
                return
            await _read_body(scope, receive, self.dp.deadline())  # the body (parameters) is optional and unused
            if parts[4] == "load":
                await self.dp.load_model(parts[3])
            else:
                await self.dp.unload_model(parts[3])
            return await send_response(send, 200, b"{}")
        if path == "/ui" or path.startswith("/ui/"):
            scope["modelport.route"] = "/ui"
            from modelport.serve.monitoring import handle_ui

            return await handle_ui(self.dp, scope, receive, send)
        return await self._not_found(scope, send)

    async def _expect(self, method: str, want: str, send: Send) -> bool:
        """Answer 405 (and return True) when the method is not the route's."""
        if method == want or (want == "GET" and method == "HEAD"):
            return False
        await send_response(
            send, 405, error_body(f"method {method} is not allowed here; use {want}."), headers=[(b"allow", want.encode())]
        )
        return True

    async def _not_found(self, scope: Scope, send: Send) -> None:
        scope.setdefault("modelport.route", "other")
        await send_response(
            send, 404, error_body(f"no endpoint at {scope['path']}.", "see /docs for the endpoints this server offers")
        )

    # ------------------------------------------------------------------ V2 inference
    async def _infer(self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None) -> None:
        deadline = self.dp.deadline()
        model = self.dp.model(name, version)  # an unknown model is a 404 whatever the body holds
        body = await _read_body(scope, receive, deadline)
        big = len(body) >= OFFLOAD_BYTES
        if big:
            request, binary_out = await asyncio.to_thread(self._decode, scope, body, model, name, version)
        else:
            request, binary_out = self._decode(scope, body, model, name, version)
        if request.id is None and self.dp.monitor is not None:  # a prediction log: ids also come as a header
            request.id = _request_id(scope)
        scope["modelport.request_id"] = request.id
        response = await self.dp.infer(request, "rest", deadline=deadline, offload=big)
        if big:
            payload, headers, ctype = await asyncio.to_thread(encode_response, response, request, binary_out)
        else:
            payload, headers, ctype = encode_response(response, request, binary_out)
        if self.dp.monitor is not None and response.id is not None:
            headers = [*headers, (b"x-request-id", response.id.encode())]
        await send_response(send, 200, payload, ctype, headers)

    def _decode(self, scope: Scope, body: bytes, model: Any, name: str, version: str | None) -> tuple[InferRequest, bool]:
        hlen = header(scope, HEADER_LENGTH)
        binary: memoryview | None = None
        if hlen is not None:
            try:
                n = int(hlen)
            except ValueError:
                n = -1
            if n < 0 or n > len(body):
                raise InputError(
                    f"Inference-Header-Content-Length is {hlen[:40].decode(errors='replace')!r} but the body has "
                    f"{len(body)} bytes; it must give the length of the JSON header at the start of the body."
                )
            binary = memoryview(body)[n:]
            body = body[:n]
        try:
            return decode_request(_json(body), name, version, binary)
        except PayloadTooLargeError:
            raise
        except InputError as exc:  # say what the model expects, whatever was malformed
            raise InputError(f"{exc.message} {model.expected()}", hint=exc.hint) from None

    async def _records(self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None) -> None:
        deadline = self.dp.deadline()
        self.dp.model(name, version)
        body = await _read_body(scope, receive, deadline)
        big = len(body) >= OFFLOAD_BYTES
        doc = await asyncio.to_thread(_json, body) if big else _json(body)
        if not isinstance(doc, dict) or "records" not in doc:
            model = self.dp.model(name, version)
            raise InputError(
                "the body must be an object with a list under 'records', e.g. "
                '{"records": [{"f0": 1.0, ...}]}. ' + model.expected(records=True)
            )
        result = await self.dp.records(name, version, doc["records"], deadline=deadline, offload=big,
                                       request_id=None if self.dp.monitor is None else _request_id(scope))
        if big:
            payload = await asyncio.to_thread(orjson.dumps, result, option=_NUMPY)
        else:
            payload = orjson.dumps(result, option=_NUMPY)
        rid = result.get("id")
        await send_response(send, 200, payload, headers=[(b"x-request-id", rid.encode())] if rid else ())

    # ------------------------------------------------------------------ static routes
    async def _live(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_response(send, 200, b'{"live":true}')

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        ready = self.dp.ready()
        await send_response(send, 200 if ready else 503, orjson.dumps({"ready": ready}))

    async def _server_metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_response(send, 200, self._server_meta)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, ctype = self.dp.metrics.render()
        await send_response(send, 200, body, ctype.encode())

    async def _index(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(scope, receive, self.dp.deadline())
        doc = _json(body) if body.strip() else {}
        if not isinstance(doc, dict):
            raise InputError('the repository index body must be an object such as {"ready": true}.')
        entries = self.dp.repository_index()
        ready = doc.get("ready")
        if ready is not None and not isinstance(ready, bool):
            raise InputError(f"'ready' must be true or false; got {ready!r}.")
        if ready:
            entries = [e for e in entries if e["state"] == "READY"]
        await send_response(send, 200, orjson.dumps(entries))

    async def _openapi_json(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._openapi is None:
            from modelport.serve.openapi import document

            self._openapi = orjson.dumps(document(self.dp))
        await send_response(send, 200, self._openapi)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        from modelport.serve.openapi import docs_html, document

        await send_response(send, 200, docs_html(document(self.dp)).encode(), b"text/html; charset=utf-8")


_STATIC: dict[str, tuple[str, Callable[..., Awaitable[None]]]] = {
    "/v2/health/live": ("GET", Router._live),
    "/v2/health/ready": ("GET", Router._ready),
    "/v2": ("GET", Router._server_metadata),
    "/v2/": ("GET", Router._server_metadata),
    "/metrics": ("GET", Router._metrics),
    "/v2/repository/index": ("POST", Router._index),
    "/openapi.json": ("GET", Router._openapi_json),
    "/docs": ("GET", Router._docs),
}


# ============================================================================ V2 JSON <-> objects
def decode_request(
    doc: Any, name: str, version: str | None, binary: memoryview | None = None
) -> tuple[InferRequest, bool]:
    """An InferRequest from a V2 JSON body (and the binary part of the body, if any).

    Returns the request and whether outputs are wanted in binary by default
    (``binary_data_output``).
    """
    if not isinstance(doc, dict):
        raise InputError('the inference request must be a JSON object with "inputs".')
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InputError('the inference request needs a non-empty "inputs" list of tensors.')
    params = codec.parameters(doc.get("parameters"), "request")
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise InputError(f'"id" must be a string; got {type(rid).__name__}.')
    offset = 0
    inputs: list[InferInput] = []
    for i, t in enumerate(raw_inputs):
        if not isinstance(t, dict):
            raise InputError(f"input #{i} must be an object with name, shape, datatype and data.")
        tname = t.get("name")
        if not isinstance(tname, str) or not tname:
            raise InputError(f"input #{i} has no name.")
        datatype = t.get("datatype")
        shape = codec.parse_shape(tname, t.get("shape"))
        tparams = codec.parameters(t.get("parameters"), f"input {codec.show(tname)}") if "parameters" in t else {}
        size = tparams.get("binary_data_size")
        if size is not None:
            if "data" in t:
                raise InputError(
                    f"input {codec.show(tname)} has both data and a binary_data_size parameter; send its values one way."
                )
            if binary is None:
                raise InputError(
                    f"input {codec.show(tname)} says binary_data_size but the request has no "
                    "Inference-Header-Content-Length header, so there is no binary part."
                )
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise InputError(
                    f"input {codec.show(tname)}: binary_data_size {size!r} does not fit the {len(binary) - offset} "
                    "bytes of binary data left in the body."
                )
            if not isinstance(datatype, str) or datatype not in codec.V2_TO_NUMPY:
                raise InputError(codec.bad_datatype(tname, datatype))
            data = codec.from_raw(tname, datatype, shape, binary[offset:offset + size])
            offset += size
        else:
            if "data" not in t:
                raise InputError(f"input {codec.show(tname)} has no data (and no binary_data_size parameter).")
            data = codec.tensor_from_json(tname, datatype, shape, t["data"])
        inputs.append(InferInput(tname, str(datatype), shape, data, tparams))
    if binary is not None and offset != len(binary):
        raise InputError(
            f"the body holds {len(binary) - offset} bytes of binary data that no input claims with binary_data_size."
        )
    outputs: list[RequestedOutput] | None = None
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InputError('"outputs" must be a list of {"name": ...} objects.')
        outputs = []
        for o in raw_outputs:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise InputError('each requested output must be an object with a "name".')
            outputs.append(RequestedOutput(o["name"], codec.parameters(o.get("parameters"), f"output {codec.show(o['name'])}")))
        if not outputs:
            outputs = None
    return (
        InferRequest(name, version, inputs, outputs, rid, params),
        bool(params.get("binary_data_output", False)),
    )


def encode_response(
    response: InferResponse, request: InferRequest, binary_default: bool
) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """The body, extra headers and content type of a V2 inference response."""
    wanted = {o.name: o for o in request.outputs or ()}
    outs = []
    blobs: list[bytes] = []
    for out in response.outputs:
        req = wanted.get(out.name)
        as_binary = req.binary if req is not None and req.binary is not None else binary_default
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(out.shape)}
        if as_binary:
            raw = codec.to_raw(out.data, out.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = codec.tensor_to_json_data(out.data, out.datatype)
        outs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    doc["outputs"] = outs
    head = orjson.dumps(doc, option=_NUMPY)
    if not blobs:
        return head, [], JSON_TYPE
    return head + b"".join(blobs), [(b"inference-header-content-length", str(len(head)).encode())], b"application/octet-stream"


# ============================================================================ helpers
async def _read_body(scope: Scope, receive: Receive, deadline: float | None = None) -> bytes:
    """The whole body, decompressed; with ``deadline`` (``time.monotonic()``), a body still
    arriving then is a DeadlineExceededError (a slow upload cannot hold a request open for ever)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise InputError("the client disconnected before sending the whole body.")
    body = message.get("body", b"")
    if message.get("more_body", False):  # the rest is still on its way: wait for it, within the deadline
        chunks = [body]
        try:
            if deadline is None:
                await _read_rest(receive, chunks)
            else:
                async with asyncio.timeout(deadline - time.monotonic()):
                    await _read_rest(receive, chunks)
        except TimeoutError:
            raise DeadlineExceededError(
                "the request timed out while its body was still arriving.",
                hint="send the body faster, or raise --request-timeout",
            ) from None
        body = b"".join(chunks)
    encoding = header(scope, b"content-encoding")
    if encoding:
        text = encoding.decode("latin-1").strip().lower()
        if text in ("", "identity"):
            return body
        # a few compressed bytes may inflate to the body limit: off the event loop
        body = await asyncio.to_thread(_decompress, body, text, scope)
    return body


async def _read_rest(receive: Receive, chunks: list[bytes]) -> None:
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InputError("the client disconnected before sending the whole body.")
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)


def _decompress(body: bytes, encoding: str, scope: Scope) -> bytes:
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InputError(f"Content-Encoding {encoding[:40]!r} is not supported; use gzip, deflate or none.")
    wbits = 31 if encoding == "gzip" else 15
    limit = scope.get("modelport.max_body") or 1 << 30
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InputError(f"the body is not valid {encoding} data ({exc}).") from None
    if len(out) > limit:
        raise PayloadTooLargeError(f"the decompressed body is larger than this server accepts ({limit} bytes).")
    return out


def _request_id(scope: Scope) -> str | None:
    """The client's ``X-Request-ID`` header (checked by the prediction log), or None."""
    value = header(scope, b"x-request-id")
    return None if value is None else value.decode("latin-1")


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the body is not valid JSON: {exc}.") from None


def build_app(
    dataplane: DataPlane,
    *,
    tokens: Sequence[str] = (),
    max_body_bytes: int | None = None,
    access_log_enabled: bool = False,
    cors_origins: Sequence[str] = (),
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> ASGIApp:
    """The ASGI application: the middleware stack, outermost last, around the router."""
    app: ASGIApp = Router(dataplane, on_startup=on_startup, on_shutdown=on_shutdown)
    app = ErrorMapping(app, public_text=dataplane.public_text)
    app = Limits(app, max_body_bytes=max_body_bytes)
    if tokens:
        from modelport.monitor.dashboard import OPEN_ASSETS  # the page and its scripts hold no data

        app = Auth(app, tokens, open_paths=OPEN_PATHS | OPEN_ASSETS)
    app = Observability(app, dataplane.metrics, access_log_enabled=access_log_enabled)
    if cors_origins:
        from modelport._deps import require

        cors = require("starlette.middleware.cors", purpose="CORS")
        app = cors.CORSMiddleware(
            app, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "inference-header-content-length"],
            expose_headers=["inference-header-content-length"],
        )
    return app

