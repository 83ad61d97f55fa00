"""The monitoring dashboard: one page (``static/``, in the package: no CDN, works offline) and a
small JSON API under the same prefix, served by ``modelport ui`` and by ``modelport serve --log``
at ``/ui``.

    GET /ui/                       the page (index.html, app.js, app.css)
    GET /ui/api/models             models, versions, aliases and tags (registry) and what is served
    GET /ui/api/live               per model version: requests/s, latency p50/p95 (ms), error rate
    GET /ui/api/drift?model=&version=   drift per column with the reference / current distributions
    GET /ui/api/perf?model=        realised and estimated performance per version and window

A :class:`Source` answers these: :class:`LogSource` (``modelport ui``: a prediction log, the
registry, and optionally a server's own live numbers) or the server's own
(:class:`modelport.serve.monitoring.ServerSource`: its metrics, its live sketches, its log). The
page, its script and its style hold no data, so they are open where the server requires a bearer
token; the API is not (the page asks for the token and sends it).

Computations over the log run in a worker thread and are cached for a few seconds: the event loop
only routes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from modelport.errors import InputError, ModelNotFoundError, ModelportError

log = logging.getLogger("modelport.monitor")

PREFIX = "/ui"
ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "app.css": "text/css; charset=utf-8"}
#: paths that stay open under bearer auth: the page and its assets hold no data
OPEN_ASSETS = frozenset({PREFIX, PREFIX + "/", *(f"{PREFIX}/static/{n}" for n in ASSETS)})
CACHE_SECONDS = 5.0


def asset(name: str) -> bytes:
    """One of the page's files, from the package."""
    return resources.files("modelport.monitor").joinpath("static", name).read_bytes()


