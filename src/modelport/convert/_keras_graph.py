"""Graph surgery for exported Keras / TensorFlow graphs: names that cannot collide, one batch
dimension name, no exporter metadata."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import onnx

BATCH = "N"


def graphs(g: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``g`` and every subgraph in it (Loop / Scan / If bodies), depth first."""
    yield g
    for node in g.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from graphs(sub)


def tensor_names(model: onnx.ModelProto) -> set[str]:
    names: set[str] = set()
    for g in graphs(model.graph):
        names.update(i.name for i in g.input)
        names.update(o.name for o in g.output)
        names.update(t.name for t in g.initializer)
        names.update(v.name for v in g.value_info)
        for n in g.node:
            names.update(n.input)
            names.update(n.output)
    names.discard("")
    return names


def rename_safely(model: onnx.ModelProto, mapping: Mapping[str, str]) -> None:
    """Rename tensors everywhere (subgraphs and initializers included); a tensor that already has
    one of the new names is renamed out of the way first, so that no two tensors share a name."""
    taken = tensor_names(model)
    targets = set(mapping.values())
    full = dict(mapping)
    for name in taken:
        if name in targets and name not in mapping:
            k = 0
            while f"{name}__{k}" in taken or f"{name}__{k}" in targets:
                k += 1
            full[name] = f"{name}__{k}"
    for g in graphs(model.graph):
        for seq in (g.input, g.output, g.value_info, g.initializer):
            for item in seq:
                if item.name in full:
                    item.name = full[item.name]
        for n in g.node:
            for i, name in enumerate(n.input):
                if name in full:
                    n.input[i] = full[name]
            for i, name in enumerate(n.output):
                if name in full:
                    n.output[i] = full[name]


def normalise_batch_dim(model: onnx.ModelProto) -> bool:
    """Name the first (batch) dimension of every graph input and output ``N``; False when an
    input's batch dimension is fixed (the graph then takes only that many rows)."""
    g = model.graph
    init = {t.name for t in g.initializer}
    symbols: set[str] = set()
    dynamic = True
    for vi in g.input:
        if vi.name in init:
            continue
        dims = vi.type.tensor_type.shape.dim
        if not dims:
            continue
        if dims[0].HasField("dim_value"):
            dynamic = False
        elif dims[0].dim_param:
            symbols.add(dims[0].dim_param)
        else:
            dims[0].dim_param = BATCH
    if not dynamic:
        return False
    for vi in [*g.input, *g.output, *g.value_info]:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in symbols:
                d.dim_param = BATCH
    for vi in g.output:
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH
    return True


def strip_metadata(model: onnx.ModelProto) -> None:
    """Drop exporters' per-node metadata and doc strings: they hold stack traces with local paths
    and nothing a runtime needs."""
    del model.metadata_props[:]
    model.doc_string = ""
    for f in model.functions:
        del f.metadata_props[:]
        for n in f.node:
            del n.metadata_props[:]
            n.doc_string = ""
    for g in graphs(model.graph):
        del g.metadata_props[:]
        g.doc_string = ""
        for n in g.node:
            del n.metadata_props[:]
            n.doc_string = ""
        for vi in [*g.input, *g.output, *g.value_info]:
            del vi.metadata_props[:]
            vi.doc_string = ""
        for t in g.initializer:
            del t.metadata_props[:]
            t.doc_string = ""
