"""Small ONNX graph-building and graph-joining helpers for the scikit-learn converter.

skl2onnx builds most graphs; these helpers build the parts we write ourselves (HistGradientBoosting,
linear classifiers without probabilities, output post-processing) and join a converted
preprocessing prefix to a separately converted final estimator.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: opsets every graph this converter emits is pinned to (skl2onnx would otherwise pick
#: ai.onnx.ml 4/5, which it cannot itself emit for every estimator)
TARGET_OPSET: dict[str, int] = {"": 21, "ai.onnx.ml": 3}

ONNX_FLOAT = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}


class GraphBuilder:
    """Collects nodes and initializers under unique, deterministic names."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, value: Any, hint: str = "c", dtype: Any = None) -> str:
        arr = np.asarray(value, dtype=dtype)
        if arr.dtype.kind in "OUS":
            arr = arr.astype(object)
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, *, domain: str = "",
           n_out: int = 1, **attrs: Any) -> str | list[str]:
        outs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.name(op_type), domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs

    def op1(self, op_type: str, inputs: Sequence[str], hint: str | None = None, **attrs: Any) -> str:
        out = self.op(op_type, inputs, hint, **attrs)
        assert isinstance(out, str)
        return out

    def rename(self, tensor: str, final: str) -> None:
        """Make ``final`` the name of ``tensor`` by an Identity node (graph outputs get fixed names)."""
        self.nodes.append(helper.make_node("Identity", [tensor], [final], name=self.name("out")))


def make_model(
    builder: GraphBuilder,
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    name: str,
) -> onnx.ModelProto:
    graph = helper.make_graph(builder.nodes, name, list(inputs), list(outputs), initializer=builder.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in TARGET_OPSET.items()],
        producer_name="modelport",
    )
    model.ir_version = 10
    return model


def value_info(name: str, elem_type: int, shape: Sequence[int | None]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, list(shape))


def label_tensor_type(classes: np.ndarray) -> int:
    if classes.dtype.kind in "OUS":
        return TensorProto.STRING
    if classes.dtype.kind == "b":
        return TensorProto.BOOL
    if classes.dtype.kind == "f":
        return TensorProto.DOUBLE
    return TensorProto.INT64


def label_constant(classes: np.ndarray) -> np.ndarray:
    """Class labels as an initializer array of the dtype :func:`label_tensor_type` names."""
    kind = classes.dtype.kind
    if kind in "OUS":
        return np.array([str(c) for c in classes], dtype=object)
    if kind == "b":
        return classes.astype(bool)
    if kind == "f":
        return classes.astype(np.float64)
    return classes.astype(np.int64)


def one_hot_from_index(b: GraphBuilder, index: str, n_classes: int) -> str:
    """(N,) int64 class index -> (N, n_classes) float64 one-hot matrix."""
    col = b.op1("Unsqueeze", [index, b.const([1], "axis1", np.int64)])
    hit = b.op1("Equal", [col, b.const(np.arange(n_classes, dtype=np.int64).reshape(1, -1), "range")])
    return b.op1("Cast", [hit], to=TensorProto.DOUBLE)


def join(prefix: onnx.ModelProto, prefix_output: str, estimator: onnx.ModelProto, cast_to: int) -> onnx.ModelProto:
    """Feed ``prefix``'s output ``prefix_output`` (cast to ``cast_to``) into ``estimator``'s only input.

    Every name inside the estimator graph gets the prefix ``est_`` so that the two graphs cannot
    collide; the estimator's outputs become the joined graph's outputs.
    """
    est = onnx.compose.add_prefix(_aligned(estimator), "est_")
    pre = _aligned(prefix)
    est_in = [i.name for i in est.graph.input if i.name not in {t.name for t in est.graph.initializer}]
    if len(est_in) != 1:
        raise ValueError(f"the estimator graph must have one input, it has {est_in}")
    graph = onnx.GraphProto()
    graph.CopyFrom(pre.graph)
    graph.node.append(helper.make_node("Cast", [prefix_output], [est_in[0]], name="est_input_cast", to=cast_to))
    graph.node.extend(est.graph.node)
    graph.initializer.extend(est.graph.initializer)
    graph.value_info.extend(est.graph.value_info)
    del graph.output[:]
    graph.output.extend(est.graph.output)
    joined = helper.make_model(graph, opset_imports=list(pre.opset_import), producer_name=pre.producer_name)
    joined.producer_version = pre.producer_version
    joined.ir_version = pre.ir_version
    return joined


def _aligned(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose opset imports are exactly TARGET_OPSET (graphs are converted for it)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    have = {o.domain: o.version for o in out.opset_import}
    for domain, version in TARGET_OPSET.items():
        if have.get(domain, version) > version:
            raise ValueError(f"graph needs opset {domain or 'ai.onnx'} {have[domain]} > {version}")
    del out.opset_import[:]
    out.opset_import.extend(helper.make_opsetid(d, v) for d, v in TARGET_OPSET.items())
    out.ir_version = max(out.ir_version, 10)
    return out


def canonical_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rename every intermediate tensor and node by its position, in place.

    Parts of skl2onnx (KNN, for one) name tensors from a process-wide counter, so converting the
    same model twice gives different names and different bytes. Numbering names in graph order
    makes the bytes a function of the model alone; the stem of each old name is kept so that the
    graph stays readable.
    """
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    mapping: dict[str, str] = {}
    counter = [0, 0]

    def new(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in mapping:
            counter[0] += 1
            stem = re.sub(r"[0-9]+", "", name).strip("_") or "t"
            mapping[name] = f"{stem[:40]}_{counter[0]}"
        return mapping[name]

    def visit(g: onnx.GraphProto) -> None:
        for t in g.initializer:
            t.name = new(t.name)
        for v in g.input:
            v.name = new(v.name)
        for node in g.node:
            for i, name in enumerate(node.input):
                node.input[i] = new(name)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for sub in attr.graphs:
                        visit(sub)
            for i, name in enumerate(node.output):
                node.output[i] = new(name)
            counter[1] += 1
            node.name = f"{node.op_type}_{counter[1]}"
        for v in g.output:
            v.name = new(v.name)
        for v in g.value_info:
            v.name = new(v.name)

    visit(graph)
    return model
