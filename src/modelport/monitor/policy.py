"""Retraining triggers: a policy file of rules over drift and performance, and what to do when one fires.

    >>> from modelport.monitor.policy import Policy
    >>> result = Policy.load("monitor.toml").evaluate()      # rules over the last windows
    >>> result.fired, result.exit_code; result.act()          # webhook POST, registry tag

A policy (TOML)::

    [monitor]
    log = "predictions/"                   # the prediction log (directory or URL)
    model = "models:/churn@production"     # the bundle: reference statistics, task, classes; and the version
                                           # a tag action marks (a registry URI), or a bundle path
    name = "churn"                         # the logged model name (default: the bundle's name)
    window = "1d"                          # windows are aligned to UTC: days start at midnight
    windows = 2                            # how many of the latest windows are evaluated
    labels = "labels.parquet"              # optional: labels besides those sent to the feedback endpoint

    [[rule]]
    name = "feature drift"
    when = "drift.psi > 0.2"               # METRIC OP NUMBER; OP is one of > >= < <= ; 5% reads 0.05
    for = 2                                # it must hold in each of the last 2 windows (default 1)
    actions = ["webhook", "tag", "exit"]

    [actions.webhook]
    url = "https://hooks.example/retrain"  # POSTed a JSON body: the policy, the model, the fired rules
    [actions.tag]
    key = "needs-retraining"               # set on the model's registry version (value: "true")
    [actions.exit]
    code = 10                              # `modelport monitor` exits with it when a rule with "exit" fires (default 10)

Metrics of a window: ``drift.psi`` / ``drift.js`` / ``drift.missing`` / ``drift.unseen`` (the
largest over the input columns, or one column: ``drift.psi[age]``), ``drift.share``,
``prediction.psi`` / ``prediction.js``, ``estimated.accuracy`` / ``.roc_auc`` / ``.f1`` (CBPE) and
``estimated.accuracy_drop`` / ``.roc_auc_drop`` (from the estimate on the bundle's reference rows),
``realised.accuracy`` / ``.roc_auc`` / ``.f1`` / ``.log_loss`` / ``.rmse`` / ``.mae`` / ``.r2``.
Performance metrics are those of the version that answered most rows in the window. A window
without the data a metric needs (no rows, no labels yet) does not satisfy the rule, and says so.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import InputError, ModelportError, MonitorError
from modelport.monitor._time import iso, parse_window

_WHEN = re.compile(r"\s*([a-z_]+)\.([a-z_0-9]+)(?:\[([^\]]+)\])?\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*(%)?\s*$")
_OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}
_GROUPS = {"drift": ("psi", "js", "missing", "unseen", "share"), "prediction": ("psi", "js"),
           "estimated": ("accuracy", "roc_auc", "f1", "accuracy_drop", "roc_auc_drop", "f1_drop"),
           "realised": ("accuracy", "roc_auc", "f1", "log_loss", "rmse", "mae", "r2")}
ACTIONS = ("webhook", "tag", "exit")


@dataclass
class Rule:
    name: str
    group: str
    metric: str
    column: str | None
    op: str
    threshold: float
    windows: int = 1
    actions: list[str] = field(default_factory=list)
    when: str = ""

    @classmethod
    def parse(cls, doc: Any, i: int) -> Rule:
        if not isinstance(doc, dict):
            raise InputError(f"rule #{i + 1} must be a table ([[rule]] with when = ...).")
        when = doc.get("when")
        m = _WHEN.match(when) if isinstance(when, str) else None
        if m is None:
            raise InputError(f"rule #{i + 1}: 'when' must read METRIC OP NUMBER, e.g. \"drift.psi > 0.2\"; got {when!r}.",
                             hint="metrics: " + ", ".join(f"{g}.{m}" for g, ms in _GROUPS.items() for m in ms))
        group, metric, column, op, number, pct = m.groups()
        if group not in _GROUPS or metric not in _GROUPS[group]:
            raise InputError(f"rule #{i + 1}: unknown metric {group}.{metric}.",
                             hint="metrics: " + ", ".join(f"{g}.{m}" for g, ms in _GROUPS.items() for m in ms))
        if column is not None and group != "drift":
            raise InputError(f"rule #{i + 1}: only drift metrics name a column ({when!r}).")
        n = doc.get("for", 1)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"rule #{i + 1}: 'for' must be a whole number of windows >= 1; got {n!r}.")
        actions = doc.get("actions", ["exit"])
        if not isinstance(actions, list) or not all(a in ACTIONS for a in actions):
            raise InputError(f"rule #{i + 1}: actions must be a list of {', '.join(ACTIONS)}; got {actions!r}.")
        return cls(str(doc.get("name") or when), group, metric, column, op,
                   float(number) / (100.0 if pct else 1.0), n, list(actions), str(when))


@dataclass
class Fired:
    rule: Rule
    values: list[float | None]  # per evaluated window, oldest first
    fired: bool
    note: str = ""


@dataclass
class Evaluation:
    policy: Policy
    windows: list[dict[str, Any]]  # start, end, metrics
    results: list[Fired]

    @property
    def fired(self) -> list[Fired]:
        return [r for r in self.results if r.fired]

    @property
    def exit_code(self) -> int:
        codes = [self.policy.exit_code for f in self.fired if "exit" in f.rule.actions]
        return max(codes) if codes else 0

    def to_dict(self) -> dict[str, Any]:
        return _finite({
            "policy": self.policy.path, "model": self.policy.name, "bundle": self.policy.model,
            "windows": self.windows,
            "rules": [{"name": r.rule.name, "when": r.rule.when, "for": r.rule.windows, "fired": r.fired,
                       "values": r.values, "note": r.note, "actions": r.rule.actions if r.fired else []}
                      for r in self.results],
            "fired": [r.rule.name for r in self.fired], "exit_code": self.exit_code,
        })

    def act(self) -> list[str]:
        """Carry out the fired rules' webhook and tag actions (once each); what was done, in words."""
        done: list[str] = []
        wanted = {a for f in self.fired for a in f.rule.actions}
        p = self.policy
        if "webhook" in wanted:
            done.append(p.webhook(self.to_dict()))
        if "tag" in wanted:
            done.append(p.tag())
        return done


