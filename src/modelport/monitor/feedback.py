"""Delayed labels: joined to logged predictions by id; realised (and estimated) performance per
model version and time window.

    >>> from modelport.monitor.feedback import perf, realised_metrics
    >>> report = perf("predictions/", model="churn", labels="labels.parquet", by="day")
    >>> for w in report.windows: print(w.version, w.start, w.realised["accuracy"], w.estimated["accuracy"])
    >>> realised_metrics("classification", ["no", "yes"], y_true, labels, proba)   # one set of rows

Labels come from the feedback endpoint (``POST /v2/models/{name}/feedback``; stored in the log's
``_labels/``), from a file (``labels=``: Parquet / CSV / JSON lines with ``id`` and ``label``), or
from both. A label joins every logged row of the model with that id (the answering version and its
shadows: each gets its own realised metrics); an id logged twice by one version joins its latest
row; an id labelled twice takes the latest label. Labels that match no logged row are counted
(``unmatched``), and so are labels a classifier does not know (``unknown_labels``): none is
dropped silently.

Realised metrics: accuracy, log loss, ROC AUC (binary; one-vs-rest macro for more classes) and F1
(binary: the second class is the positive one, as in ``classes``; macro otherwise) for
classifiers; RMSE, MAE and R² for regressors. They are computed here with numpy and equal
scikit-learn's on the same rows (the tests check it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport._deps import require
from modelport.errors import InputError
from modelport.monitor._time import iso, parse_time, parse_window
from modelport.monitor.estimate import Calibration, estimate

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle

CLASSIFIER_METRICS = ("accuracy", "log_loss", "roc_auc", "f1")
REGRESSOR_METRICS = ("rmse", "mae", "r2")


# ============================================================================ metrics
def _auc_binary(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC (Mann-Whitney, ties as halves), None when one class is absent."""
    pos = int(y.sum())
    neg = y.size - pos
    if pos == 0 or neg == 0:
        return None
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)  # the last (1-based) rank of each distinct score
    full = (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]  # ties share their average rank
    return float((full[y.astype(bool)].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def _f1(tp: float, fp: float, fn: float) -> float:
    d = 2 * tp + fp + fn
    return float(2 * tp / d) if d > 0 else 0.0


def realised_metrics(task: str, classes: Sequence[Any] | None, y_true: np.ndarray, *,
                     labels: np.ndarray | None = None, proba: np.ndarray | None = None,
                     prediction: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of one set of rows. Classifiers: ``y_true`` and ``labels`` are class indices
    (positions in ``classes``), ``proba`` (N, classes). Regressors: ``y_true`` and ``prediction``."""
    n = int(np.asarray(y_true).shape[0])
    if task == "classification" or classes is not None:
        y = np.asarray(y_true, dtype=np.int64)
        out: dict[str, Any] = {"rows": n, "accuracy": None, "log_loss": None, "roc_auc": None, "f1": None}
        if n == 0:
            return out
        k = len(classes or ()) or (int(proba.shape[1]) if proba is not None else int(max(y.max(), 1)) + 1)
        pred = np.asarray(labels, dtype=np.int64) if labels is not None else np.argmax(proba, axis=1)  # type: ignore[arg-type]
        out["accuracy"] = float(np.mean(pred == y))
        if k == 2:
            out["f1"] = _f1(float(np.sum((pred == 1) & (y == 1))), float(np.sum((pred == 1) & (y == 0))),
                            float(np.sum((pred == 0) & (y == 1))))
        else:
            present = np.union1d(np.unique(y), np.unique(pred))
            out["f1"] = float(np.mean([_f1(float(np.sum((pred == c) & (y == c))), float(np.sum((pred == c) & (y != c))),
                                           float(np.sum((pred != c) & (y == c)))) for c in present]))
        if proba is not None:
            p = np.asarray(proba, dtype=np.float64)
            eps = np.finfo(np.float64).eps
            p = np.clip(p, eps, 1 - eps)
            p = p / p.sum(axis=1, keepdims=True)
            out["log_loss"] = float(-np.mean(np.log(p[np.arange(n), y])))
            if k == 2:
                out["roc_auc"] = _auc_binary((y == 1).astype(np.int64), np.asarray(proba, dtype=np.float64)[:, 1])
            else:
                aucs = [a for c in range(k) if (a := _auc_binary((y == c).astype(np.int64),
                                                                 np.asarray(proba, dtype=np.float64)[:, c])) is not None]
                out["roc_auc"] = float(np.mean(aucs)) if aucs else None
        return out
    t = np.asarray(y_true, dtype=np.float64)
    out = {"rows": n, "rmse": None, "mae": None, "r2": None}
    if n == 0 or prediction is None:
        return out
    pr = np.asarray(prediction, dtype=np.float64).reshape(n, -1)[:, 0]
    err = pr - t
    out["rmse"] = float(np.sqrt(np.mean(err ** 2)))
    out["mae"] = float(np.mean(np.abs(err)))
    ss_res = float(np.sum(err ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    out["r2"] = (1.0 - ss_res / ss_tot) if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return out


# ============================================================================ the join
@dataclass
class Joined:
    """Logged rows with their labels: per row its version, time, true value and the model's outputs."""

    task: str
    classes: list[Any] | None
    version: np.ndarray
    ts: np.ndarray
    y: np.ndarray  # class indices (classifiers) or values (regressors)
    labels: np.ndarray | None
    proba: np.ndarray | None
    prediction: np.ndarray | None
    unmatched: int = 0
    unknown_labels: int = 0


def _outputs(table: Any, classes: list[Any] | None) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(label indices, proba (N, k), prediction) from the log's ``out.*`` columns."""
    names = table.column_names
    labels = proba = prediction = None
    if classes is not None:
        pcols = [f"out.proba_{c}" for c in classes]
        if all(c in names for c in pcols):
            proba = np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in pcols]) \
                if table.num_rows else np.zeros((0, len(classes)))
        if "out.label" in names:
            index = {str(c): i for i, c in enumerate(classes)}
            labels = np.array([index.get(str(v), -1) for v in table.column("out.label").to_pylist()], dtype=np.int64)
    if "out.prediction" in names:
        prediction = table.column("out.prediction").to_numpy(zero_copy_only=False).astype(np.float64)
    elif classes is None:
        first = next((c for c in names if c.startswith("out.")), None)
        if first is not None:
            prediction = table.column(first).to_numpy(zero_copy_only=False).astype(np.float64)
    return labels, proba, prediction


def join(table: Any, labels: Any, *, task: str, classes: list[Any] | None) -> Joined:
    """Join logged rows (a :func:`~modelport.monitor.read.read_log` table) with labels (a
    :func:`~modelport.monitor.read.read_labels` table) by id."""
    pa = require("pyarrow", purpose="joining labels")
    pc = require("pyarrow.compute", purpose="joining labels")
    label_ids = labels.column("id")
    logged_ids = table.column("id") if table.num_rows else pa.array([], pa.string())
    # the latest logged row of each (version, role, arm, id): an id reused by a client joins once per version
    if table.num_rows:
        keys = pc.binary_join_element_wise(table.column("version"), table.column("role"),
                                           pc.fill_null(table.column("arm"), ""), logged_ids, "\x1f")
        order = pc.sort_indices(table, sort_keys=[("ts", "descending")])
        first: dict[str, int] = {}
        for pos, k in zip(order.to_pylist(), keys.take(order).to_pylist()):
            first.setdefault(k, pos)
        table = table.take(pa.array(sorted(first.values()), pa.int64()))
        logged_ids = table.column("id")
    at = pc.index_in(logged_ids, value_set=label_ids)
    has = pc.is_valid(at)
    matched_label_rows = set(pc.filter(at, has).to_pylist())
    unmatched = label_ids.length() - len(matched_label_rows) if hasattr(label_ids, "length") else len(label_ids) - len(matched_label_rows)
    sub = table.filter(has)
    idx = pc.filter(at, has)
    ver = np.asarray(sub.column("version").to_pylist(), dtype=object)
    ts = sub.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64) / 1e6 if sub.num_rows else np.zeros(0)
    out_labels, proba, prediction = _outputs(sub, classes)
    unknown = 0
    if classes is not None:
        index = {str(c): i for i, c in enumerate(classes)}
        raw = labels.column("label").take(idx).to_pylist() if sub.num_rows else []
        y: np.ndarray = np.array([index.get(_label_text(v), -1) for v in raw], dtype=np.int64)
        ok = y >= 0
        unknown = int((~ok).sum())
    else:
        y = labels.column("value").take(idx).to_numpy(zero_copy_only=False).astype(np.float64) if sub.num_rows else np.zeros(0)
        ok = ~np.isnan(y)
        unknown = int((~ok).sum())
    keep = ok
    return Joined(task, classes, ver[keep], ts[keep], y[keep],
                  None if out_labels is None else out_labels[keep], None if proba is None else proba[keep],
                  None if prediction is None else prediction[keep], unmatched=int(unmatched), unknown_labels=unknown)


