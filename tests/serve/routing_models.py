"""Bundles for the routing tests with the signature of another bundle: a copy whose graph is
slow (a Loop burns time before the answer) or fails at run time (a Reshape no batch fits), so
that they can stand beside it as arms and shadows."""

from __future__ import annotations

import json

import onnx
from onnx import TensorProto as T
from onnx import helper as h

from modelport.bundle import manifest as mf
from modelport.bundle.core import MODEL_FILE, Bundle


def with_graph(bundle: Bundle, model: onnx.ModelProto, *, version: str) -> Bundle:
    """``bundle`` with another graph (same inputs and outputs) and version; the manifest's files
    table is rewritten so that the copy is a valid bundle of its own."""
    data = model.SerializeToString()
    files = dict(bundle.files)
    files[MODEL_FILE] = data
    manifest = json.loads(files["manifest.json"])
    manifest["version"] = version
    del files["manifest.json"]
    manifest["files"] = mf.files_table(files)
    files["manifest.json"] = mf.dumps(manifest)
    return Bundle(files, origin=f"<{bundle.name} v{version}>")


def _extended(bundle: Bundle, nodes: list, output: str, extra: str, initializers: list) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.CopyFrom(bundle.onnx_model)
    g = model.graph
    for n in g.node:  # the original output is computed under a new name, then combined
        n.output[:] = [o if o != output else output + "_orig" for o in n.output]
    g.node.extend(nodes)
    g.node.append(h.make_node("Add", [output + "_orig", extra], [output]))
    g.initializer.extend(initializers)
    if not any(op.domain in ("", "ai.onnx") for op in model.opset_import):
        model.opset_import.append(h.make_opsetid("", 17))
    return model


def slow(bundle: Bundle, iterations: int, *, version: str) -> Bundle:
    """A copy of a classifier whose every call first runs a Loop of ``iterations`` steps
    (about a microsecond each); its answers are the original's."""
    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Add", ["v_in", "one_f"], ["v_out"])],
        "burn", [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
                 h.make_tensor_value_info("v_in", T.FLOAT, [1])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, [1])],
        [h.make_tensor("one_f", T.FLOAT, [1], [1.0])],
    )
    nodes = [
        h.make_node("Loop", ["trips", "always", "zero_f"], ["burned"], body=body),
        h.make_node("Mul", ["burned", "zero_f"], ["nothing"]),
    ]
    inits = [h.make_tensor("trips", T.INT64, [], [iterations]), h.make_tensor("always", T.BOOL, [], [True]),
             h.make_tensor("zero_f", T.FLOAT, [1], [0.0])]
    return with_graph(bundle, _extended(bundle, nodes, "probabilities", "nothing", inits), version=version)


def failing(bundle: Bundle, *, version: str) -> Bundle:
    """A copy of a classifier that fails in ONNX Runtime on every batch of fewer than 7 rows
    (its input is reshaped to rows of 7 values)."""
    nodes = [
        h.make_node("Reshape", ["X", "seven"], ["reshaped"]),
        h.make_node("ReduceSum", ["reshaped"], ["total"], keepdims=0),
        h.make_node("Mul", ["total", "zero_f"], ["nothing"]),
    ]
    inits = [h.make_tensor("seven", T.INT64, [2], [-1, 7]), h.make_tensor("zero_f", T.FLOAT, [], [0.0])]
    return with_graph(bundle, _extended(bundle, nodes, "probabilities", "nothing", inits), version=version)
