"""TreeModel: decision trees with PMML's predicates, missing value strategies and no-true-child
strategies.

Every node's predicate becomes one column of an *indicator matrix* (1 true, 0 false, NaN unknown,
computed by :mod:`.semantics` on either backend). Routing a record to its outcome (a node whose
score is the answer, or "no prediction") then depends on the indicators alone, and is done twice,
independently:

* the bundle: each tree is compiled into binary splits on the indicators (``x > 0.5`` true,
  ``x < 0.5`` false, NaN as the strategy says: the next sibling, the default child, the parent's
  score or no prediction) and built as one ``TreeEnsembleRegressor`` by
  :func:`modelport.convert._trees.build_model`, whose leaves hold the outcome's number;
* the reference: a walk of the PMML nodes themselves, children in document order, over the rows
  that reach each node (numpy).

Scores, probabilities and record counts are looked up by outcome in double precision (float under
``x-mathContext="float"``), so the tree operator's float32 only ever carries small whole numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from modelport.convert.pmml.backend import NumpyBackend, OnnxBackend
from modelport.convert.pmml.reader import Element
from modelport.convert.pmml.semantics import (
    PREDICATES,
    Env,
    Result,
    attr,
    bad,
    class_list,
    known_children,
    normalize_label,
    number,
    predicate,
    predicate_of,
    probs_label,
    unsupported,
)

STRATEGIES = ("none", "defaultChild", "lastPrediction", "nullPrediction", "weightedConfidence", "aggregateNodes")
NO_TRUE_CHILD = ("returnNullPrediction", "returnLastPrediction")
NULL = 0  # outcome 0 of every tree: no prediction


@dataclass(eq=False)
class TNode:
    el: Element
    pred: Element
    score: str | None
    children: list[TNode] = field(default_factory=list)
    default: str | None = None
    id: str | None = None
    outcome: int = -1  # index in the tree's outcomes, for nodes that can answer
    column: int = -1  # indicator column of the predicate (-1: True, -2: False)


@dataclass
class Tree:
    el: Element
    root: TNode
    nodes: list[TNode]
    strategy: str
    no_true_child: str
    outcomes: list[TNode | None]  # [None (NULL), node, node, ...]


def read_tree(el: Element) -> Tree:
    known_children(el, ("MiningSchema", "Output", "ModelStats", "ModelExplanation", "Targets", "LocalTransformations",
                        "ModelVerification", "Node"))
    strategy = attr(el, "missingValueStrategy", "none") or "none"
    if strategy not in STRATEGIES:
        raise bad(el, f"unknown missingValueStrategy {strategy!r}.")
    if strategy in ("weightedConfidence", "aggregateNodes"):
        raise unsupported(el, f"missingValueStrategy {strategy!r} is not supported",
                          hint="modelport converts none, defaultChild, lastPrediction and nullPrediction")
    ntc = attr(el, "noTrueChildStrategy", "returnNullPrediction") or "returnNullPrediction"
    if ntc not in NO_TRUE_CHILD:
        raise bad(el, f"unknown noTrueChildStrategy {ntc!r}.")
    split = attr(el, "splitCharacteristic", "multiSplit")
    if split not in ("binarySplit", "multiSplit"):
        raise bad(el, f"unknown splitCharacteristic {split!r}.")
    root_el = el.find("Node")
    if root_el is None:
        raise bad(el, "the TreeModel has no Node.")
    nodes: list[TNode] = []
    root = _node(root_el)
    stack = [(root_el, root)]
    nodes.append(root)
    while stack:
        e, n = stack.pop()
        known_children(e, ("Node", "ScoreDistribution", "Partition", *PREDICATES))
        for c in e.findall("Node"):
            cn = _node(c)
            n.children.append(cn)
            nodes.append(cn)
            stack.append((c, cn))
        if binary_check(split) and len(n.children) not in (0, 2):
            pass  # sklearn2pmml and JPMML write compacted binary trees with one child: read as they are
    outcomes: list[TNode | None] = [None]
    for n in nodes:
        if n.score is not None or not n.children or n.el.find("ScoreDistribution") is not None:
            n.outcome = len(outcomes)
            outcomes.append(n)
    return Tree(el, root, nodes, strategy, ntc, outcomes)


def binary_check(split: str | None) -> bool:
    return split == "binarySplit"


def _node(e: Element) -> TNode:
    for c in e.children:
        if c.tag in ("Regression", "DecisionTree"):
            raise unsupported(c, f"a <{c.tag}> model inside a tree node is not supported")
    return TNode(e, predicate_of(e), attr(e, "score"), default=attr(e, "defaultChild"), id=attr(e, "id"))


# --------------------------------------------------------------------------- indicators


def indicators(trees: list[Tree], env: Env) -> Any:
    """The indicator matrix [N, P] of every predicate of ``trees`` (1 / 0 / NaN); sets each node's column."""
    b = env.b
    cols: list[Any] = []
    cache: dict[Any, int] = {}
    for t in trees:
        for n in t.nodes:
            p = n.pred
            if p.tag == "True":
                n.column = -1
                continue
            if p.tag == "False":
                n.column = -2
                continue
            key = _key(p)
            if key is not None and key in cache:
                n.column = cache[key]
                continue
            tr, fa = predicate(p, env)
            ind = b.where(tr, b.const(1.0), b.where(fa, b.const(0.0), b.nan()))
            n.column = len(cols)
            cols.append(ind)
            if key is not None:
                cache[key] = n.column
    if not cols:
        cols.append(b.full(1.0))
    return b.stack(cols)


