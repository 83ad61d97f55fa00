"""Graph surgery shared by converters: rename tensors to modelport's names, flatten shapes,
drop unused outputs, pin the opset imports."""

from __future__ import annotations

from collections.abc import Mapping

import onnx
from onnx import helper


def rename_tensors(model: onnx.ModelProto, mapping: Mapping[str, str]) -> onnx.ModelProto:
    """Rename tensors (graph inputs, outputs, node inputs and outputs, value infos) in place."""
    graph = model.graph
    for inp in graph.input:
        if inp.name in mapping:
            inp.name = mapping[inp.name]
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
    for out in graph.output:
        if out.name in mapping:
            out.name = mapping[out.name]
    for vi in graph.value_info:
        if vi.name in mapping:
            vi.name = mapping[vi.name]
    return model


def keep_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Keep only the named graph outputs, in that order."""
    by_name = {o.name: o for o in model.graph.output}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"graph has no output(s) {missing}; it has {list(by_name)}")
    kept = [onnx.ValueInfoProto.FromString(by_name[n].SerializeToString()) for n in names]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return model


def flatten_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """Make output ``name`` (shape [N, 1]) one-dimensional [N] with a Reshape node."""
    graph = model.graph
    inner = f"{name}__2d"
    rename_tensors(model, {name: inner})
    out = next(o for o in graph.output if o.name == inner)
    elem = out.type.tensor_type.elem_type
    shape_name = f"{name}__shape"
    graph.initializer.append(helper.make_tensor(shape_name, onnx.TensorProto.INT64, [1], [-1]))
    graph.node.append(helper.make_node("Reshape", [inner, shape_name], [name], name=f"{name}__flatten"))
    new_out = helper.make_tensor_value_info(name, elem, [None])
    idx = list(graph.output).index(out)
    graph.output.remove(out)
    graph.output.insert(idx, new_out)
    return model


def set_batch_dim_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    for vi in [*model.graph.input, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    return model


def output_rank(model: onnx.ModelProto, name: str) -> int | None:
    for o in model.graph.output:
        if o.name == name:
            if not o.type.tensor_type.HasField("shape"):
                return None
            return len(o.type.tensor_type.shape.dim)
    raise KeyError(name)
