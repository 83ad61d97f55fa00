"""Monitoring a running server: sketches over a sliding window, the feedback join, live gauges.

:class:`LiveMonitor` listens to the prediction log's writer thread (so nothing here runs on the
event loop while scoring): each decoded batch updates the current time bucket's
:class:`~modelport.monitor.sketch.Sketch` of its model version and an index of recent row ids.
Feedback labels (``POST /v2/models/{name}/feedback``, or the gRPC ``Feedback`` call) are stored in
the log's ``_labels/`` and joined to that index at once, adding to the realised-metric
accumulators of the bucket the prediction was made in.

With several worker processes (a metrics directory shared through ``MODELPORT_METRICS_DIR``)
every worker writes its buckets there; :meth:`refresh` (a background thread, once a second) merges
every worker's buckets of the window and computes the gauges, so ``/metrics`` on any worker
reports all of the traffic: the sketches add up exactly. A label that reaches a worker which did
not log that id is handed to the others through the same directory.

Routing and bandits: :meth:`subscribe` registers a callback called (in a background thread) with
each :class:`Joined` label, i.e. its model, version, arm, the logged answer and the label: the
reward a policy needs. :meth:`realised` gives the realised metrics per version over the window.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InputError
from modelport.monitor.drift import Reference, Thresholds, reference_from_bundle
from modelport.monitor.sketch import Sketch, column_drift, count_column

if TYPE_CHECKING:
    from modelport.monitor.log import ModelLog, PredictionLog

log = logging.getLogger("modelport.monitor")


@dataclass(frozen=True)
class Joined:
    """One label joined to one logged prediction (what :meth:`LiveMonitor.subscribe` receives)."""

    id: str
    model: str
    version: str
    arm: str | None
    role: str
    predicted: Any  # the class answered, or the prediction
    label: Any  # the class (as the bundle names it) or the true value
    correct: bool | None  # classifiers
    error: float | None  # regressors: prediction - label
    proba: tuple[float, ...] | None
    ts: float  # when the prediction was made


@dataclass
class _Model:
    """What the monitor keeps per model version."""

    name: str
    version: str
    digest: str
    classes: list[Any] | None
    inputs: dict[str, Reference]
    outputs: dict[str, Reference]


class LiveMonitor:
    """Sketches, the feedback join and gauges for a server (see the module docstring)."""

    def __init__(self, log_: PredictionLog, *, window: float = 3600.0, bucket: float = 60.0,
                 thresholds: Thresholds = Thresholds(), share_dir: str | os.PathLike[str] | None = None,
                 index_size: int = 200_000) -> None:
        if window <= 0 or bucket <= 0 or bucket > window:
            raise InputError(f"the drift window ({window:g} s) must be positive and at least one bucket ({bucket:g} s).")
        self.log = log_
        self.window = float(window)
        self.bucket = float(bucket)
        self.thresholds = thresholds
        self.share_dir = Path(share_dir) if share_dir else None
        self.index_size = int(index_size)
        self._models: dict[tuple[str, str], _Model] = {}
        self._buckets: dict[tuple[str, str, int], Sketch] = {}
        self._dirty: set[tuple[str, str, int]] = set()
        # (model, id) -> its answers, oldest first (a dict keeps insertion order; cheaper than OrderedDict)
        self._index: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[Joined], None]] = []
        self._offsets: dict[str, int] = {}
        self.gauges: dict[str, dict[tuple[str, ...], float]] = {}
        self.merged: dict[tuple[str, str], Sketch] = {}
        self.counts = {"labels": 0, "joined": 0, "unmatched": 0, "unknown": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        log_.listeners.append(self._on_batch)

    # ------------------------------------------------------------------ lifecycle
    def start(self, every: float = 1.0) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, args=(every,), name="modelport-monitor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.refresh()

    def _loop(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.refresh()
            except Exception:
                log.exception("the live monitor's refresh failed; it retries")

    def subscribe(self, callback: Callable[[Joined], None]) -> None:
        """Call ``callback(joined)`` for every label joined from now on (in a background thread)."""
        self._subscribers.append(callback)

    # ------------------------------------------------------------------ the writer thread
    def _model(self, target: ModelLog) -> _Model:
        key = (target.name, target.version)
        m = self._models.get(key)
        if m is None or m.digest != target.digest:
            try:
                ins, outs = reference_from_bundle(target.bundle)
            except InputError:
                ins, outs = {}, {}
            m = self._models[key] = _Model(target.name, target.version, target.digest, target.classes, ins, outs)
        return m

    def _on_batch(self, target: ModelLog, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                  meta: Mapping[str, Any]) -> None:
        m = self._model(target)
        ts = meta["ts"]
        n = int(ts.shape[0])
        if n == 0:
            return
        keys = (ts // self.bucket).astype(np.int64)
        proba = None
        if m.classes is not None and all(f"proba_{c}" in outputs for c in m.classes):
            proba = np.column_stack([outputs[f"proba_{c}"].astype(np.float64) for c in m.classes])
        for key in np.unique(keys).tolist():
            sel = keys == key
            sk = Sketch(int(sel.sum()))
            for name, ref in m.inputs.items():
                if name in inputs:
                    sk.inputs[name] = count_column(ref, inputs[name][sel])
            for name, ref in m.outputs.items():
                if name in outputs:
                    sk.outputs[name] = count_column(ref, outputs[name][sel])
            if proba is not None:
                sk.confidence_sum = float(proba[sel].max(axis=1).sum())
                sk.confidence_rows = int(sel.sum())
            lat = meta["latency_ms"][sel]
            lat = lat[~np.isnan(lat)]
            sk.latency_sum, sk.latency_rows = float(lat.sum()), int(lat.size)
            with self._lock:
                bk = (m.name, m.version, int(key))
                cur = self._buckets.get(bk)
                if cur is None:
                    self._buckets[bk] = sk
                else:
                    cur.merge(sk)
                self._dirty.add(bk)
        self._remember(m, meta, outputs, proba, ts)

    def _remember(self, m: _Model, meta: Mapping[str, Any], outputs: dict[str, np.ndarray],
                  proba: np.ndarray | None, ts: np.ndarray) -> None:
        ids = meta["id"]
        roles = meta["role"]
        arms = meta["arm"]
        if m.classes is not None and "label" in outputs:
            class_index = {str(c): i for i, c in enumerate(m.classes)}
            predicted = [class_index.get(str(v), -1) for v in outputs["label"].tolist()]
        elif "prediction" in outputs:
            predicted = outputs["prediction"].astype(np.float64).tolist()
        else:
            return
        probs: Any = map(tuple, proba.tolist()) if proba is not None else [None] * len(ids)
        name, version, answers = m.name, m.version, self._index
        # one pass of plain Python objects (this runs for every logged row, in the writer thread)
        with self._lock:
            for rid, pred, pr, t, role, arm in zip(ids, predicted, probs, ts.tolist(), roles, arms):
                key = (name, rid)
                entry = (version, pred, pr, t, role, arm)
                got = answers.get(key)
                if got is None:
                    answers[key] = [entry]
                else:
                    got[:] = [e for e in got if e[0] != version or e[4] != role or e[5] != arm] + [entry]
                    del answers[key]  # now the newest
                    answers[key] = got
            if len(answers) > self.index_size * 1.1:  # forget the oldest, a tenth at a time
                for old in list(itertools.islice(answers, len(answers) - self.index_size)):
                    del answers[old]

    # ------------------------------------------------------------------ feedback
    def feedback(self, model: str, records: Sequence[tuple[str, Any, float | None]], *, forward: bool = True
                 ) -> dict[str, int]:
        """Store labels ``(id, label, ts)`` of ``model`` and join those whose prediction this
        process logged; the others go to the other workers (when there are any)."""
        if forward:
            self.log.write_labels(records, model=model)
        joined, unmatched, unknown = 0, 0, 0
        left: list[tuple[str, Any, float | None]] = []
        events: list[Joined] = []
        with self._lock:
            for rid, label, _ts in records:
                entries = self._index.get((model, rid))
                if not entries:
                    left.append((rid, label, _ts))
                    continue
                for version, predicted, proba, pts, role, arm in entries:
                    m = self._models.get((model, version))
                    if m is None:
                        continue
                    ev = self._join(m, rid, predicted, proba, label, pts, role, arm)
                    if ev is None:
                        unknown += 1
                        continue
                    events.append(ev)
                    joined += 1
        if left and forward and self.share_dir is not None:
            self._forward(model, left)
        unmatched = len(left)
        self.counts["labels"] += len(records)
        self.counts["joined"] += joined
        self.counts["unknown"] += unknown
        if not (forward and self.share_dir is not None):
            self.counts["unmatched"] += unmatched
        for ev in events:
            for cb in self._subscribers:
                try:
                    cb(ev)
                except Exception:
                    log.exception("a feedback subscriber failed")
        return {"received": len(records), "joined": joined, "unmatched": unmatched, "unknown_labels": unknown}

    def _join(self, m: _Model, rid: str, predicted: Any, proba: tuple[float, ...] | None, label: Any, pts: float,
              role: str, arm: str | None) -> Joined | None:
        """Add one labelled prediction to its bucket's accumulators (caller holds the lock)."""
        bk = (m.name, m.version, int(pts // self.bucket))
        sk = self._buckets.get(bk)
        if sk is None:
            if pts < time.time() - self.window:
                sk = None  # too old for the window: the CLI (modelport perf) still joins it from the log
            else:
                sk = self._buckets[bk] = Sketch()
        if m.classes is not None:
            y = _class_index(m.classes, label)
            if y is None or predicted < 0:
                return None
            if sk is not None:
                sk.realised.add_classified(y, int(predicted), list(proba) if proba else None, len(m.classes))
                self._dirty.add(bk)
            return Joined(rid, m.name, m.version, arm, role, m.classes[int(predicted)], m.classes[y],
                          y == int(predicted), None, proba, pts)
        try:
            value = float(label)
        except (TypeError, ValueError):
            return None
        if not np.isfinite(value):
            return None
        if sk is not None:
            sk.realised.add_regressed(value, float(predicted))
            self._dirty.add(bk)
        return Joined(rid, m.name, m.version, arm, role, float(predicted), value, None, float(predicted) - value,
                      None, pts)

    def _forward(self, model: str, records: list[tuple[str, Any, float | None]]) -> None:
        assert self.share_dir is not None
        path = self.share_dir / f"labels-{os.getpid()}.jsonl"
        with open(path, "a", encoding="utf-8") as fh:
            for rid, label, ts in records:
                fh.write(json.dumps([model, rid, label, ts]) + "\n")

    def _take_forwarded(self) -> None:
        """Join the labels other workers could not (they logged elsewhere: maybe here)."""
        if self.share_dir is None:
            return
        mine = f"labels-{os.getpid()}.jsonl"
        for p in self.share_dir.glob("labels-*.jsonl"):
            if p.name == mine:
                continue
            start = self._offsets.get(p.name, 0)
            try:
                with open(p, encoding="utf-8") as fh:
                    fh.seek(start)
                    text = fh.read()
            except OSError:
                continue
            end = text.rfind("\n") + 1
            self._offsets[p.name] = start + len(text[:end].encode("utf-8"))
            by_model: dict[str, list[tuple[str, Any, float | None]]] = {}
            for line in text[:end].splitlines():
                with contextlib.suppress(ValueError, IndexError, TypeError):
                    model, rid, label, ts = json.loads(line)
                    by_model.setdefault(str(model), []).append((str(rid), label, ts))
            for model, recs in by_model.items():
                self.feedback(model, recs, forward=False)

    # ------------------------------------------------------------------ the window
    def refresh(self) -> None:
        """Share this worker's buckets, merge every worker's buckets of the window, compute the gauges."""
        now = time.time()
        first = int((now - self.window) // self.bucket) + 1
        all_buckets: dict[tuple[str, str], Sketch] = {}
        dirty: dict[tuple[str, str, int], dict[str, Any]] = {}
        with self._lock:
            for k in [k for k in self._buckets if k[2] < first]:
                del self._buckets[k]
            if self.share_dir is not None:
                dirty = {k: self._buckets[k].to_json() for k in self._dirty if k in self._buckets}
            else:  # one process: merge (copies) under the lock, no JSON round trip every second
                for k, sk in self._buckets.items():
                    all_buckets.setdefault(k[:2], Sketch()).merge(sk)
            self._dirty.clear()
        if self.share_dir is not None:
            self._take_forwarded()
            self._share(dirty, first)
            for shared_key, sk in self._read_shared(first).items():
                all_buckets.setdefault(shared_key[:2], Sketch()).merge(sk)
        self.merged = all_buckets
        self.gauges = self._compute(all_buckets)

    def _share(self, dirty: dict[tuple[str, str, int], dict[str, Any]], first: int) -> None:
        assert self.share_dir is not None
        pid = os.getpid()
        for (name, version, key), doc in dirty.items():
            path = self.share_dir / f"sketch-{pid}-{key}-{_safe(name)}-{_safe(version)}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"model": name, "version": version, "bucket": key, "sketch": doc}))
            os.replace(tmp, path)
        for p in self.share_dir.glob("sketch-*.json"):
            with contextlib.suppress(ValueError, IndexError, OSError):
                if int(p.name.split("-")[2]) < first:
                    p.unlink()

    def _read_shared(self, first: int) -> dict[tuple[str, str, int, str], Sketch]:
        assert self.share_dir is not None
        out: dict[tuple[str, str, int, str], Sketch] = {}
        for p in self.share_dir.glob("sketch-*.json"):
            try:
                if int(p.name.split("-")[2]) < first:
                    continue
                doc = json.loads(p.read_text())
                out[(doc["model"], doc["version"], int(doc["bucket"]), p.name)] = Sketch.from_json(doc["sketch"])
            except (OSError, ValueError, KeyError, IndexError):
                continue
        return out

    def _compute(self, merged: dict[tuple[str, str], Sketch]) -> dict[str, dict[tuple[str, ...], float]]:
        g: dict[str, dict[tuple[str, ...], float]] = {}

        def put(family: str, labels: tuple[str, ...], value: Any) -> None:
            if value is not None and np.isfinite(value):
                g.setdefault(family, {})[labels] = float(value)

        for (name, version), sk in merged.items():
            m = self._models.get((name, version))
            put("rows", (name, version), sk.rows)
            if m is None:
                continue
            judged = drifted = 0
            for col, counts in sk.inputs.items():
                ref = m.inputs.get(col)
                if ref is None or counts.rows == 0:
                    continue
                d = column_drift(ref, counts, self.thresholds)
                judged += 1
                drifted += int(d["drifted"])
                for stat in ("psi", "js", "missing_rate", "unseen_rate"):
                    put(stat, (name, version, col), d.get(stat))
            if judged:
                put("share", (name, version), drifted / judged)
            for col, counts in sk.outputs.items():
                ref = m.outputs.get(col)
                if ref is None or counts.rows == 0:
                    continue
                d = column_drift(ref, counts, self.thresholds)
                put("prediction_psi" if d["kind"] == "numeric" else "prediction_js", (name, version, col),
                    d.get("psi") if d["kind"] == "numeric" else d.get("js"))
            if sk.confidence_rows:
                put("estimated_accuracy", (name, version), sk.confidence_sum / sk.confidence_rows)
            for k, v in sk.realised.metrics(m.classes is not None).items():
                put("realised_" + k, (name, version), v)
            if sk.realised.n:
                put("labelled", (name, version), sk.realised.n)
        return g

    # ------------------------------------------------------------------ views
    def realised(self, model: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """Realised metrics per (model, version) over the window (from :meth:`refresh`'s last merge)."""
        out = {}
        for (name, version), sk in self.merged.items():
            if model is not None and name != model:
                continue
            m = self._models.get((name, version))
            metrics = sk.realised.metrics(m is not None and m.classes is not None)
            out[(name, version)] = {"labelled": sk.realised.n, **metrics}
        return out

    def drift_view(self, model: str, version: str) -> dict[str, Any]:
        """The window's drift of one version, per column with plot data (the dashboard's)."""
        sk = self.merged.get((model, version))
        m = self._models.get((model, version))
        if sk is None or m is None:
            return {"model": model, "version": version, "rows": 0, "columns": [], "predictions": [], "share": 0.0}
        cols = [column_drift(m.inputs[c], v, self.thresholds) for c, v in sk.inputs.items() if c in m.inputs and v.rows]
        preds = [column_drift(m.outputs[c], v, self.thresholds) for c, v in sk.outputs.items() if c in m.outputs and v.rows]
        share = sum(c["drifted"] for c in cols) / len(cols) if cols else 0.0
        return {"model": model, "version": version, "rows": sk.rows, "window_seconds": self.window,
                "columns": cols, "predictions": preds, "share": share,
                "estimated_accuracy": (sk.confidence_sum / sk.confidence_rows) if sk.confidence_rows else None,
                "realised": {"labelled": sk.realised.n, **sk.realised.metrics(m.classes is not None)}}

    def families(self) -> list[Any]:
        """Prometheus metric families of the gauges (for the server's ``/metrics`` collector)."""
        from prometheus_client.core import GaugeMetricFamily

        docs = {
            "rows": ("modelport_drift_window_rows", "Rows scored in the drift window", ["model", "version"]),
            "psi": ("modelport_drift_psi", "PSI of a numeric input column over the drift window", ["model", "version", "column"]),
            "js": ("modelport_drift_js", "Jensen-Shannon distance of a categorical input column over the drift window",
                   ["model", "version", "column"]),
            "missing_rate": ("modelport_drift_missing_rate", "Share of missing values of an input column over the window",
                             ["model", "version", "column"]),
            "unseen_rate": ("modelport_drift_unseen_rate", "Share of values outside the training categories",
                            ["model", "version", "column"]),
            "share": ("modelport_drift_share", "Share of input columns drifted over the window", ["model", "version"]),
            "prediction_psi": ("modelport_prediction_drift_psi", "PSI of a numeric output over the window",
                               ["model", "version", "output"]),
            "prediction_js": ("modelport_prediction_drift_js", "JS distance of the predicted labels over the window",
                              ["model", "version", "output"]),
            "estimated_accuracy": ("modelport_estimated_accuracy", "Accuracy estimated from the probabilities (CBPE, "
                                   "uncalibrated) over the window", ["model", "version"]),
            "labelled": ("modelport_feedback_window_labelled", "Predictions of the window whose label came back",
                         ["model", "version"]),
        }
        for metric in ("accuracy", "log_loss", "roc_auc", "f1", "rmse", "mae", "r2"):
            docs["realised_" + metric] = (f"modelport_realised_{metric}",
                                         f"Realised {metric} of the labelled predictions of the window", ["model", "version"])
        out = []
        gauges = self.gauges
        for key, (fname, doc, labels) in docs.items():
            fam = GaugeMetricFamily(fname, doc, labels=labels)
            for lv, value in sorted(gauges.get(key, {}).items()):
                fam.add_metric(list(lv), value)
            out.append(fam)
        return out


def _class_index(classes: list[Any], label: Any) -> int | None:
    text = str(label)
    for i, c in enumerate(classes):
        if str(c) == text:
            return i
    try:  # 1.0 for class 1
        f = float(text)
        if f.is_integer():
            for i, c in enumerate(classes):
                if str(c) == str(int(f)):
                    return i
    except ValueError:
        pass
    return None


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._" else "_" for ch in text)[:60] + f"~{abs(hash(text)) % 10**8}"
