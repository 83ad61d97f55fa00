"""The PMML converter: a :class:`~.document.PMMLDocument` -> an ONNX graph, and modelport's reference
evaluation of the same document for parity.

Inputs: one graph input per active MiningField, named after it. How a field reaches the graph
follows what PMML does with a value outside its valid values:

==========================================  ===========================  =====================================
DataField                                   bundle column                a value outside the valid values
==========================================  ===========================  =====================================
continuous (integer / float / double)       ``float64``                  (Interval) see below
categorical, valid values listed,           ``category`` (the values)    refused (returnInvalid) or missing
invalidValueTreatment returnInvalid /                                    (asMissing), by the runtime
asMissing
categorical string, other treatments, or    ``str`` (the values, if      what the treatment says (asIs: a value
no values listed                            listed)                      no predicate matches; asValue)
categorical number, other treatments        ``float64``                  what the treatment says
==========================================  ===========================  =====================================

A continuous value outside the DataField's Intervals (or a fractional number in an integer field)
under returnInvalid is refused by a PMML evaluator; a graph cannot refuse one row of a batch, so
the bundle gives such rows no prediction (NaN probabilities, an empty label, a NaN prediction), and
the manifest's notes say so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from modelport.bundle.signature import Column
from modelport.convert._sample import is_dataframe
from modelport.convert.base import Converted, Converter
from modelport.convert.pmml.backend import NumpyBackend, OnnxBackend
from modelport.convert.pmml.document import (
    PMMLDocument,
    Refusal,
    input_domain,
    raise_refusals,
    run_model,
    top_env,
)
from modelport.convert.pmml.semantics import OTHER, FieldDef, Result, Val
from modelport.errors import ConversionError, InputError, UnsupportedModelError

OPSETS = {"": 17, "ai.onnx.ml": 3}


def _plan(doc: PMMLDocument) -> list[tuple[FieldDef, str, Any]]:
    """(field, column kind, domain) per active field; kinds: num, category, str."""
    schema = {mf.name: mf for mf in doc.mining_fields()}
    out: list[tuple[FieldDef, str, Any]] = []
    for f in doc.active_fields():
        mf = schema[f.name]
        categorical = f.optype != "continuous"
        if categorical and f.values and mf.invalid_treatment in ("returnInvalid", "asMissing"):
            # the values the DataField declares missing ("NA") are categories too: the runtime
            # takes them, and the MiningSchema's missing value treatment applies to them
            out.append((f, "category", (*f.texts, *(str(_text(v)) for v in _declared_missing(f)))))
        elif f.dtype == "string":
            out.append((f, "str", input_domain(doc, f)))
        else:
            out.append((f, "num", None))
    return out


def _columns(plan: list[tuple[FieldDef, str, Any]]) -> tuple[Column, ...]:
    cols = []
    for f, kind, domain in plan:
        if kind == "category":
            cats = (*f.values, *_declared_missing(f)) if f.dtype != "string" else tuple(domain)
            if f.dtype == "integer":
                cats = tuple(int(v) for v in cats)
            cols.append(Column(f.name, "category", f.name, None, cats))
        elif kind == "str":
            cols.append(Column(f.name, "str", f.name, None, tuple(f.texts) if f.texts else None))
        else:
            cols.append(Column(f.name, "float64", f.name, None))
    return tuple(cols)


class PMMLConverter(Converter):
    name = "pmml"
    framework = "PMML"
    modules = ("modelport.convert.pmml",)

    # ------------------------------------------------------------------ sample
    def prepare_sample(self, model: Any, sample: Any) -> Any:
        """The sample's active-field columns, in MiningSchema order; other columns (the target,
        identifiers) are dropped. Missing columns are an error."""
        doc = _doc(model)
        names = [f.name for f in doc.active_fields()]
        if not is_dataframe(sample):
            if isinstance(sample, dict):
                missing = [n for n in names if n not in sample]
                if missing:
                    raise InputError(_lacks(doc, missing, list(sample)))
                return {n: sample[n] for n in names}
            arr = np.asarray(sample)
            if arr.ndim != 2 or arr.shape[1] != len(names):
                raise InputError(
                    f"the sample has shape {arr.shape}, but the PMML model reads {len(names)} fields "
                    f"({', '.join(names)}).",
                    hint="pass a DataFrame (or CSV) with a column per MiningField",
                )
            import pandas as pd

            return pd.DataFrame({n: arr[:, i] for i, n in enumerate(names)})
        have = [str(c) for c in sample.columns]
        missing = [n for n in names if n not in have]
        if missing:
            raise InputError(_lacks(doc, missing, have))
        out = sample[names].copy()
        for f, kind, _ in _plan(doc):
            col = out[f.name]
            if kind in ("category", "str") and f.dtype == "string" and col.dtype.kind in "iufb":
                # a CSV reader makes numbers of text categories such as "1", "2"
                out[f.name] = [None if (isinstance(v, float) and v != v) else _text(v) for v in col.tolist()]
            elif kind in ("num",) and col.dtype.kind not in "iufb":
                bad = [v for v in col.tolist() if v is not None and not (isinstance(v, float) and v != v)
                       and _number_or_none(v) is None]
                if bad:
                    raise InputError(
                        f"the sample's column {f.name!r} holds text ({', '.join(repr(v) for v in bad[:3])}) but the "
                        f"PMML DataField {f.name!r} is {f.optype} {f.dtype}: the MiningSchema disagrees with the sample.",
                        hint="pass the sample the model was trained on",
                    )
                out[f.name] = [_number_or_none(v) for v in col.tolist()]
                out[f.name] = out[f.name].astype("float64")
            elif kind == "num" and col.dtype.kind in "iub":
                # the bundle's column is float64 (an integer field's value can be missing or, refused,
                # fractional); an integer sample column would turn such verification rows to garbage
                out[f.name] = col.astype("float64")
        # every sample row must be one the model takes (JPMML would refuse an invalid one)
        try:
            self._evaluate(doc, out, strict=True)
        except InputError as exc:
            raise InputError(
                f"the sample does not fit the PMML model's MiningSchema: {exc.message}",
                hint="pass rows the model was trained on (values inside the DataFields' valid values and intervals)",
            ) from None
        return out

    # ------------------------------------------------------------------ conversion
    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted:
        from modelport import __version__

        if options:
            raise ConversionError(f"the PMML converter takes no options; got {', '.join(sorted(options))}.")
        doc = _doc(model)
        plan = _plan(doc)
        columns = _columns(plan)
        b = OnnxBackend(float_context=doc.float_context)
        graph_inputs = []
        vals: dict[str, Val] = {}
        for f, kind, domain in plan:
            elem = TensorProto.STRING if kind == "str" else TensorProto.DOUBLE
            graph_inputs.append(helper.make_tensor_value_info(f.name, elem, [None, 1]))
            flat = b.op("Reshape", [f.name, b.array(np.array([-1], dtype=np.int64), "flat")])
            if kind == "str":
                codes = b.op("LabelEncoder", [flat], domain="ai.onnx.ml", keys_strings=list(domain),
                             values_floats=[float(i) for i in range(len(domain))], default_float=OTHER)
                vals[f.name] = Val(b.op("Cast", [codes], to=TensorProto.DOUBLE), tuple(domain))
            elif kind == "category":
                if f.dtype == "string":
                    vals[f.name] = Val(flat, tuple(domain))
                else:
                    vals[f.name] = Val(b.lookup([float(v) for v in (*f.values, *_declared_missing(f))], flat))
            else:
                vals[f.name] = Val(b.f32(flat) if f.dtype == "float" else flat)
            if b.ref is None and kind != "str":
                b.ref = flat
        if b.ref is None:
            b.ref = next(iter(vals.values())).data
        refusals: list[Refusal] = []
        env = top_env(doc, b, vals, refusals)
        result = run_model(doc.model, env, top=True)
        notes: list[str] = []
        nullable: dict[str, bool] = {}
        cut = b.false()
        for r in refusals:
            kind = next(k for f, k, _ in plan if f.name == r.field)
            if r.what == "missing":
                nullable[r.field] = False
            elif kind == "category":
                pass  # the runtime refuses values outside the categories
            else:
                cut = b.logic("or", cut, r.mask)
                notes.append(
                    f"PMML field {r.field!r}: a value outside its valid values or intervals is refused by a PMML "
                    "evaluator (invalidValueTreatment returnInvalid); the bundle gives such rows no prediction (NaN)."
                )
        outputs, task, classes = _outputs(b, result, cut)
        _name_outputs(b, outputs)
        graph = helper.make_graph(b.nodes, "pmml", graph_inputs,
                                  [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                                  initializer=b.initializers)
        onx = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in OPSETS.items()],
                                producer_name="modelport")
        onx.ir_version = 8
        try:
            onnx.checker.check_model(onx)
        except onnx.checker.ValidationError as exc:  # a bug of ours, said plainly
            raise ConversionError(f"the ONNX graph built from the PMML model is invalid: {exc}") from exc
        return Converted(
            onnx_model=onx,
            task=task,
            columns=columns,
            classes=classes,
            source={
                "framework": "pmml",
                "framework_version": doc.version,
                "estimator": f"{doc.model.tag}({doc.function})" + (f" by {doc.application}" if doc.application else ""),
                "converter": "modelport",
                "converter_version": __version__,
                "reference": "modelport's PMML evaluation (numpy); its agreement with JPMML-Evaluator is "
                             "tested in modelport's suite",
            },
            thresholds=_thresholds(doc, plan),
            nullable=nullable or None,
            notes=list(dict.fromkeys(notes)),
        )

    # ------------------------------------------------------------------ the reference
    def reference(self, model: Any, data: Any) -> dict[str, np.ndarray]:
        """The document's answers on ``data``, as the bundle gives them: a row a PMML evaluator
        refuses for a continuous value outside its valid values gets no prediction (NaN), like the
        graph's; a missing or out-of-category value the MiningSchema refuses is an error, as the
        runtime refuses it."""
        return self._evaluate(_doc(model), data, strict=False)

    def _evaluate(self, doc: PMMLDocument, data: Any, *, strict: bool) -> dict[str, np.ndarray]:
        """``strict``: every refused row is an error (what a PMML evaluator does with the record)."""
        plan = _plan(doc)
        cols = _data_columns(data, [f.name for f, _, _ in plan])
        n = len(next(iter(cols.values()))) if cols else 0
        b = NumpyBackend(n, float_context=doc.float_context)
        vals: dict[str, Val] = {}
        for f, kind, domain in plan:
            raw = cols[f.name]
            if kind == "num":
                x = np.array([_number_or_nan(v, f.name) for v in raw.tolist()], dtype=np.float64)
                vals[f.name] = Val(b.f32(x) if f.dtype == "float" else x)
            elif kind == "category" and f.dtype != "string":
                x = np.array([_number_or_nan(v, f.name, text_ok=True) for v in raw.tolist()], dtype=np.float64)
                vals[f.name] = Val(b.f32(x) if f.dtype == "float" else x)
            else:
                pos = {s: i for i, s in enumerate(domain)}
                codes = np.array([math.nan if _absent(v) else float(pos.get(_text(v), OTHER)) for v in raw.tolist()])
                if kind == "str" and any(_absent(v) for v in raw.tolist()):
                    raise InputError(f"PMML field {f.name!r} has missing values; this bundle takes text in it, "
                                     "never a missing value.")
                vals[f.name] = Val(codes, tuple(domain))
        refusals: list[Refusal] = []
        env = top_env(doc, b, vals, refusals)
        kinds = {f.name: k for f, k, _ in plan}
        cut = b.false()
        if not strict:  # the graph's rule (see :meth:`convert`): invalid numbers give no prediction
            cut_by = [r for r in refusals if r.what != "missing" and kinds.get(r.field) != "category"]
            for r in cut_by:
                cut = b.logic("or", cut, r.mask)
            refusals = [r for r in refusals if not any(r is c for c in cut_by)]
        raise_refusals(refusals, n)
        result = run_model(doc.model, env, top=True)
        outputs, _, _ = _outputs(b, result, cut)
        return {name: value for name, value, _ in outputs}


# --------------------------------------------------------------------------- helpers


def _doc(model: Any) -> PMMLDocument:
    if isinstance(model, PMMLDocument):
        return model
    raise UnsupportedModelError(f"the PMML converter takes a PMMLDocument; got {type(model).__name__}.")


def _lacks(doc: PMMLDocument, missing: list[str], have: list[str]) -> str:
    return (f"the sample lacks the column(s) {', '.join(map(repr, missing))}, which the PMML MiningSchema lists as "
            f"active fields (the sample has {', '.join(map(repr, have[:20]))}); the MiningSchema disagrees with the sample.")


def _absent(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _number_or_none(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
        return float(v)
    try:
        return float(str(v).strip()) if str(v).strip() else None
    except ValueError:
        return None


def _number_or_nan(v: Any, name: str, *, text_ok: bool = True) -> float:
    if _absent(v):
        return math.nan
    x = _number_or_none(v)
    if x is None:
        raise InputError(f"PMML field {name!r} takes numbers; got {v!r}.")
    return x


def _declared_missing(f: FieldDef) -> tuple[Any, ...]:
    """The DataField's declared missing values that are not also valid values."""
    return tuple(v for v in f.missing_values if v not in f.values)


