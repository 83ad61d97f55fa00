"""Routing per model name: weighted splits across versions, sticky assignment, shadows, bandits
and the rule that stops a failing arm, live (changed without a restart or a failed request).

A request for ``/v2/models/churn/infer`` (no version) on a routed name goes to one of the route's
*arms* (:class:`Arm`), each a version of ``churn`` served by the repository, chosen at random by
weight or, with ``sticky``, by a stable hash of a request field or header, so that the same
customer always sees the same arm (while the weights stay put). A request that names a version
(``/versions/7/``) is answered by that version, routing or not. Every answer names its version
(V2 ``model_version``, the ``x-model-version`` header; ``x-model-arm`` for routed requests).

*Shadows* score a copy of every routed request after the answer has been computed, in threads of
their own at the lowest CPU priority, with a bounded number in flight (more are dropped and
counted): they never delay or change an answer. How often and how much they disagree with the
answering version is a metric, and each shadow answer goes to the routing sink (the prediction
log). A shadow must take the same requests and give the same kind of answer as the arms
(:func:`modelport.bundle.compat.difference`), or the route is refused when it loads.

The hot path costs one dict lookup for a name without a route, and an attribute read for a route
with one arm. Routes come from ``--routing`` (files, re-read while polling; registry aliases with
weights), and from the repository API; a new route is loaded completely (every bundle read,
checked and warmed) before it replaces the old one in one assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InputError, ModelNotFoundError, ModelportError, ServingError
from modelport.serve import bandit as bandits
from modelport.serve import routing_spec as rs
from modelport.serve.batching import Batcher, ScoringThreads
from modelport.serve.metrics import Family
from modelport.serve.repository import Source
from modelport.serve.rewards import ArmRecord, InProcessFeedback, RewardSource, RoutingSink, ShadowRecord

if TYPE_CHECKING:
    from modelport.serve.metrics import Metrics
    from modelport.serve.model import ServedModel
    from modelport.serve.repository import Candidate, ModelRepository

log = logging.getLogger("modelport.serve")

SHADOW_MAX_INFLIGHT = 16  # shadow requests in flight per shadow; more are dropped (counted)
SHADOW_MAX_QUEUE = 64
SHADOW_INLINE_ROWS = 1024  # larger answers are compared in a worker thread
TICK_SECONDS = 0.5  # how often stop rules and bandits are looked at
_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# failures that are the arm's doing (not the client's, not a drain)
_ARM_FAILURES = frozenset({"error", "timeout", "overloaded"})


# ============================================================================ live state
class Window:
    """Requests, failures and a latency histogram over the last ``seconds``, in 1-second buckets."""

    __slots__ = ("_err", "_lat", "_req", "_t", "n")

    def __init__(self, seconds: float) -> None:
        self.n = max(1, round(seconds))
        self._req = [0] * self.n
        self._err = [0] * self.n
        self._lat = [[0] * (len(_LATENCY) + 1) for _ in range(self.n)]
        self._t = int(time.monotonic())

    def _advance(self, now: int) -> None:
        steps = min(now - self._t, self.n)
        for k in range(1, steps + 1):
            i = (self._t + k) % self.n
            self._req[i] = 0
            self._err[i] = 0
            self._lat[i] = [0] * (len(_LATENCY) + 1)
        self._t = now

    def add(self, ok: bool, seconds: float) -> None:
        now = int(time.monotonic())
        if now != self._t:
            self._advance(now)
        i = now % self.n
        self._req[i] += 1
        if ok:
            self._lat[i][bisect_left(_LATENCY, seconds)] += 1
        else:
            self._err[i] += 1

    def totals(self) -> tuple[int, int, list[int]]:
        now = int(time.monotonic())
        if now != self._t:
            self._advance(now)
        hist = [sum(col) for col in zip(*self._lat)]
        return sum(self._req), sum(self._err), hist


def quantile(hist: Sequence[int], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of a :data:`_LATENCY` histogram."""
    total = sum(hist)
    if not total:
        return None
    want, seen = q * total, 0
    for bound, count in zip([*_LATENCY, float("inf")], hist):
        seen += count
        if seen >= want:
            return bound
    return float("inf")


