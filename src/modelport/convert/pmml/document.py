"""A PMML document read for evaluation: its version, DataDictionary, TransformationDictionary and
model, and :func:`run_model`, which evaluates any supported model element on a backend with the
steps every model shares (MiningSchema treatments, LocalTransformations, Targets, Output).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelport.convert.pmml import reader
from modelport.convert.pmml.backend import Backend
from modelport.convert.pmml.reader import Element
from modelport.convert.pmml.semantics import (
    OTHER,
    Env,
    FieldDef,
    MiningField,
    Result,
    Val,
    attr,
    bad,
    cast,
    expression,
    interval_test,
    known_children,
    normalize_label,
    number,
    parse_number,
    read_data_field,
    read_mining_schema,
    recode,
    unsupported,
)
from modelport.errors import ConversionError, InputError, UnsupportedModelError

#: PMML versions modelport reads
VERSIONS = ("3.2", "4.0", "4.1", "4.2", "4.3", "4.4")
MODEL_TAGS = ("TreeModel", "MiningModel", "RegressionModel", "GeneralRegressionModel", "NeuralNetwork",
              "NaiveBayesModel", "Scorecard", "ClusteringModel", "SupportVectorMachineModel")
OTHER_MODELS = ("AssociationModel", "BayesianNetworkModel", "GaussianProcessModel", "NearestNeighborModel",
                "RuleSetModel", "SequenceModel", "TextModel", "TimeSeriesModel", "AnomalyDetectionModel",
                "BaselineModel")


class InvalidValue(InputError):
    """A record holds a value PMML calls invalid where the MiningSchema says returnInvalid."""


@dataclass
class Refusal:
    """Rows the original evaluator refuses (``mask``): the graph cannot refuse rows by itself."""

    field: str
    what: str
    mask: Any


@dataclass
class PMMLDocument:
    """A parsed PMML file: what :func:`modelport.pack` takes for a ``.pmml`` path."""

    root: Element
    version: str
    data_fields: dict[str, FieldDef]
    model: Element
    transformations: Element | None
    path: str | None = None
    application: str = ""
    functions: dict[str, Element] = field(default_factory=dict)
    #: whether arithmetic is float32 (JPMML's ``x-mathContext="float"``, on any model element)
    float_context: bool = False

    @property
    def model_kind(self) -> str:
        return self.model.tag

    @property
    def function(self) -> str:
        return attr(self.model, "functionName", "") or ""

    def __repr__(self) -> str:
        return f"<PMMLDocument {self.path or ''} PMML {self.version} {self.model.tag}({self.function})>"

    # -------------------------------------------------------------------- fields of the top model
    def mining_fields(self) -> list[MiningField]:
        ms = self.model.find("MiningSchema")
        if ms is None:
            raise bad(self.model, "the model has no MiningSchema.")
        return read_mining_schema(ms)

    def active_fields(self) -> list[FieldDef]:
        out = []
        for mf in self.mining_fields():
            if mf.usage != "active":
                continue
            if mf.name not in self.data_fields:
                raise bad(mf.el, f"the MiningField {mf.name!r} names no DataField.")
            out.append(self.data_fields[mf.name])
        return out

    def target_field(self) -> FieldDef | None:
        for mf in self.mining_fields():
            if mf.usage in ("target", "predicted"):
                return self.data_fields.get(mf.name)
        return None

    def string_literals(self) -> tuple[str, ...]:
        """Every string a model could compare a field with (for fields that list no values)."""
        if not hasattr(self, "_literals"):
            out: dict[str, None] = {}
            for el in self.root.iter():
                if el.tag in ("SimplePredicate", "NormDiscrete", "CategoricalPredictor", "PairCounts",
                              "TargetValueCount", "PPCell"):
                    for key in ("value", "targetCategory"):
                        if key in el.attrs:
                            out[el.attrs[key]] = None
                elif el.tag == "Array" and (el.attrs.get("type") or "string") == "string":
                    from modelport.convert.pmml.semantics import parse_array

                    out.update(dict.fromkeys(parse_array(el)))
                elif el.tag == "Constant":
                    out[el.text] = None
                elif el.tag == "row":
                    for c in el.children:
                        out[c.text] = None
            self._literals = tuple(out)
        return self._literals


def read_document(source: str | os.PathLike[str] | bytes, *, origin: str | None = None) -> PMMLDocument:
    """Parse and check a PMML document (see :mod:`.reader` for the bounds)."""
    root = reader.read(source, origin=origin)
    where = origin or (str(source) if not isinstance(source, bytes) and not str(source).lstrip().startswith("<")
                       else "the PMML document")
    if root.tag != "PMML":
        raise ConversionError(f"{where}: the root element is <{root.tag}>, not <PMML>; this is not a PMML document.")
    version = (root.attrs.get("version") or "").strip()
    if not re.fullmatch(r"\d+\.\d+", version):
        raise ConversionError(f"{where}: the <PMML> element has no version (version={version!r}).")
    if version not in VERSIONS:
        major, minor = (int(p) for p in version.split("."))
        newer = (major, minor) > (4, 4)
        raise UnsupportedModelError(
            f"{where}: PMML {version} is {'newer than' if newer else 'older than'} the versions modelport reads "
            f"({VERSIONS[0]} - {VERSIONS[-1]}).",
            hint="write the model as PMML 4.4 (sklearn2pmml, JPMML converters and R's pmml do)" if newer
            else "convert it to PMML 4.x (JPMML's pmml-model converts old documents)",
        )
    known_children(root, ("Header", "MiningBuildTask", "DataDictionary", "TransformationDictionary", *MODEL_TAGS,
                          *OTHER_MODELS))
    for c in root.children:
        if c.tag in OTHER_MODELS:
            raise unsupported(c, f"the PMML model <{c.tag}> is not supported",
                              hint=f"modelport converts {', '.join(MODEL_TAGS)}")
    dd = root.find("DataDictionary")
    if dd is None:
        raise ConversionError(f"{where}: the document has no DataDictionary.")
    known_children(dd, ("DataField", "Taxonomy"))
    fields: dict[str, FieldDef] = {}
    for df in dd.findall("DataField"):
        f = read_data_field(df)
        if f.name in fields:
            raise bad(df, f"the DataField {f.name!r} is defined twice.")
        fields[f.name] = f
    models = [c for c in root.children if c.tag in MODEL_TAGS]
    if not models:
        raise ConversionError(f"{where}: the document holds no model.")
    scorable = [m for m in models if attr(m, "isScorable", "true") != "false"]
    if len(scorable) != 1:
        raise UnsupportedModelError(
            f"{where}: the document holds {len(scorable)} scorable models; modelport converts a document with one.",
            hint="keep one model, or combine them in a MiningModel",
        )
    header = root.find("Header")
    app = ""
    if header is not None:
        a = header.find("Application")
        if a is not None:
            app = f"{a.attrs.get('name', '')} {a.attrs.get('version', '')}".strip()
    doc = PMMLDocument(root, version, fields, scorable[0], root.find("TransformationDictionary"),
                       path=str(source) if isinstance(source, (str, os.PathLike)) and not str(source).lstrip().startswith("<") else None,
                       application=app)
    contexts = {attr(m, "x-mathContext") for m in doc.model.iter() if m.tag in MODEL_TAGS}
    contexts.discard(None)
    if contexts - {"float", "double"}:
        raise bad(doc.model, f"x-mathContext must be float or double; got {sorted(c for c in contexts if c)}.")
    if len(contexts) > 1:
        raise unsupported(doc.model, "models with mixed x-mathContext (float and double) are not supported")
    doc.float_context = contexts == {"float"}
    doc.mining_fields()  # the top model's schema must read
    return doc


# --------------------------------------------------------------------------- inputs


def input_domain(doc: PMMLDocument, f: FieldDef) -> tuple[str, ...]:
    """The codes of a string field: its valid values, else every string the document compares with."""
    if f.texts:
        return tuple(f.texts)
    return doc.string_literals()


def top_env(doc: PMMLDocument, b: Backend, inputs: Mapping[str, Val], refusals: list[Refusal]) -> Env:
    """The environment of the top model: the active fields, treated as their MiningFields say."""
    env = Env(doc, b)
    env.doc.functions = doc.functions
    if doc.transformations is not None:
        env.define(doc.transformations)
    schema = {mf.name: mf for mf in doc.mining_fields()}
    for name, val in inputs.items():
        f = doc.data_fields[name]
        mf = schema[name]
        val = _prepare(b, f, mf, val, refusals)
        env.set(name, val, f)
    return env


def _prepare(b: Backend, f: FieldDef, mf: MiningField, val: Val, refusals: list[Refusal]) -> Val:
    """A DataField's value as the MiningSchema treats it: declared missing values, validity, outliers."""
    data = val.data
    # values the DataField declares missing
    for mv in f.missing_values:
        if val.domain is not None:
            if mv in val.domain:
                data = b.nan_where(b.compare("eq", data, b.const(float(val.domain.index(mv)))), data)
        else:
            data = b.nan_where(b.compare("eq", data, b.const(float(mv))), data)
    present = b.logic("not", b.isnan(data))
    # validity
    invalid = b.false()
    possible = bool(f.invalid_values)
    if val.domain is not None:
        possible = possible or bool(f.texts)
        valid_codes = [i for i, s in enumerate(val.domain) if not f.texts or s in f.texts]
        ok = b.false()
        for i in valid_codes:
            ok = b.logic("or", ok, b.compare("eq", data, b.const(float(i))))
        invalid = b.logic("and", present, b.logic("not", ok))
        for iv in f.invalid_values:
            if iv in val.domain:
                invalid = b.logic("or", invalid, b.compare("eq", data, b.const(float(val.domain.index(iv)))))
    else:
        possible = possible or (f.optype == "continuous" and bool(f.intervals)) or (
            f.optype != "continuous" and bool(f.values)) or f.dtype == "integer"
        if f.optype == "continuous" and f.intervals:
            inside = b.false()
            for closure, lo, hi in f.intervals:
                inside = b.logic("or", inside, interval_test(b, data, closure, lo, hi))
            invalid = b.logic("and", present, b.logic("not", inside))
        elif f.optype != "continuous" and f.values:
            ok = b.false()
            for v in f.values:
                ok = b.logic("or", ok, b.compare("eq", data, b.const(float(v))))
            invalid = b.logic("and", present, b.logic("not", ok))
        for iv in f.invalid_values:
            invalid = b.logic("or", invalid, b.compare("eq", data, b.const(float(iv))))
        if f.dtype == "integer":  # a fractional number is not an integer
            frac = b.compare("ne", data, b.unary("floor", data))
            invalid = b.logic("or", invalid, b.logic("and", present, frac))
    treat = mf.invalid_treatment
    if treat == "returnInvalid" and possible:
        refusals.append(Refusal(f.name, "invalid", invalid))
    elif treat == "asMissing":
        data = b.nan_where(invalid, data)
    elif treat == "asValue":
        if mf.invalid_replacement is None:
            raise bad(mf.el, "invalidValueTreatment asValue needs an invalidValueReplacement.")
        data = b.where(invalid, _const_of(b, val, mf.invalid_replacement, mf.el), data)
        if val.domain is not None and mf.invalid_replacement not in val.domain:
            raise bad(mf.el, f"the invalidValueReplacement {mf.invalid_replacement!r} is not a value of the field.")
    elif val.domain is not None:  # asIs: a text outside the values is just another text
        data = b.where(invalid, b.const(OTHER), data)
    # outliers
    if f.optype == "continuous" and mf.outliers != "asIs":
        lo = mf.low if mf.low is not None else -math.inf
        hi = mf.high if mf.high is not None else math.inf
        below, above = b.compare("lt", data, b.const(lo)), b.compare("gt", data, b.const(hi))
        if mf.outliers == "asMissingValues":
            data = b.nan_where(b.logic("or", below, above), data)
        else:
            data = b.where(below, b.const(lo), b.where(above, b.const(hi), data))
    # missing values
    missing = b.isnan(data)
    if mf.missing_treatment == "returnInvalid":
        refusals.append(Refusal(f.name, "missing", missing))
    elif mf.missing_replacement is not None:
        if val.domain is not None and mf.missing_replacement not in val.domain:
            raise bad(mf.el, f"the missingValueReplacement {mf.missing_replacement!r} is not a value of the field.")
        data = b.where(missing, _const_of(b, val, mf.missing_replacement, mf.el), data)
    return Val(data, val.domain, tuple(f.texts) if f.optype == "ordinal" and val.domain is not None else None)


