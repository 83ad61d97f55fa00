"""Tree ensembles: TreeEnsembleClassifier / TreeEnsembleRegressor (ai.onnx.ml v1, v3) and
TreeEnsemble (ai.onnx.ml v5), with ONNX Runtime's aggregation, base values, post transforms
and binary special cases.

Trees stay trees in the IR (:class:`~modelport.codegen.ir.Ensemble`); the scores around them
(base values, averaging, transforms, the label) are ordinary expressions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.codegen.ir import (
    ArgMax,
    Bin,
    Ensemble,
    Expr,
    Leaf,
    Lowering,
    Num,
    Round32,
    Split,
    Switch,
    TreeOut,
    Val,
    add,
    const_expr,
    exprs_of,
    f32,
    from_list,
)
from modelport.codegen.ops import register
from modelport.codegen.ops.transforms import post_transform, probit

_MODES_V5 = {0: "LEQ", 1: "LT", 2: "GTE", 3: "GT", 4: "EQ", 5: "NEQ", 6: "MEMBER"}
_AGG_V5 = {0: "AVERAGE", 1: "SUM", 2: "MIN", 3: "MAX"}
# The ONNX spec lists SOFTMAX as 1 and LOGISTIC as 2; ONNX Runtime (1.2x-1.32) casts the integer to
# its own enum, where 1 is LOGISTIC and 2 is SOFTMAX. We follow the runtime that bundles are run with.
_POST_V5 = {0: "NONE", 1: "LOGISTIC", 2: "SOFTMAX", 3: "SOFTMAX_ZERO", 4: "PROBIT"}


def _features(lw: Lowering, node: Any, x: Val | None) -> list[Expr]:
    if x is None:
        raise lw.fail(node, "has no input.")
    e = exprs_of(x)
    if e.ndim > 1:
        raise lw.fail(node, f"expects a [N, F] input; got per-row shape {e.shape}.")
    return list(e.reshape(-1))


def _pick(a: dict[str, Any], name: str) -> tuple[list[float], bool]:
    """An attribute given as a float list or as ``<name>_as_tensor`` (double)."""
    if f"{name}_as_tensor" in a:
        return [float(v) for v in np.asarray(a[f"{name}_as_tensor"]).reshape(-1)], True
    return [float(v) for v in a.get(name, [])], False


def _build_v3(lw: Lowering, node: Any, a: dict[str, Any], prefix: str, n_targets: int, feats: list[Expr], aggregate: str) -> Ensemble:
    tree_ids = list(a["nodes_treeids"])
    node_ids = list(a["nodes_nodeids"])
    modes = [m.replace("BRANCH_", "") for m in a["nodes_modes"]]
    values, double = _pick(a, "nodes_values")
    feat_ids = list(a.get("nodes_featureids", [0] * len(tree_ids)))
    true_ids = list(a.get("nodes_truenodeids", [0] * len(tree_ids)))
    false_ids = list(a.get("nodes_falsenodeids", [0] * len(tree_ids)))
    missing = list(a.get("nodes_missing_value_tracks_true", [0] * len(tree_ids))) or [0] * len(tree_ids)
    w_tree = list(a[f"{prefix}_treeids"])
    w_node = list(a[f"{prefix}_nodeids"])
    w_ids = list(a[f"{prefix}_ids"])
    weights, wdouble = _pick(a, f"{prefix}_weights")
    double = double or wdouble
    rnd = (lambda v: v) if double else f32
    index = {(t, n): i for i, (t, n) in enumerate(zip(tree_ids, node_ids))}
    leaf_w: dict[tuple[int, int], dict[int, float]] = {}
    for t, n, k, w in zip(w_tree, w_node, w_ids, weights):
        if not 0 <= k < n_targets:
            raise lw.fail(node, f"a leaf weight targets index {k}, outside 0..{n_targets - 1}.")
        d = leaf_w.setdefault((t, n), {})
        d[k] = rnd(d.get(k, 0.0) + rnd(w)) if k in d else rnd(w)
    roots: dict[int, int] = {}  # tree id -> its smallest node id, in order of appearance
    for t, n in zip(tree_ids, node_ids):
        if t not in roots or n < roots[t]:
            roots[t] = n

    def build(t: int, n: int, depth: int) -> Leaf | Split:
        i = index.get((t, n))
        if i is None:
            raise lw.fail(node, f"tree {t} refers to node {n}, which does not exist.")
        if depth > 512:
            raise lw.fail(node, f"tree {t} is deeper than 512 levels or has a cycle.")
        if modes[i] == "LEAF":
            return Leaf(leaf_w.get((t, n), {}))
        f = int(feat_ids[i])
        if not 0 <= f < len(feats):
            raise lw.fail(node, f"node {n} of tree {t} reads feature {f}, but the input has {len(feats)}.")
        if modes[i] not in ("LEQ", "LT", "GTE", "GT", "EQ", "NEQ"):
            raise lw.fail(node, f"unknown node mode {a['nodes_modes'][i]!r}.")
        return Split(
            feature=f,
            mode=modes[i],
            threshold=rnd(values[i]),
            missing_true=bool(missing[i]) if i < len(missing) else False,
            true=build(t, int(true_ids[i]), depth + 1),
            false=build(t, int(false_ids[i]), depth + 1),
        )

    trees = [build(t, n, 0) for t, n in roots.items()]
    return lw.add_ensemble(Ensemble(feats, trees, n_targets, aggregate, double))


def _build_v5(lw: Lowering, node: Any, a: dict[str, Any], feats: list[Expr]) -> Ensemble:
    splits = np.asarray(a["nodes_splits"])
    double = splits.dtype == np.float64
    rnd = (lambda v: v) if double else f32
    modes = [_MODES_V5[int(m)] for m in np.asarray(a["nodes_modes"]).reshape(-1)]
    feat_ids = list(a["nodes_featureids"])
    t_ids, t_leaf = list(a["nodes_truenodeids"]), list(a.get("nodes_trueleafs", []))
    f_ids, f_leaf = list(a["nodes_falsenodeids"]), list(a.get("nodes_falseleafs", []))
    missing = list(a.get("nodes_missing_value_tracks_true", [])) or [0] * len(modes)
    leaf_targets = list(a["leaf_targetids"])
    leaf_weights = [float(v) for v in np.asarray(a["leaf_weights"]).reshape(-1)]
    n_targets = int(a.get("n_targets", 1))
    members_flat = [float(v) for v in np.asarray(a.get("membership_values", np.array([]))).reshape(-1)]
    member_sets: list[tuple[float, ...]] = []
    cur: list[float] = []
    for v in members_flat:
        if v != v:
            member_sets.append(tuple(cur))
            cur = []
        else:
            cur.append(rnd(v))
    if cur:
        member_sets.append(tuple(cur))
    member_of: dict[int, tuple[float, ...]] = {}
    k = 0
    for i, m in enumerate(modes):
        if m == "MEMBER":
            member_of[i] = member_sets[k] if k < len(member_sets) else ()
            k += 1

    def leaf(j: int) -> Leaf:
        if not 0 <= leaf_targets[j] < n_targets:
            raise lw.fail(node, f"leaf {j} targets index {leaf_targets[j]}, outside 0..{n_targets - 1}.")
        return Leaf({int(leaf_targets[j]): rnd(leaf_weights[j])})

    def build(i: int, depth: int) -> Leaf | Split:
        if depth > 512:
            raise lw.fail(node, "a tree is deeper than 512 levels or has a cycle.")
        f = int(feat_ids[i])
        if not 0 <= f < len(feats):
            raise lw.fail(node, f"node {i} reads feature {f}, but the input has {len(feats)}.")
        tl = bool(t_leaf[i]) if i < len(t_leaf) else False
        fl = bool(f_leaf[i]) if i < len(f_leaf) else False
        return Split(
            feature=f,
            mode=modes[i],
            threshold=rnd(float(splits.reshape(-1)[i])),
            missing_true=bool(missing[i]),
            true=leaf(int(t_ids[i])) if tl else build(int(t_ids[i]), depth + 1),
            false=leaf(int(f_ids[i])) if fl else build(int(f_ids[i]), depth + 1),
            members=member_of.get(i, ()),
        )

    trees = [build(int(r), 0) for r in a["tree_roots"]]
    agg = _AGG_V5[int(a.get("aggregate_function", 1))]
    return lw.add_ensemble(Ensemble(feats, trees, n_targets, agg, bool(double)))


def _regression_scores(ens: Ensemble, base: list[float], post: str) -> list[Expr]:
    """ONNX Runtime's TreeAggregator{Sum,Average,Min,Max} finalisation."""
    n = ens.n_targets
    outs: list[Expr] = []
    n_trees = len(ens.trees)
    use_base = len(base) == n
    origin = base[0] if len(base) == 1 else 0.0
    nk = "d" if ens.double else "f"
    for k in range(n):
        s: Expr = TreeOut(ens, k)
        if ens.aggregate == "AVERAGE":
            s = Bin("/", s, Num(float(n_trees), kind=nk))
        b = base[k] if use_base else (origin if n == 1 else 0.0)
        s = add(s, Num(b if ens.double else f32(b), kind=nk))
        outs.append(s)
    # one target: ONNX Runtime applies PROBIT only (FinalizeScores1); several: every transform
    single = [probit(outs[0])] if post == "PROBIT" else outs
    outs = single if n == 1 else post_transform(outs, post)
    # the operator's output is float32 whatever the precision it accumulates in
    return [Round32(o) if o.kind == "d" else o for o in outs]