class Source:
    """What the dashboard shows; every method may block (they run in a worker thread)."""

    def models(self) -> dict[str, Any]:
        raise NotImplementedError

    def live(self) -> dict[str, Any]:
        raise NotImplementedError

    def drift(self, model: str, version: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def perf(self, model: str) -> dict[str, Any]:
        raise NotImplementedError


def registry_models(url: str | None = None, *, only_if_exists: bool = True) -> list[dict[str, Any]]:
    """Models, versions, aliases and tags from the registry ([] when there is none to read)."""
    import os

    from modelport.registry import default_url, home, open_registry

    target = url or os.environ.get("MODELPORT_REGISTRY")
    if target is None and only_if_exists and not (home() / "registry.db").exists():
        return []  # do not create an empty registry just to show that it is empty
    try:
        reg = open_registry(target or default_url())
        out = []
        for m in reg.models():
            versions = [{"version": str(v.version), "aliases": list(v.aliases), "tags": dict(v.tags),
                         "digest": v.digest, "created": v.created.isoformat(), "task": v.task}
                        for v in reg.versions(m.name)]
            out.append({"name": m.name, "versions": versions})
        return out
    except ModelportError as exc:
        log.warning("the dashboard cannot read the registry: %s", exc)
        return []


class LogSource(Source):
    """``modelport ui``: a prediction log and the registry (and a server's live numbers, if given)."""

    def __init__(self, log: str | None, *, server: str | None = None, registry_url: str | None = None,
                 since: str = "24h", by: str = "hour", bundles: dict[str, Any] | None = None) -> None:
        self.log = log
        self.server = server.rstrip("/") if server else None
        self.registry_url = registry_url
        self.since = since
        self.by = by
        self.bundles = dict(bundles or {})

    def _bundle(self, model: str, version: str | None) -> Any:
        from modelport._uri import load

        if model in self.bundles:
            return self.bundles[model]
        uri = f"models:/{model}/{version}" if version else f"models:/{model}"
        try:
            return load(uri)
        except ModelportError as exc:
            raise ModelNotFoundError(
                f"no bundle for model {model!r} version {version}: {exc.message}",
                hint="push it to the registry, or start `modelport ui` with --bundle PATH",
            ) from None

    def models(self) -> dict[str, Any]:
        from modelport.monitor.read import models as logged

        reg = registry_models(self.registry_url)
        logged_versions = logged(self.log) if self.log else {}
        names = {m["name"] for m in reg}
        for name, versions in logged_versions.items():
            if name not in names:
                reg.append({"name": name, "versions": [{"version": v, "aliases": [], "tags": {}} for v in versions]})
        for m in reg:
            m["logged"] = logged_versions.get(m["name"], [])
        return {"models": reg}

    def live(self) -> dict[str, Any]:
        if self.server:
            import urllib.request

            try:
                with urllib.request.urlopen(self.server + PREFIX + "/api/live", timeout=5) as resp:
                    return dict(json.loads(resp.read()))
            except (OSError, ValueError) as exc:
                return {"models": [], "note": f"the server {self.server} did not answer: {exc}"}
        if not self.log:
            return {"models": [], "note": "no log and no server given"}
        from modelport.monitor.read import read_log

        window = 300.0
        t = read_log(self.log, since=time.time() - window, columns=["model", "version", "latency_ms", "sample_rate"])
        out = []
        if t.num_rows:
            import numpy as np

            models = np.asarray(t.column("model").to_pylist(), dtype=object)
            versions = np.asarray(t.column("version").to_pylist(), dtype=object)
            lat = t.column("latency_ms").to_numpy(zero_copy_only=False)
            rate = t.column("sample_rate").to_numpy(zero_copy_only=False)
            for key in sorted({(m, v) for m, v in zip(models.tolist(), versions.tolist())}):
                sel = (models == key[0]) & (versions == key[1])
                rows = float(np.sum(1.0 / np.maximum(rate[sel], 1e-9)))
                lt = lat[sel][~np.isnan(lat[sel])]
                out.append({"model": key[0], "version": key[1], "requests_per_second": rows / window,
                            "latency_p50_ms": float(np.percentile(lt, 50)) if lt.size else None,
                            "latency_p95_ms": float(np.percentile(lt, 95)) if lt.size else None,
                            "error_rate": None})
        return {"models": out, "window_seconds": window, "from": "log"}

    def drift(self, model: str, version: str | None) -> dict[str, Any]:
        from modelport.monitor.drift import drift_of_log

        if not self.log:
            raise InputError("the dashboard has no prediction log to compute drift from.", hint="start it with --log DIR")
        versions = [version] if version else None
        r = drift_of_log(self._bundle(model, version), self.log, model=model, versions=versions, since=self.since)
        d = r.to_dict()
        d["version"] = version
        return d

    def perf(self, model: str) -> dict[str, Any]:
        from modelport.monitor.feedback import perf

        if not self.log:
            raise InputError("the dashboard has no prediction log to compute performance from.",
                             hint="start it with --log DIR")
        bundle = None
        try:
            bundle = self._bundle(model, None)
        except ModelportError:
            pass
        return perf(self.log, model=model, bundle=bundle, by=self.by, since=self.since).to_dict()


class Dashboard:
    """The ASGI app of the page and its API under ``prefix``."""

    def __init__(self, source: Source, *, prefix: str = PREFIX) -> None:
        self.source = source
        self.prefix = prefix.rstrip("/")
        self._cache: dict[tuple[str, ...], tuple[float, bytes]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._assets = {name: asset(name) for name in ASSETS}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            return await _send(send, 405, _err("the dashboard answers GET only."), extra=[(b"allow", b"GET")])
        rest = path[len(self.prefix):] if path.startswith(self.prefix) else path
        if rest == "":
            return await _send(send, 307, b"", ctype=b"text/plain", extra=[(b"location", (self.prefix + "/").encode())])
        if rest in ("/", "/index.html"):
            return await _send(send, 200, self._assets["index.html"], ctype=ASSETS["index.html"].encode())
        if rest.startswith("/static/"):
            name = rest[len("/static/"):]
            if name in self._assets:
                return await _send(send, 200, self._assets[name], ctype=ASSETS[name].encode(),
                                   extra=[(b"cache-control", b"no-cache")])
            return await _send(send, 404, _err(f"no asset {name[:80]!r}."))
        if rest.startswith("/api/"):
            query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
            what = rest[len("/api/"):]
            if what not in ("models", "live", "drift", "perf"):
                return await _send(send, 404, _err(f"no dashboard API {what[:80]!r}; there are models, live, drift, perf."))
            try:
                body = await self._api(what, query)
            except ModelNotFoundError as exc:
                return await _send(send, 404, _err(exc.message, exc.hint))
            except InputError as exc:
                return await _send(send, 400, _err(exc.message, exc.hint))
            except ModelportError as exc:
                return await _send(send, 422, _err(exc.message, exc.hint))
            return await _send(send, 200, body)
        await _send(send, 404, _err(f"no page at {path[:200]}.", f"the dashboard is at {self.prefix}/"))

    async def _api(self, what: str, query: dict[str, str]) -> bytes:
        if what in ("drift", "perf") and not query.get("model"):
            raise InputError(f"/api/{what} needs ?model=NAME.")
        key = (what, query.get("model", ""), query.get("version", ""))
        now = time.monotonic()
        hit = self._cache.get(key)
        ttl = 1.0 if what == "live" else CACHE_SECONDS
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        # one computation per view at a time (drift and perf read the log): a burst of page loads, or
        # of requests for made-up models, queues here instead of filling the thread pool with log scans
        lock = self._locks.setdefault(what, asyncio.Lock())
        async with lock:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < ttl:
                return hit[1]
            return await self._compute(what, query, key)

    async def _compute(self, what: str, query: dict[str, str], key: tuple[str, ...]) -> bytes:
        def compute() -> bytes:
            if what == "models":
                doc = self.source.models()
            elif what == "live":
                doc = self.source.live()
            elif what == "drift":
                doc = self.source.drift(query["model"], query.get("version") or None)
            else:
                doc = self.source.perf(query["model"])
            return json.dumps(_finite(doc)).encode()

        body = await asyncio.to_thread(compute)
        self._cache[key] = (time.monotonic(), body)
        if len(self._cache) > 256:
            self._cache.pop(next(iter(self._cache)))
        return body


def _err(message: str, hint: str | None = None) -> bytes:
    return json.dumps({"error": message, **({"hint": hint} if hint else {})}).encode()


async def _send(send: Any, status: int, body: bytes, *, ctype: bytes = b"application/json",
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
               (b"x-content-type-options", b"nosniff"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def app(source: Source) -> Any:
    """The dashboard as a stand-alone ASGI app (``/`` redirects to ``/ui/``)."""
    dash = Dashboard(source)

    async def root(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] in ("", "/"):
            return await _send(send, 307, b"", ctype=b"text/plain", extra=[(b"location", b"/ui/")])
        await dash(scope, receive, send)

    return root


def run(*, log: str | None, server: str | None, registry_url: str | None, host: str, port: int,
        since: str = "24h", by: str = "hour", bundles: list[str] | None = None) -> None:
    """``modelport ui``: serve the dashboard until Ctrl-C. ``bundles``: paths or URIs of the bundles
    the drift and performance views use, by model name (else each model's registry version)."""
    from modelport._deps import require
    from modelport.monitor._time import parse_time, parse_window

    parse_time(since, what="--since")
    parse_window(by)
    if log is not None:
        from modelport.monitor.log import Storage

        Storage(log)
    uvicorn = require("uvicorn", purpose="modelport ui")
    from modelport._uri import load

    loaded = [load(b) for b in bundles or []]
    source = LogSource(log, server=server, registry_url=registry_url, since=since, by=by,
                       bundles={b.name: b for b in loaded})
    uvicorn.run(app(source), host=host, port=port, log_level="warning", lifespan="on")