def _const_of(b: Backend, val: Val, text: str, el: Element) -> Any:
    if val.domain is not None:
        return b.const(float(val.domain.index(text)))
    return b.const(parse_number(text, el))


def nested_env(el: Element, env: Env) -> Env:
    """A segment model's environment: its MiningSchema's treatments over the parent's fields."""
    child = env.child()
    ms = el.find("MiningSchema")
    if ms is None:
        raise bad(el, "the model has no MiningSchema.")
    b = env.b
    for mf in read_mining_schema(ms):
        if mf.usage != "active":
            continue
        needs = mf.missing_replacement is not None or mf.outliers != "asIs"
        if not needs:
            continue
        v = env.get(mf.name, mf.el)
        data = v.data
        if mf.outliers != "asIs":
            lo = mf.low if mf.low is not None else -math.inf
            hi = mf.high if mf.high is not None else math.inf
            below, above = b.compare("lt", data, b.const(lo)), b.compare("gt", data, b.const(hi))
            if mf.outliers == "asMissingValues":
                data = b.nan_where(b.logic("or", below, above), data)
            else:
                data = b.where(below, b.const(lo), b.where(above, b.const(hi), data))
        if mf.missing_replacement is not None:
            data = b.where(b.isnan(data), _const_of(b, v, mf.missing_replacement, mf.el), data)
        child.set(mf.name, Val(data, v.domain, v.ordinal), env.fdef(mf.name))
    return child