def _data_columns(data: Any, names: list[str]) -> dict[str, np.ndarray]:
    if is_dataframe(data):
        missing = [n for n in names if n not in data.columns]
        if missing:
            raise InputError(f"the data lacks the PMML field(s) {missing}.")
        return {n: data[n].to_numpy(dtype=object) for n in names}
    if isinstance(data, dict):
        return {n: np.asarray(data[n], dtype=object).reshape(-1) for n in names}
    arr = np.asarray(data, dtype=object)
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise InputError(f"expected {len(names)} columns ({', '.join(names)}); got shape {arr.shape}.")
    return {n: arr[:, i] for i, n in enumerate(names)}


def _outputs(b: Any, result: Result, cut: Any) -> tuple[list[tuple[str, Any, Any]], str, list[Any] | None]:
    """(name, value, onnx type/shape) of the bundle's outputs; ``cut`` rows get no prediction."""
    numpy = isinstance(b, NumpyBackend)
    outs: list[tuple[str, Any, Any]] = []
    if result.kind == "regression":
        v = b.nan_where(cut, result.value)
        outs.append(("prediction", v, (TensorProto.DOUBLE, [None])))
        task, classes = "regression", None
    else:
        label = b.nan_where(cut, result.label)
        outs.append(("label", _label_text(b, label, result.classes), (TensorProto.STRING, [None])))
        if result.kind == "classification":
            probs = [b.nan_where(cut, p) for p in result.probs]
            outs.append(("probabilities", b.stack(probs), (TensorProto.DOUBLE, [None, len(probs)])))
            task = "classification"
        else:
            d = result.extras["distances"].data
            outs.append(("distances", d, (TensorProto.DOUBLE, [None, len(result.classes)])))
            task = "clustering"
        classes = list(result.classes)
    rc = result.extras.get("reason_codes")
    if rc is not None and rc.domain:
        ranked = _ranked_codes(b, rc)
        for k in range(len(rc.domain)):  # one output per rank: reason_code_1 is the largest shortfall
            col = ranked[:, k] if numpy else b.op("Gather", [ranked, b.array(np.array(k, dtype=np.int64), "k")], axis=1)
            outs.append((f"reason_code_{k + 1}", col, (TensorProto.STRING, [None])))
    if numpy:
        outs = [(n, np.asarray(v), t) for n, v, t in outs]
    return outs, task, classes