def _key(p: Element) -> Any:
    if p.tag == "SimplePredicate":
        return ("s", p.attrs.get("field"), p.attrs.get("operator"), p.attrs.get("value"))
    if p.tag == "SimpleSetPredicate":
        arr = p.find("Array")
        return ("set", p.attrs.get("field"), p.attrs.get("booleanOperator"), arr.text if arr is not None else "")
    return None


# --------------------------------------------------------------------------- routing


def route(trees: list[Tree], env: Env, matrix: Any) -> list[Any]:
    """Per tree, the outcome index of each row (NaN: no prediction)."""
    b = env.b
    if isinstance(b, NumpyBackend):
        return [_walk(t, np.asarray(matrix, dtype=np.float64)) for t in trees]
    assert isinstance(b, OnnxBackend)
    return _onnx_route(trees, b, matrix)


def _by_id(tree: Tree) -> dict[str, TNode]:
    return {n.id: n for n in tree.nodes if n.id is not None}


def _walk(tree: Tree, m: np.ndarray) -> np.ndarray:
    n_rows = m.shape[0]
    out = np.full(n_rows, np.nan)
    by_id = _by_id(tree)

    def value(node: TNode, rows: np.ndarray) -> np.ndarray:
        if node.column == -1:
            return np.ones(rows.size)
        if node.column == -2:
            return np.zeros(rows.size)
        return m[rows, node.column]

    def answer(node: TNode, rows: np.ndarray) -> None:
        out[rows] = node.outcome if node.outcome > 0 else np.nan

    rv = value(tree.root, np.arange(n_rows))
    stack: list[tuple[TNode, np.ndarray]] = [(tree.root, np.flatnonzero(rv == 1.0))]
    while stack:
        node, rows = stack.pop()
        if rows.size == 0:
            continue
        if not node.children:
            answer(node, rows)
            continue
        remaining = rows
        for child in node.children:
            if remaining.size == 0:
                break
            v = value(child, remaining)
            stack.append((child, remaining[v == 1.0]))
            unknown = remaining[np.isnan(v)]
            rest = remaining[v == 0.0]
            if unknown.size:
                s = tree.strategy
                if s == "none":
                    rest = np.sort(np.concatenate([rest, unknown]))
                elif s == "defaultChild":
                    target = by_id.get(node.default) if node.default is not None else None
                    if target is None or target not in node.children:
                        out[unknown] = np.nan
                    else:
                        stack.append((target, unknown))
                elif s == "lastPrediction":
                    answer(node, unknown)
                else:  # nullPrediction
                    out[unknown] = np.nan
            remaining = rest
        if remaining.size:
            if tree.no_true_child == "returnLastPrediction":
                answer(node, remaining)
            else:
                out[remaining] = np.nan
    return out


