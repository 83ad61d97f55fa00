"""Checks on the ONNX graph inside a bundle, and facts read off it (opsets, operators, trees)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import onnx
from onnx import TensorProto

from modelport.errors import IntegrityError

ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
TREE_OPS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"})


def parse(data: bytes, *, origin: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise IntegrityError(f"{origin}: model.onnx is not a valid ONNX protobuf ({exc}).") from exc
    return model


def check(model: onnx.ModelProto, *, origin: str) -> None:
    """Refuse external data, unknown operator domains and graphs the ONNX checker rejects."""
    local_functions = {(f.domain, f.name) for f in model.functions}
    for tensor in _all_initializers(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
            raise IntegrityError(
                f"{origin}: initializer {tensor.name!r} refers to external data; bundles must be self-contained."
            )
    for node in iter_nodes(model.graph):
        if node.domain not in ALLOWED_DOMAINS and (node.domain, node.op_type) not in local_functions:
            raise IntegrityError(
                f"{origin}: node {node.name or node.op_type!r} uses operator domain {node.domain!r}; "
                f"allowed are the standard ONNX domains {sorted(ALLOWED_DOMAINS)}."
            )
    for f in model.functions:
        for node in f.node:
            if node.domain not in ALLOWED_DOMAINS and (node.domain, node.op_type) not in local_functions:
                raise IntegrityError(
                    f"{origin}: function {f.name!r} uses operator domain {node.domain!r}, which is not allowed."
                )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise IntegrityError(f"{origin}: model.onnx fails the ONNX checker: {str(exc).splitlines()[0]}") from exc


def _all_initializers(graph: onnx.GraphProto):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            for g in _subgraphs(attr):
                yield from _all_initializers(g)


def _subgraphs(attr: onnx.AttributeProto):
    if attr.type == onnx.AttributeProto.GRAPH:
        yield attr.g
    elif attr.type == onnx.AttributeProto.GRAPHS:
        yield from attr.graphs


def iter_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for g in _subgraphs(attr):
                yield from iter_nodes(g)


def opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}


def operator_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for node in iter_nodes(model.graph):
        counts[f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type] += 1
    return dict(sorted(counts.items()))


def tree_stats(model: onnx.ModelProto) -> dict[str, Any] | None:
    """Number of trees, nodes and the maximum depth over all tree-ensemble nodes, or None."""
    from onnx import helper

    trees = 0
    nodes = 0
    max_depth = 0
    found = False
    for node in iter_nodes(model.graph):
        if node.op_type not in TREE_OPS:
            continue
        found = True
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "TreeEnsemble":
            roots = list(attrs.get("tree_roots", []))
            trees += len(roots)
            nodes += len(attrs.get("nodes_featureids", []))
            t_ids = None
        else:
            t_ids = list(attrs.get("nodes_treeids", []))
            n_ids = list(attrs.get("nodes_nodeids", []))
            trees += len(set(t_ids))
            nodes += len(n_ids)
            modes = [m.decode() if isinstance(m, bytes) else m for m in attrs.get("nodes_modes", [])]
            t_true = list(attrs.get("nodes_truenodeids", []))
            t_false = list(attrs.get("nodes_falsenodeids", []))
            children: dict[tuple[int, int], tuple[int, int]] = {}
            for t, n, m, a, b in zip(t_ids, n_ids, modes, t_true, t_false):
                if m != "LEAF":
                    children[(t, n)] = (a, b)
            for t in set(t_ids):
                max_depth = max(max_depth, _depth(children, t, 0))
    if not found:
        return None
    return {"trees": trees, "nodes": nodes, "max_depth": max_depth}


def _depth(children: dict[tuple[int, int], tuple[int, int]], tree: int, root: int) -> int:
    depth = 0
    stack = [(root, 0)]
    while stack:
        n, d = stack.pop()
        depth = max(depth, d)
        kids = children.get((tree, n))
        if kids is not None:
            stack.append((kids[0], d + 1))
            stack.append((kids[1], d + 1))
    return depth


def parameter_count(model: onnx.ModelProto) -> int:
    total = 0
    for t in _all_initializers(model.graph):
        n = 1
        for d in t.dims:
            n *= d
        total += n
    return total