# --------------------------------------------------------------------------- models


def run_model(el: Element, env: Env, *, top: bool = False) -> Result:
    """Evaluate one model element (the top model or a segment's) in ``env``."""
    from modelport.convert.pmml import models, trees
    from modelport.convert.pmml.mining import mining_model

    if attr(el, "x-mathContext") == "float" and not env.b.float_context:
        raise unsupported(el, "x-mathContext='float' on a nested model only is not supported")
    menv = env if top else nested_env(el, env)
    lt = el.find("LocalTransformations")
    if lt is not None:
        menv = menv.child() if menv is env else menv
        menv.define(lt)
    dispatch = {
        "TreeModel": trees.tree_model,
        "MiningModel": mining_model,
        "RegressionModel": models.regression_model,
        "GeneralRegressionModel": models.general_regression_model,
        "NeuralNetwork": models.neural_network,
        "NaiveBayesModel": models.naive_bayes,
        "Scorecard": models.scorecard,
        "ClusteringModel": models.clustering,
        "SupportVectorMachineModel": models.svm,
    }
    fn = dispatch.get(el.tag)
    if fn is None:
        raise unsupported(el, f"the PMML model <{el.tag}> is not supported")
    function = attr(el, "functionName", required=True)
    if function not in ("regression", "classification", "clustering"):
        raise unsupported(el, f"functionName {function!r} is not supported",
                          hint="modelport converts regression, classification and clustering models")
    result = fn(el, menv)
    targets = el.find("Targets")
    if targets is not None:
        result = apply_targets(targets, result, menv)
    out = el.find("Output")
    if out is not None:
        output_fields(out, result, menv, env)
    return result


