"""The modelport server inside a serverless function.

A function holds one bundle, loaded once per container (at import, in the platform's init phase),
and answers the HTTP requests its platform hands over with the very ASGI application that
``modelport serve`` runs: the same V2 (Open Inference Protocol) and records endpoints, the same
decoding of JSON and binary tensors, the same input rules, errors and statuses. Each platform
module (:mod:`.aws_lambda`, :mod:`.gcf`, :mod:`.azure`) only translates its request and response
shapes to the :class:`Request` / :class:`Response` here.

Beyond ``modelport serve``'s routes a function also answers ``POST /`` (a function URL's root):
a body with ``"records"`` goes to the records endpoint, anything else to V2 inference, both for
the function's model. Paths may carry a prefix in front of ``/v2/`` (an API Gateway stage, a base
path mapping, Azure's ``/api`` route prefix): it is dropped. ``/metrics`` and the repository
extension (load / unload) are not served: the platform scales and monitors a function, and a
function URL must not let a caller unload its model.

Settings, read once at cold start from the environment:
``MODELPORT_THREADS`` (ONNX Runtime threads per call, default 1; 0 = one per core),
``MODELPORT_MAX_ROWS`` (rows per request, default 1,000,000; 0 = no limit),
``MODELPORT_SERVE_TOKENS`` (comma-separated bearer tokens; unset = the platform's own auth only).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import InputError, ServingError

TOKENS_ENV = "MODELPORT_SERVE_TOKENS"
_TEXT_TYPES = ("application/json", "text/")
_DROPPED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass
class Request:
    """An HTTP request as a platform delivered it (headers as text pairs, body as bytes)."""

    method: str
    path: str
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    query: bytes = b""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def content_type(self) -> str:
        for k, v in self.headers:
            if k == "content-type":
                return v
        return "application/json"

    @property
    def is_text(self) -> bool:
        """Whether the body is text (JSON): platforms that carry bodies as strings base64-encode the rest."""
        return self.content_type.startswith(_TEXT_TYPES)

    def header_dict(self, *, with_content_type: bool = True) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in self.headers:
            if k == "content-type" and not with_content_type:
                continue
            out[k] = f"{out[k]}, {v}" if k in out else v
        return out


class FunctionServer:
    """One bundle behind the server's ASGI app, driven by a private event loop thread so that a
    synchronous handler (Lambda, Cloud Functions, Azure's thread pool) can call it from any thread."""

    def __init__(self, source: str | os.PathLike[str], *, platform: str, max_body_bytes: int) -> None:
        from modelport.serve.server import ServeConfig, Server

        self.platform = platform
        threads = _env_int("MODELPORT_THREADS", 1)
        max_rows = _env_int("MODELPORT_MAX_ROWS", 1_000_000)
        config = ServeConfig(
            sources=[str(source)],
            max_batch_size=1,  # one request at a time per container: nothing to batch with
            intra_op_threads=threads or None,
            max_body_bytes=max_body_bytes,
            max_rows=max_rows or None,
            request_timeout=None,  # the platform's own timeout ends the invocation
            token_env=TOKENS_ENV if os.environ.get(TOKENS_ENV) else None,
        )
        self.server = Server(config)
        self.server.load()
        names = self.server.dataplane.repository.names()
        if len(names) != 1:
            raise ServingError(f"a function serves one model; {source} holds {len(names)} ({', '.join(names)}).")
        self.model_name = names[0]
        self.app = self.server.app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="modelport-function", daemon=True)
        self._thread.start()

    def handle(self, request: Request) -> Response:
        """Answer one request (thread-safe)."""
        future: Future[Response] = asyncio.run_coroutine_threadsafe(self._handle(request), self._loop)
        return future.result()

    # ------------------------------------------------------------------ internals
    async def _handle(self, request: Request) -> Response:
        from modelport.serve.http import error_body

        method = request.method.upper()
        path = self.route(method, request.path, request.body)
        if path == "/metrics" or path.startswith("/v2/repository/models/"):
            what = "metrics are" if path == "/metrics" else "the repository extension (load / unload) is"
            return Response(404, [("content-type", "application/json")], error_body(
                f"{what} not served by a function.",
                f"use {self.platform}'s own monitoring and deployment; modelport serve offers both",
            ))
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "https",
            "path": path,
            "raw_path": path.encode("utf-8"),
            "query_string": request.query,
            "root_path": "",
            # HTTP header text is latin-1; a platform handing over other characters gets them replaced
            "headers": [(k.lower().encode("latin-1", "replace"), v.encode("latin-1", "replace"))
                        for k, v in request.headers],
            "client": None,
            "server": None,
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            return {"type": "http.disconnect"}

        status = 500
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for k, v in message.get("headers", ()):
                    name = k.decode("latin-1").lower()
                    if name not in _DROPPED_HEADERS:
                        headers.append((name, v.decode("latin-1")))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return Response(status, headers, b"".join(chunks))

    def route(self, method: str, path: str, body: bytes) -> str:
        """The server path for a platform path: prefixes before /v2 dropped, the root mapped to the model."""
        path = path or "/"
        if not path.startswith("/"):
            path = "/" + path
        i = path.find("/v2/")
        if i > 0:
            path = path[i:]
        elif path.endswith("/v2") and i < 0:
            path = "/v2"
        if path.rstrip("/") == "":
            base = f"/v2/models/{self.model_name}"
            if method != "POST":
                return base
            return base + ("/records" if _has_records(body) else "/infer")
        return path


def _has_records(body: bytes) -> bool:
    import orjson

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and "records" in doc


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ServingError(f"${name} must be a whole number; got {raw!r}.") from None
    if value < 0:
        raise ServingError(f"${name} must be 0 or more; got {value}.")
    return value


_SERVERS: dict[tuple[str, str], FunctionServer] = {}
_LOCK = threading.Lock()


def server_for(source: str | os.PathLike[str], *, platform: str, max_body_bytes: int) -> FunctionServer:
    """The server of ``source`` in this process, created on first use (once per container)."""
    key = (str(Path(source).resolve()), platform)
    with _LOCK:
        server = _SERVERS.get(key)
        if server is None:
            server = _SERVERS[key] = FunctionServer(source, platform=platform, max_body_bytes=max_body_bytes)
    return server


def bad_request(message: str, hint: str | None = None) -> Response:
    """A 400 answer for a request the platform delivered in a shape modelport cannot read."""
    from modelport.serve.http import error_body

    return Response(400, [("content-type", "application/json")], error_body(message, hint))


def error_for(status: int, doc: Any) -> InputError | ServingError:
    """The modelport error an error response stands for (direct invocations raise it)."""
    message = doc.get("error", "request failed") if isinstance(doc, dict) else str(doc)
    hint = doc.get("hint") if isinstance(doc, dict) else None
    if 400 <= status < 500:
        return InputError(message, hint=hint)
    return ServingError(message, hint=hint)