def _label_text(b: Any, codes: Any, classes: tuple[str, ...]) -> Any:
    table = np.array([*classes, ""], dtype=object)
    if isinstance(b, NumpyBackend):
        c = np.asarray(codes, dtype=np.float64)
        idx = np.where(np.isnan(c) | (c < 0) | (c >= len(classes)), len(classes), np.nan_to_num(c)).astype(np.int64)
        return table[idx]
    bad = b.logic("or", b.isnan(codes), b.logic("or", b.compare("lt", codes, b.const(0.0)),
                                                 b.compare("ge", codes, b.const(float(len(classes))))))
    safe = b.where(bad, b.const(float(len(classes))), codes)
    idx = b.op("Cast", [safe], to=TensorProto.INT64)
    t = onnx.helper.make_tensor(b.name("classes"), TensorProto.STRING, [len(table)], [s.encode() for s in table])
    b.initializers.append(t)
    return b.op("Gather", [t.name, idx], axis=0)


def _ranked_codes(b: Any, rc: Val) -> Any:
    """Reason codes per row, the largest points difference first (ties in document order). Only
    codes a matched Attribute gave, with a difference of zero or more, are reasons (JPMML's rule);
    the ranks past them are empty."""
    codes = list(rc.domain or ())
    if isinstance(b, NumpyBackend):
        diffs = np.asarray(rc.data, dtype=np.float64)
        filled = np.where(np.isnan(diffs) | (diffs < 0), -np.inf, diffs)
        order = np.argsort(-filled, axis=1, kind="stable")
        ranked = np.array(codes, dtype=object)[order]
        ranked[np.take_along_axis(filled, order, axis=1) == -np.inf] = ""
        return ranked
    k = b.array(np.array([len(codes)], dtype=np.int64), "k")
    no = b.logic("or", b.op("IsNaN", [rc.data]), b.compare("lt", rc.data, b.const(0.0)))
    filled = b.where(no, b.const(-math.inf), rc.data)
    # TopK keeps the lower index first among equal values, the order of a stable sort
    vals, idx = _topk(b, filled, k)
    t = onnx.helper.make_tensor(b.name("codes"), TensorProto.STRING, [len(codes)],
                                [s.encode() for s in codes])  # type: ignore[misc]  # onnx's stub lacks bytes
    b.initializers.append(t)
    empty = onnx.helper.make_tensor(b.name("empty"), TensorProto.STRING, [], [b""])  # type: ignore[list-item]
    b.initializers.append(empty)
    gathered = b.op("Gather", [t.name, idx], axis=0)
    return b.op("Where", [b.compare("eq", vals, b.const(-math.inf)), empty.name, gathered])


