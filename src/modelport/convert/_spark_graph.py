"""A Spark pipeline's plan as one ONNX graph, in double precision like Spark itself.

Every stage is lowered to the same arithmetic Spark's code does, in the same order, so that a value
at a split threshold lands on the side Spark puts it: StandardScaler is ``(x - mean) * (1/std)``
(0 for a zero std), MinMaxScaler ``(x - min) * (range/span) + min``, tree splits compare doubles
exactly (``nodes_values_as_tensor``). Tree ensembles come from the shared builder in ``_trees``;
their leaf sums are float32, the rest is double.

A missing value reaches the graph as NaN, and each lowering treats NaN in a scalar column as
Spark treats **null** (see ``_spark_eval``): a StringIndexer with ``handleInvalid='keep'`` gives it
the unknown index, OneHotEncoder and Bucketizer pass it on as missing, an Imputer fills it,
VectorAssembler (``keep``) puts NaN in the vector. Values Spark refuses never get here: the
bundle's column rules refuse them first (categories, missing values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from modelport.convert import _trees
from modelport.convert._sklearn_graph import GraphBuilder, value_info
from modelport.convert._spark_eval import logistic_threshold
from modelport.convert._spark_plan import Plan, Step, splits
from modelport.convert._spark_read import Stage, Tree

OPSETS = {"": 17, "ai.onnx.ml": 3}
IR_VERSION = 8
_PREFIX = "spark__"


@dataclass(frozen=True)
class Affine:
    """A vector slot (or scalar column) that is ``a * x + b`` of the input column ``column``."""

    column: str
    a: float = 1.0
    b: float = 0.0


class _Lowering:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.b = GraphBuilder(_PREFIX)
        self.tensors: dict[str, str | None] = {}  # spark column -> tensor ([N, 1] or [N, k] double; None: width 0)
        self.origin: dict[str, list[Affine | None]] = {}  # column -> per slot: what it is of an input column
        self.inputs: list[onnx.ValueInfoProto] = []
        self.split_values: dict[str, set[float]] = {}

    # -------------------------------------------------------------------------- helpers
    def const(self, value: object, hint: str = "c", dtype: object = np.float64) -> str:
        return self.b.const(value, hint, dtype)

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, **attrs: object) -> str:
        return self.b.op1(op_type, inputs, hint, **attrs)

    def isnan(self, x: str) -> str:
        return self.op("IsNaN", [x])

    def where_missing(self, x: str, value: str, then: str) -> str:
        """``then`` where ``x`` holds a value, ``value`` (broadcast) where it is missing."""
        return self.op("Where", [self.isnan(x), value, then])

    # -------------------------------------------------------------------------- inputs
    def add_inputs(self) -> None:
        for c in self.plan.inputs:
            if c.kind == "text":
                self.inputs.append(value_info(c.name, TensorProto.STRING, [None, 1]))
                self.tensors[c.name] = c.name
                self.origin[c.name] = [None]
            elif c.spark_type == "float":
                # a Spark float column holds float32 values; the graph reads them so and widens
                self.inputs.append(value_info(c.name, TensorProto.FLOAT, [None, 1]))
                self.tensors[c.name] = self.op("Cast", [c.name], f"{c.name}_double", to=TensorProto.DOUBLE)
                self.origin[c.name] = [Affine(c.name)]
            elif c.spark_type == "integer" and c.kind == "number":
                # an integer column reads a fraction as Spark's cast to integer does: toward zero
                self.inputs.append(value_info(c.name, TensorProto.DOUBLE, [None, 1]))
                x = c.name
                zero = self.const(0.0)
                self.tensors[c.name] = self.op("Where", [self.op("Less", [x, zero]), self.op("Ceil", [x]),
                                                         self.op("Floor", [x])], f"{c.name}_whole")
                self.origin[c.name] = [Affine(c.name)]
            else:
                self.inputs.append(value_info(c.name, TensorProto.DOUBLE, [None, 1]))
                self.tensors[c.name] = c.name
                self.origin[c.name] = [None] if c.kind == "codes" else [Affine(c.name)]

    def tensor(self, column: str) -> str:
        t = self.tensors[column]
        assert t is not None
        return t

    # -------------------------------------------------------------------------- stages
    def string_indexer(self, step: Step) -> None:
        s = step.stage
        for pos, src, out in step.pairs:
            labels = list(s.data["labels"][pos])
            n = len(labels)
            x = self.tensor(src)
            if self.plan.input(src).kind == "text":
                codes = self.op("LabelEncoder", [x], "indexed", domain="ai.onnx.ml", keys_strings=labels,
                                values_int64s=list(range(n)), default_int64=n)
                index = self.op("Cast", [codes], "index", to=TensorProto.DOUBLE)
            else:
                # category codes are the label positions; a missing (or, keep, unknown) one is index n
                index = self.where_missing(x, self.const(float(n), "unknown_index"), x)
            self.tensors[out] = index
            self.origin[out] = [None]

    def one_hot(self, step: Step) -> None:
        s = step.stage
        for pos, src, out in step.pairs:
            size = int(s.data["sizes"][pos])
            width = self.plan.widths[out]
            self.origin[out] = [None] * width
            if width == 0:
                self.tensors[out] = None
                continue
            x = self.tensor(src)
            valid = self.op("And", [self.op("GreaterOrEqual", [x, self.const(0.0)]),
                                    self.op("Less", [x, self.const(float(size))])])
            index = self.op("Where", [valid, x, self.const(float(size), "invalid_index")])
            slots = self.const(np.arange(width, dtype=np.float64).reshape(1, -1), "slots")
            hot = self.op("Cast", [self.op("Equal", [self.op("Floor", [index]), slots])], "onehot", to=TensorProto.DOUBLE)
            self.tensors[out] = self.where_missing(x, self.const(np.nan, "nan"), hot)

    def imputer(self, step: Step) -> None:
        s = step.stage
        missing_value = float(s.param("missingValue", math.nan))
        for _, src, out in step.pairs:
            surrogate = float(s.data["surrogates"][src])
            spark_type = next((c.spark_type for c in self.plan.inputs if c.name == src), "double")
            if spark_type == "integer":
                surrogate = float(math.trunc(surrogate))
            elif spark_type == "float":
                surrogate = float(np.float32(surrogate))
            x = self.tensor(src)
            missing = self.isnan(x)
            if not math.isnan(missing_value):
                missing = self.op("Or", [missing, self.op("Equal", [x, self.const(missing_value, "missing_value")])])
            self.tensors[out] = self.op("Where", [missing, self.const(surrogate, "surrogate"), x])
            self.origin[out] = list(self.origin[src])

    def bucketizer(self, step: Step) -> None:
        s = step.stage
        for pos, src, out in step.pairs:
            edges = splits(s, pos)
            inner = edges[1:-1]
            x = self.tensor(src)
            # Spark finds the bucket by binary search in Java's order, where -0.0 sorts below 0.0
            plain = [e for e in inner if not (e == 0.0 and math.copysign(1.0, e) > 0)]
            parts = []
            if plain:
                above = self.op("GreaterOrEqual", [x, self.const(np.array(plain).reshape(1, -1), "splits")])
                counted = self.op("Cast", [above], to=TensorProto.DOUBLE)
                parts.append(self.op("ReduceSum", [counted, self.const([1], "axis", np.int64)], keepdims=1))
            if len(plain) < len(inner):
                zero = self.const(0.0)
                positive = self.op("Greater", [x, zero])
                plus_zero = self.op("And", [self.op("Equal", [x, zero]),
                                            self.op("Greater", [self.op("Div", [self.const(1.0), x]), zero])])
                parts.append(self.op("Cast", [self.op("Or", [positive, plus_zero])], to=TensorProto.DOUBLE))
            bucket = parts[0] if len(parts) == 1 else self.op("Add", parts)
            self.tensors[out] = self.where_missing(x, self.const(np.nan, "nan"), bucket)
            self.origin[out] = [None]
            for o in self.origin[src]:
                if o is not None and o.a == 1.0 and o.b == 0.0:
                    self.split_values.setdefault(o.column, set()).update(inner)

    def assembler(self, step: Step) -> None:
        s = step.stage
        out = step.pairs[0][2]
        parts, origin = [], []
        for name in s.param("inputCols"):
            t = self.tensors[str(name)]
            origin.extend(self.origin[str(name)])
            if t is not None:
                parts.append(t)
        self.tensors[out] = parts[0] if len(parts) == 1 else self.op("Concat", parts, "assembled", axis=1)
        self.origin[out] = origin

    def standard_scaler(self, step: Step) -> None:
        s = step.stage
        _, src, out = step.pairs[0]
        std, mean = s.data["std"], s.data["mean"]
        scale = np.where(std == 0.0, 0.0, 1.0 / np.where(std == 0.0, 1.0, std))
        with_mean, with_std = bool(s.param("withMean")), bool(s.param("withStd"))
        y = self.tensor(src)
        if with_mean:
            y = self.op("Sub", [y, self.const(mean.reshape(1, -1), "mean")])
        if with_std:
            y = self.op("Mul", [y, self.const(scale.reshape(1, -1), "scale")])
        self.tensors[out] = y
        origin: list[Affine | None] = []
        for i, o in enumerate(self.origin[src]):
            if o is None or (with_std and scale[i] == 0.0):
                origin.append(None)
                continue
            a, b = o.a, o.b
            if with_mean:
                b = b - mean[i]
            if with_std:
                a, b = a * scale[i], b * scale[i]
            origin.append(Affine(o.column, a, b))
        self.origin[out] = origin

    def min_max_scaler(self, step: Step) -> None:
        s = step.stage
        _, src, out = step.pairs[0]
        lo, hi = s.data["original_min"], s.data["original_max"]
        low, high = float(s.param("min")), float(s.param("max"))
        rng = hi - lo
        scale = np.where(rng != 0, (high - low) / np.where(rng != 0, rng, 1.0), 0.0)
        x = self.tensor(src)
        y = self.op("Add", [self.op("Mul", [self.op("Sub", [x, self.const(lo.reshape(1, -1), "min")]),
                                            self.const(scale.reshape(1, -1), "scale")]), self.const(low, "low")])
        constant = scale == 0
        if constant.any():
            fill = self.op("And", [self.const(constant.reshape(1, -1), "constant", np.bool_),
                                   self.op("Not", [self.isnan(x)])])
            y = self.op("Where", [fill, self.const((low + high) / 2, "middle"), y])
        self.tensors[out] = y
        self.origin[out] = [
            None if o is None or scale[i] == 0 else Affine(o.column, o.a * scale[i], (o.b - lo[i]) * scale[i] + low)
            for i, o in enumerate(self.origin[src])
        ]

    # -------------------------------------------------------------------------- predictors
    def predictor(self) -> list[onnx.ValueInfoProto]:
        p = self.plan.predictor
        features = self.tensor(str(p.param("featuresCol", "features")))
        flat = self.const([-1], "flat", np.int64)
        if p.kind == "linear":
            coef = p.data["coefficients"].reshape(-1, 1)
            y = self.op("Add", [self.op("MatMul", [features, self.const(coef, "coef")]),
                                self.const(p.data["intercept"], "intercept")])
            self.b.rename(self.op("Reshape", [y, flat]), "prediction")
            return [value_info("prediction", TensorProto.DOUBLE, [None])]
        if p.kind == "logistic":
            return self.logistic(features)
        ensemble = self.ensemble()
        margins = self.embed(_trees.build_model(ensemble, task="regression", link="identity", input_dtype="float64"),
                             features)
        for slot, values in _trees.thresholds(ensemble).items():
            o = self.origin[str(p.param("featuresCol", "features"))][slot]
            if o is not None and o.a != 0.0:
                self.split_values.setdefault(o.column, set()).update((v - o.b) / o.a for v in values)
        if self.plan.task == "regression":
            self.b.rename(self.op("Reshape", [margins, flat]), "prediction")
            return [value_info("prediction", TensorProto.DOUBLE, [None])]
        if p.kind == "gbt":
            m = self.op("Reshape", [margins, self.const([-1, 1], "column", np.int64)])
            p1 = self.op("Sigmoid", [self.op("Mul", [m, self.const(2.0)])])
            proba = self.op("Concat", [self.op("Sub", [self.const(1.0), p1]), p1], axis=1)
            raw = self.op("Concat", [self.op("Neg", [m]), m], axis=1)
        else:
            raw = margins
            total = self.op("ReduceSum", [raw, self.const([1], "axis", np.int64)], keepdims=1)
            proba = self.op("Div", [raw, total])
        return self.classified(raw, proba, _thresholds(p))

    def logistic(self, features: str) -> list[onnx.ValueInfoProto]:
        p = self.plan.predictor
        coef, intercepts = p.data["coefficients"], p.data["intercepts"]
        margins = self.op("Add", [self.op("MatMul", [features, self.const(coef.T.copy(), "coef")]),
                                  self.const(intercepts.reshape(1, -1), "intercept")])
        if p.data["multinomial"]:
            soft = self.op("Softmax", [margins], axis=1)
            # Spark: a margin of +inf takes all the probability (the first such class); ONNX's Softmax gives NaN
            first = self.op("ArgMax", [margins], axis=1, keepdims=1, select_last_index=0)
            k = int(coef.shape[0])
            hot = self.op("Cast", [self.op("Equal", [first, self.const(np.arange(k).reshape(1, -1), "classes_k", np.int64)])],
                          to=TensorProto.DOUBLE)
            infinite = self.op("Cast", [self.op("IsInf", [margins], detect_negative=0)], to=TensorProto.DOUBLE)
            any_inf = self.op("Greater", [self.op("ReduceSum", [infinite, self.const([1], "axis", np.int64)], keepdims=1),
                                          self.const(0.0)])
            proba = self.op("Where", [any_inf, hot, soft])
            return self.classified(margins, proba, _thresholds(p))
        raw = self.op("Concat", [self.op("Neg", [margins]), margins], axis=1)
        proba = self.op("Sigmoid", [raw])
        t = logistic_threshold(p)
        raw_threshold = -math.inf if t == 0.0 else math.inf if t == 1.0 else math.log(t / (1.0 - t))
        index = self.op("Cast", [self.op("Greater", [margins, self.const(raw_threshold, "threshold")])], to=TensorProto.INT64)
        return self.finish(index, proba)

    def classified(self, raw: str, proba: str, thresholds: list[float] | None) -> list[onnx.ValueInfoProto]:
        if thresholds is None:
            scores = raw
        else:
            t = np.asarray(thresholds, dtype=np.float64).reshape(1, -1)
            scaled = self.op("Div", [proba, self.const(np.where(t == 0.0, 1.0, t), "thresholds")])
            scores = self.op("Where", [self.const(t == 0.0, "zero_threshold", np.bool_), self.const(np.inf, "inf"), scaled])
        # the first of equal maxima, as Spark's Vector.argmax
        index = self.op("ArgMax", [scores], axis=1, keepdims=1, select_last_index=0)
        return self.finish(index, proba)

    def finish(self, index: str, proba: str) -> list[onnx.ValueInfoProto]:
        classes = list(self.plan.classes or ())
        text = bool(classes) and isinstance(classes[0], str)
        table = np.array(classes, dtype=object) if text else np.array(classes, dtype=np.int64)
        picked = self.op("ArrayFeatureExtractor", [self.const(table, "classes", None), index], domain="ai.onnx.ml")
        self.b.rename(self.op("Reshape", [picked, self.const([-1], "flat", np.int64)]), "label")
        self.b.rename(proba, "probabilities")
        return [value_info("label", TensorProto.STRING if text else TensorProto.INT64, [None]),
                value_info("probabilities", TensorProto.DOUBLE, [None, len(classes)])]

    def ensemble(self) -> _trees.Ensemble:
        p = self.plan.predictor
        trees: list[Tree] = p.data["trees"]
        weights = np.asarray(p.data["weights"], dtype=np.float64)
        classifier = self.plan.task == "classification" and p.kind != "gbt"
        k = self.plan.num_classes if classifier else 1
        width = self.plan.widths[str(p.param("featuresCol", "features"))]
        ensemble = _trees.Ensemble(trees=[], n_targets=k, base=[0.0] * k, n_features=width)
        for t, tree in enumerate(trees):
            ensemble.trees.append(_tree(tree, p, classifier, k, float(weights[t]), len(trees)))
        return ensemble

    def embed(self, model: onnx.ModelProto, features: str) -> str:
        """Append a tree model's nodes (names prefixed) reading ``features``; its output, as double."""
        inner = onnx.compose.add_prefix(model, f"{_PREFIX}trees_")
        g = inner.graph
        self.b.nodes.append(helper.make_node("Identity", [features], [g.input[0].name], name=f"{_PREFIX}trees_in"))
        self.b.nodes.extend(g.node)
        self.b.initializers.extend(g.initializer)
        return self.op("Cast", [g.output[0].name], "margins", to=TensorProto.DOUBLE)


