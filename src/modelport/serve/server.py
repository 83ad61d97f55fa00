"""Putting a server together: configuration, the ASGI app with its lifespan (gRPC, polling,
drain), and running it under uvicorn with one or several worker processes.

    >>> from modelport.serve import ServeConfig, serve
    >>> serve(ServeConfig(sources=["churn.mpk", "fraud/"], port=8080, grpc_port=8081))

SIGTERM (or Ctrl-C) drains, and the drain always ends: readiness turns false and the listening
sockets close at once; in-flight HTTP and gRPC requests may finish for up to ``drain_timeout``
seconds; then whatever still runs is stopped (its clients get 503, its ONNX Runtime calls are
terminated) and the process exits. A watchdog ends the process ``DRAIN_GRACE`` seconds after the
drain timeout should anything (a call ONNX Runtime cannot stop) still hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport._deps import require
from modelport.errors import ServingError
from modelport.serve.dataplane import DataPlane
from modelport.serve.errors import NotReadyError
from modelport.serve.model import BatchingConfig
from modelport.serve.repository import VersionPolicy

if TYPE_CHECKING:
    from modelport.signing import SignaturePolicy

log = logging.getLogger("modelport.serve")

CONFIG_ENV = "MODELPORT_SERVE_CONFIG"
DEFAULT_TOKEN_ENV = "MODELPORT_SERVE_TOKENS"
# seconds past the drain timeout after which the watchdog ends a process that is still stopping
DRAIN_GRACE = 5.0


@dataclass
class ServeConfig:
    """Everything ``modelport serve`` can be told. Sizes are bytes, times seconds."""

    sources: list[str]
    host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int | None = None
    workers: int = 1
    # models
    version_policy: str = "all"
    default_versions: dict[str, str] = field(default_factory=dict)
    poll_interval: float | None = None
    registry_url: str | None = None
    # batching and runtime
    max_batch_size: int = 8
    max_queue_delay: float = 0.0
    max_queue: int = 2048
    # ONNX Runtime calls one model version may run at once (requests beyond it queue and batch)
    max_concurrency: int = 1
    intra_op_threads: int | None = 1
    # overrides every bundle's policy for values outside a column's categories (native/missing/error)
    unknown_categories: str | None = None
    # limits
    max_body_bytes: int | None = 64 << 20
    max_rows: int | None = 1_000_000
    request_timeout: float | None = 30.0
    drain_timeout: float = 30.0
    # security and operations
    token_env: str | None = None
    token_file: str | None = None
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    tls_ca_certs: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    access_log: bool = False
    log_level: str = "info"
    # signatures: with require_signature, a bundle is served only when signed by one of these
    # (PEM paths; see modelport.signing.SignaturePolicy), at startup and on every reload
    require_signature: bool = False
    trusted_keys: list[str] = field(default_factory=list)
    trusted_cas: list[str] = field(default_factory=list)
    trusted_certificates: list[str] = field(default_factory=list)
    # monitoring (serve/monitoring.py): the prediction log (a directory or fsspec URL), its sample
    # rate and rotation (seconds a log file stays open: what a kill may lose), the drift window
    log: str | None = None
    log_sample: float = 1.0
    log_rotate: float = 300.0
    drift_window: float = 3600.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        return cls(**json.loads(text))

    def tokens(self) -> list[str]:
        """Bearer tokens from the environment variable and/or file; [] means auth is off."""
        tokens: list[str] = []
        if self.token_env:
            raw = os.environ.get(self.token_env)
            if raw is None:
                raise ServingError(
                    f"authentication was asked for with tokens in ${self.token_env}, but it is not set.",
                    hint=f"export {self.token_env}=token1,token2",
                )
            tokens += [t.strip() for t in raw.split(",") if t.strip()]
        if self.token_file:
            try:
                lines = Path(self.token_file).read_text().splitlines()
            except OSError as exc:
                raise ServingError(f"cannot read the token file {self.token_file}: {exc}.") from exc
            tokens += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if (self.token_env or self.token_file) and not tokens:
            raise ServingError("authentication is on but no tokens were found.", hint="give at least one token")
        return tokens

    def signature_policy(self) -> SignaturePolicy | None:
        """The policy ``require_signature`` and the trusted keys / CAs ask for (read now), or None."""
        from modelport.signing import SignaturePolicy

        return SignaturePolicy.from_options(require=self.require_signature, trusted_keys=self.trusted_keys,
                                            cas=self.trusted_cas, certificates=self.trusted_certificates)

    def tls(self) -> tuple[bytes, bytes, bytes | None] | None:
        if not (self.tls_certfile or self.tls_keyfile):
            return None
        if not (self.tls_certfile and self.tls_keyfile):
            raise ServingError("TLS needs both --tls-certfile and --tls-keyfile.")
        try:
            key = Path(self.tls_keyfile).read_bytes()
            cert = Path(self.tls_certfile).read_bytes()
            ca = Path(self.tls_ca_certs).read_bytes() if self.tls_ca_certs else None
        except OSError as exc:
            raise ServingError(f"cannot read a TLS file: {exc}.") from exc
        return key, cert, ca


class Server:
    """One worker's server: data plane, ASGI app and, optionally, gRPC and pollers."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.tokens = config.tokens()
        self.dataplane = DataPlane(
            config.sources,
            policy=VersionPolicy.parse(config.version_policy),
            default_versions=config.default_versions,
            batching=BatchingConfig(
                max_batch_size=config.max_batch_size, max_queue_delay=config.max_queue_delay,
                max_queue=config.max_queue,
            ),
            max_rows=config.max_rows,
            request_timeout=config.request_timeout,
            max_concurrency=config.max_concurrency,
            intra_op_threads=config.intra_op_threads,
            registry_url=config.registry_url,
            signature_policy=config.signature_policy(),
            unknown_categories=config.unknown_categories,
        )
        if config.log:
            from modelport.serve.monitoring import make_monitor

            self.dataplane.monitor = make_monitor(config, self.dataplane.metrics)
        self.grpc_server: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_started: float | None = None  # time.monotonic() of SIGTERM / the start of shutdown
        self._grpc_stop: asyncio.Task[None] | None = None
        from modelport.serve.http import build_app

        self.app = build_app(
            self.dataplane,
            tokens=self.tokens,
            max_body_bytes=config.max_body_bytes,
            access_log_enabled=config.access_log,
            cors_origins=config.cors_origins,
            on_startup=[self.startup],
            on_shutdown=[self.shutdown],
        )

    def load(self) -> None:
        self.dataplane.load()
        for name in self.dataplane.repository.names():
            log.info("serving %s versions %s", name, ", ".join(self.dataplane.repository.versions(name)))

    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self.dataplane.repository.names():
            await asyncio.to_thread(self.load)
        cfg = self.config
        if cfg.grpc_port is not None:
            from modelport.serve import grpc as grpc_transport

            self.grpc_server = await grpc_transport.start(
                self.dataplane, host=cfg.host, port=cfg.grpc_port, tokens=self.tokens,
                max_message_bytes=cfg.max_body_bytes or (1 << 31) - 1, tls=cfg.tls(),
            )
            log.info("gRPC listening on %s:%s", cfg.host, self.grpc_server.bound_port)
        if cfg.poll_interval:
            self._tasks.append(asyncio.create_task(self._poll(cfg.poll_interval)))
        if self.dataplane.metrics.share_dir is not None:
            self._tasks.append(asyncio.create_task(self.dataplane.metrics.share_forever()))
        if self.dataplane.monitor is not None:
            self.dataplane.monitor.start()
        self._watch_signals()

    def _watch_signals(self) -> None:
        """Begin the drain the moment SIGTERM / SIGINT arrives, before uvicorn's own handler (which
        only closes the HTTP side, on its next tick) runs; the handlers uvicorn installed stay in
        charge of the rest, and are restored by uvicorn when it ends."""
        if threading.current_thread() is not threading.main_thread():
            return  # signals are delivered to the main thread only (an embedded server drains on shutdown)
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                self._on_signal()
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)

    def _on_signal(self) -> None:
        if self._drain_started is not None:
            return
        self._drain_started = time.monotonic()
        limit = self.config.drain_timeout + DRAIN_GRACE
        threading.Thread(target=_watchdog, args=(limit,), name="modelport-drain-watchdog", daemon=True).start()
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        """Readiness false, gRPC stops accepting calls, and what still runs when the drain timeout
        is nearly over is stopped with a 503, so that its connections close before uvicorn's
        graceful shutdown gives up on them."""
        if self._drain_started is None:
            self._drain_started = time.monotonic()
        if self.dataplane.stopping:
            return
        self.dataplane.stopping = True
        log.info("draining: in-flight requests may finish for up to %g s", self.config.drain_timeout)
        if self.grpc_server is not None and self._grpc_stop is None:
            self._grpc_stop = asyncio.get_running_loop().create_task(self.grpc_server.stop(self.config.drain_timeout))
        asyncio.get_running_loop().call_later(max(0.0, self.config.drain_timeout - 0.5), self._stop_requests)

    def _stop_requests(self) -> None:
        self.dataplane.stop(NotReadyError(
            f"the server shut down before this request was answered (drain timeout {self.config.drain_timeout:g} s).",
            hint="retry on another replica",
        ))

    async def _poll(self, every: float) -> None:
        repo = self.dataplane.repository
        follow = bool(repo.following())
        scan = any(s.path is not None for s in repo.sources)
        while True:
            await asyncio.sleep(every)
            try:
                if scan:
                    changed = await repo.refresh()
                    if changed:
                        log.info("reloaded from disk: %s", ", ".join(changed))
                if follow:
                    await repo.follow_once()
            except Exception:
                log.exception("polling the model sources failed; will retry")

    async def shutdown(self) -> None:
        self._begin_drain()
        for t in self._tasks:
            t.cancel()
        if self._grpc_stop is not None:
            await self._grpc_stop  # ends by the drain timeout: grpc cancels the calls still running then
        self._stop_requests()
        self.dataplane.close()
        # give stopped calls a moment to return, so that the process does not exit under them
        deadline = time.monotonic() + 2.0
        while self.dataplane.executor.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.dataplane.executor.busy:
            log.error("%d scoring call(s) did not stop; exiting anyway", self.dataplane.executor.busy)
        if self.dataplane.monitor is not None:  # the log's open files become complete files: nothing lost
            await asyncio.to_thread(self.dataplane.monitor.close)


