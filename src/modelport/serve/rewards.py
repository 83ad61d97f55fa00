"""What routing needs from the feedback loop, and a small in-process implementation of it.

Routing asks two things of monitoring (``modelport.monitor``, issue 12):

* a :class:`RewardSource`: per model *version*, what labelled feedback says so far
  (:class:`Realised`: the number of labelled rows and the realised metrics: accuracy, log loss,
  ROC AUC for classifiers; RMSE, MAE for regressors; the mean of rewards clients sent). Bandits
  turn one of them into a reward; the stop rule compares arms by it;
* a :class:`RoutingSink` that takes, without blocking, what routing adds to the prediction log:
  which arm answered a request (:class:`ArmRecord`) and what a shadow answered and how much it
  disagreed (:class:`ShadowRecord`).

:class:`InProcessFeedback` is both, kept in memory: it remembers what each routed request was
answered (bounded: the newest :data:`MAX_REQUESTS` requests / :data:`MAX_ROWS` rows), joins labels
posted to ``/v2/models/{m}/feedback`` by request id, and keeps the newest shadow records. With
several worker processes each keeps its own (a label reaches the worker that receives it; a
shared prediction log joins across workers). Any object with the same methods replaces it
(``DataPlane(feedback=...)``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modelport.errors import InputError

MAX_REQUESTS = 100_000  # routed requests remembered for joining labels
MAX_ROWS = 1_000_000  # ... and their rows, whichever bound is met first
MAX_AUC_PAIRS = 20_000  # (score, label) pairs kept per version for ROC AUC
MAX_SHADOW_RECORDS = 1_000
MAX_FEEDBACK_RECORDS = 100_000  # per feedback request


@dataclass(frozen=True)
class Realised:
    """What labelled feedback says about one model version so far."""

    labels: int
    metrics: Mapping[str, float]  # accuracy, log_loss, auc | rmse, mae | reward (clients' own)


@dataclass(frozen=True)
class ArmRecord:
    """A routed request: which arm and version answered it, and what it answered."""

    id: str
    model: str
    arm: str
    version: str
    digest: str
    rows: int
    outputs: Mapping[str, np.ndarray]
    classes: Sequence[Any] | None
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ShadowRecord:
    """What a shadow answered for a request, beside the answer that was sent."""

    id: str | None
    model: str
    version: str  # the version that answered
    shadow: str  # the shadow's version
    shadow_digest: str
    rows: int
    disagreements: int  # rows whose label (classifiers) or prediction (beyond 1e-6 relative) differs
    max_abs_difference: float
    outputs: Mapping[str, np.ndarray]
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "version": self.version, "shadow": self.shadow,
                "shadow_digest": self.shadow_digest, "rows": self.rows, "disagreements": self.disagreements,
                "max_abs_difference": self.max_abs_difference, "time": round(self.time, 3)}


@runtime_checkable
class RewardSource(Protocol):
    def realised(self, model: str, version: str) -> Realised | None: ...


@runtime_checkable
class RoutingSink(Protocol):
    def answered(self, record: ArmRecord) -> None: ...

    def shadowed(self, record: ShadowRecord) -> None: ...


class _Tally:
    """Running sums of one version's labelled rows."""

    __slots__ = ("abs_err", "auc_pairs", "correct", "given", "labels", "log_loss", "n_class", "n_given", "n_reg", "sq_err")

    def __init__(self) -> None:
        self.labels = 0
        self.n_class = 0
        self.correct = 0
        self.log_loss = 0.0
        self.n_reg = 0
        self.sq_err = 0.0
        self.abs_err = 0.0
        self.n_given = 0
        self.given = 0.0
        self.auc_pairs: deque[tuple[float, int]] = deque(maxlen=MAX_AUC_PAIRS)

    def realised(self) -> Realised:
        m: dict[str, float] = {}
        if self.n_class:
            m["accuracy"] = self.correct / self.n_class
            m["log_loss"] = self.log_loss / self.n_class
            auc = _auc(self.auc_pairs)
            if auc is not None:
                m["auc"] = auc
        if self.n_reg:
            m["rmse"] = math.sqrt(self.sq_err / self.n_reg)
            m["mae"] = self.abs_err / self.n_reg
        if self.n_given:
            m["reward"] = self.given / self.n_given
        return Realised(self.labels, m)


class InProcessFeedback:
    """Remembers routed answers, joins labels to them by request id, keeps shadow records.

    Thread-safe; every method is bounded in time by the size of its own arguments.
    """

    def __init__(self, *, max_requests: int = MAX_REQUESTS, max_rows: int = MAX_ROWS) -> None:
        self.max_requests = max_requests
        self.max_rows = max_rows
        self._answers: OrderedDict[str, ArmRecord] = OrderedDict()
        self._rows = 0
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._shadows: deque[ShadowRecord] = deque(maxlen=MAX_SHADOW_RECORDS)
        self._lock = threading.Lock()
        self.unmatched = 0  # labels whose request id was not (or no longer) known

    # ------------------------------------------------------------------ RoutingSink
    def answered(self, record: ArmRecord) -> None:
        with self._lock:
            old = self._answers.pop(record.id, None)
            if old is not None:
                self._rows -= old.rows
            self._answers[record.id] = record
            self._rows += record.rows
            while self._answers and (len(self._answers) > self.max_requests or self._rows > self.max_rows):
                _, dropped = self._answers.popitem(last=False)
                self._rows -= dropped.rows

    def shadowed(self, record: ShadowRecord) -> None:
        self._shadows.append(record)

    def shadow_records(self, model: str | None = None) -> list[ShadowRecord]:
        return [r for r in list(self._shadows) if model is None or r.model == model]

    # ------------------------------------------------------------------ RewardSource
    def realised(self, model: str, version: str) -> Realised | None:
        with self._lock:
            t = self._tallies.get((model, version))
            return None if t is None else t.realised()

    def reset(self, model: str) -> None:
        """Forget the tallies of ``model`` (its route was replaced: arms start afresh)."""
        with self._lock:
            for key in [k for k in self._tallies if k[0] == model]:
                del self._tallies[key]

    # ------------------------------------------------------------------ labels in
    def feedback(self, model: str, records: Any) -> dict[str, int]:
        """Join ``records`` (``[{"id": ..., "label": ...}]``, optionally ``"row": i`` for a
        multi-row request, or ``"reward": r`` in [0, 1] instead of a label) to the answers of
        ``model``. Returns how many were joined and how many ids were unknown."""
        if not isinstance(records, list):
            raise InputError(
                'feedback must be an object with a list under "records", e.g. {"records": [{"id": "...", '
                f'"label": 1}}]}}; got {type(records).__name__} under "records".'
            )
        if len(records) > MAX_FEEDBACK_RECORDS:
            raise InputError(f"feedback takes at most {MAX_FEEDBACK_RECORDS} records per request; got {len(records)}.",
                             hint="send them in several requests")
        parsed = [_parse_record(i, r) for i, r in enumerate(records)]
        unknown = 0
        with self._lock:
            # every record is judged before any is counted: a refused request changes nothing
            judged: list[tuple[ArmRecord, tuple[Any, ...]]] = []
            for i, (rid, row, label, reward) in enumerate(parsed):
                answer = self._answers.get(rid)
                if answer is None or answer.model != model:
                    unknown += 1
                    continue
                if row >= answer.rows:
                    raise InputError(f"feedback record {i}: request {rid!r} had {answer.rows} row(s); row {row} does not exist.")
                judged.append((answer, _judge(answer, row, label, reward, i)))
            for answer, point in judged:
                tally = self._tallies.get((model, answer.version))
                if tally is None:
                    tally = self._tallies[(model, answer.version)] = _Tally()
                _add(tally, point)
            self.unmatched += unknown
        return {"joined": len(judged), "unknown_ids": unknown}


def _parse_record(i: int, r: Any) -> tuple[str, int, Any, float | None]:
    if not isinstance(r, Mapping):
        raise InputError(f"feedback record {i} must be an object with \"id\" and \"label\" (or \"reward\"); got {type(r).__name__}.")
    rid = r.get("id")
    if not isinstance(rid, str) or not rid:
        raise InputError(f"feedback record {i}: \"id\" must be the request id (a string) the answer carried in "
                         "its x-request-id header; got " + _brief(rid) + ".")
    unknown = [k for k in r if k not in ("id", "row", "label", "value", "reward", "ts")]
    if unknown:
        raise InputError(f"feedback record {i}: unknown key(s) {', '.join(map(_brief, unknown))}; "
                         "a record takes id, row, label (or value), reward and ts.")
    row = r.get("row", 0)
    if isinstance(row, bool) or not isinstance(row, int) or row < 0:
        raise InputError(f"feedback record {i}: \"row\" must be a whole number >= 0; got {_brief(row)}.")
    if "value" in r and "label" not in r:  # the prediction log's name for a regressor's true value
        r = {**r, "label": r["value"]}
    has_label, has_reward = "label" in r, "reward" in r
    if has_label == has_reward:
        raise InputError(f"feedback record {i}: give either \"label\" (the true value) or \"reward\" (in [0, 1]).")
    reward = None
    if has_reward:
        reward = r["reward"]
        if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not 0 <= reward <= 1:
            raise InputError(f"feedback record {i}: \"reward\" must be a number in [0, 1]; got {_brief(reward)}.")
        reward = float(reward)
    return rid, row, r.get("label"), reward


def _add(t: _Tally, point: tuple[Any, ...]) -> None:
    """Count one judged label (:func:`_judge`)."""
    t.labels += 1
    kind = point[0]
    if kind == "reward":
        t.n_given += 1
        t.given += point[1]
    elif kind == "class":
        _, correct, loss, auc = point
        t.n_class += 1
        t.correct += correct
        t.log_loss += loss
        if auc is not None:
            t.auc_pairs.append(auc)
    else:
        err = point[1]
        t.n_reg += 1
        t.sq_err += err * err
        t.abs_err += abs(err)


def _judge(answer: ArmRecord, row: int, label: Any, reward: float | None, i: int) -> tuple[Any, ...]:
    """What one label says about ``answer`` (raises InputError for a label it cannot take)."""
    if reward is not None:
        return ("reward", reward)
    out = answer.outputs
    classes = answer.classes
    if classes is not None and "probabilities" in out:
        index = _class_index(classes, label)
        if index is None:
            raise InputError(
                f"feedback record {i}: label {_brief(label)} is not one of the model's classes "
                f"({', '.join(map(_brief, list(classes)[:20]))})."
            )
        probs = np.asarray(out["probabilities"][row], dtype=np.float64).reshape(-1)
        predicted = int(np.argmax(probs))
        loss = -math.log(min(max(float(probs[index]), 1e-15), 1.0))
        return ("class", int(predicted == index), loss, (float(probs[1]), int(index == 1)) if len(classes) == 2 else None)
    if "prediction" in out:
        if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
            raise InputError(f"feedback record {i}: the label of a regressor must be a finite number; got {_brief(label)}.")
        pred = float(np.asarray(out["prediction"][row], dtype=np.float64).reshape(-1)[0])
        return ("regression", pred - float(label))
    raise InputError(f"feedback record {i}: model {answer.model!r} gives neither probabilities nor a prediction; "
                     "send a \"reward\" instead of a label.")


def _class_index(classes: Sequence[Any], label: Any) -> int | None:
    for j, c in enumerate(classes):
        if label == c or (not isinstance(label, (dict, list)) and str(label) == str(c)):
            return j
    return None


def _auc(pairs: Sequence[tuple[float, int]]) -> float | None:
    if not pairs:
        return None
    scores = np.fromiter((p[0] for p in pairs), dtype=np.float64, count=len(pairs))
    labels = np.fromiter((p[1] for p in pairs), dtype=np.int64, count=len(pairs))
    pos = int(labels.sum())
    neg = labels.size - pos
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks of ties (Mann-Whitney U)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def _brief(v: Any, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"