class Arm:
    """One arm of a live route: the version it resolves to now, its weight, its window."""

    __slots__ = ("c_failures", "c_requests", "configured", "hi", "lo", "name", "source", "spec", "stopped",
                 "version", "weight", "window")

    def __init__(self, spec: rs.ArmSpec, source: str, window: float | None) -> None:
        self.spec = spec
        self.name = spec.name
        self.source = source  # the repository source spec that offers it
        self.version: str | None = None
        self.weight = spec.weight  # percent, live
        self.configured = spec.weight
        self.lo = 0.0
        self.hi = 100.0
        self.stopped: str | None = None  # why the stop rule stopped it
        self.window = Window(window) if window else None
        self.c_requests: dict[str, Any] = {}
        self.c_failures: dict[tuple[str, str], Any] = {}


class Shadow:
    """A shadow of a live route: its version, its own batcher, what is in flight."""

    __slots__ = ("_batcher", "_loop", "_model", "c", "inflight", "model", "source", "version")

    def __init__(self, model: str, source: str) -> None:
        self.model = model
        self.source = source
        self.version: str | None = None
        self.inflight = 0
        self._batcher: Batcher | None = None
        self._model: ServedModel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.c: dict[Any, Any] = {}

    def batcher(self, model: ServedModel, threads: ScoringThreads, max_batch: int) -> Batcher:
        loop = asyncio.get_running_loop()
        if self._batcher is None or self._model is not model or self._loop is not loop:
            self._batcher = Batcher(
                model.runtime.run, model.output_names, max_batch_size=max_batch if model.batchable else 1,
                max_queue=SHADOW_MAX_QUEUE, executor=threads,
            )
            self._model, self._loop = model, loop
        return self._batcher


class LiveRoute:
    """A route as requests meet it. Everything a request reads is set before the route is
    published (or replaced with one assignment: ``_cum``)."""

    __slots__ = (
        "_cum",
        "arms",
        "c_missing",
        "exp3",
        "last_update",
        "name",
        "needs_ids",
        "salt",
        "shadows",
        "single",
        "spec",
        "sticky_field",
        "sticky_header",
    )

    def __init__(self, spec: rs.RouteSpec, arms: list[Arm], shadows: list[Shadow]) -> None:
        self.spec = spec
        self.name = spec.model
        self.arms = arms
        self.shadows = shadows
        self.sticky_field = spec.sticky_field
        self.sticky_header = spec.sticky_header
        self.salt = spec.model.encode()
        self.needs_ids = spec.bandit is not None or (spec.stop is not None and spec.stop.max_metric_drop is not None)
        self.exp3: bandits.Exp3 | None = None
        self.last_update = time.monotonic()
        self.c_missing: Any = None
        self.single: Arm | None = None
        self._cum: list[float] = []
        self.set_weights([a.weight for a in arms])

    def set_weights(self, weights: Sequence[float]) -> None:
        for a, w in zip(self.arms, weights):
            a.weight = 0.0 if a.stopped else float(w)
        total = sum(a.weight for a in self.arms) or 1.0
        cum, acc = [], 0.0
        for a in self.arms:
            acc += a.weight / total
            cum.append(acc)
        cum[-1] = 1.0
        live = [a for a in self.arms if a.weight > 0]
        self.single = live[0] if len(live) == 1 else None
        self._cum = cum

    def pick(self, key: str | None) -> Arm:
        """The arm for a request: by its sticky key's hash when it has one, else at random."""
        single = self.single
        if single is not None:
            return single
        if key is None:
            u = random.random()
        else:
            h = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, key=self.salt[:64]).digest()
            u = int.from_bytes(h, "big") / 18446744073709551616.0
        cum = self._cum
        i = bisect_right(cum, u)
        arms = self.arms
        if i >= len(arms):
            i = len(arms) - 1
        while arms[i].weight <= 0 and i > 0:  # rounding at the very top: the last arm with traffic
            i -= 1
        return arms[i]

    def arm(self, name: str) -> Arm | None:
        for a in self.arms:
            if a.name == name:
                return a
        return None