class Policy:
    """A parsed policy file (see the module docstring)."""

    def __init__(self, doc: dict[str, Any], path: str = "<policy>") -> None:
        self.path = path
        mon = doc.get("monitor")
        if not isinstance(mon, dict):
            raise InputError(f"{path}: the policy needs a [monitor] table with log and model.")
        for key in ("log", "model"):
            if not isinstance(mon.get(key), str) or not mon.get(key):
                raise InputError(f"{path}: [monitor] needs {key} = \"...\" (the prediction log and the bundle).")
        self.log: str = mon["log"]
        self.model: str = mon["model"]
        self._name = mon.get("name")
        self.window = parse_window(mon.get("window", "1d"))
        self.n_windows = int(mon.get("windows", 1))
        if self.n_windows < 1 or self.n_windows > 366:
            raise InputError(f"{path}: [monitor] windows must be from 1 to 366; got {mon.get('windows')!r}.")
        self.labels = mon.get("labels")
        rules = doc.get("rule")
        if not isinstance(rules, list) or not rules:
            raise InputError(f"{path}: the policy has no rules; add [[rule]] tables with when = \"...\".")
        self.rules = [Rule.parse(r, i) for i, r in enumerate(rules)]
        self.n_windows = max(self.n_windows, *(r.windows for r in self.rules))
        actions = doc.get("actions") or {}
        if not isinstance(actions, dict):
            raise InputError(f"{path}: [actions] must be a table.")
        self.actions = actions
        used = {a for r in self.rules for a in r.actions}
        if "webhook" in used:
            url = (actions.get("webhook") or {}).get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise InputError(f"{path}: a rule uses the webhook action, but [actions.webhook] has no http(s) url.")
        if "tag" in used and not self.model.startswith("models:/"):
            raise InputError(f"{path}: the tag action marks a registry version, but model = {self.model!r} is not a "
                             "registry URI.", hint="use model = \"models:/NAME@ALIAS\" or models:/NAME/VERSION")
        code = (actions.get("exit") or {}).get("code", 10)
        if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= 125:
            raise InputError(f"{path}: [actions.exit] code must be a whole number from 1 to 125; got {code!r}.")
        self.exit_code = code
        self._bundle: Any = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise InputError(f"cannot read the policy {path}: {exc.strerror or exc}.") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"the policy {path} is not valid TOML: {exc}.") from None
        return cls(doc, os.fspath(path))

    @property
    def bundle(self) -> Any:
        if self._bundle is None:
            from modelport._uri import load

            self._bundle = load(self.model)
        return self._bundle

    @property
    def name(self) -> str:
        return str(self._name or self.bundle.name)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, *, now: float | None = None) -> Evaluation:
        from modelport.monitor.drift import drift_of_log
        from modelport.monitor.feedback import baseline_estimate, perf

        now = time.time() if now is None else now
        w = self.window
        last = math.floor(now / w) * w
        starts = [last - k * w for k in range(self.n_windows - 1, -1, -1)]
        need_perf = any(r.group in ("estimated", "realised") for r in self.rules)
        report = perf(self.log, model=self.name, bundle=self.bundle, labels=self.labels, by=w,
                      since=starts[0], until=last + w) if need_perf else None
        base = baseline_estimate(self.bundle) if need_perf and self.bundle.classes is not None else {}
        windows: list[dict[str, Any]] = []
        for s in starts:
            d = drift_of_log(self.bundle, self.log, model=self.name, since=s, until=s + w)
            metrics: dict[str, Any] = {"rows": d.rows, "drift": _drift_metrics(d)}
            if report is not None:
                ws = [x for x in report.windows if x.start == s]
                top = max(ws, key=lambda x: x.predictions) if ws else None
                est = dict(top.estimated) if top else {}
                for k in ("accuracy", "roc_auc", "f1"):
                    if est.get(k) is not None and base.get(k) is not None:
                        est[k + "_drop"] = base[k] - est[k]
                metrics["estimated"] = est
                metrics["realised"] = dict(top.realised) if top else {}
                metrics["version"] = top.version if top else None
            windows.append({"start": iso(s), "end": iso(s + w), "metrics": metrics})
        results = []
        for r in self.rules:
            values = [_value(win["metrics"], r) for win in windows]
            recent = values[-r.windows:]
            ok = len(recent) == r.windows and all(v is not None and _OPS[r.op](v, r.threshold) for v in recent)
            note = "" if all(v is not None for v in recent) else "no data for some windows (no rows, or no labels yet)"
            results.append(Fired(r, values, ok, note))
        return Evaluation(self, windows, results)

    # ------------------------------------------------------------------ actions
    def webhook(self, body: dict[str, Any]) -> str:
        import urllib.error
        import urllib.request

        cfg = self.actions.get("webhook") or {}
        url = cfg["url"]
        timeout = float(cfg.get("timeout", 10))
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "modelport-monitor"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            raise MonitorError(f"the webhook {url} answered {exc.code} {exc.reason}.",
                               hint="check the URL and that the receiver accepts a JSON POST") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise MonitorError(f"the webhook {url} could not be reached: {getattr(exc, 'reason', exc)}.",
                               hint="check the URL, and that the receiver is up") from None
        return f"webhook {url}: {status}"

    def tag(self) -> str:
        from modelport.registry import open_registry

        cfg = self.actions.get("tag") or {}
        key = str(cfg.get("key", "needs-retraining"))
        value = str(cfg.get("value", "true"))
        try:
            reg = open_registry(cfg.get("registry"))
            info = reg.set_tags(reg.resolve(self.model).uri, {key: value})
        except ModelportError as exc:
            raise MonitorError(f"could not tag {self.model}: {exc.message}", hint=exc.hint) from None
        return f"tagged {info.uri} {key}={value}"


def _drift_metrics(d: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"share": d.share if d.rows else None, "columns": {}}
    for stat, attr in (("psi", "psi"), ("js", "js"), ("unseen", "unseen_rate")):
        vals = [getattr(c, attr) for c in d.columns if getattr(c, attr) is not None]
        out[stat] = max(vals) if vals else None
    ms = [abs(c.missing_change) for c in d.columns if c.rows]
    out["missing"] = max(ms) if ms else None
    for c in d.columns:
        out["columns"][c.name] = {"psi": c.psi, "js": c.js, "missing": abs(c.missing_change) if c.rows else None,
                                  "unseen": c.unseen_rate}
    for stat in ("psi", "js"):
        vals = [getattr(c, stat) for c in d.predictions if getattr(c, stat) is not None]
        out["prediction_" + stat] = max(vals) if vals else None
    return out


def _value(metrics: dict[str, Any], r: Rule) -> float | None:
    if r.group == "drift":
        d = metrics["drift"]
        if r.column is not None:
            return (d["columns"].get(r.column) or {}).get(r.metric)
        return d.get(r.metric)
    if r.group == "prediction":
        return metrics["drift"].get("prediction_" + r.metric)
    return (metrics.get(r.group) or {}).get(r.metric)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