def _onnx_route(trees: list[Tree], b: OnnxBackend, matrix: Any) -> list[Any]:
    from modelport.convert import _trees as T

    n_cols = _n_columns(trees)
    ensemble = T.Ensemble(trees=[], n_targets=len(trees), base=[0.0] * len(trees), n_features=n_cols)
    for k, tree in enumerate(trees):
        ensemble.trees.append(_compile(tree, k))
    sub = T.build_model(ensemble, task="regression", link="identity")
    x32 = b.op("Cast", [matrix], to=onnx.TensorProto.FLOAT)
    out = _inline(b, sub, {"X": x32}, "prediction")
    if len(trees) == 1:
        out = b.op("Unsqueeze", [out, b.array(np.array([1], dtype=np.int64), "axis")])
    idx = b.op("Cast", [out], to=onnx.TensorProto.DOUBLE)
    cols = [b.column(idx, k) for k in range(len(trees))]
    # outcome 0 is "no prediction"
    return [b.nan_where(b.compare("eq", c, b.const(0.0)), c) for c in cols]


def _n_columns(trees: list[Tree]) -> int:
    return max([n.column for t in trees for n in t.nodes] + [0]) + 1


def _compile(tree: Tree, target: int) -> Any:
    """The tree as binary splits on indicator columns; leaves carry the outcome index.

    ONNX Runtime lays a tree out with every false child right after its parent, so a node may be
    shared (the default child of a missing-value route) only as a *true* child: the NaN route of
    each split is therefore its true branch (``x < -0.5`` never holds for 0 or 1), and every
    "no prediction" leaf is a fresh one.
    """
    from modelport.convert import _trees as T

    by_id = _by_id(tree)

    def null() -> Any:
        return T.Leaf(((target, float(NULL)),))

    def leaf(node: TNode) -> Any:
        return T.Leaf(((target, float(node.outcome if node.outcome > 0 else NULL)),))

    def make(node: TNode, built: list[Any]) -> Any:
        if not node.children:
            return leaf(node)
        chain = leaf(node) if tree.no_true_child == "returnLastPrediction" else null()
        compiled = dict(zip([id(c) for c in node.children], built))
        default = by_id.get(node.default) if node.default is not None else None
        for child, sub in zip(reversed(node.children), reversed(built)):
            if child.column == -1:
                chain = sub
                continue
            if child.column == -2:
                continue
            s = tree.strategy
            if s == "none":
                chain = T.Split(child.column, "BRANCH_GT", 0.5, sub, chain, missing_true=False)
                continue
            if s == "defaultChild":
                unknown = compiled.get(id(default)) if default is not None and default in node.children else None
                if unknown is None:
                    unknown = null()
            elif s == "lastPrediction":
                unknown = leaf(node)
            else:
                unknown = null()
            if unknown is sub:
                chain = T.Split(child.column, "BRANCH_GT", 0.5, sub, chain, missing_true=True)
            else:
                rest = T.Split(child.column, "BRANCH_LT", -0.5, unknown, chain, missing_true=True)
                chain = T.Split(child.column, "BRANCH_GT", 0.5, sub, rest, missing_true=False)
        return chain

    body = T.bottom_up(tree.root, lambda n: n.children, make)
    r = tree.root
    if r.column == -1:
        return body
    if r.column == -2:
        return null()
    return T.Split(r.column, "BRANCH_GT", 0.5, body, null(), missing_true=False)


def _inline(b: OnnxBackend, sub: onnx.ModelProto, inputs: dict[str, str], output: str) -> str:
    """Copy the nodes of ``sub`` into ``b``'s graph, its inputs bound to ``inputs``; the name of ``output``."""
    prefix = b.name("t") + "_"
    mapping = dict(inputs)

    def rn(name: str) -> str:
        if not name:
            return name
        if name not in mapping:
            mapping[name] = prefix + name
        return mapping[name]

    for init in sub.graph.initializer:
        t = onnx.TensorProto()
        t.CopyFrom(init)
        t.name = rn(init.name)
        b.initializers.append(t)
    for node in sub.graph.node:
        n = onnx.NodeProto()
        n.CopyFrom(node)
        n.name = prefix + node.name
        del n.input[:]
        n.input.extend(rn(i) for i in node.input)
        del n.output[:]
        n.output.extend(rn(o) for o in node.output)
        b.nodes.append(n)
    return rn(output)