def target_def(el: Element, env: Env) -> FieldDef | None:
    ms = el.find("MiningSchema")
    if ms is None:
        return None
    for mf in read_mining_schema(ms):
        if mf.usage in ("target", "predicted"):
            f = env.fdef(mf.name) or env.doc.data_fields.get(mf.name)
            return f
    return None


def apply_targets(el: Element, result: Result, env: Env) -> Result:
    b = env.b
    known_children(el, ("Target",))
    tgts = el.findall("Target")
    if not tgts:
        return result
    if len(tgts) > 1:
        raise unsupported(tgts[1], "more than one Target (multi-target models) is not supported")
    t = tgts[0]
    known_children(t, ("TargetValue",))
    if result.kind == "regression":
        x = result.value
        lo, hi = number(t, "min"), number(t, "max")
        if lo is not None:
            x = b.where(b.compare("lt", x, b.const(lo)), b.const(lo), x)
        if hi is not None:
            x = b.where(b.compare("gt", x, b.const(hi)), b.const(hi), x)
        factor = number(t, "rescaleFactor", 1.0)
        constant = number(t, "rescaleConstant", 0.0)
        if factor != 1.0:
            x = b.binary("*", x, b.const(float(factor or 0.0)))
        if constant != 0.0:
            x = b.binary("+", x, b.const(float(constant or 0.0)))
        ci = attr(t, "castInteger")
        if ci == "round":
            x = b.round_half_up(x)
        elif ci == "ceiling":
            x = b.unary("ceil", x)
        elif ci == "floor":
            x = b.unary("floor", x)
        elif ci is not None:
            raise bad(t, f"castInteger must be round, ceiling or floor; got {ci!r}.")
        for tv in t.findall("TargetValue"):
            if "defaultValue" in tv.attrs:
                x = b.where(b.isnan(x), b.const(float(number(tv, "defaultValue") or 0.0)), x)
        result.value = x
        return result
    if result.kind == "classification":
        priors = {tv.attrs["value"]: number(tv, "priorProbability") for tv in t.findall("TargetValue")
                  if "value" in tv.attrs and "priorProbability" in tv.attrs}
        if priors:
            numeric = bool(result.class_values) and all(v is not None for v in result.class_values)
            classes = list(result.classes)
            for text in priors:
                if normalize_label(text, classes, numeric) is None:
                    classes.append(text)
            if len(classes) != len(result.classes):
                result = widen(b, result, tuple(classes))
            null = b.isnan(result.probs[0]) if result.probs else b.true()
            new = []
            for c, p in zip(result.classes, result.probs):
                found = next((k for k in priors if normalize_label(k, [c], numeric) == c), None)
                prior = float(priors[found] or 0.0) if found is not None else 0.0
                new.append(b.where(null, b.const(prior), p))
            result.probs = new
            from modelport.convert.pmml.semantics import probs_label

            result.label = b.where(null, probs_label(b, new), result.label)
    return result


