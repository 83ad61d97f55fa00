"""Gradient-boosted tree ensembles -> ONNX, shared by the XGBoost, LightGBM and CatBoost converters.

Each converter reads its library's own full model description (XGBoost's JSON model, LightGBM's
``dump_model()``, CatBoost's JSON export) into the small tree form below; :func:`build_model`
emits it as one ``ai.onnx.ml`` ``TreeEnsembleRegressor`` (opset 3) that yields raw margins, followed
by standard ONNX operators that apply the link (sigmoid, softmax, exp) and pick the label. Keeping
the link outside the tree operator keeps its numerics the library's own (``1 - p`` and ``p`` for
binary, first-maximum argmax for labels) rather than onnxruntime's classifier special cases.

Split values are float32 and chosen so that the float32 comparison onnxruntime makes is exactly
the comparison the library makes on float32 input; missing values follow
``nodes_missing_value_tracks_true``. Set-membership splits (categories) are chains of
``BRANCH_EQ`` nodes that all point at one shared true child (the subtree is not copied per
category); onnxruntime follows such node ids like any other, and so does modelport's codegen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

#: opsets of the emitted graphs; ai.onnx.ml 3 is the TreeEnsemble* version every onnxruntime >= 1.10 runs
OPSETS = {"": 17, "ai.onnx.ml": 3}
IR_VERSION = 8
#: LightGBM's kZeroThreshold: |x| <= this counts as zero for zero-as-missing features
ZERO_BAND = float(np.float32(1e-35))
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(eq=False)
class Leaf:
    """A leaf: (target index, value) pairs; most leaves feed one target."""

    weights: tuple[tuple[int, float], ...]


@dataclass(eq=False)
class Split:
    """An internal node: ``x[feature] <mode> value`` goes to ``true``; NaN goes to ``true`` iff ``missing_true``."""

    feature: int
    mode: str  # BRANCH_LEQ, BRANCH_LT or BRANCH_EQ
    value: float
    true: Leaf | Split
    false: Leaf | Split
    missing_true: bool


Node = Leaf | Split


@dataclass
class Ensemble:
    """Trees over the input matrix ``X`` (``n_features`` wide) plus derived columns appended after it."""

    trees: list[Node]
    n_targets: int
    base: list[float]
    n_features: int
    #: derived columns, in the order they are appended: (kind, source feature); kinds:
    #: "zero_missing" (|x| <= ZERO_BAND becomes NaN), "trunc" (rounded toward zero), "floor"
    derived: list[tuple[str, int]] = field(default_factory=list)
    #: a value the library treats as missing besides NaN (XGBoost's ``missing=``), or None
    missing_value: float | None = None

    def derived_index(self, kind: str, feature: int) -> int:
        """The input slot of a derived column, added on first use."""
        key = (kind, feature)
        if key not in self.derived:
            self.derived.append(key)
        return self.n_features + self.derived.index(key)

    def source_feature(self, slot: int) -> int:
        return slot if slot < self.n_features else self.derived[slot - self.n_features][1]


def bottom_up(
    root: Any,
    children: Callable[[Any], Sequence[Any]],
    make: Callable[[Any, list[Node]], Node],
    key: Callable[[Any], Hashable] = id,
) -> Node:
    """Build a tree children-first without recursion (leaf-wise trees can be thousands of levels deep)."""
    done: dict[Hashable, Node] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        item, expanded = stack.pop()
        kids = children(item)
        if expanded or not kids:
            done[key(item)] = make(item, [done[key(k)] for k in kids])
        else:
            stack.append((item, True))
            stack.extend((k, False) for k in kids)
    return done[key(root)]


def f32_down(value: float) -> float:
    """The largest float32 <= ``value``: for float32 x, ``x <= value`` iff ``x <= f32_down(value)``."""
    if abs(value) > _F32_MAX:  # beyond float32 range: the nearest float32 is +-inf, stepped back below
        with np.errstate(over="ignore"):
            v = np.float32(value)
    else:
        v = np.float32(value)
    if float(v) > value:
        v = np.nextafter(v, np.float32(-np.inf))
    return float(v)


def f32_up(value: float) -> float:
    """The smallest float32 >= ``value``: for float32 x, ``x < value`` iff ``x < f32_up(value)``."""
    if abs(value) > _F32_MAX:
        with np.errstate(over="ignore"):
            v = np.float32(value)
    else:
        v = np.float32(value)
    if float(v) < value:
        v = np.nextafter(v, np.float32(np.inf))
    return float(v)


def member_chain(
    feature: int, values: Sequence[float], inside: Node, outside: Node, *, missing_inside: bool = False
) -> Node:
    """``x[feature]`` in ``values`` -> ``inside``, else -> ``outside``, as BRANCH_EQ nodes sharing ``inside``.

    NaN goes to ``inside`` when ``missing_inside`` (decided at the first node of the chain), else ``outside``.
    """
    if not values:
        return outside
    node: Node = outside
    ordered = sorted(values, reverse=True)
    for i, v in enumerate(ordered):
        first = i == len(ordered) - 1
        node = Split(feature, "BRANCH_EQ", float(np.float32(v)), inside, node, missing_true=missing_inside and first)
    return node


def thresholds(ensemble: Ensemble) -> dict[int, list[float]]:
    """Ordered split values per original feature (categorical set members left out)."""
    out: dict[int, set[float]] = {}
    seen: set[int] = set()
    stack = list(ensemble.trees)
    while stack:
        node = stack.pop()
        if id(node) in seen or isinstance(node, Leaf):
            continue
        seen.add(id(node))
        if node.mode != "BRANCH_EQ" and math.isfinite(node.value):
            feature = ensemble.source_feature(node.feature)
            kind = ensemble.derived[node.feature - ensemble.n_features][0] if node.feature >= ensemble.n_features else ""
            if kind in ("", "zero_missing"):  # not the integer codes of categorical splits
                out.setdefault(feature, set()).add(node.value)
        stack.extend((node.true, node.false))
    return {k: sorted(v) for k, v in out.items()}


def _tree_attributes(ensemble: Ensemble) -> dict[str, Any]:
    a: dict[str, list[Any]] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
        "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
        "target_treeids", "target_nodeids", "target_ids", "target_weights",
    )}
    for tree_id, root in enumerate(ensemble.trees):
        ids: dict[int, int] = {}
        order: list[Node] = []
        # depth-first numbering; a node shared by several parents (membership chains) gets one id
        stack = [root]
        while stack:
            node = stack.pop()
            if id(node) in ids:
                continue
            ids[id(node)] = len(order)
            order.append(node)
            if isinstance(node, Split):
                stack.extend((node.false, node.true))
        for node in order:
            nid = ids[id(node)]
            a["nodes_treeids"].append(tree_id)
            a["nodes_nodeids"].append(nid)
            if isinstance(node, Leaf):
                a["nodes_featureids"].append(0)
                a["nodes_modes"].append("LEAF")
                a["nodes_values"].append(0.0)
                a["nodes_truenodeids"].append(0)
                a["nodes_falsenodeids"].append(0)
                a["nodes_missing_value_tracks_true"].append(0)
                for target, weight in node.weights:
                    a["target_treeids"].append(tree_id)
                    a["target_nodeids"].append(nid)
                    a["target_ids"].append(int(target))
                    a["target_weights"].append(float(weight))
            else:
                a["nodes_featureids"].append(int(node.feature))
                a["nodes_modes"].append(node.mode)
                a["nodes_values"].append(float(node.value))
                a["nodes_truenodeids"].append(ids[id(node.true)])
                a["nodes_falsenodeids"].append(ids[id(node.false)])
                a["nodes_missing_value_tracks_true"].append(int(node.missing_true))
    return a


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, hint: str, array: np.ndarray | list[Any], dtype: int | None = None) -> str:
        name = self.name(hint)
        arr = np.asarray(array)
        if dtype == TensorProto.STRING or arr.dtype.kind in "OUS":
            encoded: list[Any] = [str(v).encode() for v in arr.reshape(-1)]
            self.initializers.append(helper.make_tensor(name, TensorProto.STRING, list(arr.shape), encoded))
        else:
            self.initializers.append(onnx.numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, *, domain: str = "", **attrs: Any) -> str:
        out = output or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(f"n_{op_type}"), domain=domain, **attrs))
        return out


def _label_tensor(classes: Sequence[Any]) -> tuple[np.ndarray, int]:
    values = list(classes)
    if all(isinstance(c, (bool, np.bool_)) for c in values):
        return np.array(values, dtype=np.bool_), TensorProto.BOOL
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) for c in values):
        return np.array(values, dtype=np.int64), TensorProto.INT64
    if all(isinstance(c, (float, np.floating, int, np.integer)) for c in values):
        return np.array(values, dtype=np.float64), TensorProto.DOUBLE
    return np.array([str(c) for c in values], dtype=object), TensorProto.STRING


def _derive(g: _GraphBuilder, kind: str, cols: str, ftype: type = np.float32) -> str:
    zero = g.const("zero", np.array(0.0, dtype=ftype))
    if kind == "zero_missing":
        band = g.op("LessOrEqual", [g.op("Abs", [cols]), g.const("zero_band", np.array(ZERO_BAND, dtype=ftype))])
        return g.op("Where", [band, g.const("nan", np.array(np.nan, dtype=ftype)), cols])
    if kind == "trunc":  # C's cast to int: toward zero; NaN stays NaN
        return g.op("Where", [g.op("Less", [cols, zero]), g.op("Ceil", [cols]), g.op("Floor", [cols])])
    if kind == "floor":
        return g.op("Floor", [cols])
    raise ValueError(f"unknown derived column kind {kind!r}")


def build_model(
    ensemble: Ensemble,
    *,
    task: str,
    link: str,
    classes: Sequence[Any] | None = None,
    producer_version: str = "",
    doc: str = "",
    input_dtype: str = "float32",
) -> onnx.ModelProto:
    """The ONNX model: X -> (derived columns) -> tree margins -> link -> modelport outputs.

    ``link`` is one of ``identity``, ``exp``, ``logistic`` (regression or binary classification with
    one margin), ``softmax`` or ``logistic_ova`` (multiclass: independent sigmoids, not normalised).
    ``input_dtype="float64"`` (libraries that compare in double, Spark ML) makes ``X`` double and
    keeps every split value exact as ``nodes_values_as_tensor``; the margins stay float32.
    """
    if input_dtype not in ("float32", "float64"):
        raise ValueError(f"input_dtype must be float32 or float64; got {input_dtype!r}")
    double = input_dtype == "float64"
    ftype: type = np.float64 if double else np.float32
    g = _GraphBuilder()
    x = "X"
    if ensemble.missing_value is not None and not math.isnan(ensemble.missing_value):
        nan = g.const("nan", np.array(np.nan, dtype=ftype))
        is_missing = g.op("Equal", [x, g.const("missing", np.array(ensemble.missing_value, dtype=ftype))])
        x = g.op("Where", [is_missing, nan, x], "X_missing_as_nan")
    tree_input = x
    if ensemble.derived:
        kinds = [k for k, _ in ensemble.derived]
        source = g.op("Gather", [x, g.const("slots", np.array([f for _, f in ensemble.derived], dtype=np.int64))], axis=1)
        cols = source
        for kind in sorted(set(kinds)):
            done = _derive(g, kind, source, ftype)
            if len(set(kinds)) == 1:
                cols = done
            else:
                cols = g.op("Where", [g.const(f"is_{kind}", np.array([k == kind for k in kinds])), done, cols])
        tree_input = g.op("Concat", [x, cols], "X_trees", axis=1)
    attrs: dict[str, Any] = _tree_attributes(ensemble)
    if double:
        values = attrs.pop("nodes_values")
        attrs["nodes_values_as_tensor"] = helper.make_tensor("nodes_values", TensorProto.DOUBLE, [len(values)], values)
    margin = g.op(
        "TreeEnsembleRegressor", [tree_input], "margin", domain="ai.onnx.ml",
        n_targets=ensemble.n_targets, aggregate_function="SUM", post_transform="NONE",
        base_values=[float(np.float32(b)) for b in ensemble.base], **attrs,
    )
    outputs: list[onnx.ValueInfoProto] = []
    if task == "regression":
        if link == "exp":
            margin = g.op("Exp", [margin])
        elif link == "logistic":
            margin = g.op("Sigmoid", [margin])
        elif link != "identity":
            raise ValueError(f"unknown regression link {link!r}")
        if ensemble.n_targets == 1:
            g.op("Reshape", [margin, g.const("flat", np.array([-1], dtype=np.int64))], "prediction")
            outputs.append(helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None]))
        else:
            g.op("Identity", [margin], "prediction")
            outputs.append(helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, ensemble.n_targets]))
    else:
        assert classes is not None
        n_classes = len(classes)
        if link == "logistic" and ensemble.n_targets == 1:
            p = g.op("Sigmoid", [margin])
            q = g.op("Sub", [g.const("one", np.array(1.0, dtype=np.float32)), p])
            probabilities = g.op("Concat", [q, p], "probabilities", axis=1)
        elif link == "softmax":
            probabilities = g.op("Softmax", [margin], "probabilities", axis=1)
        elif link == "logistic_ova":
            probabilities = g.op("Sigmoid", [margin], "probabilities")
        else:
            raise ValueError(f"unknown classification link {link!r} for {ensemble.n_targets} margin(s)")
        # ArgMax takes the first of tied maxima, as numpy's argmax in the libraries' predict() does;
        # ArrayFeatureExtractor (not Gather) keeps the graph within what modelport's codegen compiles
        index = g.op("ArgMax", [probabilities], axis=1, keepdims=1, select_last_index=0)
        labels, label_type = _label_tensor(classes)
        flat = g.const("flat", np.array([-1], dtype=np.int64))
        if label_type == TensorProto.BOOL:
            picked = g.op("ArrayFeatureExtractor", [g.const("classes", labels.astype(np.int64)), index], domain="ai.onnx.ml")
            g.op("Cast", [g.op("Reshape", [picked, flat])], "label", to=TensorProto.BOOL)
        else:
            picked = g.op("ArrayFeatureExtractor", [g.const("classes", labels, label_type), index], domain="ai.onnx.ml")
            g.op("Reshape", [picked, flat], "label")
        outputs.append(helper.make_tensor_value_info("label", label_type, [None]))
        outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_classes]))
    graph = helper.make_graph(
        g.nodes, "modelport_trees",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE if double else TensorProto.FLOAT, [None, ensemble.n_features])],
        outputs, initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in OPSETS.items()],
        producer_name="modelport",
        producer_version=producer_version,
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def converted_thresholds(ensemble: Ensemble, names: Sequence[str]) -> dict[str, list[float]]:
    """Split values per column name for edge-case probes.

    A column keeps its (possibly empty) entry so that it replaces what the generic graph scan finds.
    +-FLT_MAX splits (CatBoost's NaN borders, LightGBM's open-ended ones) are skipped by the probe
    builder (verification/probes.py), the one place that decides which values can be probed.
    """
    return {names[f]: list(values) for f, values in thresholds(ensemble).items() if f < len(names)}


def booster_converted(
    onx: onnx.ModelProto,
    *,
    ensemble: Ensemble,
    task: str,
    columns: Sequence[Any],
    classes: list[Any] | None,
    names: Sequence[str],
    framework: str,
    framework_version: str,
    estimator: str,
    nullable: dict[str, bool] | None = None,
) -> Any:
    """The Converted of a booster whose trees modelport wrote itself (XGBoost, LightGBM, CatBoost).

    Category columns hold codes, not split values: an empty threshold entry keeps the generic graph
    scan off them. Boosters take NaN in every column unless ``nullable`` says otherwise.
    """
    from modelport import __version__
    from modelport.convert.base import Converted

    return Converted(
        onnx_model=onx,
        task=task,
        columns=tuple(columns),
        classes=classes,
        source={
            "framework": framework,
            "framework_version": framework_version,
            "estimator": estimator,
            "converter": "modelport",
            "converter_version": __version__,
        },
        thresholds={**converted_thresholds(ensemble, names), **{c.name: [] for c in columns if c.dtype == "category"}},
        nullable=nullable if nullable is not None else {c.name: True for c in columns},
    )


__all__ = [
    "Ensemble",
    "Leaf",
    "Split",
    "booster_converted",
    "bottom_up",
    "build_model",
    "converted_thresholds",
    "f32_down",
    "f32_up",
    "member_chain",
    "thresholds",
]