# --------------------------------------------------------------------------- results


def outcome_tables(tree: Tree, kind: str, classes: tuple[str, ...] | None, numeric: bool,
                   float_context: bool) -> tuple[list[float], list[list[float]], list[float]]:
    """Per outcome: the score (regression), the class probabilities and the label code."""
    values: list[float] = [math.nan]
    probs: list[list[float]] = [[math.nan] * len(classes or ())]
    labels: list[float] = [math.nan]
    for node in tree.outcomes[1:]:
        assert node is not None
        if kind == "regression":
            if node.score is None:
                values.append(math.nan)
            else:
                v = float(node.score) if _is_number(node.score) else math.nan
                if not _is_number(node.score):
                    raise bad(node.el, f"a regression tree node's score must be a number; got {node.score!r}.")
                values.append(float(np.float32(v)) if float_context else v)
            continue
        assert classes is not None
        dist = node_distribution(node, classes, numeric)
        probs.append(dist)
        if node.score is not None:
            c = normalize_label(node.score, classes, numeric)
            labels.append(float(classes.index(c)) if c is not None else math.nan)
        elif any(p == p for p in dist):
            labels.append(float(int(np.nanargmax(dist))))
        else:
            labels.append(math.nan)
    return values, probs, labels


def node_distribution(node: TNode, classes: tuple[str, ...], numeric: bool) -> list[float]:
    sds = node.el.findall("ScoreDistribution")
    if not sds:
        out = [0.0] * len(classes)
        if node.score is None:
            return [math.nan] * len(classes)
        c = normalize_label(node.score, classes, numeric)
        if c is not None:
            out[classes.index(c)] = 1.0
        return out
    counts = []
    explicit = []
    for sd in sds:
        v = attr(sd, "value", required=True) or ""
        c = normalize_label(v, classes, numeric)
        rc = number(sd, "recordCount", 0.0)
        pr = number(sd, "probability")
        counts.append((c, float(rc or 0.0)))
        explicit.append((c, pr))
    out = [0.0] * len(classes)
    if all(p is not None for _, p in explicit):
        for c, p in explicit:
            if c is not None:
                out[classes.index(c)] += float(p or 0.0)
        return out
    total = sum(rc for _, rc in counts)
    for c, rc in counts:
        if c is not None:
            out[classes.index(c)] += rc / total if total > 0 else 0.0
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def tree_classes(trees: list[Tree], env: Env, target: Any) -> tuple[str, ...]:
    found: list[str] = []
    for t in trees:
        for n in t.outcomes[1:]:
            assert n is not None
            if n.score is not None:
                found.append(n.score)
            for sd in n.el.findall("ScoreDistribution"):
                found.append(sd.attrs.get("value", ""))
    return class_list(target, found)


def tree_model(el: Element, env: Env) -> Result:
    from modelport.convert.pmml.document import target_def

    tree = read_tree(el)
    function = attr(el, "functionName")
    matrix = indicators([tree], env)
    [idx] = route([tree], env, matrix)
    b = env.b
    if function == "regression":
        values, _, _ = outcome_tables(tree, "regression", None, True, env.b.float_context)
        return Result("regression", value=b.lookup(values, idx))
    if function != "classification":
        raise unsupported(el, f"a TreeModel with functionName {function!r} is not supported")
    target = target_def(el, env)
    classes = tree_classes([tree], env, target)
    numeric = target is not None and target.numeric
    _, probs, labels = outcome_tables(tree, "classification", classes, numeric, env.b.float_context)
    cols = [b.lookup([p[k] for p in probs], idx) for k in range(len(classes))]
    label = b.lookup(labels, idx)
    label = b.where(b.isnan(label), probs_label(b, cols), label) if cols else label
    return Result("classification", classes=classes, probs=cols, label=label,
                  class_values=tuple(_num(c) for c in classes) if numeric else ())


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