def widen(b: Backend, result: Result, classes: tuple[str, ...]) -> Result:
    """A classification result over more classes (the new ones with probability 0)."""
    zero = b.where(b.isnan(result.probs[0]), b.nan(), b.full(0.0)) if result.probs else b.full(0.0)
    by = dict(zip(result.classes, result.probs))
    probs = [by.get(c, zero) for c in classes]
    label = result.label
    if label is not None:
        pos = [float(classes.index(c)) for c in result.classes]
        label = b.lookup(pos, label)
    values = tuple(_num(c) for c in classes)
    return Result(result.kind, result.value, classes, probs, label, result.extras, values)


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def output_fields(el: Element, result: Result, env: Env, parent: Env) -> None:
    """OutputFields of a model, as fields of the enclosing environment (a modelChain's next segments)."""
    b = env.b
    known_children(el, ("OutputField",))
    outs = Env(env.doc, b, env)
    for of in el.findall("OutputField"):
        name = attr(of, "name", required=True) or ""
        feature = attr(of, "feature", "predictedValue")
        if feature in ("predictedValue", "predictedDisplayValue"):
            if result.kind == "regression":
                val = Val(result.value)
            else:
                val = Val(result.label, result.classes)
                dtype = attr(of, "dataType")
                if dtype in ("integer", "double", "float") and feature == "predictedValue":
                    val = cast(b, val, dtype, of)
        elif feature == "probability":
            if result.kind != "classification":
                raise bad(of, "a probability OutputField on a model that is not a classifier.")
            value = attr(of, "value")
            numeric = bool(result.class_values) and all(v is not None for v in result.class_values)
            if value is None:
                # the probability of the predicted class
                best = b.full(math.nan)
                for k, p in enumerate(result.probs):
                    best = b.where(b.compare("eq", result.label, b.const(float(k))), p, best)
                val = Val(best)
            else:
                c = normalize_label(value, result.classes, numeric)
                val = Val(result.probs[result.classes.index(c)] if c is not None
                          else b.where(b.isnan(result.probs[0]), b.nan(), b.full(0.0)))
        elif feature == "transformedValue":
            exprs = [c for c in of.children if c.tag != "Extension"]
            if len(exprs) != 1:
                raise bad(of, "a transformedValue OutputField needs one expression.")
            val = expression(exprs[0], outs)
            dtype = attr(of, "dataType")
            if dtype:
                val = cast(b, val, dtype, of)
        elif feature in ("entityId", "clusterId") and result.kind == "clustering":
            val = Val(result.label, result.classes)
        elif feature == "affinity" and "affinity" in result.extras:
            val = result.extras["affinity"]
        elif feature == "reasonCode" and "reason_codes" in result.extras:
            rank = int(number(of, "rank", 1) or 1)
            codes = result.extras["reason_codes"]
            ranked = result.extras.get(f"reason_code_{rank}")
            val = ranked if ranked is not None else codes
        else:
            # features a model chain does not need (confidence, standardError, warnings, ...) are
            # not computed; a later reference to them is refused by name
            continue
        outs.set(name, val, None)
        parent.set(name, val, None)
    del outs


def raise_refusals(refusals: list[Refusal], rows: int) -> None:
    """For the numpy evaluation: rows with values the MiningSchema refuses are an error."""
    import numpy as np

    for r in refusals:
        mask = np.asarray(r.mask, dtype=bool)
        if mask.any():
            idx = np.flatnonzero(mask)[:10].tolist()
            raise InvalidValue(
                f"PMML field {r.field!r} has {'missing' if r.what == 'missing' else 'invalid'} values in "
                f"row(s) {idx} and its MiningField says returnInvalid.",
            )


__all__ = ["PMMLDocument", "read_document", "recode", "run_model"]
