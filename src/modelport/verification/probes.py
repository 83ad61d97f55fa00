"""Edge-case rows for verification: a batch of one, NaN, split thresholds and their float32
neighbours, unseen categories. Rows are built from real sample rows so every other column holds
a realistic value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from modelport.bundle.graph import TREE_OPS, iter_nodes
from modelport.bundle.signature import Column

UNSEEN = "__modelport_unseen__"
#: the value pack() asks the original model about to learn what it does with an unseen category.
#: It sorts after every real category, because XGBoost (3.2) looks a value up by binary search in
#: its sorted categories (bytes compared as signed chars, so non-ASCII sorts first) and only
#: detects an unseen one past the last (it refuses those); the others it silently takes for a
#: neighbouring known category, a bug a bundle must not reproduce
UNSEEN_LAST = "\x7f\x7f\x7f\x7f" + UNSEEN
_F32_MAX = float(np.finfo(np.float32).max)


def tree_thresholds(model: onnx.ModelProto, columns: Sequence[Column]) -> dict[str, list[float]]:
    """Split thresholds of tree ensembles that read a matrix input directly (through Casts only)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    by_slot = {(c.input, c.index): c.name for c in columns if c.index is not None}
    by_input = {c.input: c.name for c in columns if c.index is None}
    out: dict[str, set[float]] = {}
    for node in iter_nodes(model.graph):
        if node.op_type not in TREE_OPS:
            continue
        src = node.input[0]
        while src in producers and producers[src].op_type in ("Cast", "Identity"):
            src = producers[src].input[0]
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "TreeEnsemble":
            feats = np.asarray(attrs["nodes_featureids"].ints if "nodes_featureids" in attrs else [], dtype=np.int64)
            thr_t = attrs.get("nodes_splits")
            thr = onnx.numpy_helper.to_array(thr_t.t).astype(np.float64) if thr_t is not None else np.empty(0)
        else:
            feats = np.asarray(attrs["nodes_featureids"].ints if "nodes_featureids" in attrs else [], dtype=np.int64)
            if "nodes_values_as_tensor" in attrs:
                thr = onnx.numpy_helper.to_array(attrs["nodes_values_as_tensor"].t).astype(np.float64)
            else:
                thr = np.asarray(attrs["nodes_values"].floats if "nodes_values" in attrs else [], dtype=np.float64)
            modes = np.asarray(list(attrs["nodes_modes"].strings) if "nodes_modes" in attrs else [], dtype=object)
            split = modes != b"LEAF"
            feats, thr = feats[split], thr[split]
        # +-FLT_MAX sentinels (CatBoost, always-true splits) are not real thresholds
        keep = np.isfinite(thr) & (np.abs(thr) < _F32_MAX)
        feats, thr = feats[keep], thr[keep].astype(np.float32)
        for f in np.unique(feats).tolist():
            name = by_slot.get((src, int(f))) or (by_input.get(src) if int(f) == 0 else None)
            if name is not None:
                out.setdefault(name, set()).update(np.unique(thr[feats == f]).astype(np.float64).tolist())
    return {k: sorted(v) for k, v in out.items()}


def make_probes(
    base: Mapping[str, np.ndarray],
    columns: Sequence[Column],
    *,
    thresholds: Mapping[str, Sequence[float]],
    nullable: Mapping[str, bool],
    unseen_ok: Mapping[str, bool],
    max_rows: int = 2000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Probe rows in column form, derived from the rows of ``base``."""
    n_base = len(next(iter(base.values())))
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []

    def row(i: int) -> dict[str, Any]:
        return {k: v[i % n_base] for k, v in base.items()}

    rows.append(row(0))
    for c in columns:
        if c.is_numeric and c.dtype != "bool" and nullable.get(c.name, False):
            r = row(int(rng.integers(n_base)))
            r[c.name] = np.nan
            rows.append(r)
        if c.dtype in ("str", "category") and unseen_ok.get(c.name, False):
            r = row(int(rng.integers(n_base)))
            r[c.name] = UNSEEN
            rows.append(r)
        if (c.dtype == "category" or (c.dtype == "str" and c.categories is not None)) and nullable.get(c.name, False):
            r = row(int(rng.integers(n_base)))
            r[c.name] = None
            rows.append(r)
    budget = max(0, max_rows - len(rows))
    # +-FLT_MAX sentinels (CatBoost NaN borders, open-ended splits) are not real thresholds, and
    # their float32 neighbours overflow
    per_value = [(name, t) for name, ts in thresholds.items() for t in ts if abs(t) < _F32_MAX]
    if per_value and budget:
        take = per_value if len(per_value) * 3 <= budget else [
            per_value[i] for i in sorted(rng.choice(len(per_value), budget // 3, replace=False))
        ]
        for name, t in take:
            t32 = np.float32(t)
            for v in (t32, np.nextafter(t32, np.float32(-np.inf)), np.nextafter(t32, np.float32(np.inf))):
                r = row(int(rng.integers(n_base)))
                r[name] = float(v)
                rows.append(r)
    out: dict[str, np.ndarray] = {}
    for k, v in base.items():
        vals = [r[k] for r in rows]
        if v.dtype.kind in "biuf" and all(isinstance(x, (int, float, np.number)) for x in vals):
            dtype = v.dtype if v.dtype.kind == "f" else np.float64
            if v.dtype.kind in "iub" and not any(isinstance(x, float) and (x != x or x != int(x)) for x in vals):
                dtype = v.dtype
            out[k] = np.array(vals, dtype=dtype)
        else:
            out[k] = np.array(vals, dtype=object)
    return out
