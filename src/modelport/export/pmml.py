"""``--target pmml``: a bundle as one PMML 4.4 document that JPMML-Evaluator (Openscoring, the JVM
world's PMML engines) evaluates to the bundle's answers.

It is an emitter over codegen's IR (:mod:`modelport.codegen.ir`), the same program the C, SQL and
Python targets render, so it covers what ``modelport compile`` covers: scikit-learn / XGBoost /
LightGBM / CatBoost / Spark trees and forests, linear and logistic models, and the encoders and
scalers in front of them. A family the IR cannot lower (or that PMML cannot express, such as the
pairwise coupling of a multiclass SVM's probabilities) is refused with an :class:`ExportError`.

The document::

    DataDictionary            one DataField per bundle column (float / double / integer / string;
                              a category column lists its categories), plus the target
    TransformationDictionary  one DerivedField per IR node, in dependency order; a node the graph
                              computes in float32 is a DerivedField of dataType float, so JPMML
                              rounds it to float32 exactly where ONNX Runtime does; each tree of
                              an ensemble is one nested ``if`` and the ensemble's sum a chain of
                              DerivedFields, in ONNX Runtime's order
    RegressionModel           the identity over the scores: regression (prediction = the score)
                              or classification (normalizationMethod none: the predicted class
                              is the most probable), with OutputFields for every score
                              (``probability(<class>)``: the bundle's probabilities, bit for bit)

Missing values: JPMML refuses arithmetic on a missing value, where the graph computes with NaN.
Every operation on a value that can be missing is guarded (``if(isNotMissing(x), f(x))``), so a
missing input flows through as missing (NaN) and comparisons with it are false, as IEEE NaN's are.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from modelport.errors import CodegenError, ExportError

__all__ = ["export", "to_pmml"]

_F32_MAX = 3.4028234663852886e38
_CMP = {"<": "lessThan", "<=": "lessOrEqual", ">": "greaterThan", ">=": "greaterOrEqual", "==": "equal",
        "!=": "notEqual"}
_FN = {"exp": "exp", "log": "ln", "sqrt": "sqrt", "tanh": "tanh", "abs": "abs", "floor": "floor", "ceil": "ceil"}
_TYPE = {"f": "float", "d": "double", "i": "integer", "b": "boolean", "s": "string"}


def _num(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "INF" if v > 0 else "-INF"
    return repr(float(v))


def _const(v: Any, dtype: str) -> str:
    if dtype == "boolean":
        return f'<Constant dataType="boolean">{"true" if v else "false"}</Constant>'
    if dtype == "string":
        return f'<Constant dataType="string">{escape(str(v))}</Constant>'
    if dtype == "integer":
        return f'<Constant dataType="integer">{int(v)}</Constant>'
    return f'<Constant dataType="double">{_num(float(v))}</Constant>'


def _apply(fn: str, *args: str) -> str:
    return f'<Apply function="{fn}">{"".join(args)}</Apply>'


class _Writer:
    def __init__(self, program: Any) -> None:
        self.p = program
        self.fields: list[str] = []  # DerivedField elements, in dependency order
        self.names: dict[int, str] = {}  # id(expr) -> field name
        self.missing: dict[int, bool] = {}
        self.col_fields: dict[int, str] = {}  # column index -> the field a Col reads
        self.col_types: dict[int, str] = {}
        self.done_ensembles: dict[tuple[int, int], str] = {}
        self._keep: list[Any] = []  # nodes made here: the tables above are keyed by id(), so they must live
        self._n = 0

    # ------------------------------------------------------------------ names and fields
    def new_name(self, hint: str = "v") -> str:
        self._n += 1
        return f"_{hint}{self._n}"

    def derive(self, body: str, dtype: str, hint: str = "v") -> str:
        name = self.new_name(hint)
        optype = "categorical" if dtype in ("boolean", "string") else "continuous"
        self.fields.append(f'<DerivedField name="{name}" optype="{optype}" dataType="{dtype}">{body}</DerivedField>')
        return name

    def ref(self, e: Any) -> str:
        from modelport.codegen.ir import Col, Num, Text

        if isinstance(e, Num):
            return _const(e.value, "integer" if e.kind == "i" and float(e.value).is_integer() else "double")
        if isinstance(e, Text):
            return _const(e.value, "string")
        if isinstance(e, Col):
            return f'<FieldRef field={quoteattr(self.col_fields[e.index])}/>'
        name = self.names.get(id(e))
        if name is None:
            name = self.define(e)
        return f'<FieldRef field={quoteattr(name)}/>'

    def may_miss(self, e: Any) -> bool:
        from modelport.codegen.ir import ArgMax, Cmp, Col, IsNaN, Logic, Num, Text, ToInt, TreeOut

        key = id(e)
        if key in self.missing:
            return self.missing[key]
        if isinstance(e, Col):
            c = self.p.columns[e.index]
            out = bool(c.nullable) or c.kind == "c"
        elif isinstance(e, (Num, Text, Cmp, IsNaN, Logic, ArgMax, ToInt, TreeOut)):
            out = False
        else:
            out = any(self.may_miss(c) for c in e.children())
        self.missing[key] = out
        return out

    def present(self, items: Sequence[Any]) -> str | None:
        """The condition 'none of ``items`` is missing', or None when none can be."""
        tests = [_apply("isNotMissing", self.ref(x)) for x in items if self.may_miss(x)]
        if not tests:
            return None
        return tests[0] if len(tests) == 1 else _apply("and", *tests)

    def guarded(self, items: Sequence[Any], body: str) -> str:
        cond = self.present(items)
        return body if cond is None else _apply("if", cond, body)

    # ------------------------------------------------------------------ nodes
    def define(self, e: Any) -> str:
        """A DerivedField for ``e`` (its children first); its name."""
        name = self.derive(self.body(e), _TYPE.get(e.kind, "double"))
        self.names[id(e)] = name
        return name

    def body(self, e: Any) -> str:
        from modelport.codegen import ir

        r = self.ref
        if isinstance(e, ir.Bin):
            if e.kind == "i":
                inner = _apply(e.op, r(e.a), r(e.b)) if e.op != "/" else _apply("floor", _apply("/", r(e.a), r(e.b)))
            else:
                inner = _apply(e.op, r(e.a), r(e.b))
            return self.guarded([e.a, e.b], inner)
        if isinstance(e, ir.Dot):
            acc = _const(e.bias, "double")
            for w, x in e.terms:  # left to right in double, as a GEMM row is summed
                acc = _apply("+", acc, _apply("*", _const(w, "double"), r(x)))
            return self.guarded([x for _, x in e.terms], acc)
        if isinstance(e, ir.Call):
            return self.call(e)
        if isinstance(e, ir.Cmp):
            inner = _apply(_CMP[e.op], r(e.a), r(e.b))
            cond = self.present([e.a, e.b])
            return inner if cond is None else _apply("if", cond, inner, _const(e.op == "!=", "boolean"))
        if isinstance(e, ir.IsNaN):
            return _apply("isMissing", r(e.a)) if self.may_miss(e.a) else _const(False, "boolean")
        if isinstance(e, ir.Logic):
            if e.op == "not":
                return _apply("not", r(e.args[0]))
            if not e.args:
                return _const(e.op == "and", "boolean")
            if len(e.args) == 1:
                return r(e.args[0])
            return _apply(e.op, *(r(a) for a in e.args))
        if isinstance(e, ir.Select):
            return _apply("if", r(e.cond), r(e.a), r(e.b))
        if isinstance(e, ir.ArgMax):
            return self.argmax(e)
        if isinstance(e, ir.Switch):
            out = r(e.default)
            for k in range(len(e.values) - 1, -1, -1):
                out = _apply("if", _apply("equal", r(e.index), _const(k, "integer")), r(e.values[k]), out)
            cond = self.present([e.index])
            return out if cond is None else _apply("if", cond, out, r(e.default))
        if isinstance(e, (ir.Round32, ir.ToFloat)):
            return r(e.a)  # the DerivedField's dataType (float / double) is the cast
        if isinstance(e, ir.ToInt):
            xv = r(e.a)
            trunc = _apply("if", _apply("lessThan", xv, _const(0.0, "double")), _apply("ceil", xv), _apply("floor", xv))
            cond = self.present([e.a])
            return trunc if cond is None else _apply("if", cond, trunc, _const(-(2**63), "integer"))
        if isinstance(e, ir.TreeOut):
            return f'<FieldRef field={quoteattr(self.ensemble(e.ensemble, e.target))}/>'
        if isinstance(e, ir.CouplingOut):
            raise ExportError(
                "the bundle's probabilities come from pairwise coupling (a multiclass SVC with probability=True), "
                "an iterative computation PMML cannot express.",
                hint="export it with --target container / mlflow, or compile it to C / Python (modelport compile)",
            )
        raise ExportError(f"the PMML target cannot express the IR node {type(e).__name__}.")

    def call(self, e: Any) -> str:
        from modelport.codegen import ir

        x = e.args[0]
        if e.fn in _FN:
            return self.guarded(list(e.args), _apply(_FN[e.fn], *(self.ref(a) for a in e.args)))
        if e.fn == "max":
            # the Python target's _max: the largest item above -FLT_MAX; NaN (missing) never wins
            best = _const(-_F32_MAX, "double")
            for a in e.args:
                gt = _apply("greaterThan", self.ref(a), best)
                cond = self.present([a])
                test = gt if cond is None else _apply("and", cond, gt)
                best = f'<FieldRef field="{self.derive(_apply("if", test, self.ref(a), best), _TYPE[e.kind])}"/>'
            return best
        if e.fn == "sigmoid":
            # ONNX Runtime's (and the other targets') stable form, one rounding per step
            k = e.kind
            neg = ir.Bin("-", ir.Num(0.0, kind=k), ir.Call("abs", (x,), kind=k), kind=k)
            den = ir.Bin("+", ir.Num(1.0, kind=k), ir.Call("exp", (neg,), kind=k), kind=k)
            v = ir.Bin("/", ir.Num(1.0, kind=k), den, kind=k)
            out = ir.Select(ir.Cmp("<", x, ir.Num(0.0, kind=k)), ir.Bin("-", ir.Num(1.0, kind=k), v, kind=k), v, kind=k)
            self._keep.append(out)
            return self.ref(out)
        raise ExportError(f"the PMML target has no function {e.fn!r}.")

    def argmax(self, e: Any) -> str:
        best_i = _const(0, "integer")
        best_v = self.ref(e.items[0])
        for i, item in enumerate(e.items[1:], start=1):
            gt = _apply("greaterThan", self.ref(item), best_v)
            cond = self.present([item, *e.items[:i]])
            test = gt if cond is None else _apply("if", cond, gt, _const(False, "boolean"))
            t = f'<FieldRef field="{self.derive(test, "boolean", "t")}"/>'
            best_i = f'<FieldRef field="{self.derive(_apply("if", t, _const(i, "integer"), best_i), "integer", "i")}"/>'
            best_v = f'<FieldRef field="{self.derive(_apply("if", t, self.ref(item), best_v), "double", "m")}"/>'
        return best_i

    # ------------------------------------------------------------------ trees
    def ensemble(self, ens: Any, target: int) -> str:
        key = (id(ens), target)
        if key in self.done_ensembles:
            return self.done_ensembles[key]
        dtype = "double" if ens.double else "float"
        agg = ens.aggregate
        empty = {"MIN": math.inf, "MAX": -math.inf}.get(agg, 0.0)
        acc = _const(empty, "double")
        for tree in ens.trees:
            if not self._touches(tree, target):
                continue
            value = self.derive(self._node(ens, tree, target, empty), "double", "tree")
            if agg in ("SUM", "AVERAGE"):
                step = _apply("+", acc, f'<FieldRef field="{value}"/>')
            else:
                step = _apply("min" if agg == "MIN" else "max", acc, f'<FieldRef field="{value}"/>')
            acc = f'<FieldRef field="{self.derive(step, dtype, "acc")}"/>'
        if agg in ("MIN", "MAX"):  # a target no tree voted for scores 0, like ONNX Runtime
            acc = _apply("if", _apply("equal", acc, _const(empty, "double")), _const(0.0, "double"), acc)
        name = self.derive(acc, dtype, "ens")
        self.done_ensembles[key] = name
        return name

    def _touches(self, node: Any, target: int) -> bool:
        from modelport.codegen.ir import Leaf

        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, Leaf):
                if target in n.weights:
                    return True
            else:
                stack.extend((n.true, n.false))
        return False

    def _node(self, ens: Any, node: Any, target: int, empty: float) -> str:
        from modelport.codegen.ir import Leaf, split_condition

        if isinstance(node, Leaf):
            return _const(node.weights.get(target, empty), "double")
        x = ens.inputs[node.feature]
        c = split_condition(x, node)
        self._keep.append(c)
        cond = self.inline(c)
        return _apply("if", cond, self._node(ens, node.true, target, empty), self._node(ens, node.false, target, empty))

    def inline(self, c: Any) -> str:
        """A split condition (Cmp / IsNaN / Logic over the feature and numbers) as one expression."""
        from modelport.codegen import ir

        if isinstance(c, ir.Cmp):
            return self.body(c)
        if isinstance(c, ir.IsNaN):
            return self.body(c)
        if isinstance(c, ir.Logic):
            if not c.args:
                return _const(c.op == "and", "boolean")
            parts = [self.inline(a) for a in c.args]
            return parts[0] if len(parts) == 1 else _apply(c.op, *parts)
        return self.ref(c)


def to_pmml(program: Any, *, name: str = "model", description: str = "") -> str:
    """The PMML 4.4 text of an IR :class:`~modelport.codegen.ir.Program`."""
    from modelport.codegen.ir import Col, topo

    p = program
    if p.task not in ("classification", "regression"):
        raise ExportError(f"the PMML target exports classifiers and regressors; this bundle's task is {p.task!r}.")
    w = _Writer(p)
    order, _ = topo([*p.scores, *([p.label] if p.label is not None else [])])
    kinds: dict[int, str] = {}
    for e in order:
        if isinstance(e, Col):
            kinds.setdefault(e.index, e.kind)
    taken = {c.name for c in p.columns}
    data_fields = []
    mining = []
    for i, c in enumerate(p.columns):
        mf = f'<MiningField name={quoteattr(c.name)}'
        if c.kind == "c":
            cats = list(c.categories or ())
            dtype = "string" if any(isinstance(v, str) for v in cats) else (
                "integer" if all(isinstance(v, int) or float(v).is_integer() for v in cats) else "double")
            values = "".join(f"<Value value={quoteattr(str(v if dtype != 'integer' else int(v)))}/>" for v in cats)
            data_fields.append(f'<DataField name={quoteattr(c.name)} optype="categorical" dataType="{dtype}">'
                               f"{values}</DataField>")
            unknown = getattr(c, "unknown", None)
            mf += f' invalidValueTreatment="{"asMissing" if unknown == "missing" else "returnInvalid"}"'
            body = None
            for k in range(len(cats) - 1, -1, -1):
                lit = _const(cats[k], dtype)
                body = _apply("if", _apply("equal", f"<FieldRef field={quoteattr(c.name)}/>", lit),
                              _const(float(k), "double"), body) if body is not None else _apply(
                    "if", _apply("equal", f"<FieldRef field={quoteattr(c.name)}/>", lit), _const(float(k), "double"))
            cond = _apply("isNotMissing", f"<FieldRef field={quoteattr(c.name)}/>")
            w.col_fields[i] = w.derive(_apply("if", cond, body or _const(0.0, "double")), "double", "code")
        else:
            kind = kinds.get(i, c.kind)
            dtype = {"f": "float", "d": "double", "i": "integer", "s": "string"}.get(kind, "double")
            optype = "categorical" if dtype == "string" else "continuous"
            data_fields.append(f'<DataField name={quoteattr(c.name)} optype="{optype}" dataType="{dtype}"/>')
            w.col_fields[i] = c.name
        mining.append(mf + "/>")
    for e in order:
        if id(e) not in w.names and not _leafish(e):
            w.define(e)
    scores = [w.names.get(id(s)) or w.define(s) if not _leafish(s) else None for s in p.scores]
    score_fields = []
    for s, f in zip(p.scores, scores):
        if f is None:  # a constant or a column: give it a field of its own
            f = w.derive(w.ref(s), "double", "score")
        score_fields.append(f)

    def fresh(n: str) -> str:
        while n in taken:
            n = f"{n}_"
        taken.add(n)
        return n

    outputs = []
    if p.task == "classification":
        classes = list(p.classes or [])
        cdtype = "integer" if all(isinstance(c, int) and not isinstance(c, bool) for c in classes) else "string"
        target = fresh("label")
        values = "".join(f"<Value value={quoteattr(str(c))}/>" for c in classes)
        data_fields.append(f'<DataField name={quoteattr(target)} optype="categorical" dataType="{cdtype}">{values}'
                           "</DataField>")
        tables = "".join(
            f'<RegressionTable targetCategory={quoteattr(str(c))} intercept="0">'
            f'<NumericPredictor name={quoteattr(f)} coefficient="1"/></RegressionTable>'
            for c, f in zip(classes, score_fields)
        )
        outputs.append(f'<OutputField name={quoteattr(target)} optype="categorical" dataType="{cdtype}" '
                       'feature="predictedValue"/>')
        for c, f in zip(classes, score_fields):
            # the bundle's own values: JPMML's feature="probability" of a binary model is 1 - p(first),
            # which is not the bundle's float32 p(second)
            outputs.append(f'<OutputField name={quoteattr(fresh(f"probability({c})"))} optype="continuous" '
                           f'dataType="double" feature="transformedValue"><FieldRef field={quoteattr(f)}/>'
                           "</OutputField>")
        model = (f'<RegressionModel modelName={quoteattr(name)} functionName="classification" '
                 'normalizationMethod="none">')
    else:
        target = fresh(p.score_names[0])
        data_fields.append(f'<DataField name={quoteattr(target)} optype="continuous" dataType="double"/>')
        tables = (f'<RegressionTable intercept="0"><NumericPredictor name={quoteattr(score_fields[0])} '
                  'coefficient="1"/></RegressionTable>')
        for sname, f in zip(p.score_names[1:], score_fields[1:]):
            outputs.append(f'<OutputField name={quoteattr(fresh(sname))} optype="continuous" dataType="double" '
                           f'feature="transformedValue"><FieldRef field={quoteattr(f)}/></OutputField>')
        model = f'<RegressionModel modelName={quoteattr(name)} functionName="regression">'
    mining.insert(0, f'<MiningField name={quoteattr(target)} usageType="target"/>')
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">',
        f'  <Header description={quoteattr(description or f"{name}, exported by modelport")}>'
        '<Application name="modelport"/></Header>',
        f'  <DataDictionary numberOfFields="{len(data_fields)}">',
        *(f"    {d}" for d in data_fields),
        "  </DataDictionary>",
        "  <TransformationDictionary>",
        *(f"    {d}" for d in w.fields),
        "  </TransformationDictionary>",
        f"  {model}",
        "    <MiningSchema>" + "".join(mining) + "</MiningSchema>",
        *(["    <Output>" + "".join(outputs) + "</Output>"] if outputs else []),
        f"    {tables}",
        "  </RegressionModel>",
        "</PMML>",
    ]
    return "\n".join(out) + "\n"


def _leafish(e: Any) -> bool:
    from modelport.codegen.ir import Col, Num, Text

    return isinstance(e, (Num, Text, Col))


def export(bundle: Any, output: str | os.PathLike[str], *, overwrite: bool = False) -> Any:
    """Write ``bundle`` as PMML: ``output`` is a ``.pmml`` / ``.xml`` file, or a directory that
    receives ``model.pmml`` and ``export.json``."""
    from modelport.codegen.ir import lower
    from modelport.export import _artifact
    from modelport.export._result import ExportResult

    try:
        program = lower(bundle)
    except CodegenError as exc:
        raise ExportError(
            f"bundle {bundle.name!r} cannot be written as PMML: {exc.message}",
            hint="PMML export covers the models `modelport compile` covers (trees and forests, linear and logistic "
                 "models and their encoders and scalers)",
        ) from None
    text = to_pmml(program, name=bundle.name, description=bundle.manifest.get("description") or "")
    data = text.encode("utf-8")
    out = Path(output)
    if out.suffix.lower() in (".pmml", ".xml"):
        if out.exists() and not overwrite:
            raise ExportError(f"{out} exists.", hint="choose a new file, or pass --overwrite (overwrite=True)")
        if out.exists() and out.is_dir():
            raise ExportError(f"{out} is a directory; the PMML target writes a file there.")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)
        return ExportResult("pmml", out, bundle.name, bundle.digest, files={"pmml": out.name},
                            sizes={"pmml": len(data)}, details={"pmml_version": "4.4"})
    with _artifact.staging(out, overwrite=overwrite) as root:
        (root / "model.pmml").write_bytes(data)
        result = ExportResult("pmml", out, bundle.name, bundle.digest, files={"pmml": "model.pmml"},
                              sizes={"pmml": len(data)}, details={"pmml_version": "4.4"})
        result.write_summary(root)
    return result
