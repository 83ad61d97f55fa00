"""The model families besides trees and segmentations: RegressionModel, GeneralRegressionModel,
NeuralNetwork, NaiveBayesModel, Scorecard (with reason codes), ClusteringModel (centre-based) and
SupportVectorMachineModel, each as PMML 4.4 defines its scoring, on a :class:`~.backend.Backend`.

A record with a missing value where a model has no rule for it gets no prediction (NaN), as a PMML
evaluator returns none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelport.convert.pmml.reader import Element
from modelport.convert.pmml.semantics import (
    Env,
    Result,
    Val,
    attr,
    bad,
    class_list,
    equals,
    expression,
    known_children,
    normalize_label,
    number,
    parse_array,
    parse_number,
    predicate,
    predicate_of,
    probs_label,
    unsupported,
)

_COMMON = ("MiningSchema", "Output", "ModelStats", "ModelExplanation", "Targets", "LocalTransformations",
           "ModelVerification")


def _target(el: Element, env: Env) -> Any:
    from modelport.convert.pmml.document import target_def

    return target_def(el, env)


def _numeric_classes(classes: Sequence[str], target: Any) -> tuple[float | None, ...]:
    if target is None or not target.numeric:
        return ()
    out: list[float | None] = []
    for c in classes:
        try:
            out.append(float(c))
        except ValueError:
            out.append(None)
    return tuple(out)


def _classification(b: Any, classes: tuple[str, ...], probs: list[Any], target: Any, label: Any = None) -> Result:
    lab = probs_label(b, probs) if label is None else label
    return Result("classification", classes=classes, probs=probs, label=lab,
                  class_values=_numeric_classes(classes, target))


def _any_missing(b: Any, cols: Sequence[Any]) -> Any:
    m = b.false()
    for c in cols:
        m = b.logic("or", m, b.isnan(c))
    return m


def _numeric(env: Env, name: str, el: Element) -> Any:
    v = env.get(name, el)
    if v.domain is not None:
        raise bad(el, f"the field {name!r} holds text; a number is needed here.")
    return v.data


def _inverse_link(b: Any, fn: str, y: Any, el: Element, power: float = 1.0) -> Any:
    """μ from the linear predictor (normalizationMethod / linkFunction)."""
    if fn in ("none", "identity"):
        return y
    if fn in ("logit", "softmax_binary"):
        return b.binary("/", b.const(1.0), b.binary("+", b.const(1.0), b.unary("exp", b.unary("neg", y))))
    if fn == "exp" or fn == "log":
        return b.unary("exp", y)
    if fn == "probit":
        return b.mul(b.const(0.5), b.binary("+", b.const(1.0), b.unary("erf", b.mul(y, b.const(1 / math.sqrt(2))))))
    if fn == "cloglog":
        return b.binary("-", b.const(1.0), b.unary("exp", b.unary("neg", b.unary("exp", y))))
    if fn == "loglog":
        return b.unary("exp", b.unary("neg", b.unary("exp", b.unary("neg", y))))
    if fn == "cauchit":
        return b.binary("+", b.const(0.5), b.binary("/", b.unary("atan", y), b.const(math.pi)))
    if fn == "power":
        if power == 0:
            return b.unary("exp", y)
        return b.binary("pow", y, b.const(1.0 / power))
    if fn == "logc":
        return b.binary("-", b.const(1.0), b.unary("exp", y))
    raise unsupported(el, f"the link / normalization {fn!r} is not supported")


# --------------------------------------------------------------------------- RegressionModel


def _table(t: Element, env: Env) -> Any:
    b = env.b
    known_children(t, ("NumericPredictor", "CategoricalPredictor", "PredictorTerm"))
    y = b.full(float(number(t, "intercept", 0.0) or 0.0))
    inputs = []
    for p in t.findall("NumericPredictor"):
        x = _numeric(env, attr(p, "name", required=True) or "", p)
        inputs.append(x)
        e = number(p, "exponent", 1.0)
        if e != 1.0:
            x = b.binary("pow", x, b.const(float(e or 0.0)))
        y = b.arith("+", y, b.arith("*", x, b.const(float(number(p, "coefficient", required=True) or 0.0))))
    for p in t.findall("CategoricalPredictor"):
        name = attr(p, "name", required=True) or ""
        v = env.get(name, p)
        # a missing categorical value matches no CategoricalPredictor (it adds nothing), as in JPMML
        hit = equals(b, v, attr(p, "value", required=True) or "", p, env.fdef(name))
        coef = float(number(p, "coefficient", required=True) or 0.0)
        y = b.arith("+", y, b.where(hit, b.const(coef), b.const(0.0)))
    for p in t.findall("PredictorTerm"):
        known_children(p, ("FieldRef",))
        term = b.full(float(number(p, "coefficient", required=True) or 0.0))
        for fr in p.findall("FieldRef"):
            x = _numeric(env, attr(fr, "field", required=True) or "", fr)
            inputs.append(x)
            term = b.arith("*", term, x)
        y = b.arith("+", y, term)
    return b.nan_where(_any_missing(b, inputs), y)


def regression_model(el: Element, env: Env) -> Result:
    b = env.b
    known_children(el, (*_COMMON, "RegressionTable"))
    tables = el.findall("RegressionTable")
    if not tables:
        raise bad(el, "the RegressionModel has no RegressionTable.")
    norm = attr(el, "normalizationMethod", "none") or "none"
    function = attr(el, "functionName")
    if function == "regression":
        if len(tables) != 1:
            raise bad(el, "a regression RegressionModel has one RegressionTable.")
        y = _table(tables[0], env)
        if norm in ("softmax", "simplemax"):
            raise bad(el, f"normalizationMethod {norm} applies to classification.")
        return Result("regression", value=_inverse_link(b, norm, y, el))
    target = _target(el, env)
    cats = [attr(t, "targetCategory", required=True) or "" for t in tables]
    ys = [_table(t, env) for t in tables]
    classes = class_list(target, cats)
    numeric = target is not None and target.numeric
    order = [normalize_label(c, classes, numeric) for c in cats]
    if norm == "softmax":
        m = ys[0]
        for y in ys[1:]:
            m = b.where(b.compare("gt", y, m), y, m)
        es = [b.unary("exp", b.binary("-", y, m)) for y in ys]
        total = b.sum(es)
        ps = [b.binary("/", e, total) for e in es]
    elif norm == "simplemax":
        total = b.sum(ys)
        ps = [b.binary("/", y, total) for y in ys]
    elif len(ys) == 2 and norm in ("none", "logit", "probit", "cloglog", "loglog", "cauchit"):
        p0 = _inverse_link(b, norm, ys[0], el)
        ps = [p0, b.binary("-", b.const(1.0), p0)]
    elif norm == "none":
        ps = ys
    elif norm in ("logit", "probit", "cloglog", "loglog", "cauchit"):
        if target is not None and target.optype == "ordinal":
            # cumulative: P(Y <= j) = F(y_j); the last category takes the rest
            cum = [_inverse_link(b, norm, y, el) for y in ys[:-1]]
            ps = []
            prev = b.const(0.0)
            for c in cum:
                ps.append(b.binary("-", c, prev))
                prev = c
            ps.append(b.binary("-", b.const(1.0), prev))
        else:
            ps = [_inverse_link(b, norm, y, el) for y in ys[:-1]]
            ps.append(b.binary("-", b.const(1.0), b.sum(ps)))
    else:
        raise unsupported(el, f"normalizationMethod {norm!r} for classification is not supported")
    nan = b.isnan(ps[0])
    for p in ps[1:]:
        nan = b.logic("or", nan, b.isnan(p))
    by = {c: p for c, p in zip(order, ps)}
    zero = b.where(nan, b.nan(), b.full(0.0))
    probs = [b.nan_where(nan, by[c]) if c in by else zero for c in classes]
    return _classification(b, classes, probs, target)


# --------------------------------------------------------------------------- GeneralRegressionModel


def general_regression_model(el: Element, env: Env) -> Result:
    b = env.b
    known_children(el, (*_COMMON, "ParameterList", "FactorList", "CovariateList", "PPMatrix", "PCovMatrix",
                        "ParamMatrix", "EventValues", "BaseCumHazardTables"))
    model_type = attr(el, "modelType", required=True) or ""
    if model_type not in ("regression", "generalLinear", "generalizedLinear", "multinomialLogistic",
                          "ordinalMultinomial"):
        raise unsupported(el, f"GeneralRegressionModel modelType {model_type!r} is not supported")
    pl = el.find("ParameterList")
    params = [attr(p, "name", required=True) or "" for p in (pl.findall("Parameter") if pl is not None else [])]
    factors = {attr(p, "name", required=True) or "": p for p in (el.find("FactorList").findall("Predictor")  # type: ignore[union-attr]
                                                               if el.find("FactorList") is not None else [])}
    covariates = {attr(p, "name", required=True) or "" for p in (el.find("CovariateList").findall("Predictor")  # type: ignore[union-attr]
                                                                if el.find("CovariateList") is not None else [])}
    for _name, p in factors.items():
        if p.find("Categories") is not None or p.find("Matrix") is not None:
            raise unsupported(p, "factor contrast matrices (Categories / Matrix) are not supported")
    cells: dict[str, list[Element]] = {}
    ppm = el.find("PPMatrix")
    for c in ppm.findall("PPCell") if ppm is not None else []:
        cells.setdefault(attr(c, "parameterName", required=True) or "", []).append(c)
    inputs = []
    x: dict[str, Any] = {}
    for pname in params:
        term = b.full(1.0)
        for c in cells.get(pname, []):
            fname = attr(c, "predictorName", required=True) or ""
            value = attr(c, "value", required=True) or ""
            if fname in factors:
                v = env.get(fname, c)
                inputs.append(v.data)
                term = b.mul(term, b.to_float(equals(b, v, value, c, env.fdef(fname))))
            elif fname in covariates:
                v = _numeric(env, fname, c)
                inputs.append(v)
                e = parse_number(value, c)
                term = b.mul(term, v if e == 1.0 else b.binary("pow", v, b.const(e)))
            else:
                raise bad(c, f"the PPCell names {fname!r}, which is neither a factor nor a covariate.")
        x[pname] = term
    pm = el.find("ParamMatrix")
    if pm is None:
        raise bad(el, "the GeneralRegressionModel has no ParamMatrix.")
    betas: dict[str | None, dict[str, float]] = {}
    for c in pm.findall("PCell"):
        cat = attr(c, "targetCategory")
        betas.setdefault(cat, {})[attr(c, "parameterName", required=True) or ""] = float(number(c, "beta", required=True) or 0.0)
    offset = number(el, "offsetValue", 0.0) or 0.0
    off_var = attr(el, "offsetVariable")
    missing = _any_missing(b, inputs)

    def eta(cat: str | None) -> Any:
        y = b.full(float(offset))
        if off_var is not None:
            y = b.binary("+", y, _numeric(env, off_var, el))
        for pname, beta in betas.get(cat, {}).items():
            if pname not in x:
                raise bad(pm, f"the PCell names the parameter {pname!r}, which the ParameterList does not list.")
            y = b.binary("+", y, b.mul(x[pname], b.const(beta)))
        return b.nan_where(missing, y)

    function = attr(el, "functionName")
    link = attr(el, "linkFunction")
    power = float(number(el, "linkParameter", 1.0) or 1.0)
    if function == "regression":
        y = eta(None)
        if model_type == "generalizedLinear":
            if link is None:
                raise bad(el, "a generalizedLinear model needs a linkFunction.")
            y = _inverse_link(b, link, y, el, power)
        return Result("regression", value=y)
    target = _target(el, env)
    ref = attr(el, "targetReferenceCategory")
    cats = [c for c in betas if c is not None]
    classes = class_list(target, [*cats, *([ref] if ref else [])])
    numeric = target is not None and target.numeric
    if model_type == "multinomialLogistic":
        etas = {normalize_label(c, classes, numeric): eta(c) for c in cats}
        zero = b.nan_where(missing, b.full(0.0))
        ys = [etas.get(c, zero) for c in classes]
        m = ys[0]
        for y in ys[1:]:
            m = b.where(b.compare("gt", y, m), y, m)
        es = [b.unary("exp", b.binary("-", y, m)) for y in ys]
        total = b.sum(es)
        return _classification(b, classes, [b.binary("/", e, total) for e in es], target)
    if model_type == "generalizedLinear" and len(classes) == 2:
        cat = cats[0] if cats else None
        p = _inverse_link(b, link or "logit", eta(cat), el, power)
        first = normalize_label(cat, classes, numeric) if cat is not None else classes[0]
        probs = [p if c == first else b.binary("-", b.const(1.0), p) for c in classes]
        return _classification(b, classes, probs, target)
    if model_type == "ordinalMultinomial":
        link_ = attr(el, "cumulativeLink", "logit") or "logit"
        # P(Y <= j) = F(intercept_j + eta): the intercepts are the per-category PCells
        base = eta(None)
        cum = []
        for cls_ in classes[:-1]:
            cum.append(_inverse_link(b, link_, b.binary("+", base, eta(cls_) if cls_ in betas else b.const(0.0)), el))
        ps = []
        prev = b.const(0.0)
        for c in cum:
            ps.append(b.binary("-", c, prev))
            prev = c
        ps.append(b.binary("-", b.const(1.0), prev))
        return _classification(b, classes, ps, target)
    raise unsupported(el, f"a {model_type} GeneralRegressionModel for classification is not supported")


# --------------------------------------------------------------------------- NeuralNetwork

_ACT = ("threshold", "logistic", "tanh", "identity", "exponential", "reciprocal", "square", "Gauss", "sine",
        "cosine", "Elliott", "arctan", "rectifier")


def _activate(b: Any, fn: str, z: Any, el: Element, threshold: float) -> Any:
    if fn == "logistic":
        return b.binary("/", b.const(1.0), b.binary("+", b.const(1.0), b.unary("exp", b.unary("neg", z))))
    if fn == "tanh":
        return b.unary("tanh", z)
    if fn == "identity":
        return z
    if fn == "rectifier":
        return b.where(b.compare("gt", z, b.const(0.0)), z, b.const(0.0))
    if fn == "exponential":
        return b.unary("exp", z)
    if fn == "reciprocal":
        return b.binary("/", b.const(1.0), z)
    if fn == "square":
        return b.mul(z, z)
    if fn == "Gauss":
        return b.unary("exp", b.unary("neg", b.mul(z, z)))
    if fn == "sine":
        return b.unary("sin", z)
    if fn == "cosine":
        return b.unary("cos", z)
    if fn == "Elliott":
        return b.binary("/", z, b.binary("+", b.const(1.0), b.unary("abs", z)))
    if fn == "arctan":
        return b.mul(b.const(2.0 / math.pi), b.unary("atan", z))
    if fn == "threshold":
        return b.to_float(b.compare("gt", z, b.const(threshold)))
    raise unsupported(el, f"the activation function {fn!r} is not supported")


def neural_network(el: Element, env: Env) -> Result:
    b = env.b
    known_children(el, (*_COMMON, "NeuralInputs", "NeuralLayer", "NeuralOutputs"))
    default_act = attr(el, "activationFunction", required=True) or ""
    default_norm = attr(el, "normalizationMethod", "none") or "none"
    default_thr = float(number(el, "threshold", 0.0) or 0.0)
    neurons: dict[str, Any] = {}
    ni = el.find("NeuralInputs")
    if ni is None:
        raise bad(el, "the NeuralNetwork has no NeuralInputs.")
    inputs = []
    for inp in ni.findall("NeuralInput"):
        df = inp.find("DerivedField")
        if df is None:
            raise bad(inp, "a NeuralInput needs a DerivedField.")
        exprs = [c for c in df.children if c.tag != "Extension"]
        v = expression(exprs[0], env)
        if v.domain is not None:
            raise bad(inp, "a NeuralInput must be numeric.")
        inputs.append(v.data)
        neurons[attr(inp, "id", required=True) or ""] = v.data
    for layer in el.findall("NeuralLayer"):
        act = attr(layer, "activationFunction", default_act) or default_act
        if act == "radialBasis":
            raise unsupported(layer, "radialBasis activation is not supported")
        thr = float(number(layer, "threshold", default_thr) or 0.0)
        norm = attr(layer, "normalizationMethod", default_norm) or "none"
        outs: list[tuple[str, Any]] = []
        for n in layer.findall("Neuron"):
            z = b.full(float(number(n, "bias", 0.0) or 0.0))
            for con in n.findall("Con"):
                src = attr(con, "from", required=True) or ""
                if src not in neurons:
                    raise bad(con, f"the connection comes from neuron {src!r}, which is not defined before it.")
                z = b.binary("+", z, b.mul(neurons[src], b.const(float(number(con, "weight", required=True) or 0.0))))
            outs.append((attr(n, "id", required=True) or "", z))
        if norm == "softmax":
            m = outs[0][1]
            for _, z in outs[1:]:
                m = b.where(b.compare("gt", z, m), z, m)
            es = [b.unary("exp", b.binary("-", z, m)) for _, z in outs]
            total = b.sum(es)
            vals = [b.binary("/", e, total) for e in es]
        else:
            vals = [_activate(b, act, z, layer, thr) for _, z in outs]
            if norm == "simplemax":
                total = b.sum(vals)
                vals = [b.binary("/", v, total) for v in vals]
            elif norm != "none":
                raise unsupported(layer, f"layer normalizationMethod {norm!r} is not supported")
        for (nid, _), v in zip(outs, vals):
            neurons[nid] = v
    no = el.find("NeuralOutputs")
    if no is None:
        raise bad(el, "the NeuralNetwork has no NeuralOutputs.")
    missing = _any_missing(b, inputs)
    function = attr(el, "functionName")
    target = _target(el, env)
    if function == "classification":
        found: list[str] = []
        by: dict[str, Any] = {}
        for o in no.findall("NeuralOutput"):
            df = o.find("DerivedField")
            nd = df.find("NormDiscrete") if df is not None else None
            if nd is None:
                raise unsupported(o, "a classification NeuralOutput without NormDiscrete is not supported")
            value = attr(nd, "value", required=True) or ""
            found.append(value)
            by[value] = neurons[attr(o, "outputNeuron", required=True) or ""]
        classes = class_list(target, found)
        numeric = target is not None and target.numeric
        zero = b.full(0.0)
        probs = []
        for c in classes:
            src = next((v for k, v in by.items() if normalize_label(k, [c], numeric) == c), zero)
            probs.append(b.nan_where(missing, src))
        return _classification(b, classes, probs, target)
    outs_ = no.findall("NeuralOutput")
    if len(outs_) != 1:
        raise unsupported(el, "a regression NeuralNetwork with more than one output is not supported")
    o = outs_[0]
    y = neurons[attr(o, "outputNeuron", required=True) or ""]
    df = o.find("DerivedField")
    expr = next(c for c in df.children if c.tag != "Extension") if df is not None else None
    if expr is not None and expr.tag == "NormContinuous":
        pts = [(float(number(n, "orig", required=True) or 0.0), float(number(n, "norm", required=True) or 0.0))
               for n in expr.findall("LinearNorm")]
        # the neuron holds the normalised value: map it back (the inverse of the piecewise line)
        inv = sorted((nv, ov) for ov, nv in pts)
        out = None
        for i in range(len(inv) - 1):
            (n1, o1), (n2, o2) = inv[i], inv[i + 1]
            seg = b.binary("+", b.const(o1), b.mul(b.binary("-", y, b.const(n1)), b.const((o2 - o1) / (n2 - n1))))
            out = seg if out is None else b.where(b.compare("le", y, b.const(n1)), out, seg)
        y = out if out is not None else y
    elif expr is not None and expr.tag != "FieldRef":
        raise unsupported(expr, f"a NeuralOutput with <{expr.tag}> is not supported")
    return Result("regression", value=b.nan_where(missing, y))


# --------------------------------------------------------------------------- NaiveBayesModel


def naive_bayes(el: Element, env: Env) -> Result:
    b = env.b
    known_children(el, (*_COMMON, "BayesInputs", "BayesOutput"))
    threshold = float(number(el, "threshold", required=True) or 0.0)
    out = el.find("BayesOutput")
    if out is None:
        raise bad(el, "the NaiveBayesModel has no BayesOutput.")
    tvc = out.find("TargetValueCounts")
    if tvc is None:
        raise bad(out, "the BayesOutput needs TargetValueCounts.")
    target = _target(el, env)
    priors = [(attr(t, "value", required=True) or "", float(number(t, "count", required=True) or 0.0))
              for t in tvc.findall("TargetValueCount")]
    classes = class_list(target, [v for v, _ in priors])
    numeric = target is not None and target.numeric
    prior = {normalize_label(v, classes, numeric): c for v, c in priors}
    # log-likelihoods per class, accumulated in logs for range (the normalised result is the same)
    logs = [b.full(math.log(prior[c]) if prior.get(c, 0.0) > 0 else -math.inf) for c in classes]
    bis = el.find("BayesInputs")
    for bi in bis.findall("BayesInput") if bis is not None else []:
        known_children(bi, ("PairCounts", "TargetValueStats", "DerivedField"))
        name = attr(bi, "fieldName", required=True) or ""
        df = bi.find("DerivedField")
        if df is not None:
            exprs = [c for c in df.children if c.tag not in ("Extension", "Value")]
            v = expression(exprs[0], env, attr(df, "dataType"))
        else:
            v = env.get(name, bi)
        present = b.logic("not", b.isnan(v.data))
        stats = bi.find("TargetValueStats")
        if stats is not None:
            for s in stats.findall("TargetValueStat"):
                c = normalize_label(attr(s, "value", required=True) or "", classes, numeric)
                if c is None:
                    continue
                g = s.find("GaussianDistribution")
                if g is None:
                    raise unsupported(s, "only GaussianDistribution TargetValueStats are supported")
                mean = float(number(g, "mean", required=True) or 0.0)
                var = float(number(g, "variance", required=True) or 0.0)
                d = b.binary("-", v.data, b.const(mean))
                dens = b.binary("/", b.unary("exp", b.binary("/", b.unary("neg", b.mul(d, d)), b.const(2 * var))),
                                b.const(math.sqrt(2 * math.pi * var)))
                dens = b.where(b.compare("lt", dens, b.const(threshold)), b.const(threshold), dens)
                k = classes.index(c)
                logs[k] = b.where(present, b.binary("+", logs[k], b.unary("ln", dens)), logs[k])
            continue
        counts: dict[str, dict[str, float]] = {}
        totals = {c: 0.0 for c in classes}
        for pc in bi.findall("PairCounts"):
            value = attr(pc, "value", required=True) or ""
            t = pc.find("TargetValueCounts")
            for tv in t.findall("TargetValueCount") if t is not None else []:
                c = normalize_label(attr(tv, "value", required=True) or "", classes, numeric)
                if c is None:
                    continue
                n = float(number(tv, "count", required=True) or 0.0)
                counts.setdefault(value, {})[c] = n
                totals[c] += n
        fdef = env.fdef(name)
        for k, c in enumerate(classes):
            lik = b.full(threshold)
            for value, per in counts.items():
                n = per.get(c, 0.0)
                p = n / totals[c] if totals[c] > 0 else 0.0
                lik = b.where(equals(b, v, value, bi, fdef), b.const(p if p > 0 else threshold), lik)
            logs[k] = b.where(present, b.binary("+", logs[k], b.unary("ln", lik)), logs[k])
    m = logs[0]
    for lg in logs[1:]:
        m = b.where(b.compare("gt", lg, m), lg, m)
    es = [b.unary("exp", b.binary("-", lg, m)) for lg in logs]
    total = b.sum(es)
    return _classification(b, classes, [b.binary("/", e, total) for e in es], target)


# --------------------------------------------------------------------------- Scorecard


def scorecard(el: Element, env: Env) -> Result:
    b = env.b
    known_children(el, (*_COMMON, "Characteristics"))
    use_codes = attr(el, "useReasonCodes", "true") == "true"
    algorithm = attr(el, "reasonCodeAlgorithm", "pointsBelow")
    if algorithm not in ("pointsBelow", "pointsAbove"):
        raise bad(el, f"reasonCodeAlgorithm must be pointsBelow or pointsAbove; got {algorithm!r}.")
    baseline_method = attr(el, "baselineMethod", "other")
    model_baseline = number(el, "baselineScore")
    score = b.full(float(number(el, "initialScore", 0.0) or 0.0))
    chars = el.find("Characteristics")
    if chars is None:
        raise bad(el, "the Scorecard has no Characteristics.")
    diffs: dict[str, Any] = {}
    fired: dict[str, Any] = {}
    unmatched = b.false()
    for ch in chars.findall("Characteristic"):
        known_children(ch, ("Attribute",))
        ch_code = attr(ch, "reasonCode")
        baseline = number(ch, "baselineScore", model_baseline)
        partial = b.nan()
        code_of = b.nan()  # the matched attribute's reason code, as an index in the code list
        taken = b.false()
        attr_codes: list[str] = []
        for a in ch.findall("Attribute"):
            known_children(a, ("ComplexPartialScore", "True", "False", "SimplePredicate", "SimpleSetPredicate",
                               "CompoundPredicate"))
            t, _ = predicate(predicate_of(a), env)
            here = b.logic("and", t, b.logic("not", taken))
            cps = a.find("ComplexPartialScore")
            if cps is not None:
                exprs = [c for c in cps.children if c.tag != "Extension"]
                ps = expression(exprs[0], env).data
            else:
                if "partialScore" not in a.attrs:
                    raise bad(a, "an Attribute needs a partialScore or a ComplexPartialScore.")
                ps = b.const(float(number(a, "partialScore") or 0.0))
            partial = b.where(here, ps, partial)
            code = attr(a, "reasonCode", ch_code)
            if use_codes and code is None:
                raise bad(a, "reason codes are used but neither the Attribute nor its Characteristic has a reasonCode.")
            if code is not None:
                if code not in attr_codes:
                    attr_codes.append(code)
                code_of = b.where(here, b.const(float(attr_codes.index(code))), code_of)
            taken = b.logic("or", taken, t)
        unmatched = b.logic("or", unmatched, b.logic("not", taken))
        score = b.binary("+", score, partial)
        if not use_codes:
            continue
        if baseline is None:
            if baseline_method in ("max", "min", "mean", "neutral"):
                raise unsupported(ch, f"baselineMethod {baseline_method!r} without baselineScore values is not supported")
            raise bad(ch, "reason codes are used but the Characteristic has no baselineScore (nor the Scorecard).")
        diff = b.binary("-", b.const(float(baseline)), partial) if algorithm == "pointsBelow" else \
            b.binary("-", partial, b.const(float(baseline)))
        for i, code in enumerate(attr_codes):
            hit = b.compare("eq", code_of, b.const(float(i)))
            mine = b.where(hit, diff, b.const(0.0))
            diffs[code] = mine if code not in diffs else b.binary("+", diffs[code], mine)
            fired[code] = hit if code not in fired else b.logic("or", fired[code], hit)
    score = b.nan_where(unmatched, score)
    result = Result("regression", value=score)
    if use_codes and diffs:
        # a code no matched Attribute gave is no reason (NaN: never ranked, as in JPMML)
        ranked = [b.nan_where(b.logic("not", fired[c]), diffs[c]) for c in diffs]
        result.extras["reason_codes"] = Val(b.stack(ranked), tuple(diffs))
    return result


# --------------------------------------------------------------------------- ClusteringModel


def clustering(el: Element, env: Env) -> Result:
    b = env.b
    known_children(el, (*_COMMON, "ComparisonMeasure", "ClusteringField", "MissingValueWeights", "Cluster"))
    if attr(el, "modelClass", required=True) != "centerBased":
        raise unsupported(el, "only centerBased ClusteringModels are supported")
    cm = el.find("ComparisonMeasure")
    if cm is None:
        raise bad(el, "the ClusteringModel has no ComparisonMeasure.")
    kind = attr(cm, "kind", required=True)
    if kind != "distance":
        raise unsupported(cm, "similarity measures are not supported; modelport converts distance measures")
    measure = next((c for c in cm.children if c.tag != "Extension"), None)
    if measure is None or measure.tag not in ("euclidean", "squaredEuclidean", "cityBlock", "chebychev", "minkowski"):
        raise unsupported(measure or cm, "this comparison measure is not supported")
    p_exp = float(number(measure, "p-parameter", 2.0) or 2.0)
    default_cf = attr(cm, "compareFunction", "absDiff")
    fields = []
    for cf in el.findall("ClusteringField"):
        if attr(cf, "isCenterField", "true") == "false":
            continue
        fn = attr(cf, "compareFunction", default_cf)
        if fn != "absDiff":
            raise unsupported(cf, f"compareFunction {fn!r} is not supported; modelport converts absDiff")
        fields.append((attr(cf, "field", required=True) or "", float(number(cf, "fieldWeight", 1.0) or 1.0), cf))
    if el.find("MissingValueWeights") is not None:
        raise unsupported(el.find("MissingValueWeights"), "MissingValueWeights are not supported")  # type: ignore[arg-type]
    xs = [(_numeric(env, f, cf), w) for f, w, cf in fields]
    clusters = el.findall("Cluster")
    if not clusters:
        raise bad(el, "the ClusteringModel has no Cluster.")
    names = []
    dists = []
    present_w = b.sum([b.where(b.isnan(x), b.const(0.0), b.const(w)) for x, w in xs])
    total_w = sum(w for _, w in xs)
    for i, c in enumerate(clusters):
        arr = c.find("Array")
        if arr is None:
            raise bad(c, "a Cluster needs an Array of its centre.")
        center = [parse_number(t, arr) for t in parse_array(arr)]
        if len(center) != len(xs):
            raise bad(c, f"the cluster centre has {len(center)} values for {len(xs)} fields.")
        names.append(attr(c, "id") or str(i + 1))
        acc = b.full(0.0)
        for (x, w), y in zip(xs, center):
            d = b.unary("abs", b.binary("-", x, b.const(y)))
            if measure.tag in ("euclidean", "squaredEuclidean"):
                term = b.mul(b.const(w), b.mul(d, d))
            elif measure.tag == "cityBlock":
                term = b.mul(b.const(w), d)
            elif measure.tag == "minkowski":
                term = b.mul(b.const(w), b.binary("pow", d, b.const(p_exp)))
            else:
                term = b.mul(b.const(w), d)
            term = b.where(b.isnan(x), b.const(0.0), term)
            acc = b.where(b.compare("gt", term, acc), term, acc) if measure.tag == "chebychev" else \
                b.binary("+", acc, term)
        # missing fields: the sum is scaled up by the share of weight that is present
        acc = b.mul(acc, b.binary("/", b.const(total_w), present_w)) if measure.tag != "chebychev" else acc
        if measure.tag == "euclidean":
            acc = b.unary("sqrt", acc)
        elif measure.tag == "minkowski":
            acc = b.binary("pow", acc, b.const(1.0 / p_exp))
        dists.append(b.nan_where(b.compare("eq", present_w, b.const(0.0)), acc))
    best = dists[0]
    code = b.const(0.0)
    for k, d in enumerate(dists[1:], start=1):
        better = b.compare("lt", d, best)
        code = b.where(better, b.const(float(k)), code)
        best = b.where(better, d, best)
    label = b.nan_where(b.isnan(dists[0]), b.binary("+", code, b.const(0.0)))
    result = Result("clustering", classes=tuple(names), label=label)
    result.extras["distances"] = Val(b.stack(dists))
    return result


# --------------------------------------------------------------------------- SupportVectorMachineModel


def svm(el: Element, env: Env) -> Result:
    b = env.b
    kernels = ("LinearKernelType", "PolynomialKernelType", "RadialBasisKernelType", "SigmoidKernelType")
    known_children(el, (*_COMMON, *kernels, "VectorDictionary", "SupportVectorMachine"))
    kernel = next((c for c in el.children if c.tag in kernels), None)
    if kernel is None:
        raise bad(el, "the SupportVectorMachineModel has no kernel.")
    rep = attr(el, "svmRepresentation", "SupportVectors")
    if rep != "SupportVectors":
        raise unsupported(el, "svmRepresentation Coefficients is not supported")
    vd = el.find("VectorDictionary")
    if vd is None:
        raise bad(el, "the SupportVectorMachineModel has no VectorDictionary.")
    vf = vd.find("VectorFields")
    if vf is None:
        raise bad(vd, "the VectorDictionary has no VectorFields.")
    xs = []
    for c in vf.children:
        if c.tag == "FieldRef":
            xs.append(_numeric(env, attr(c, "field", required=True) or "", c))
        elif c.tag == "CategoricalPredictor":
            v = env.get(attr(c, "name", required=True) or "", c)
            hit = equals(b, v, attr(c, "value", required=True) or "", c)
            xs.append(b.nan_where(b.isnan(v.data), b.mul(b.to_float(hit), b.const(float(number(c, "coefficient", 1.0) or 1.0)))))
        elif c.tag != "Extension":
            raise unsupported(c)
    vectors: dict[str, list[float]] = {}
    for vi in vd.findall("VectorInstance"):
        arr = vi.find("Array")
        if arr is not None:
            vals = [parse_number(t, arr) for t in parse_array(arr)]
        else:
            sp = vi.find("REAL-SparseArray")
            if sp is None:
                raise bad(vi, "a VectorInstance needs an Array or a REAL-SparseArray.")
            n = int(number(sp, "n", len(xs)) or len(xs))
            vals = [0.0] * n
            ind = sp.find("Indices")
            ent = sp.find("REAL-Entries")
            for pos, entry in zip(ind.text.split() if ind is not None else [],
                                  ent.text.split() if ent is not None else []):
                vals[int(pos) - 1] = float(entry)
        if len(vals) != len(xs):
            raise bad(vi, f"the support vector has {len(vals)} values for {len(xs)} fields.")
        vectors[attr(vi, "id", required=True) or ""] = vals
    missing = _any_missing(b, xs)
    kcache: dict[str, Any] = {}

    def k(vid: str, at: Element) -> Any:
        if vid in kcache:
            return kcache[vid]
        if vid not in vectors:
            raise bad(at, f"the support vector {vid!r} is not in the VectorDictionary.")
        v = vectors[vid]
        if kernel.tag == "RadialBasisKernelType":
            gamma = float(number(kernel, "gamma", 1.0) or 1.0)
            acc = b.full(0.0)
            for x, y in zip(xs, v):
                d = b.binary("-", x, b.const(y))
                acc = b.binary("+", acc, b.mul(d, d))
            out = b.unary("exp", b.mul(b.const(-gamma), acc))
        else:
            dot = b.full(0.0)
            for x, y in zip(xs, v):
                dot = b.binary("+", dot, b.mul(x, b.const(y)))
            if kernel.tag == "LinearKernelType":
                out = dot
            elif kernel.tag == "PolynomialKernelType":
                g = float(number(kernel, "gamma", 1.0) or 1.0)
                c0 = float(number(kernel, "coef0", 1.0) or 0.0)
                deg = float(number(kernel, "degree", 1.0) or 1.0)
                out = b.binary("pow", b.binary("+", b.mul(b.const(g), dot), b.const(c0)), b.const(deg))
            else:
                g = float(number(kernel, "gamma", 1.0) or 1.0)
                c0 = float(number(kernel, "coef0", 1.0) or 0.0)
                out = b.unary("tanh", b.binary("+", b.mul(b.const(g), dot), b.const(c0)))
        kcache[vid] = out
        return out

    machines = el.findall("SupportVectorMachine")
    values = []
    for m in machines:
        known_children(m, ("SupportVectors", "Coefficients"))
        svs = m.find("SupportVectors")
        co = m.find("Coefficients")
        if co is None:
            raise bad(m, "the SupportVectorMachine has no Coefficients.")
        coefs = co.findall("Coefficient")
        ids = [attr(s, "vectorId", required=True) or "" for s in (svs.findall("SupportVector") if svs is not None else [])]
        if len(ids) != len(coefs):
            raise bad(m, f"{len(ids)} support vectors but {len(coefs)} coefficients.")
        f = b.full(float(number(co, "absoluteValue", 0.0) or 0.0))
        for vid, c in zip(ids, coefs):
            f = b.binary("+", f, b.mul(k(vid, c), b.const(float(number(c, "value", 0.0) or 0.0))))
        values.append((m, b.nan_where(missing, f)))
    function = attr(el, "functionName")
    if function == "regression":
        if len(values) != 1:
            raise bad(el, "a regression SupportVectorMachineModel has one SupportVectorMachine.")
        return Result("regression", value=values[0][1])
    target = _target(el, env)
    found: list[str] = []
    for m, _ in values:
        found.append(attr(m, "targetCategory", required=True) or "")
        if attr(m, "alternateTargetCategory") is not None:
            found.append(attr(m, "alternateTargetCategory") or "")
    classes = class_list(target, found)
    numeric = target is not None and target.numeric
    method = attr(el, "classificationMethod", "OneAgainstAll")
    default_thr = float(number(el, "threshold", 0.0) or 0.0)
    max_wins = attr(el, "maxWins", "false") == "true"
    if method == "OneAgainstOne" or (len(values) == 1 and attr(values[0][0], "alternateTargetCategory")):
        votes = [b.full(0.0) for _ in classes]
        for m, f in values:
            tc = normalize_label(attr(m, "targetCategory") or "", classes, numeric)
            alt = normalize_label(attr(m, "alternateTargetCategory") or "", classes, numeric)
            if tc is None or alt is None:
                raise bad(m, "a OneAgainstOne machine needs targetCategory and alternateTargetCategory.")
            thr = float(number(m, "threshold", default_thr) or 0.0)
            first = b.compare("gt", f, b.const(thr)) if max_wins else b.compare("lt", f, b.const(thr))
            ti, tj = classes.index(tc), classes.index(alt)
            votes[ti] = b.binary("+", votes[ti], b.to_float(first))
            votes[tj] = b.binary("+", votes[tj], b.to_float(b.logic("not", first)))
        # the class with the most votes; ties go to the first class reaching the count (document order)
        code = b.const(0.0)
        best = votes[0]
        for kk, v in enumerate(votes[1:], start=1):
            better = b.compare("gt", v, best)
            code = b.where(better, b.const(float(kk)), code)
            best = b.where(better, v, best)
        label = b.nan_where(missing, b.binary("+", code, b.const(0.0)))
    else:
        # OneAgainstAll: the machine with the smallest value (the largest under maxWins) names the class
        code = b.const(0.0)
        best = values[0][1]
        codes = [float(classes.index(normalize_label(attr(m, "targetCategory") or "", classes, numeric) or classes[0]))
                 for m, _ in values]
        code = b.const(codes[0])
        for (_m, f), cv in zip(values[1:], codes[1:]):
            better = b.compare("gt" if max_wins else "lt", f, best)
            code = b.where(better, b.const(cv), code)
            best = b.where(better, f, best)
        label = b.nan_where(missing, b.binary("+", code, b.const(0.0)))
    # no probabilities: the predicted class has all of the mass
    probs = [b.nan_where(b.isnan(label), b.to_float(b.compare("eq", label, b.const(float(i)))))
             for i in range(len(classes))]
    result = _classification(b, classes, probs, target, label=label)
    result.extras["decision_function"] = Val(b.stack([f for _, f in values]))
    return result


__all__ = ["np"]