def _tree(tree: Tree, p: Stage, classifier: bool, k: int, weight: float, n_trees: int) -> _trees.Node:
    position = {int(i): j for j, i in enumerate(tree.ids.tolist())}

    def children(j: int) -> list[int]:
        if tree.left[j] < 0:
            return []
        return [position[int(tree.left[j])], position[int(tree.right[j])]]

    def make(j: int, built: list[_trees.Node]) -> _trees.Node:
        if not built:
            if classifier:
                stats = tree.stats[j][:k]
                total = float(stats.sum())
                if p.kind == "forest" and total == 0.0:
                    return _trees.Leaf(())  # Spark adds nothing for a leaf without counts
                share = stats / total if total else stats
                return _trees.Leaf(tuple((c, float(v)) for c, v in enumerate(share.tolist()) if v != 0.0))
            value = float(tree.prediction[j])
            if p.kind == "gbt":
                value *= weight
            elif p.kind == "forest":
                value /= n_trees
            return _trees.Leaf(((0, value),))
        left, right = built
        feature = int(tree.feature[j])
        if int(tree.num_categories[j]) == -1:
            # x <= threshold goes left, in double; NaN compares false and goes right
            return _trees.Split(feature, "BRANCH_LEQ", float(tree.split_values[j][0]), left, right, missing_true=False)
        return _trees.member_chain(feature, [float(v) for v in tree.split_values[j]], inside=left, outside=right,
                                   missing_inside=False)

    return _trees.bottom_up(position[0], children, make, key=int)