def _topk(b: OnnxBackend, x: str, k: str) -> tuple[str, str]:
    vals, idx = b.name("topv"), b.name("topi")
    b.nodes.append(helper.make_node("TopK", [x, k], [vals, idx], name=b.name("n"), axis=1, largest=1, sorted=1))
    return vals, idx


def _name_outputs(b: OnnxBackend, outputs: list[tuple[str, Any, Any]]) -> None:
    for i, (name, tensor, t) in enumerate(outputs):
        b.nodes.append(helper.make_node("Identity", [tensor], [name], name=b.name("out")))
        outputs[i] = (name, t[0], t[1])


def _thresholds(doc: PMMLDocument, plan: list[tuple[FieldDef, str, Any]]) -> dict[str, list[float]]:
    numeric = {f.name: f for f, kind, _ in plan if kind == "num" and f.optype == "continuous"}
    out: dict[str, set[float]] = {name: set() for name in numeric}
    for el in doc.model.iter():
        if el.tag == "SimplePredicate" and el.attrs.get("field") in numeric and el.attrs.get("operator") in (
                "lessThan", "lessOrEqual", "greaterThan", "greaterOrEqual", "equal"):
            try:
                v = float(el.attrs.get("value", ""))
            except ValueError:
                continue
            if math.isfinite(v):
                f = numeric[el.attrs["field"]]
                out[f.name].add(float(np.float32(v)) if f.dtype == "float" else v)
    return {k: sorted(v) for k, v in out.items()}
