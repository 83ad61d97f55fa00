"""SVMRegressor and SVMClassifier (ai.onnx.ml) with LINEAR, POLY, RBF and SIGMOID kernels, as
ONNX Runtime computes them: input cast to float32, one-vs-one votes for the label, and for
probabilities Platt scaling per pair then the iterative pairwise coupling
(:class:`~modelport.codegen.ir.Coupling`, which the SQL target cannot express)."""

from __future__ import annotations

from typing import Any

from modelport.codegen.ir import (
    ArgMax,
    Bin,
    Call,
    Cmp,
    Coupling,
    CouplingOut,
    Dot,
    Expr,
    Lowering,
    Num,
    Round32,
    Select,
    Switch,
    ToFloat,
    Val,
    const_expr,
    f32,
    from_list,
)
from modelport.codegen.ops import register
from modelport.codegen.ops._util import as_matrix_row
from modelport.codegen.ops.transforms import logistic, post_transform


def _inputs(ins: list[Val | None]) -> list[Expr]:
    assert ins[0] is not None
    return [Round32(e) if e.kind == "d" else (ToFloat(e) if e.kind == "i" else e) for e in as_matrix_row(ins[0])]


def _kernels(lw: Lowering, node: Any, a: dict[str, Any], x: list[Expr], n_sv: int) -> list[Expr]:
    kind = a.get("kernel_type", "LINEAR")
    params = [f32(v) for v in a.get("kernel_params", [])] + [0.0, 0.0, 0.0]
    gamma, coef0, degree = params[0], params[1], params[2]
    sv = [f32(v) for v in a.get("support_vectors", [])]
    f = len(x)
    if len(sv) != n_sv * f:
        raise lw.fail(node, f"has {len(sv)} support vector values for {n_sv} vectors of {f} features.")
    out: list[Expr] = []
    for j in range(n_sv):
        row = sv[j * f:(j + 1) * f]
        if kind == "RBF":
            diffs = [Bin("-", x[i], Num(row[i])) for i in range(f)]
            sq = Dot(tuple((1.0, Bin("*", d, d)) for d in diffs))
            out.append(Call("exp", (Bin("*", Num(-gamma), sq),)))
            continue
        dot = Dot(tuple((row[i], x[i]) for i in range(f)))
        if kind == "LINEAR":
            out.append(dot)
        elif kind == "POLY":
            base = Bin("+", Bin("*", Num(gamma), dot), Num(coef0))
            r: Expr = base
            for _ in range(int(degree) - 1):
                r = Bin("*", r, base)
            if int(degree) != degree or degree < 1:
                raise lw.fail(node, f"uses a polynomial kernel of degree {degree}; whole degrees >= 1 are supported.")
            out.append(r)
        elif kind == "SIGMOID":
            out.append(Call("tanh", (Bin("+", Bin("*", Num(gamma), dot), Num(coef0)),)))
        else:
            raise lw.fail(node, f"unknown kernel_type {kind!r}.")
    return out


@register("ai.onnx.ml", "SVMRegressor")
def svm_regressor(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    x = _inputs(ins)
    coef = [f32(v) for v in a.get("coefficients", [])]
    rho = f32(next(iter(a.get("rho", [0.0]))))
    n_sv = int(a.get("n_supports", 0))
    if n_sv > 0:
        k = _kernels(lw, node, a, x, n_sv)
        score: Expr = Dot(tuple((coef[j], k[j]) for j in range(n_sv)), rho)
    else:
        score = Dot(tuple((coef[j], x[j]) for j in range(len(x))), rho)
    if int(a.get("one_class", 0)):
        score = Select(Cmp(">", score, Num(0.0)), Num(1.0), Num(-1.0))
    post = a.get("post_transform", "NONE")
    return [from_list(post_transform([score], post) if post != "NONE" else [score])]


@register("ai.onnx.ml", "SVMClassifier")
def svm_classifier(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    x = _inputs(ins)
    labels: list[Any] = list(a.get("classlabels_ints", [])) or list(a.get("classlabels_strings", []))
    values = [const_expr(v) for v in labels]
    kind = values[0].kind
    per_class = [int(v) for v in a.get("vectors_per_class", [])]
    coef = [f32(v) for v in a.get("coefficients", [])]
    rho = [f32(v) for v in a.get("rho", [])]
    prob_a = [f32(v) for v in a.get("prob_a", [])]
    prob_b = [f32(v) for v in a.get("prob_b", [])]
    post = a.get("post_transform", "NONE")
    n = len(labels)
    n_sv = sum(per_class)
    if n_sv == 0:  # liblinear mode: one linear score per class
        f = len(x)
        scores = [Dot(tuple((coef[c * f + i], x[i]) for i in range(f)), rho[0]) for c in range(len(coef) // f)]
        idx = ArgMax(tuple(scores))
        return [from_list([Switch(idx, tuple(values), values[0], kind=kind)], shape=(), kind=kind),
                from_list(post_transform(scores, post))]
    k = _kernels(lw, node, a, x, n_sv)
    start = [sum(per_class[:i]) for i in range(n)]
    pair_scores: list[Expr] = []
    votes: list[list[Expr]] = [[] for _ in range(n)]
    idx_pair = 0
    for i in range(n - 1):
        for j in range(i + 1, n):
            terms = [(coef[(j - 1) * n_sv + start[i] + m], k[start[i] + m]) for m in range(per_class[i])]
            terms += [(coef[i * n_sv + start[j] + m], k[start[j] + m]) for m in range(per_class[j])]
            s: Expr = Round32(Dot(tuple(terms), rho[idx_pair], kind="d"))
            pair_scores.append(s)
            win = Cmp(">", s, Num(0.0))
            votes[i].append(Select(win, Num(1.0, kind="i"), Num(0.0, kind="i"), kind="i"))
            votes[j].append(Select(win, Num(0.0, kind="i"), Num(1.0, kind="i"), kind="i"))
            idx_pair += 1
    counts: list[Expr] = []
    for vs in votes:
        c: Expr = vs[0]
        for v in vs[1:]:
            c = Bin("+", c, v, kind="i")
        counts.append(c)
    winner = ArgMax(tuple(counts))
    label = Switch(winner, tuple(values), values[0], kind=kind)
    if prob_a:
        # Platt scaling per pair, clamped, then ONNX Runtime's multiclass_probability
        r: list[Expr] = []
        for q, s in enumerate(pair_scores):
            val = Bin("+", Bin("*", s, Num(prob_a[q])), Num(prob_b[q]))
            p: Expr = Bin("-", Num(1.0), logistic(val))
            p = Select(Cmp("<", p, Num(f32(1e-7))), Num(f32(1e-7)), p)
            hi = f32(1 - f32(1e-7))
            r.append(Select(Cmp(">", p, Num(hi)), Num(hi), p))
        coupling = Coupling(tuple(r), n)
        probs: list[Expr] = [CouplingOut(coupling, c) for c in range(n)]
        if post != "NONE":
            probs = post_transform(probs, post)
        return [from_list([label], shape=(), kind=kind), from_list(probs)]
    if n == 2:
        s = pair_scores[0]
        second = [Bin("-", Num(0.0), s), s] if post == "NONE" else [Bin("-", Num(1.0), logistic(s)), logistic(s)]
        return [from_list([label], shape=(), kind=kind), from_list(second)]
    return [from_list([label], shape=(), kind=kind), from_list(post_transform(pair_scores, post))]