def _thresholds(p: Stage) -> list[float] | None:
    ts = p.params.get("thresholds")
    return [float(t) for t in ts] if isinstance(ts, list) and ts else None


def build(plan: Plan, *, doc: str = "") -> tuple[onnx.ModelProto, dict[str, list[float]]]:
    """The ONNX model of ``plan`` and, per input column, the values where its splits lie
    (tree thresholds mapped back through the scalers, Bucketizer splits) for edge-case probes."""
    low = _Lowering(plan)
    low.add_inputs()
    lower = {
        "string_indexer": low.string_indexer, "one_hot": low.one_hot, "imputer": low.imputer,
        "bucketizer": low.bucketizer, "assembler": low.assembler, "standard_scaler": low.standard_scaler,
        "min_max_scaler": low.min_max_scaler,
    }
    for step in plan.steps:
        lower[step.stage.kind](step)
    outputs = low.predictor()
    graph = helper.make_graph(low.b.nodes, "spark_pipeline", low.inputs, outputs, initializer=low.b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in OPSETS.items()],
                              producer_name="modelport", doc_string=doc)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    # a boolean column takes only 0 and 1: its splits (0.5) are no values to probe with
    numbers = {c.name for c in plan.inputs if c.kind == "number" and c.spark_type != "boolean"}
    values = {c: sorted(v for v in vs if math.isfinite(v)) for c, vs in low.split_values.items() if c in numbers}
    return model, values