# ============================================================================ the router
class Router:
    """Every live route of a server, and what keeps them moving (bandits, stop rules, reloads)."""

    def __init__(
        self,
        repository: ModelRepository,
        metrics: Metrics,
        *,
        rewards: RewardSource | None = None,
        sink: RoutingSink | None = None,
        public_text: Callable[[str], str] = lambda t: t,
        registry_url: str | None = None,
        shadow_timeout: float | None = 30.0,
        max_batch_size: int = 8,
    ) -> None:
        self.repository = repository
        feedback = InProcessFeedback() if rewards is None or sink is None else None
        self.feedback = feedback  # the in-process store, where one of the two was not given
        self.rewards: RewardSource = rewards if rewards is not None else feedback  # type: ignore[assignment]
        self.sink: RoutingSink = sink if sink is not None else feedback  # type: ignore[assignment]
        self.public_text = public_text
        self.registry_url = registry_url
        self.shadow_timeout = shadow_timeout
        self.max_batch_size = max_batch_size
        self.routes: dict[str, LiveRoute] = {}  # hot path: replaced as a whole, never changed in place
        self.specs: dict[str, rs.RouteSpec] = {}  # as configured (registry routes unresolved)
        self._files: dict[str, tuple[int, int] | None] = {}  # --routing file -> stamp
        self._from_files: set[str] = set()
        self._rng = np.random.default_rng()
        self._threads: ScoringThreads | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._load_lock: asyncio.Lock | None = None
        #: where a shadow's answer goes besides the sink (the data plane's prediction log), or None
        self.on_shadow: Callable[[str, ServedModel, str | None, dict[str, np.ndarray], int, dict[str, np.ndarray]],
                                 None] | None = None
        self._define_metrics(metrics)
        repository.listeners.append(self._on_repository_change)

    # ------------------------------------------------------------------ metrics
    def _define_metrics(self, metrics: Metrics) -> None:
        ra = ["model", "arm"]
        self.m_requests = Family("modelport_route_requests", "Routed requests answered, by arm", "counter",
                                 [*ra, "version"])
        self.m_failures = Family("modelport_route_failures", "Routed requests that failed, by arm and reason",
                                 "counter", [*ra, "version", "reason"])
        self.m_weight = Family("modelport_route_weight", "Share of a route's traffic an arm gets now (percent)",
                               "gauge", ra)
        self.m_stopped = Family("modelport_route_arm_stopped", "1 while the stop rule keeps an arm stopped",
                                "gauge", ra)
        self.m_labels = Family("modelport_route_labels", "Labelled rows joined to an arm's answers", "gauge", ra)
        self.m_reward = Family("modelport_route_reward", "An arm's mean realised reward (bandit routes)", "gauge", ra)
        self.m_missing = Family("modelport_route_sticky_missing", "Requests without the route's sticky key "
                                "(assigned at random)", "counter", ["model"])
        self.m_reloads = Family("modelport_route_reloads", "Route (re)loads by result", "counter", ["result"])
        sm = ["model", "version", "shadow"]
        self.m_shadow = Family("modelport_shadow_requests", "Requests a shadow scored", "counter", sm)
        self.m_shadow_rows = Family("modelport_shadow_rows", "Rows a shadow scored", "counter", sm)
        self.m_shadow_disagree = Family("modelport_shadow_disagreements", "Rows whose shadow answer differs from "
                                        "the answer sent (label, or prediction beyond 1e-6 relative)", "counter", sm)
        self.m_shadow_dropped = Family("modelport_shadow_dropped", "Shadow requests not scored, by reason",
                                       "counter", ["model", "shadow", "reason"])
        self.m_shadow_diff = Family("modelport_shadow_max_abs_difference", "Largest absolute difference of "
                                    "probabilities / predictions per shadowed request", "histogram", sm,
                                    (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0))
        metrics.families.extend([
            self.m_requests, self.m_failures, self.m_weight, self.m_stopped, self.m_labels, self.m_reward,
            self.m_missing, self.m_reloads, self.m_shadow, self.m_shadow_rows, self.m_shadow_disagree,
            self.m_shadow_dropped, self.m_shadow_diff,
        ])

    # ------------------------------------------------------------------ loading
    def add_sources(self, sources: Sequence[str]) -> dict[str, rs.RouteSpec]:
        """Read ``--routing`` values (files and models:/NAME); returns the routes they define."""
        specs = rs.specs_from(sources, self.registry_url)
        for src in sources:
            if not src.startswith("models:/"):
                self._files[src] = _stamp(src)
        self._from_files = set(specs)
        return specs

    def load_all(self, specs: Mapping[str, rs.RouteSpec]) -> None:
        """Load every route (blocking; at startup, before serving). An error stops the server."""
        for spec in specs.values():
            resolved = self._resolve(spec)
            sources, loaded = self._load_sources(resolved)
            self.repository.set_route_sources_now(spec.model, sources, loaded)
            self._publish(spec, resolved)
            self.m_reloads.labels("loaded").inc()

    async def set_route(self, spec: rs.RouteSpec) -> LiveRoute:
        """Load ``spec`` and make it the route of its model name; what it replaces keeps serving
        the requests that already chose an arm."""
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        async with self._load_lock:
            try:
                resolved = await asyncio.to_thread(self._resolve, spec)
                sources, loaded = await asyncio.to_thread(self._load_sources, resolved)
                await self.repository.set_route_sources(spec.model, sources, loaded)
            except ModelportError:
                self.m_reloads.labels("refused").inc()
                raise
            live = self._publish(spec, resolved)
            self.m_reloads.labels("loaded").inc()
            log.info("route %s: %s", spec.model, ", ".join(f"{a.name} {a.weight:g}% -> v{a.version}" for a in live.arms))
            return live

    async def remove_route(self, name: str) -> None:
        if name not in self.routes:
            raise ModelNotFoundError(f"model {name!r} has no route; routed: {', '.join(sorted(self.routes)) or 'none'}.")
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        async with self._load_lock:
            routes = dict(self.routes)
            routes.pop(name, None)
            self.routes = routes
            self.specs.pop(name, None)
            await self.repository.set_route_sources(name, [], [])
            log.info("route %s removed", name)

    def _resolve(self, spec: rs.RouteSpec) -> rs.RouteSpec:
        if spec.registry is None:
            return spec
        return rs.from_registry(spec, self.registry_url)

    def _load_sources(self, spec: rs.RouteSpec) -> tuple[list[Source], list[Candidate]]:
        """Every arm's and shadow's bundle, read and checked against the first arm's (blocking)."""
        where = spec.origin
        items = [("arm", a.name, a.model, a.version) for a in spec.arms]
        items += [("shadow", m, m, None) for m in spec.shadows]
        seen: dict[str, str] = {}
        sources: list[Source] = []
        loaded: list[Candidate] = []
        first: Any = None
        for kind, label, model, version in items:
            if model in seen:
                raise InputError(f"{where}: {kind} {label!r} names {model!r}, which {seen[model]} names too.",
                                 hint="each arm and shadow names a bundle of its own")
            seen[model] = f"{kind} {label!r}"
            try:
                src = _route_source(spec.model, model, version)
                cand = self.repository.route_candidate(src)
            except ModelportError as exc:
                raise type(exc)(f"{where}: {kind} {label!r}: {exc.message}", hint=exc.hint) from None
            assert cand.bundle is not None
            if first is None:
                first = (label, cand)
            else:
                from modelport.bundle.compat import difference

                diff = difference(first[1].bundle, cand.bundle)
                if diff is not None:
                    raise InputError(
                        f"{where}: {kind} {label!r} ({model}) does not take the same requests or give the same "
                        f"answers as arm {first[0]!r}: {diff}.".replace(" here,", f" in {first[0]!r},")
                        .replace(" there", f" in {label!r}"),
                        hint="every arm and shadow of a route must have the same signature, task and classes",
                    )
            sources.append(src)
            loaded.append(cand)
        return sources, loaded

    def _publish(self, spec: rs.RouteSpec, resolved: rs.RouteSpec) -> LiveRoute:
        name = spec.model
        stop = resolved.stop
        window = stop.window if stop is not None else None
        arms = [Arm(a, _route_source(name, a.model, a.version).spec, window) for a in resolved.arms]
        if resolved.bandit is not None:
            for a in arms:
                a.lo = a.spec.min_weight if a.spec.min_weight is not None else resolved.bandit.min_weight
                a.hi = a.spec.max_weight if a.spec.max_weight is not None else resolved.bandit.max_weight
        shadows = [Shadow(m, _route_source(name, m, None).spec) for m in resolved.shadows]
        live = LiveRoute(resolved, arms, shadows)
        if resolved.bandit is not None and resolved.bandit.policy == "exp3":
            live.exp3 = bandits.Exp3(len(arms), resolved.bandit.gamma)
        live.c_missing = self.m_missing.labels(name)
        self._resolve_versions(live)
        for a in arms:
            self.m_stopped.labels(name, a.name).set(0)
        old = self.routes.get(name)
        if old is not None:
            for a in old.arms:
                if live.arm(a.name) is None:
                    self.m_weight.labels(name, a.name).set(0)
        self._show_weights(live)
        self.routes = {**self.routes, name: live}
        self.specs[name] = spec
        return live

    def _resolve_versions(self, live: LiveRoute) -> None:
        for a in live.arms:
            got = self.repository.provided(a.source)
            if got is not None:
                a.version = got[1]
        for s in live.shadows:
            got = self.repository.provided(s.source)
            if got is not None:
                s.version = got[1]

    def _on_repository_change(self, name: str) -> None:
        live = self.routes.get(name)
        if live is not None:
            self._resolve_versions(live)

    # ------------------------------------------------------------------ requests (hot path)
    def choose(self, route: LiveRoute, key: Callable[[LiveRoute], str | None] | None) -> Arm:
        """The arm for a request; ``key(route)`` reads its sticky key (None: the request lacks it,
        which is counted, and it is assigned at random)."""
        if route.sticky_field is None and route.sticky_header is None:
            return route.single or route.pick(None)
        value = key(route) if key is not None else None  # also when one arm is left: it drops the key field
        if route.single is not None:
            return route.single
        if value is None:
            route.c_missing.inc()
        return route.pick(value)

    def arm_version(self, name: str, arm: str) -> str | None:
        """The version the arm ``arm`` of ``name``'s route answers with now (TF Serving labels)."""
        live = self.routes.get(name)
        found = live.arm(arm) if live is not None else None
        return found.version if found is not None else None

    def answered(self, route: LiveRoute, arm: Arm, model: ServedModel, seconds: float) -> None:
        child = arm.c_requests.get(model.version)
        if child is None:
            child = arm.c_requests[model.version] = self.m_requests.labels(route.name, arm.name, model.version)
        child.inc()
        if arm.window is not None:
            arm.window.add(True, seconds)

    def failed(self, route: LiveRoute, arm: Arm, model: ServedModel, reason: str, seconds: float) -> None:
        key = (model.version, reason)
        child = arm.c_failures.get(key)
        if child is None:
            child = arm.c_failures[key] = self.m_failures.labels(route.name, arm.name, model.version, reason)
        child.inc()
        if arm.window is not None and reason in _ARM_FAILURES:
            arm.window.add(False, seconds)

    def new_id(self) -> str:
        return uuid.uuid4().hex

    def record(self, route: LiveRoute, arm: Arm, model: ServedModel, rid: str, rows: int,
               result: Mapping[str, np.ndarray]) -> None:
        """Tell the sink which arm answered (routes whose policy learns from feedback)."""
        try:
            self.sink.answered(ArmRecord(rid, route.name, arm.name, model.version, model.digest, rows, result,
                                         model.bundle.classes))
        except Exception:  # the sink's trouble is never the client's
            log.exception("the routing sink failed")

    def shadow(self, route: LiveRoute, model: ServedModel, feeds: dict[str, np.ndarray], rows: int,
               result: Mapping[str, np.ndarray], rid: str | None) -> None:
        """Score ``feeds`` on every shadow of ``route``, after the answer, without waiting."""
        loop = asyncio.get_running_loop()
        for sh in route.shadows:
            if sh.version is None or sh.version == model.version:
                continue
            if sh.inflight >= SHADOW_MAX_INFLIGHT:
                self._dropped(route, sh, "busy")
                continue
            try:
                smodel = self.repository.get(route.name, sh.version)
            except ModelNotFoundError:
                self._dropped(route, sh, "not_loaded")
                continue
            sh.inflight += 1
            task = loop.create_task(self._shadow_one(route, sh, model, smodel, feeds, rows, result, rid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _shadow_one(self, route: LiveRoute, sh: Shadow, model: ServedModel, smodel: ServedModel,
                          feeds: dict[str, np.ndarray], rows: int, result: Mapping[str, np.ndarray],
                          rid: str | None) -> None:
        try:
            if self._threads is None:
                self._threads = ShadowThreads(per_model=1, name="modelport-shadow")
            batcher = sh.batcher(smodel, self._threads, self.max_batch_size)
            out = await batcher.submit(feeds, rows, smodel.output_names, timeout=self.shadow_timeout)
            if rows > SHADOW_INLINE_ROWS:
                disagree, diff = await asyncio.to_thread(disagreement, result, out)
            else:
                disagree, diff = disagreement(result, out)
            key = (model.version, sh.version)
            c = sh.c.get(key)
            if c is None:
                labels = (route.name, model.version, smodel.version)
                c = sh.c[key] = (self.m_shadow.labels(*labels), self.m_shadow_rows.labels(*labels),
                                 self.m_shadow_disagree.labels(*labels), self.m_shadow_diff.labels(*labels))
            c[0].inc()
            c[1].inc(rows)
            c[2].inc(disagree)
            c[3].observe(diff)
            self.sink.shadowed(ShadowRecord(rid, route.name, model.version, smodel.version, smodel.digest, rows,
                                            disagree, diff, out))
            if self.on_shadow is not None:
                self.on_shadow(route.name, smodel, rid, feeds, rows, out)
        except ModelportError as exc:
            self._dropped(route, sh, _reason(exc))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("shadow %s of %s failed", sh.model, route.name)
            self._dropped(route, sh, "error")
        finally:
            sh.inflight -= 1

    def _dropped(self, route: LiveRoute, sh: Shadow, reason: str) -> None:
        key = ("dropped", reason)
        c = sh.c.get(key)
        if c is None:
            c = sh.c[key] = self.m_shadow_dropped.labels(route.name, sh.version or "?", reason)
        c.inc()

    # ------------------------------------------------------------------ bandits and the stop rule
    async def run(self) -> None:
        """Look at stop rules and bandits every TICK_SECONDS (a task of the server)."""
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.tick()
            except Exception:
                log.exception("routing policies failed; will retry")

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for live in list(self.routes.values()):
            spec = live.spec
            if spec.stop is not None:
                self._check_stop(live, spec.stop)
            if spec.bandit is not None:
                self._show_rewards(live, spec.bandit)
                if now - live.last_update >= spec.bandit.update_every:
                    live.last_update = now
                    self._move_weights(live, spec.bandit)

    def _realised(self, live: LiveRoute, arm: Arm) -> tuple[int, dict[str, float]]:
        if arm.version is None:
            return 0, {}
        try:
            got = self.rewards.realised(live.name, arm.version)
        except Exception:
            log.exception("the reward source failed")
            return 0, {}
        return (0, {}) if got is None else (got.labels, dict(got.metrics))

    def _show_rewards(self, live: LiveRoute, spec: rs.BanditSpec) -> None:
        for a in live.arms:
            n, metrics = self._realised(live, a)
            self.m_labels.labels(live.name, a.name).set(n)
            r = bandits.reward_of(spec, metrics)
            if r is not None:
                self.m_reward.labels(live.name, a.name).set(r)

    def _move_weights(self, live: LiveRoute, spec: rs.BanditSpec) -> None:
        labels, rewards = [], []
        for a in live.arms:
            n, metrics = self._realised(live, a)
            r = bandits.reward_of(spec, metrics)
            if a.stopped is None and (r is None or n < spec.min_labels):
                return  # not every arm has been heard from yet: keep the weights
            labels.append(n)
            rewards.append(r if r is not None else 0.0)
        if live.exp3 is not None:
            target = live.exp3.update(labels, rewards)
        else:
            target = bandits.thompson(labels, rewards, self._rng)
        lo = [0.0 if a.stopped else a.lo for a in live.arms]
        hi = [0.0 if a.stopped else a.hi for a in live.arms]
        weights = bandits.bounded(target * 100.0, lo, hi)
        live.set_weights(weights)
        self._show_weights(live)
        log.info("route %s: bandit weights %s", live.name, ", ".join(f"{a.name} {a.weight:.1f}%" for a in live.arms))

    def _check_stop(self, live: LiveRoute, rule: rs.StopRule) -> None:
        base = live.arm(rule.baseline) if rule.baseline else max(live.arms, key=lambda a: a.configured)
        assert base is not None
        watched = [live.arm(n) for n in rule.arms] if rule.arms else [a for a in live.arms if a is not base]
        b_req, b_err, b_hist = base.window.totals() if base.window else (0, 0, [])
        for arm in watched:
            if arm is None or arm.stopped or arm.window is None:
                continue
            req, err, hist = arm.window.totals()
            why = None
            if rule.max_error_rate is not None and req >= rule.min_requests and err / req > rule.max_error_rate:
                why = (f"error rate {err / req:.3f} over the last {arm.window.n} s ({err} of {req} requests failed) "
                       f"is above max_error_rate {rule.max_error_rate:g}")
            if why is None and rule.max_latency_ratio is not None and req - err >= rule.min_requests \
                    and b_req - b_err >= rule.min_requests:
                p_arm, p_base = quantile(hist, 0.99), quantile(b_hist, 0.99)
                if p_arm is not None and p_base is not None and p_arm > rule.max_latency_ratio * p_base:
                    why = (f"p99 latency {p_arm * 1000:g} ms is above {rule.max_latency_ratio:g}x the baseline "
                           f"{base.name!r}'s {p_base * 1000:g} ms (last {arm.window.n} s)")
            if why is None and rule.max_metric_drop is not None and live.spec.bandit is not None:
                metric = live.spec.bandit.reward
                n, m = self._realised(live, arm)
                bn, bm = self._realised(live, base)
                if n >= rule.min_labels and bn >= rule.min_labels and metric in m and metric in bm:
                    worse = bandits.worse_by(live.spec.bandit, m[metric], bm[metric])
                    if worse > rule.max_metric_drop:
                        why = (f"realised {metric} {m[metric]:.4g} is worse than the baseline {base.name!r}'s "
                               f"{bm[metric]:.4g} by {worse:.4g}, more than max_metric_drop {rule.max_metric_drop:g}")
            if why is not None:
                self._stop_arm(live, arm, why)

    def _stop_arm(self, live: LiveRoute, arm: Arm, why: str) -> None:
        arm.stopped = why
        others = [a for a in live.arms if a is not arm and not a.stopped]
        freed = arm.weight
        total = sum(a.weight for a in others)
        weights = []
        for a in live.arms:
            if a is arm or a.stopped:
                weights.append(0.0)
            elif total > 0:
                weights.append(a.weight + freed * a.weight / total)
            else:
                weights.append(100.0 / len(others))
        live.set_weights(weights)
        self.m_stopped.labels(live.name, arm.name).set(1)
        self._show_weights(live)
        log.warning("route %s: arm %s (version %s) stopped: %s", live.name, arm.name, arm.version, why)

    def _show_weights(self, live: LiveRoute) -> None:
        for a in live.arms:
            self.m_weight.labels(live.name, a.name).set(a.weight)

    # ------------------------------------------------------------------ polling and the API
    async def poll(self) -> list[str]:
        """Re-read changed routing files and re-resolve registry routes; apply what changed. A
        route that no longer loads is logged and counted, and the old one keeps serving."""
        changed: list[str] = []
        wanted: dict[str, rs.RouteSpec] | None = None
        files_changed = any(_stamp(p) != s for p, s in self._files.items())
        if files_changed:
            try:
                wanted = await asyncio.to_thread(rs.specs_from, list(self._files), self.registry_url)
            except ModelportError as exc:
                log.error("the routing files no longer load (the routes stay as they are): %s", exc)
                self.m_reloads.labels("refused").inc()
                wanted = None
            for p in self._files:
                self._files[p] = _stamp(p)
        if wanted is not None:
            for name in sorted(self._from_files - set(wanted)):
                if name in self.routes:
                    await self.remove_route(name)
                    changed.append(name)
            self._from_files = set(wanted)
            for name, spec in wanted.items():
                if self.specs.get(name) != spec and await self._try_set(spec):
                    changed.append(name)
        for name, spec in list(self.specs.items()):
            if spec.registry is None or name in changed:
                continue
            try:
                resolved = await asyncio.to_thread(self._resolve, spec)
            except ModelportError as exc:
                log.warning("route %s: %s", name, exc)
                continue
            live = self.routes.get(name)
            if (live is None or _shape(live.spec) != _shape(resolved)) and await self._try_set(spec):
                changed.append(name)
        return changed

    async def _try_set(self, spec: rs.RouteSpec) -> bool:
        try:
            await self.set_route(spec)
            return True
        except ModelportError as exc:
            log.error("route %s does not load (the old route keeps serving): %s", spec.model, exc)
            return False

    def describe(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every live route (or ``name``'s) with each arm's weight, version and numbers."""
        if name is not None and name not in self.routes:
            raise ModelNotFoundError(f"model {name!r} has no route; routed: {', '.join(sorted(self.routes)) or 'none'}.")
        out = []
        for live in [self.routes[name]] if name is not None else [self.routes[n] for n in sorted(self.routes)]:
            arms = []
            for a in live.arms:
                n, metrics = self._realised(live, a)
                entry: dict[str, Any] = {
                    "arm": a.name, "model": self.public_text(a.spec.model), "version": a.version,
                    "weight": round(a.weight, 4), "configured_weight": a.configured, "stopped": a.stopped,
                    "requests": int(sum(c.value for c in a.c_requests.values())),
                    "failures": int(sum(c.value for c in a.c_failures.values())),
                    "labels": n, "realised": metrics,
                }
                if live.spec.bandit is not None:
                    entry["bounds"] = [a.lo, a.hi]
                if a.window is not None:
                    req, err, hist = a.window.totals()
                    entry["window"] = {"seconds": a.window.n, "requests": req, "failures": err,
                                       "p50_seconds": quantile(hist, 0.5), "p99_seconds": quantile(hist, 0.99)}
                arms.append(entry)
            shadows = []
            for s in live.shadows:
                scored = sum(c[0].value for k, c in s.c.items() if k[0] != "dropped")
                rows = sum(c[1].value for k, c in s.c.items() if k[0] != "dropped")
                disagree = sum(c[2].value for k, c in s.c.items() if k[0] != "dropped")
                dropped = {k[1]: int(c.value) for k, c in s.c.items() if k[0] == "dropped"}
                shadows.append({"model": self.public_text(s.model), "version": s.version, "requests": int(scored),
                                "rows": int(rows), "disagreements": int(disagree),
                                "disagreement_rate": (disagree / rows) if rows else None, "dropped": dropped})
            out.append({
                "model": live.name, "origin": self.public_text(live.spec.origin),
                "registry": live.spec.registry or self.specs.get(live.name, live.spec).registry,
                "sticky": live.spec.sticky, "sticky_missing": int(live.c_missing.value) if live.c_missing else 0,
                "policy": live.spec.bandit.policy if live.spec.bandit else "fixed",
                "arms": arms, "shadows": shadows, "route": self._public(self.specs.get(live.name, live.spec).to_dict()),
            })
        return out

    def _public(self, table: dict[str, Any]) -> dict[str, Any]:
        """A route's table without the server's paths (arms' and shadows' sources)."""
        out: dict[str, Any] = {}
        for k, v in table.items():
            if isinstance(v, dict) and "model" in v:
                v = {**v, "model": self.public_text(v["model"])}
            elif k == "shadow":
                v = [self.public_text(m) for m in v]
            out[k] = v
        return out

    # ------------------------------------------------------------------ lifecycle
    def stop(self, error: BaseException) -> None:
        if self._threads is not None:
            self._threads.stop_all(error)
        for t in list(self._tasks):
            t.cancel()

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False)


class ShadowThreads(ScoringThreads):
    """The scoring threads of shadows: the lowest CPU priority (nice 19), so that a shadow only
    takes time the answering models leave."""

    def _work(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, 0, 19)  # Linux: 0 is this thread
        super()._work()


def disagreement(answer: Mapping[str, np.ndarray], shadow: Mapping[str, np.ndarray]) -> tuple[int, float]:
    """Rows whose answers differ (label, or prediction beyond 1e-6 relative) and the largest
    absolute difference of probabilities / predictions."""
    if "label" in answer and "label" in shadow:
        a, b = np.asarray(answer["label"]).reshape(-1), np.asarray(shadow["label"]).reshape(-1)
        rows = int(np.count_nonzero(a != b)) if a.shape == b.shape else max(a.size, b.size)
        diff = _max_abs(answer.get("probabilities"), shadow.get("probabilities"))
        return rows, diff
    for name in ("prediction", *answer.keys()):
        if name in answer and name in shadow:
            a = np.asarray(answer[name])
            b = np.asarray(shadow[name])
            if a.shape != b.shape or a.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
                continue
            d = np.abs(a.astype(np.float64) - b.astype(np.float64))
            both = np.isnan(a) & np.isnan(b) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
            d[both] = 0.0
            d[np.isnan(d)] = np.inf
            off = d > 1e-6 * np.maximum(1.0, np.abs(a.astype(np.float64)))
            per_row = off.reshape(off.shape[0], -1).any(axis=1) if off.ndim else off.reshape(1)
            return int(per_row.sum()), float(d.max()) if d.size else 0.0
    return 0, 0.0


def _max_abs(a: Any, b: Any) -> float:
    if a is None or b is None:
        return 0.0
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        return 0.0 if a.size == 0 else float("inf")
    d = np.abs(a - b)
    d[np.isnan(d)] = np.inf
    return float(d.max())


def _route_source(route: str, model: str, version: str | None) -> Source:
    """The repository source of one arm or shadow: served under the route's name; its spec,
    ``ROUTE=MODEL``, is unique to the route (two routes may name the same bundle)."""
    if model.startswith("models:/"):
        src = Source(f"{route}={model}", name=route, uri=model, route=route, version=version)
    else:
        path = Path(model).expanduser()
        if not path.exists():
            raise ServingError(
                f"model source {model!r} does not exist.",
                hint="give a .mpk file, a bundle directory, models:/NAME/VERSION or models:/NAME@ALIAS",
            )
        src = Source(f"{route}={model}", name=route, path=path, route=route, version=version)
    return src


def _shape(spec: rs.RouteSpec) -> Any:
    """What of a resolved route changes its loading (not the live weights)."""
    return (tuple((a.name, a.model, a.weight, a.version) for a in spec.arms), spec.shadows, spec.sticky)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _reason(exc: ModelportError) -> str:
    from modelport.serve.errors import DeadlineExceededError, NotReadyError, OverloadedError

    if isinstance(exc, OverloadedError):
        return "busy"
    if isinstance(exc, DeadlineExceededError):
        return "timeout"
    if isinstance(exc, NotReadyError):
        return "not_ready"
    return "error"


__all__ = ["Arm", "LiveRoute", "Router", "Shadow", "ShadowThreads", "disagreement", "quantile"]