def uvicorn_options(config: ServeConfig) -> dict[str, Any]:
    """uvicorn settings shared by the single-process and the multi-worker paths."""
    return {
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "access_log": False,  # ours is JSON and optional (--access-log)
        "lifespan": "on",
        "timeout_graceful_shutdown": config.drain_timeout,
        "ssl_certfile": config.tls_certfile,
        "ssl_keyfile": config.tls_keyfile,
        "ssl_ca_certs": config.tls_ca_certs,
        "ssl_cert_reqs": 2 if config.tls_ca_certs else 0,  # ssl.CERT_REQUIRED when a client CA is given
        "server_header": False,
        "http": "httptools" if _has("httptools") else "h11",
        "loop": "uvloop" if _has("uvloop") else "asyncio",
    }


def uvicorn_config(config: ServeConfig, app: Any) -> Any:
    uvicorn = require("uvicorn", purpose="the HTTP server")
    return uvicorn.Config(app, **uvicorn_options(config))


def serve(config: ServeConfig) -> None:
    """Run a server until SIGTERM/SIGINT; with ``workers > 1`` uvicorn supervises worker processes."""
    _setup_logging(config)
    config.tls()
    config.tokens()  # fail now, not in every worker
    config.signature_policy()
    if config.log:
        from modelport.serve.monitoring import check_config

        check_config(config)  # a bad --log fails now, not in every worker
    check_ports_free(config)
    if config.workers > 1:
        _serve_workers(config)
        return
    server = Server(config)
    server.load()  # bad bundles stop us before we listen
    uvicorn = require("uvicorn", purpose="the HTTP server")
    uvicorn.Server(uvicorn_config(config, server.app)).run()


