"""Exact split decisions for scikit-learn trees converted by skl2onnx.

scikit-learn casts inputs to float32 and compares them with float64 thresholds
(``x <= threshold``); since 1.4 it also sends missing values to a learned side
(``tree_.missing_go_to_left``). skl2onnx rounds each threshold to the *nearest* float32, so a
float32 input equal to the rounded-up threshold takes the wrong branch, and it leaves
``nodes_missing_value_tracks_true`` at 0, so NaN always goes right. :func:`fix` repairs both on
every TreeEnsemble* node of a float graph: thresholds become the largest float32 that is
<= the float64 threshold (for float32 x, ``x <= t32`` then holds exactly when ``x <= t64``),
and NaN follows ``missing_go_to_left``. Each ONNX tree is matched to its scikit-learn tree by
its shape and (nearly equal) thresholds, not by position, because converters order and subsample
trees differently.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import helper

from modelport.convert._sklearn_forest import round_down_float32

TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")


def sklearn_trees(model: Any) -> list[Any]:
    """The ``tree_`` objects of a fitted tree model or tree ensemble (empty for anything else)."""
    if hasattr(model, "tree_"):
        return [model.tree_]
    ests = getattr(model, "estimators_", None)
    if ests is None:
        return []
    flat = np.asarray(ests, dtype=object).ravel().tolist() if isinstance(ests, np.ndarray) else list(ests)
    return [e.tree_ for e in flat if hasattr(e, "tree_")]


def fix(onx: onnx.ModelProto, trees: list[Any]) -> int:
    """Repair thresholds and NaN routing in place; returns the number of ONNX trees fixed."""
    if not trees:
        return 0
    # key: the tree's shape (which nodes are leaves) -> sklearn trees with that shape
    pool: dict[bytes, list[Any]] = defaultdict(list)
    for t in trees:
        pool[_key(t.children_left == -1)].append(t)
    fixed = 0
    for node in onx.graph.node:
        if node.op_type not in TREE_OPS:
            continue
        attrs = {a.name: a for a in node.attribute}
        values = np.asarray(helper.get_attribute_value(attrs["nodes_values"]), dtype=np.float32)
        tree_ids = np.asarray(helper.get_attribute_value(attrs["nodes_treeids"]))
        node_ids = np.asarray(helper.get_attribute_value(attrs["nodes_nodeids"]))
        modes = [m.decode() if isinstance(m, bytes) else m for m in helper.get_attribute_value(attrs["nodes_modes"])]
        true_ids = np.asarray(helper.get_attribute_value(attrs["nodes_truenodeids"]))
        new_values = values.copy()
        missing = np.zeros(len(values), dtype=np.int64)
        is_leaf = np.array([m == "LEAF" for m in modes])
        for tid in np.unique(tree_ids):
            pos = np.flatnonzero(tree_ids == tid)
            order = pos[np.argsort(node_ids[pos], kind="stable")]
            leaf = is_leaf[order]
            tree = _take(pool.get(_key(leaf), []), values[order].astype(np.float64), leaf)
            if tree is None:
                raise ValueError(f"{node.op_type} tree {tid} matches no scikit-learn tree")
            split, nid = order[~leaf], node_ids[order[~leaf]]
            if any(modes[i] != "BRANCH_LEQ" for i in split) or np.any(true_ids[split] != tree.children_left[nid]):
                raise ValueError(f"unexpected node layout in {node.op_type} tree {tid}")
            new_values[split] = round_down_float32(tree.threshold[nid])
            missing[split] = np.asarray(tree.missing_go_to_left)[nid]
            fixed += 1
        _set(node, helper.make_attribute("nodes_values", new_values.tolist()))
        _set(node, helper.make_attribute("nodes_missing_value_tracks_true", missing.tolist()))
    return fixed


def _key(leaf: np.ndarray) -> bytes:
    return np.packbits(leaf.astype(bool)).tobytes() + len(leaf).to_bytes(8, "little")


def _take(candidates: list[Any], values: np.ndarray, leaf: np.ndarray) -> Any | None:
    """Remove and return the candidate whose split thresholds are closest to ``values``
    (converters store them rounded to float32, so equality cannot be asked for)."""
    best, best_err = None, np.inf
    split = ~leaf
    for i, t in enumerate(candidates):
        a, b = t.threshold[split], values[split]
        with np.errstate(invalid="ignore"):  # inf thresholds (NaN-only splits) compare equal
            diff = np.where(a == b, 0.0, np.abs(a - b) / np.maximum(1.0, np.abs(b)))
        err = float(np.max(diff, initial=0.0))
        if err < best_err:
            best, best_err = i, err
            if err == 0.0:
                break
    if best is None or best_err > 1e-6:
        return None
    return candidates.pop(best)


def _set(node: onnx.NodeProto, attr: onnx.AttributeProto) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == attr.name:
            node.attribute[i].CopyFrom(attr)
            return
    node.attribute.append(attr)
