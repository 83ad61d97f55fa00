"""What a route is, as the user writes it: the routing file, a route's JSON, registry aliases.

A routing file (``modelport serve --routing routing.toml``) has one table per routed model name::

    [churn]
    production = { model = "models:/churn@production", weight = 90 }
    canary     = { model = "models:/churn@canary",     weight = 10, sticky = "customer_id" }
    shadow     = [ "models:/churn/7" ]                 # scored on every request, never answered

    [churn.bandit]                                     # optional: move weight to the better arm
    policy = "thompson"                                # or "exp3"
    reward = "accuracy"                                # from labelled feedback
    min_weight = 5
    max_weight = 95

    [churn.stop]                                       # optional: stop an arm that errs or degrades
    max_error_rate = 0.05

A table whose value is an inline table with ``model`` is an arm; the other keys are the route's
own (:data:`ROUTE_KEYS`), so those words cannot name an arm. Weights are percentages and must add
up to 100 (one arm alone may leave its weight out). ``sticky`` (on the route or on an arm) names a
request field, or ``header:NAME`` a request header. ``registry = "models:/churn"`` takes the arms
from the model's registry aliases instead: each alias whose version carries the tag
``route.weight`` is an arm with that weight, one tagged ``route.shadow=true`` a shadow
(:func:`from_registry`). The same tables, as JSON, set a route through the repository API.

Everything here is parsing and checking; :mod:`modelport.serve.routing` makes routes live.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelport.errors import InputError
from modelport.registry.uri import NAME_RE

ROUTE_KEYS = ("shadow", "sticky", "bandit", "stop", "registry")
ARM_KEYS = ("model", "weight", "version", "sticky", "min_weight", "max_weight")
BANDIT_KEYS = ("policy", "reward", "scale", "min_weight", "max_weight", "update_every", "gamma", "min_labels")
STOP_KEYS = ("arms", "baseline", "max_error_rate", "min_requests", "max_latency_ratio", "max_metric_drop",
             "min_labels", "window")
POLICIES = ("thompson", "exp3")
#: what a bandit maximises, from labelled feedback: higher is better for the first three, lower for
#: the errors (turned into a reward in [0, 1] with ``scale``); ``reward``: a reward the client sends
REWARDS = ("accuracy", "auc", "reward", "log_loss", "rmse", "mae")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
#: registry tags read by :func:`from_registry` on the version an alias points at
WEIGHT_TAG = "route.weight"
SHADOW_TAG = "route.shadow"
STICKY_TAG = "route.sticky"
HEADER_PREFIX = "header:"

#: arm names and versions (a whole match: "$" would let a trailing newline through)
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_FIELD = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True)
class ArmSpec:
    """One arm: the bundle that answers its share of the traffic."""

    name: str
    model: str  # a source: .mpk, bundle directory, models:/NAME/VERSION, models:/NAME@ALIAS
    weight: float  # percent
    version: str | None = None  # served as this version (two files with the same manifest version)
    min_weight: float | None = None  # bandit bounds for this arm (percent); default: the bandit's
    max_weight: float | None = None


@dataclass(frozen=True)
class BanditSpec:
    """A Clipper-style selection policy: weight moves toward the arm with the better reward."""

    policy: str = "thompson"
    reward: str = "accuracy"
    scale: float | None = None  # rmse / mae: the error worth a reward of 0.5 (reward = 1 / (1 + err / scale))
    min_weight: float = 0.0  # percent, for every arm without bounds of its own
    max_weight: float = 100.0
    update_every: float = 10.0  # seconds between weight updates
    gamma: float = 0.1  # exp3: the share of traffic spread evenly, for exploration
    min_labels: int = 20  # labelled rows every arm needs before weight moves


@dataclass(frozen=True)
class StopRule:
    """Stop an arm (its weight goes to 0, to the baseline) that errs or degrades."""

    arms: tuple[str, ...] | None = None  # None: every arm but the baseline
    baseline: str | None = None  # None: the arm with the largest weight
    max_error_rate: float | None = 0.05  # failed requests / requests over the window
    min_requests: int = 20
    max_latency_ratio: float | None = None  # the arm's p99 over the baseline's
    max_metric_drop: float | None = None  # realised reward metric worse than the baseline's by more
    min_labels: int = 50
    window: float = 60.0  # seconds


@dataclass(frozen=True)
class RouteSpec:
    """Everything about one routed model name."""

    model: str
    arms: tuple[ArmSpec, ...]
    shadows: tuple[str, ...] = ()
    sticky: str | None = None  # request field, or header:NAME
    bandit: BanditSpec | None = None
    stop: StopRule | None = None
    registry: str | None = None  # models:/NAME: arms from its aliases (re-read while polling)
    origin: str = "the routing file"  # where it came from, for messages
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def sticky_header(self) -> str | None:
        s = self.sticky
        return s[len(HEADER_PREFIX):].lower() if s is not None and s.startswith(HEADER_PREFIX) else None

    @property
    def sticky_field(self) -> str | None:
        s = self.sticky
        return s if s is not None and not s.startswith(HEADER_PREFIX) else None

    def to_dict(self) -> dict[str, Any]:
        """The route as its JSON table (what the repository API takes and shows)."""
        doc: dict[str, Any] = {}
        if self.registry is not None:
            doc["registry"] = self.registry
        else:
            for a in self.arms:
                arm: dict[str, Any] = {"model": a.model, "weight": a.weight}
                for key in ("version", "min_weight", "max_weight"):
                    if getattr(a, key) is not None:
                        arm[key] = getattr(a, key)
                doc[a.name] = arm
            if self.shadows:
                doc["shadow"] = list(self.shadows)
        if self.sticky is not None:
            doc["sticky"] = self.sticky
        if self.bandit is not None:
            doc["bandit"] = {k: getattr(self.bandit, k) for k in BANDIT_KEYS if getattr(self.bandit, k) is not None}
        if self.stop is not None:
            stop = {k: getattr(self.stop, k) for k in STOP_KEYS if getattr(self.stop, k) is not None}
            if "arms" in stop:
                stop["arms"] = list(stop["arms"])
            doc["stop"] = stop
        return doc


# ----------------------------------------------------------------------------- parsing
def read_file(path: str | os.PathLike[str]) -> dict[str, RouteSpec]:
    """Every route of a TOML routing file."""
    import tomllib

    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the routing file {str(p)!r}: {exc.strerror or exc}.",
                         hint="pass --routing PATH of a TOML file, or --routing models:/NAME") from None
    try:
        doc = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"the routing file {p.name!r} is not valid TOML: {exc}.",
                         hint="see docs/serving.md (Routing) for its format") from None
    if not doc:
        raise InputError(f"the routing file {p.name!r} defines no route.",
                         hint='add a table per model name, e.g. [churn] with production = { model = "...", weight = 100 }')
    return {name: parse_route(name, table, origin=f"{p.name} [{name}]") for name, table in doc.items()}


def parse_route(name: str, table: Any, *, origin: str | None = None) -> RouteSpec:
    """One route from its table (TOML or JSON). Raises InputError saying what is wrong where."""
    where = origin or f"route {name!r}"
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InputError(f"{where}: {_show(name)} is not a model name: use 1-128 letters, digits, '.', '_' and '-', "
                         "starting with a letter or digit (the registry's rule).")
    if not isinstance(table, Mapping):
        raise InputError(
            f"{where}: a route must be a table of arms; got {_type(table)}.",
            hint='e.g. [churn] production = { model = "models:/churn@production", weight = 100 }',
        )
    registry = table.get("registry")
    arms: list[ArmSpec] = []
    sticky = _sticky(table.get("sticky"), f"{where}: sticky")
    for key, value in table.items():
        if key in ROUTE_KEYS:
            continue
        if not isinstance(value, Mapping):
            raise InputError(
                f"{where}: {_show(key)} is neither an arm (a table with 'model') nor one of the route's keys "
                f"({', '.join(ROUTE_KEYS)}); got {_type(value)}.",
            )
        arms.append(_arm(key, value, where))
        arm_sticky = _sticky(value.get("sticky"), f"{where}: arm {key!r}: sticky")
        if arm_sticky is not None:
            if sticky is not None and sticky != arm_sticky:
                raise InputError(
                    f"{where}: arms ask for different sticky keys ({sticky!r} and {arm_sticky!r}); "
                    "a route assigns every request by one key.",
                    hint="give sticky once, on the route or on one arm",
                )
            sticky = arm_sticky
    shadows = _shadows(table.get("shadow"), where)
    if registry is not None:
        if not isinstance(registry, str) or not registry.startswith("models:/") or "@" in registry or \
                registry.count("/") != 1:
            raise InputError(f"{where}: registry must be a model URI such as \"models:/churn\"; got {_show(registry)}.")
        if arms or shadows:
            raise InputError(
                f"{where}: a route takes its arms either from the registry ({registry}) or from the file, not both.",
                hint="remove the arms and shadows, or the registry key",
            )
    elif not arms:
        raise InputError(
            f"{where}: the route has no arms.",
            hint='add one, e.g. production = { model = "models:/churn@production", weight = 100 }',
        )
    spec = RouteSpec(
        model=name, arms=tuple(arms), shadows=shadows, sticky=sticky,
        bandit=_bandit(table.get("bandit"), where) if "bandit" in table else None,
        stop=_stop(table.get("stop"), where) if "stop" in table else None,
        registry=registry, origin=where,
    )
    return check(spec) if registry is None else spec


def check(spec: RouteSpec) -> RouteSpec:
    """The rules that bind a route's parts together: weights, bounds, the stop rule's arms."""
    where = spec.origin
    arms = list(spec.arms)
    if len(arms) == 1 and math.isnan(arms[0].weight):
        arms = [replace(arms[0], weight=100.0)]
        spec = replace(spec, arms=tuple(arms))
    unset = [a.name for a in arms if math.isnan(a.weight)]
    if unset:
        raise InputError(
            f"{where}: arm(s) {', '.join(map(repr, unset))} have no weight; with several arms each needs one "
            "(percent, adding up to 100).",
        )
    total = sum(a.weight for a in arms)
    if abs(total - 100.0) > 1e-6:
        parts = ", ".join(f"{a.name} {_num(a.weight)}" for a in arms)
        raise InputError(
            f"{where}: the weights add up to {_num(total)} ({parts}); they must add up to 100.",
            hint="weights are percentages of the traffic",
        )
    names = [a.name for a in arms]
    if spec.bandit is not None:
        if len(arms) < 2:
            raise InputError(f"{where}: a bandit needs at least two arms to choose between; this route has one.")
        lo = [_bound(a.min_weight, spec.bandit.min_weight) for a in arms]
        hi = [_bound(a.max_weight, spec.bandit.max_weight) for a in arms]
        for a, low, high in zip(arms, lo, hi):
            if low > high:
                raise InputError(f"{where}: arm {a.name!r}: min_weight {_num(low)} is above max_weight {_num(high)}.")
        if sum(lo) > 100 + 1e-9 or sum(hi) < 100 - 1e-9:
            raise InputError(
                f"{where}: no weights fit the bandit's bounds: the minimums add up to {_num(sum(lo))} and the "
                f"maximums to {_num(sum(hi))}; the weights must add up to 100.",
                hint="lower min_weight or raise max_weight",
            )
        if spec.bandit.reward in ("rmse", "mae") and spec.bandit.scale is None:
            raise InputError(
                f"{where}: bandit reward {spec.bandit.reward!r} needs 'scale': the error worth a reward of 0.5 "
                "(reward = 1 / (1 + error / scale)).",
                hint="e.g. scale = 10.0 for an RMSE of 10 being as good as a coin flip",
            )
    elif any(a.min_weight is not None or a.max_weight is not None for a in arms):
        raise InputError(f"{where}: min_weight / max_weight bound a bandit's weights; this route has no [bandit].")
    stop = spec.stop
    if stop is not None:
        if len(arms) < 2:
            raise InputError(f"{where}: the stop rule needs a baseline arm and at least one other; this route has one arm.")
        for arm in [*(stop.arms or ()), *([stop.baseline] if stop.baseline else [])]:
            if arm not in names:
                raise InputError(f"{where}: stop rule: no arm named {arm!r}; the arms are {', '.join(names)}.")
        base = stop.baseline or max(arms, key=lambda a: a.weight).name
        if stop.arms is not None and base in stop.arms:
            raise InputError(f"{where}: stop rule: the baseline {base!r} cannot also be an arm it stops.")
        if stop.max_metric_drop is not None and spec.bandit is None:
            raise InputError(
                f"{where}: stop rule: max_metric_drop compares the arms' realised reward metric, which [bandit] "
                "names (reward = ...).",
                hint="add a [bandit] table, or drop max_metric_drop",
            )
    return spec


def from_registry(spec: RouteSpec, registry_url: str | None) -> RouteSpec:
    """The route ``spec.registry`` describes now: one arm per alias whose version is tagged
    ``route.weight`` (two aliases on one version make one arm), shadows tagged ``route.shadow``,
    and ``route.sticky`` from any arm. Blocking (it asks the registry)."""
    from modelport.registry import open_registry

    assert spec.registry is not None
    name = spec.registry[len("models:/"):]
    reg = open_registry(registry_url)
    try:
        versions = {v.version: v for v in reg.versions(name)}
        aliases = next((m.aliases for m in reg.models() if m.name == name), {})
    finally:
        reg.close()
    where = f"{spec.origin} ({spec.registry})"
    arms: list[ArmSpec] = []
    shadows: list[str] = []
    sticky = spec.sticky
    seen: set[int] = set()
    for alias, number in sorted(aliases.items()):
        info = versions.get(number)
        if info is None or number in seen:
            continue
        tags = info.tags
        if WEIGHT_TAG in tags:
            seen.add(number)
            weight = _weight(tags[WEIGHT_TAG], f"{where}: alias {alias!r} (version {number}) tag {WEIGHT_TAG}")
            arms.append(ArmSpec(alias, f"models:/{name}/{number}", weight))
            if STICKY_TAG in tags:
                sticky = _sticky(tags[STICKY_TAG], f"{where}: alias {alias!r} tag {STICKY_TAG}")
        elif tags.get(SHADOW_TAG, "").lower() in ("true", "1", "yes"):
            seen.add(number)
            shadows.append(f"models:/{name}/{number}")
    if not arms:
        have = ", ".join(f"{a} -> {n}" for a, n in sorted(aliases.items())) or "none"
        raise InputError(
            f"{where}: no alias of {name!r} points at a version tagged {WEIGHT_TAG}; its aliases: {have}.",
            hint=f"tag the versions: modelport tag models:/{name}@production {WEIGHT_TAG}=90",
        )
    return check(replace(spec, arms=tuple(arms), shadows=tuple(shadows), sticky=sticky))


def _arm(name: str, table: Mapping[str, Any], where: str) -> ArmSpec:
    if not _NAME.fullmatch(name):
        raise InputError(f"{where}: {_show(name)} is not an arm name: use letters, digits, '.', '_' and '-'.")
    unknown = [k for k in table if k not in ARM_KEYS]
    if unknown:
        raise InputError(f"{where}: arm {name!r} has unknown key(s) {', '.join(map(_show, unknown))}; "
                         f"an arm takes {', '.join(ARM_KEYS)}.")
    model = table.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InputError(
            f"{where}: arm {name!r} needs 'model': a bundle file, a bundle directory, models:/NAME/VERSION "
            f"or models:/NAME@ALIAS; got {_show(model)}.",
        )
    weight = _weight(table["weight"], f"{where}: arm {name!r}: weight") if "weight" in table else math.nan
    version = table.get("version")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, (str, int)) or not _NAME.fullmatch(str(version)):
            raise InputError(f"{where}: arm {name!r}: version must be a short text such as \"2\"; got {_show(version)}.")
        version = str(version)
    lo = _percent(table.get("min_weight"), f"{where}: arm {name!r}: min_weight")
    hi = _percent(table.get("max_weight"), f"{where}: arm {name!r}: max_weight")
    return ArmSpec(name, model.strip(), weight, version, lo, hi)


def _shadows(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
        raise InputError(f"{where}: shadow must be a list of bundle sources, e.g. [\"models:/churn/7\"]; got {_show(value)}.")
    if len(set(items)) != len(items):
        raise InputError(f"{where}: shadow lists a source twice.")
    return tuple(v.strip() for v in items)


def _sticky(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{where} must be a request field name or \"header:NAME\"; got {_show(value)}.")
    text = value.strip()
    key = text[len(HEADER_PREFIX):] if text.startswith(HEADER_PREFIX) else text
    if not _FIELD.match(key):
        raise InputError(f"{where} must be a request field name or \"header:NAME\"; got {_show(value)}.")
    return text


def _bandit(value: Any, where: str) -> BanditSpec:
    where = f"{where}: bandit"
    if not isinstance(value, Mapping):
        raise InputError(f"{where} must be a table; got {_type(value)}.")
    unknown = [k for k in value if k not in BANDIT_KEYS]
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(map(_show, unknown))}; it takes {', '.join(BANDIT_KEYS)}.")
    policy = value.get("policy", "thompson")
    if policy not in POLICIES:
        raise InputError(f"{where}: policy must be one of {', '.join(POLICIES)}; got {_show(policy)}.")
    reward = value.get("reward", "accuracy")
    if reward not in REWARDS:
        raise InputError(f"{where}: reward must be one of {', '.join(REWARDS)}; got {_show(reward)}.")
    scale = value.get("scale")
    if scale is not None:
        scale = _positive(scale, f"{where}: scale")
    gamma = _number(value.get("gamma", 0.1), f"{where}: gamma")
    if not 0 < gamma <= 1:
        raise InputError(f"{where}: gamma must be in (0, 1]; got {_show(gamma)}.")
    return BanditSpec(
        policy=policy, reward=reward, scale=scale,
        min_weight=_percent(value.get("min_weight", 0.0), f"{where}: min_weight") or 0.0,
        max_weight=_percent(value.get("max_weight", 100.0), f"{where}: max_weight") or 0.0,
        update_every=_positive(value.get("update_every", 10.0), f"{where}: update_every"),
        gamma=gamma,
        min_labels=_count(value.get("min_labels", 20), f"{where}: min_labels"),
    )


def _stop(value: Any, where: str) -> StopRule:
    where = f"{where}: stop"
    if not isinstance(value, Mapping):
        raise InputError(f"{where} must be a table; got {_type(value)}.")
    unknown = [k for k in value if k not in STOP_KEYS]
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(map(_show, unknown))}; it takes {', '.join(STOP_KEYS)}.")
    arms = value.get("arms")
    if arms is not None:
        if isinstance(arms, str):
            arms = [arms]
        if not isinstance(arms, list) or not arms or not all(isinstance(a, str) for a in arms):
            raise InputError(f"{where}: arms must be a list of arm names; got {_show(arms)}.")
        arms = tuple(arms)
    baseline = value.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise InputError(f"{where}: baseline must be an arm name; got {_show(baseline)}.")
    rate = value.get("max_error_rate", 0.05)
    if rate is not None:
        rate = _number(rate, f"{where}: max_error_rate")
        if not 0 <= rate < 1:
            raise InputError(f"{where}: max_error_rate must be in [0, 1); got {_show(rate)}.")
    ratio = value.get("max_latency_ratio")
    if ratio is not None:
        ratio = _positive(ratio, f"{where}: max_latency_ratio")
    drop = value.get("max_metric_drop")
    if drop is not None:
        drop = _number(drop, f"{where}: max_metric_drop")
        if drop < 0:
            raise InputError(f"{where}: max_metric_drop must be >= 0; got {_show(drop)}.")
    if rate is None and ratio is None and drop is None:
        raise InputError(f"{where}: the rule checks nothing: give max_error_rate, max_latency_ratio or max_metric_drop.")
    return StopRule(
        arms=arms, baseline=baseline, max_error_rate=rate,
        min_requests=_count(value.get("min_requests", 20), f"{where}: min_requests"),
        max_latency_ratio=ratio, max_metric_drop=drop,
        min_labels=_count(value.get("min_labels", 50), f"{where}: min_labels"),
        window=_positive(value.get("window", 60.0), f"{where}: window"),
    )


def _weight(value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InputError(f"{where} must be a number of percent; got {_show(value)}.") from None
    w = _percent(value, where)
    assert w is not None
    return w


def _percent(value: Any, where: str) -> float | None:
    if value is None:
        return None
    v = _number(value, where)
    if not 0 <= v <= 100:
        raise InputError(f"{where} must be a percentage between 0 and 100; got {_show(value)}.")
    return v


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where} must be a finite number; got {_show(value)}.")
    return float(value)


def _positive(value: Any, where: str) -> float:
    v = _number(value, where)
    if v <= 0:
        raise InputError(f"{where} must be above 0; got {_show(value)}.")
    return v


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{where} must be a whole number >= 0; got {_show(value)}.")
    return value


def _bound(own: float | None, default: float) -> float:
    return default if own is None else own


def _num(v: float) -> str:
    return f"{v:g}"


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _type(value: Any) -> str:
    return f"{type(value).__name__} {_show(value, 40)}"


def specs_from(sources: Sequence[str], registry_url: str | None = None) -> dict[str, RouteSpec]:
    """Routes from ``--routing`` values: TOML files and ``models:/NAME`` URIs (arms from the
    registry's aliases). A model routed twice is an error."""
    out: dict[str, RouteSpec] = {}
    for src in sources:
        if src.startswith("models:/"):
            name = src[len("models:/"):]
            found = {name: parse_route(name, {"registry": src}, origin=f"--routing {src}")}
        else:
            found = read_file(src)
        for name, spec in found.items():
            if name in out:
                raise InputError(f"model {name!r} is routed twice: by {out[name].origin} and by {spec.origin}.")
            out[name] = spec
    return out