def check_ports_free(config: ServeConfig) -> None:
    """Refuse a port another process listens on before anything starts, with a message rather than
    the traceback uvicorn's lifespan prints for a gRPC bind failure."""
    import socket

    for what, port, flag in (("HTTP", config.port, "--port"), ("gRPC", config.grpc_port, "--grpc-port")):
        if not port:
            continue
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((config.host, port))
            except OSError as exc:
                raise ServingError(
                    f"cannot listen for {what} on {config.host}:{port}: {exc.strerror or exc}.",
                    hint=f"another process uses that port: stop it, or pick a free port with {flag}",
                ) from None


def _serve_workers(config: ServeConfig) -> None:
    import tempfile

    uvicorn = require("uvicorn", purpose="the HTTP server")
    # validate the sources once in the supervisor, so a bad bundle fails before workers start
    probe = DataPlane(config.sources, policy=VersionPolicy.parse(config.version_policy),
                      registry_url=config.registry_url, signature_policy=config.signature_policy(),
                      unknown_categories=config.unknown_categories)
    probe.load()
    probe.close()
    del probe  # the supervisor does not serve: do not keep its sessions in memory
    os.environ[CONFIG_ENV] = config.to_json()
    from modelport.serve.metrics import METRICS_DIR_ENV

    if not os.environ.get(METRICS_DIR_ENV):
        os.environ[METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="modelport-metrics-")
    # uvicorn supervises the workers (restarts a dead one, forwards SIGTERM); each imports the app
    uvicorn.run("modelport.serve.server:worker_app", factory=True, workers=config.workers, **uvicorn_options(config))


def worker_app() -> Any:
    """The app of one worker process (uvicorn factory); the config travels in an env variable."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise ServingError(f"{CONFIG_ENV} is not set; worker_app is started by `modelport serve --workers N`.")
    config = ServeConfig.from_json(text)
    _setup_logging(config)
    server = Server(config)
    server.load()
    return server.app


def _watchdog(seconds: float) -> None:
    """End the process if it is still alive ``seconds`` after a drain began."""
    time.sleep(seconds)
    log.error("the drain did not end within %g s; exiting now", seconds)
    logging.shutdown()
    os._exit(1)


def _setup_logging(config: ServeConfig) -> None:
    level = getattr(logging, config.log_level.upper(), logging.INFO)
    logger = logging.getLogger("modelport.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    access = logging.getLogger("modelport.serve.access")
    if config.access_log and not access.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(h)
        access.propagate = False
        access.setLevel(logging.INFO)


def _has(module: str) -> bool:
    import importlib.util

    with contextlib.suppress(ValueError):
        return importlib.util.find_spec(module) is not None
    return False