@register("ai.onnx.ml", "TreeEnsembleRegressor")
def tree_regressor(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    feats = _features(lw, node, ins[0])
    n = int(a.get("n_targets", 1))
    ens = _build_v3(lw, node, a, "target", n, feats, a.get("aggregate_function", "SUM"))
    base, _ = _pick(a, "base_values")
    scores = _regression_scores(ens, base, a.get("post_transform", "NONE"))
    return [from_list(scores)]


@register("ai.onnx.ml", "TreeEnsemble")
def tree_ensemble_v5(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    feats = _features(lw, node, ins[0])
    ens = _build_v5(lw, node, a, feats)
    scores = _regression_scores(ens, [], _POST_V5[int(a.get("post_transform", 0))])
    return [from_list(scores)]


@register("ai.onnx.ml", "TreeEnsembleClassifier")
def tree_classifier(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    feats = _features(lw, node, ins[0])
    labels: list[Any] = list(a.get("classlabels_int64s", [])) or list(a.get("classlabels_strings", []))
    if not labels:
        raise lw.fail(node, "has no class labels.")
    n = len(labels)
    ens = _build_v3(lw, node, a, "class", n, feats, "SUM")
    base, _ = _pick(a, "base_values")
    post = a.get("post_transform", "NONE")
    class_ids = set(a["class_ids"])
    weights, _ = _pick(a, "class_weights")
    all_positive = all(w >= 0 for w in weights)
    binary_case = n == 2 and len(class_ids) == 1
    has = [k in class_ids for k in range(n)]
    s: list[Expr] = [TreeOut(ens, k) if has[k] else Num(0.0) for k in range(n)]
    label_values = [const_expr(v) for v in labels]

    def label_of(index: Expr) -> Expr:
        return Switch(index, tuple(label_values), label_values[0], kind=label_values[0].kind)

    nk = "d" if ens.double else "f"

    def out32(xs: list[Expr]) -> list[Expr]:
        return [Round32(x) if x.kind == "d" else x for x in xs]

    if n > 2:
        for k, b in enumerate(base[:n]):
            s[k] = add(s[k], Num(b, kind=nk))
            has[k] = True
        candidates = [k for k in range(n) if has[k]]
        idx: Expr = ArgMax(tuple(s[k] for k in candidates))
        if candidates != list(range(n)):
            idx = Switch(idx, tuple(Num(float(k), kind="i") for k in candidates), Num(0.0, kind="i"), kind="i")
        return [from_list([label_of(idx)], shape=(), kind=label_values[0].kind), from_list(out32(post_transform(s, post)))]
    # two classes
    write = -1
    if len(base) == 2:
        if has[1]:
            s1 = add(Num(base[1], kind=nk), s[0])
            s = [Bin("-", Num(0.0), s1), s1]
        else:
            s = [add(s[0], Num(base[0], kind=nk)), s[1]]
            s[1] = add(s[1], Num(base[1], kind=nk))
        single = False
    elif len(base) == 1:
        s[0] = add(s[0], Num(base[0], kind=nk))
        single = not has[1]
    else:
        write = 3
        single = not has[1]
    pos = s[1] if (not single and has[1]) else (s[0] if has[0] else Num(0.0))
    from modelport.codegen.ir import Cmp, Select

    one, zero = Num(1.0, kind="i"), Num(0.0, kind="i")
    if binary_case:
        if all_positive:
            win = Cmp(">", pos, Num(0.5))
            write_pos, write_neg = 0, 1
        else:
            win = Cmp(">", pos, Num(0.0))
            write_pos, write_neg = 2, 3
    else:
        win = Cmp(">", pos, Num(0.0))
        write_pos = write_neg = write
    label_idx: Expr = Select(win, one, zero, kind="i")
    if not single:
        return [from_list([label_of(label_idx)], shape=(), kind=label_values[0].kind), from_list(out32(post_transform(s, post)))]
    # one score: the second column is derived as ORT's write_scores does
    x = s[0]
    if post == "PROBIT":
        raise lw.fail(node, "a two-class ensemble with one score column and PROBIT has no defined second column.")

    def second(w: int) -> list[Expr]:
        from modelport.codegen.ops.transforms import logistic

        if w in (0, 1):
            return [Bin("-", Num(1.0), x), x]
        if post == "LOGISTIC":
            return [logistic(Bin("-", Num(0.0), x)), logistic(x)]
        return [Bin("-", Num(0.0), x), x] if w == 2 else [x, Bin("-", Num(0.0), x)]

    if write_pos == -1:
        raise lw.fail(node, "a two-class ensemble with one score column and no binary layout is ambiguous.")
    pos_scores, neg_scores = second(write_pos), second(write_neg)
    scores = [Select(win, p, q) if p is not q else p for p, q in zip(pos_scores, neg_scores)]
    return [from_list([label_of(label_idx)], shape=(), kind=label_values[0].kind), from_list(out32(scores))]