def _label_text(v: Any) -> str:
    if v is None:
        return "\x00none"
    s = str(v)
    # 1.0 for a class 1 (CSV files and JSON numbers): the number's integer text
    try:
        f = float(s)
        if f.is_integer() and not s.strip().isdigit():
            return str(int(f))
    except ValueError:
        pass
    return s


# ============================================================================ reports
@dataclass
class PerfWindow:
    """One version's performance in one time window."""

    version: str
    start: float
    end: float
    predictions: int
    labelled: int
    realised: dict[str, Any]
    estimated: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return _finite({"version": self.version, "start": iso(self.start), "end": iso(self.end),
                        "start_ts": self.start, "predictions": self.predictions, "labelled": self.labelled,
                        "realised": self.realised, "estimated": self.estimated})


@dataclass
class PerfReport:
    model: str
    task: str
    window: float
    windows: list[PerfWindow]
    labels: int
    unmatched: int
    unknown_labels: int
    baseline: dict[str, Any] = field(default_factory=dict)
    calibrated: bool = False

    @property
    def metrics(self) -> tuple[str, ...]:
        return CLASSIFIER_METRICS if self.task == "classification" else REGRESSOR_METRICS

    def to_dict(self) -> dict[str, Any]:
        return _finite({"model": self.model, "task": self.task, "window_seconds": self.window,
                        "labels": self.labels, "unmatched_labels": self.unmatched,
                        "unknown_labels": self.unknown_labels, "calibrated": self.calibrated,
                        "baseline_estimated": self.baseline, "windows": [w.to_dict() for w in self.windows]})


def perf(
    log: str,
    *,
    model: str,
    bundle: Bundle | None = None,
    labels: str | None = None,
    by: str | float = "day",
    since: Any = None,
    until: Any = None,
    versions: Sequence[str] | None = None,
) -> PerfReport:
    """Realised and estimated performance of ``model`` per version and window of ``by``.

    ``labels``: a labels file joined in addition to the labels the feedback endpoint stored in
    the log. ``bundle``: gives the task, the classes and the CBPE baseline (the estimate on the
    bundle's reference rows); without it they are read from the log files' metadata."""
    pa = require("pyarrow", purpose="performance reports")
    from modelport.monitor.read import read_labels, read_log

    window = parse_window(by)
    t0, t1 = parse_time(since, what="--since"), parse_time(until, what="--until")
    table = read_log(log, model=model, versions=versions, since=t0, until=t1)
    task, classes = _task_of(bundle, log, model)
    lab = read_labels(log)
    if labels is not None:
        extra = read_labels(labels)
        lab = pa.concat_tables([lab, extra])
        # the file's labels come after the endpoint's: where both label an id, the file wins
        last: dict[str, int] = {}
        for i, rid in enumerate(lab.column("id").to_pylist()):
            last[rid] = i
        lab = lab.take(pa.array(sorted(last.values()), pa.int64()))
    joined = join(table, lab, task=task, classes=classes)
    ver_all = np.asarray(table.column("version").to_pylist(), dtype=object) if table.num_rows else np.zeros(0, object)
    ts_all = table.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64) / 1e6 \
        if table.num_rows else np.zeros(0)
    _, proba_all, _ = _outputs(table, classes)
    calibration = None
    if classes is not None and joined.proba is not None:
        calibration = Calibration.fit(joined.proba, joined.y)
    windows: list[PerfWindow] = []
    starts_all = np.floor(ts_all / window) * window
    starts_j = np.floor(joined.ts / window) * window
    for version in sorted(set(ver_all.tolist()), key=lambda v: (0, int(v)) if str(v).isdigit() else (1, str(v))):
        vm = ver_all == version
        jm = joined.version == version
        for start in sorted(set(starts_all[vm].tolist())):
            wm = vm & (starts_all == start)
            jw = jm & (starts_j == start)
            realised = realised_metrics(
                task, classes, joined.y[jw],
                labels=None if joined.labels is None else joined.labels[jw],
                proba=None if joined.proba is None else joined.proba[jw],
                prediction=None if joined.prediction is None else joined.prediction[jw],
            ) if jw.any() else {}
            est = estimate(proba_all[wm], calibration=calibration) if proba_all is not None else {}
            windows.append(PerfWindow(str(version), float(start), float(start + window), int(wm.sum()), int(jw.sum()),
                                      realised, est))
    baseline: dict[str, Any] = {}
    if bundle is not None and classes is not None:
        baseline = baseline_estimate(bundle, calibration)
    return PerfReport(model, task, window, windows, lab.num_rows, joined.unmatched, joined.unknown_labels,
                      baseline, calibration is not None)


def baseline_estimate(bundle: Bundle, calibration: Calibration | None = None) -> dict[str, Any]:
    """CBPE on the bundle's own answers on its reference sample rows (probes left out)."""
    ref = bundle.reference_outputs
    if "probabilities" not in ref:
        return {}
    stats = bundle.manifest.get("reference") or {}
    n = None
    if stats.get("stored_rows") is not None and stats.get("probes") is not None:
        n = max(0, int(stats["stored_rows"]) - int(stats["probes"]))
    proba = np.asarray(ref["probabilities"], dtype=np.float64)[:n]
    return estimate(proba, calibration=calibration)


def _task_of(bundle: Bundle | None, log: str, model: str) -> tuple[str, list[Any] | None]:
    if bundle is not None:
        return bundle.task, bundle.classes
    import json

    from modelport.monitor.log import Storage
    from modelport.monitor.read import log_files

    files = log_files(log, model=model)
    if not files:
        raise InputError(f"the prediction log {log} holds no rows of model {model!r}.",
                         hint="check the model name (modelport serve logs each model under the name it serves)")
    pq = require("pyarrow.parquet", purpose="performance reports")
    storage = Storage(log)
    with storage.open_read(files[-1].path) as fh:
        meta = pq.read_schema(fh).metadata or {}
    doc = json.loads(meta.get(b"modelport.log", b"{}"))
    return str(doc.get("task") or "regression"), doc.get("classes")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj
