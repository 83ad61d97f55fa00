"""PMML's data and transformation semantics over a :class:`~.backend.Backend`: fields and their
values, MiningSchema treatments, the expressions of TransformationDictionary / LocalTransformations
(Constant, FieldRef, NormContinuous, NormDiscrete, Discretize, MapValues, Apply), predicates with
PMML's three-valued logic, Targets and the parts of Output that models need.

A value is a :class:`Val`: one float64 column (``NaN`` = missing) plus, for string-valued fields,
the *domain* the column codes into (code ``k`` is ``domain[k]``, ``-1`` a string outside it). A
predicate is a pair of boolean columns ``(true, false)``; rows where neither holds are UNKNOWN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.convert.pmml.backend import Backend
from modelport.convert.pmml.reader import Element
from modelport.errors import ConversionError, UnsupportedModelError

NUMERIC_TYPES = ("integer", "float", "double", "boolean")
OTHER = -1.0  # the code of a string outside a field's domain


def where_(el: Element) -> str:
    return f"<{el.tag}> at line {el.line}"


def unsupported(el: Element, what: str | None = None, hint: str | None = None) -> UnsupportedModelError:
    text = what or f"the PMML element <{el.tag}> is not supported"
    return UnsupportedModelError(f"{text} ({where_(el)}).", hint=hint)


def bad(el: Element, what: str) -> ConversionError:
    return ConversionError(f"{where_(el)}: {what}")


def attr(el: Element, name: str, default: str | None = None, *, required: bool = False) -> str | None:
    v = el.attrs.get(name)
    if v is None:
        if required:
            raise bad(el, f"the attribute {name!r} is required.")
        return default
    return v


def number(el: Element, name: str, default: float | None = None, *, required: bool = False) -> float | None:
    v = attr(el, name, required=required)
    if v is None:
        return default
    return parse_number(v, el, name)


def parse_number(text: str, el: Element, name: str = "value") -> float:
    t = text.strip()
    special = {"NaN": math.nan, "INF": math.inf, "-INF": -math.inf, "Infinity": math.inf, "-Infinity": -math.inf}
    if t in special:
        return special[t]
    try:
        return float(t)
    except ValueError:
        raise bad(el, f"{name} must be a number; got {text[:60]!r}.") from None


def known_children(el: Element, allowed: Sequence[str]) -> None:
    """Every child of ``el`` must be one modelport reads (Extension is always allowed)."""
    for c in el.children:
        if c.tag != "Extension" and c.tag not in allowed:
            raise unsupported(c, f"the PMML element <{c.tag}> inside <{el.tag}> is not supported")


# --------------------------------------------------------------------------- fields


@dataclass
class FieldDef:
    """A DataField or DerivedField's declared type and value space."""

    name: str
    optype: str
    dtype: str
    values: tuple[Any, ...] = ()  # valid values (typed), in document order
    texts: tuple[str, ...] = ()  # their text as written
    missing_values: tuple[Any, ...] = ()
    invalid_values: tuple[Any, ...] = ()
    intervals: tuple[tuple[str, float, float], ...] = ()
    line: int = 0

    @property
    def numeric(self) -> bool:
        return self.dtype in NUMERIC_TYPES

    def typed(self, text: str, el: Element) -> Any:
        return typed_value(text, self.dtype, el)


def typed_value(text: str, dtype: str, el: Element) -> Any:
    if dtype in ("integer", "float", "double"):
        v = parse_number(text, el)
        if dtype == "float":
            v = float(np.float32(v))
        return v
    if dtype == "boolean":
        t = text.strip().lower()
        if t in ("true", "1"):
            return 1.0
        if t in ("false", "0"):
            return 0.0
        raise bad(el, f"a boolean value must be true or false; got {text[:40]!r}.")
    return text


def read_data_field(el: Element) -> FieldDef:
    known_children(el, ("Value", "Interval"))
    name = attr(el, "name", required=True)
    assert name is not None
    optype = attr(el, "optype", required=True)
    dtype = attr(el, "dataType", required=True)
    assert optype is not None and dtype is not None
    if optype not in ("continuous", "categorical", "ordinal"):
        raise bad(el, f"optype must be continuous, categorical or ordinal; got {optype!r}.")
    if dtype not in (*NUMERIC_TYPES, "string"):
        raise unsupported(el, f"DataField {name!r} has dataType {dtype!r}; modelport reads string, integer, float, "
                              "double and boolean fields", hint="dates and times are not supported")
    f = FieldDef(name, optype, dtype, line=el.line)
    values, texts, missing, invalid = [], [], [], []
    for v in el.findall("Value"):
        text = attr(v, "value", required=True)
        assert text is not None
        prop = attr(v, "property", "valid")
        if prop == "valid":
            values.append(f.typed(text, v))
            texts.append(text)
        elif prop == "missing":
            missing.append(f.typed(text, v) if dtype != "string" else text)
        elif prop == "invalid":
            invalid.append(f.typed(text, v) if dtype != "string" else text)
        else:
            raise bad(v, f"Value property must be valid, invalid or missing; got {prop!r}.")
    intervals = []
    for iv in el.findall("Interval"):
        closure = attr(iv, "closure", required=True)
        assert closure is not None
        if closure not in ("openClosed", "openOpen", "closedOpen", "closedClosed"):
            raise bad(iv, f"unknown closure {closure!r}.")
        lo = number(iv, "leftMargin", -math.inf)
        hi = number(iv, "rightMargin", math.inf)
        assert lo is not None and hi is not None
        intervals.append((closure, lo, hi))
    f.values, f.texts = tuple(values), tuple(texts)
    f.missing_values, f.invalid_values = tuple(missing), tuple(invalid)
    f.intervals = tuple(intervals)
    return f


@dataclass
class Val:
    """A field's value per row: numbers (``domain is None``) or codes into ``domain``."""

    data: Any
    domain: tuple[str, ...] | None = None
    ordinal: tuple[str, ...] | None = None  # the order of an ordinal string field


# --------------------------------------------------------------------------- the environment


@dataclass
class MiningField:
    name: str
    usage: str
    missing_replacement: str | None
    missing_treatment: str
    invalid_treatment: str
    invalid_replacement: str | None
    outliers: str
    low: float | None
    high: float | None
    el: Element


def read_mining_schema(el: Element) -> list[MiningField]:
    known_children(el, ("MiningField",))
    out = []
    for mf in el.findall("MiningField"):
        name = attr(mf, "name", required=True)
        assert name is not None
        usage = attr(mf, "usageType", "active") or "active"
        if usage not in ("active", "target", "predicted", "supplementary", "group", "order", "frequencyWeight",
                         "analysisWeight"):
            raise bad(mf, f"unknown usageType {usage!r}.")
        if usage in ("group", "order", "frequencyWeight", "analysisWeight") :
            raise unsupported(mf, f"MiningField usageType {usage!r} (association and sequence models) is not supported")
        inv = attr(mf, "invalidValueTreatment", "returnInvalid") or "returnInvalid"
        if inv not in ("returnInvalid", "asIs", "asMissing", "asValue"):
            raise bad(mf, f"unknown invalidValueTreatment {inv!r}.")
        mis = attr(mf, "missingValueTreatment", "asIs") or "asIs"
        if mis not in ("asIs", "asMean", "asMode", "asMedian", "asValue", "returnInvalid"):
            raise bad(mf, f"unknown missingValueTreatment {mis!r}.")
        outliers = attr(mf, "outliers", "asIs") or "asIs"
        if outliers not in ("asIs", "asMissingValues", "asExtremeValues"):
            raise bad(mf, f"unknown outliers treatment {outliers!r}.")
        out.append(MiningField(
            name, usage, attr(mf, "missingValueReplacement"), mis, inv, attr(mf, "invalidValueReplacement"),
            outliers, number(mf, "lowValue"), number(mf, "highValue"), mf,
        ))
    return out


class Env:
    """Field values visible to one model: lazily evaluated, memoised per field name."""

    def __init__(self, doc: Any, backend: Backend, parent: Env | None = None) -> None:
        self.doc = doc
        self.b = backend
        self.parent = parent
        self.values: dict[str, Val] = {}
        self.defs: dict[str, FieldDef] = {}
        self.derived: dict[str, Element] = {}
        self._busy: set[str] = set()

    def child(self) -> Env:
        return Env(self.doc, self.b, self)

    def define(self, el: Element) -> None:
        """Add the DerivedFields of a TransformationDictionary or LocalTransformations."""
        known_children(el, ("DerivedField", "DefineFunction"))
        for d in el.findall("DerivedField"):
            name = attr(d, "name", required=True)
            assert name is not None
            self.derived[name] = d
        for fn in el.findall("DefineFunction"):
            self.doc.functions[attr(fn, "name", required=True)] = fn

    def set(self, name: str, val: Val, fdef: FieldDef | None = None) -> None:
        self.values[name] = val
        if fdef is not None:
            self.defs[name] = fdef

    def fdef(self, name: str) -> FieldDef | None:
        e: Env | None = self
        while e is not None:
            if name in e.defs:
                return e.defs[name]
            e = e.parent
        return None

    def get(self, name: str, el: Element) -> Val:
        e: Env | None = self
        while e is not None:
            if name in e.values:
                return e.values[name]
            if name in e.derived:
                return e._derive(name)
            e = e.parent
        raise bad(el, f"the field {name!r} is not defined (no DataField, DerivedField or OutputField of that name "
                      "is visible here).")

    def _derive(self, name: str) -> Val:
        d = self.derived[name]
        if name in self._busy:
            raise bad(d, f"the DerivedField {name!r} refers to itself.")
        self._busy.add(name)
        try:
            exprs = [c for c in d.children if c.tag != "Extension" and c.tag != "Value" and c.tag != "Interval"]
            if len(exprs) != 1:
                raise bad(d, f"the DerivedField {name!r} must hold one expression; it holds {len(exprs)}.")
            dtype = attr(d, "dataType", required=True) or "double"
            optype = attr(d, "optype", required=True) or "continuous"
            val = expression(exprs[0], self, dtype)
            val = cast(self.b, val, dtype, d)
            fdef = FieldDef(name, optype, dtype, line=d.line)
            if dtype == "string" and optype == "ordinal":
                vals = tuple(attr(v, "value") or "" for v in d.findall("Value"))
                if vals and val.domain is not None:
                    val = recode(self.b, val, tuple(dict.fromkeys([*vals, *val.domain])))
                    val.ordinal = vals
            self.values[name] = val
            self.defs[name] = fdef
            return val
        finally:
            self._busy.discard(name)


def cast(b: Backend, val: Val, dtype: str, el: Element) -> Val:
    """A value as a field of ``dtype``: float32 rounding for float, whole numbers for integer."""
    if dtype == "string":
        if val.domain is None:
            raise unsupported(el, "turning numbers into text (a string DerivedField over a numeric expression) is "
                                  "not supported")
        return val
    if val.domain is not None:
        nums = [_as_number(s) for s in val.domain]
        if any(n is None for n in nums):
            raise bad(el, f"a {dtype} field cannot hold the text values {list(val.domain)[:5]}.")
        return Val(b.lookup([float(n) for n in nums if n is not None], val.data))
    if dtype == "float":
        return Val(b.f32(val.data))
    if dtype == "integer":  # Java's (int) cast of a double: toward zero
        x = val.data
        return Val(b.where(b.compare("lt", x, b.const(0.0)), b.unary("ceil", x), b.unary("floor", x)))
    return val


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def recode(b: Backend, val: Val, domain: tuple[str, ...]) -> Val:
    """The codes of ``val`` in another domain (values outside it become OTHER)."""
    assert val.domain is not None
    if val.domain == domain:
        return Val(val.data, domain, val.ordinal)
    pos = {s: i for i, s in enumerate(domain)}
    table = [float(pos.get(s, OTHER)) for s in val.domain]
    looked = b.lookup(table, val.data)
    # OTHER stays OTHER; missing stays missing
    other = b.compare("eq", val.data, b.const(OTHER))
    return Val(b.where(other, b.const(OTHER), looked), domain, val.ordinal)


def string_const(b: Backend, text: str) -> Val:
    return Val(b.full(0.0), (text,))


def union_domain(vals: Sequence[Val]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for v in vals:
        out.update(dict.fromkeys(v.domain or ()))
    return tuple(out)


# --------------------------------------------------------------------------- expressions


def expression(el: Element, env: Env, want: str | None = None) -> Val:
    """The value of an expression element."""
    b = env.b
    tag = el.tag
    if tag == "Constant":
        if attr(el, "missing") == "true":
            return Val(b.nan())
        dtype = attr(el, "dataType") or (want if want in (*NUMERIC_TYPES, "string") else None)
        text = el.text.strip() if dtype != "string" else el.text
        if dtype is None:
            dtype = "double" if _as_number(text) is not None else "string"
        if dtype == "string":
            return string_const(b, el.text)
        return Val(b.full(float(typed_value(text, dtype, el))))
    if tag == "FieldRef":
        name = attr(el, "field", required=True)
        assert name is not None
        v = env.get(name, el)
        return _map_missing(b, v, attr(el, "mapMissingTo"), el, env)
    if tag == "NormContinuous":
        return _norm_continuous(el, env)
    if tag == "NormDiscrete":
        name = attr(el, "field", required=True)
        assert name is not None
        v = env.get(name, el)
        value = attr(el, "value", required=True)
        assert value is not None
        hit = equals(b, v, value, el, env.fdef(name))
        out = Val(b.where(b.isnan(v.data), b.nan(), b.to_float(hit)))
        return _map_missing(b, out, attr(el, "mapMissingTo"), el, env, missing_of=v)
    if tag == "Discretize":
        return _discretize(el, env)
    if tag == "MapValues":
        return _map_values(el, env)
    if tag == "Apply":
        return apply(el, env)
    if tag in ("TextIndex", "Aggregate", "Lag"):
        raise unsupported(el)
    raise unsupported(el, f"the PMML expression <{tag}> is not supported")


def _map_missing(b: Backend, v: Val, replacement: str | None, el: Element, env: Env,
                 missing_of: Val | None = None) -> Val:
    if replacement is None:
        return v
    probe = missing_of if missing_of is not None else v
    is_missing = b.isnan(probe.data)
    if v.domain is not None:
        dom = tuple(dict.fromkeys([*v.domain, replacement]))
        v2 = recode(b, v, dom)
        return Val(b.where(is_missing, b.const(float(dom.index(replacement))), v2.data), dom, v.ordinal)
    return Val(b.where(is_missing, b.const(parse_number(replacement, el, "mapMissingTo")), v.data))


def equals(b: Backend, v: Val, text: str, el: Element, fdef: FieldDef | None = None) -> Any:
    """``v == text`` per row (False where missing), typed by the field."""
    if v.domain is not None:
        if text in v.domain:
            return b.compare("eq", v.data, b.const(float(v.domain.index(text))))
        return b.false()
    dtype = fdef.dtype if fdef is not None and fdef.numeric else "double"
    num = typed_value(text, dtype, el) if dtype != "double" else parse_number(text, el)
    return b.compare("eq", v.data, b.const(float(num)))


def _norm_continuous(el: Element, env: Env) -> Val:
    b = env.b
    known_children(el, ("LinearNorm",))
    name = attr(el, "field", required=True)
    assert name is not None
    v = env.get(name, el)
    if v.domain is not None:
        raise bad(el, f"NormContinuous over the text field {name!r}.")
    norms = [(number(n, "orig", required=True), number(n, "norm", required=True)) for n in el.findall("LinearNorm")]
    if len(norms) < 2:
        raise bad(el, "NormContinuous needs at least two LinearNorm elements.")
    pts = [(float(o), float(n)) for o, n in norms if o is not None and n is not None]
    if any(pts[i][0] > pts[i + 1][0] for i in range(len(pts) - 1)):
        raise bad(el, "the LinearNorm elements must be in increasing order of orig.")
    x = v.data
    outliers = attr(el, "outliers", "asIs")

    def seg(i: int) -> Any:
        (a1, b1), (a2, b2) = pts[i], pts[i + 1]
        slope = (b2 - b1) / (a2 - a1) if a2 != a1 else 0.0
        return b.add(b.const(b1), b.mul(b.binary("-", x, b.const(a1)), b.const(slope)))

    out = seg(len(pts) - 2)
    for i in range(len(pts) - 3, -1, -1):
        out = b.where(b.compare("le", x, b.const(pts[i + 1][0])), seg(i), out)
    lo_x, lo_n = pts[0]
    hi_x, hi_n = pts[-1]
    below = b.compare("lt", x, b.const(lo_x))
    above = b.compare("gt", x, b.const(hi_x))
    if outliers == "asMissingValues":
        out = b.nan_where(b.logic("or", below, above), out)
    elif outliers == "asExtremeValues":
        out = b.where(below, b.const(lo_n), b.where(above, b.const(hi_n), out))
    elif outliers != "asIs":
        raise bad(el, f"unknown outliers treatment {outliers!r}.")
    out = b.nan_where(b.isnan(x), out)
    return _map_missing(b, Val(out), attr(el, "mapMissingTo"), el, env, missing_of=v)


def interval_test(b: Backend, x: Any, closure: str, lo: float, hi: float) -> Any:
    left = b.compare("ge" if closure.startswith("closed") else "gt", x, b.const(lo))
    right = b.compare("le" if closure.endswith("Closed") else "lt", x, b.const(hi))
    return b.logic("and", left, right)


def read_interval(iv: Element) -> tuple[str, float, float]:
    closure = attr(iv, "closure", required=True) or ""
    if closure not in ("openClosed", "openOpen", "closedOpen", "closedClosed"):
        raise bad(iv, f"unknown closure {closure!r}.")
    lo = number(iv, "leftMargin", -math.inf)
    hi = number(iv, "rightMargin", math.inf)
    assert lo is not None and hi is not None
    return closure, lo, hi


def _discretize(el: Element, env: Env) -> Val:
    b = env.b
    known_children(el, ("DiscretizeBin",))
    name = attr(el, "field", required=True)
    assert name is not None
    v = env.get(name, el)
    if v.domain is not None:
        raise bad(el, f"Discretize over the text field {name!r}.")
    dtype = attr(el, "dataType", "string")
    bins = []
    for db in el.findall("DiscretizeBin"):
        iv = db.find("Interval")
        if iv is None:
            raise bad(db, "a DiscretizeBin needs an Interval.")
        bins.append((attr(db, "binValue", required=True) or "", read_interval(iv)))
    default = attr(el, "defaultValue")
    mapmiss = attr(el, "mapMissingTo")
    numeric = dtype in NUMERIC_TYPES
    labels = [bv for bv, _ in bins] + [t for t in (default, mapmiss) if t is not None]
    domain = tuple(dict.fromkeys(labels))

    def code(text: str | None) -> Any:
        if text is None:
            return b.nan()
        return b.const(parse_number(text, el) if numeric else float(domain.index(text)))

    x = v.data
    out = code(default)
    for bv, (closure, lo, hi) in reversed(bins):
        out = b.where(interval_test(b, x, closure, lo, hi), code(bv), out)
    out = b.where(b.isnan(x), code(mapmiss), out)
    return Val(out) if numeric else Val(out, domain)


def _map_values(el: Element, env: Env) -> Val:
    b = env.b
    known_children(el, ("FieldColumnPair", "InlineTable", "TableLocator"))
    if el.find("TableLocator") is not None:
        raise unsupported(el.find("TableLocator"), "MapValues over an external table (TableLocator) is not supported")  # type: ignore[arg-type]
    table = el.find("InlineTable")
    if table is None:
        raise bad(el, "MapValues needs an InlineTable.")
    out_col = attr(el, "outputColumn", required=True) or ""
    dtype = attr(el, "dataType", "string")
    numeric = dtype in NUMERIC_TYPES
    pairs = []
    for p in el.findall("FieldColumnPair"):
        fname = attr(p, "field", required=True)
        assert fname is not None
        pairs.append((env.get(fname, p), attr(p, "column", required=True) or "", env.fdef(fname), p))
    rows = []
    for r in table.children:
        if r.tag == "Extension":
            continue
        if r.tag != "row":
            raise unsupported(r, f"<{r.tag}> inside an InlineTable is not supported")
        cells = {c.tag: c.text for c in r.children}
        if out_col not in cells:
            continue
        rows.append(cells)
    default = attr(el, "defaultValue")
    mapmiss = attr(el, "mapMissingTo")
    texts = [c[out_col] for c in rows if out_col in c] + [t for t in (default, mapmiss) if t is not None]
    domain = tuple(dict.fromkeys(texts))

    def code(text: str | None) -> Any:
        if text is None:
            return b.nan()
        return b.const(parse_number(text, el) if numeric else float(domain.index(text)))

    any_missing = b.false()
    for v, _, _, _ in pairs:
        any_missing = b.logic("or", any_missing, b.isnan(v.data))
    out = code(default)
    for cells in reversed(rows):
        hit = b.true()
        ok = True
        for v, col, fdef, p in pairs:
            if col not in cells:
                ok = False
                break
            hit = b.logic("and", hit, equals(b, v, cells[col], p, fdef))
        if ok:
            out = b.where(hit, code(cells[out_col]), out)
    out = b.where(any_missing, code(mapmiss), out)
    return Val(out) if numeric else Val(out, domain)


# --------------------------------------------------------------------------- Apply

_ARITH = {"+": "+", "-": "-", "*": "*", "/": "/"}
_UNARY_FUNCS = {"exp": "exp", "ln": "ln", "sqrt": "sqrt", "abs": "abs", "floor": "floor", "ceil": "ceil",
                "x-tanh": "tanh", "tanh": "tanh", "x-sin": "sin", "x-cos": "cos", "x-tan": "tan", "sin": "sin",
                "cos": "cos", "tan": "tan", "x-asin": "asin", "x-acos": "acos", "x-atan": "atan", "asin": "asin",
                "acos": "acos", "atan": "atan", "x-sinh": "sinh", "x-cosh": "cosh", "sinh": "sinh", "cosh": "cosh"}
_COMPARE = {"equal": "eq", "notEqual": "ne", "lessThan": "lt", "lessOrEqual": "le", "greaterThan": "gt",
            "greaterOrEqual": "ge"}


def apply(el: Element, env: Env) -> Val:
    b = env.b
    fn = attr(el, "function", required=True) or ""
    arg_els = [c for c in el.children if c.tag != "Extension"]
    if fn in env.doc.functions:
        return _user_function(el, env, env.doc.functions[fn], arg_els)
    if fn == "if":
        if len(arg_els) not in (2, 3):
            raise bad(el, f"if takes 2 or 3 arguments; got {len(arg_els)}.")
        cond = expression(arg_els[0], env)
        then = expression(arg_els[1], env)
        other = expression(arg_els[2], env) if len(arg_els) == 3 else Val(b.nan(), then.domain)
        if then.domain is not None or other.domain is not None:
            if then.domain is None or other.domain is None:
                raise bad(el, "the branches of if must both be text or both be numbers.")
            dom = union_domain([then, other])
            then, other = recode(b, then, dom), recode(b, other, dom)
        t = b.compare("ne", cond.data, b.const(0.0))
        out = b.nan_where(b.isnan(cond.data), b.where(t, then.data, other.data))
        result = Val(out, then.domain)
        return _apply_defaults(el, env, result, [cond])
    if fn in ("isMissing", "isNotMissing"):
        if len(arg_els) != 1:
            raise bad(el, f"{fn} takes one argument.")
        v = expression(arg_els[0], env)
        m = b.isnan(v.data)
        return Val(b.to_float(m if fn == "isMissing" else b.logic("not", m)))
    if fn in ("isValid", "isNotValid"):
        raise unsupported(el, f"the PMML function {fn!r} is not supported")
    args = [expression(a, env) for a in arg_els]
    if fn in ("isIn", "isNotIn"):
        if len(args) < 2:
            raise bad(el, f"{fn} takes a value and at least one candidate.")
        hit = b.false()
        for a, a_el in zip(args[1:], arg_els[1:]):
            hit = b.logic("or", hit, _same(b, args[0], a, a_el))
        if fn == "isNotIn":
            hit = b.logic("not", hit)
        return _apply_defaults(el, env, _unless_missing(b, hit, args[:1]), args[:1])
    if fn in _COMPARE:
        if len(args) != 2:
            raise bad(el, f"{fn} takes two arguments.")
        x, y = args
        if x.domain is not None or y.domain is not None:
            if fn not in ("equal", "notEqual"):
                raise unsupported(el, f"{fn} on text values is not supported")
            r = _same(b, x, y, el)
            if fn == "notEqual":
                r = b.logic("not", r)
        else:
            r = b.compare(_COMPARE[fn], x.data, y.data)
        return _apply_defaults(el, env, _unless_missing(b, r, args), args)
    if any(a.domain is not None for a in args):
        raise bad(el, f"the function {fn!r} takes numbers; an argument is text.")
    xs = [a.data for a in args]
    if fn in ("and", "or"):
        if len(xs) < 2:
            raise bad(el, f"{fn} takes at least two arguments.")
        r = b.compare("ne", xs[0], b.const(0.0))
        for x in xs[1:]:
            r = b.logic(fn, r, b.compare("ne", x, b.const(0.0)))
        return _apply_defaults(el, env, _unless_missing(b, r, args), args)
    if fn == "not":
        _arity(el, fn, xs, 1)
        return _apply_defaults(el, env, _unless_missing(b, b.compare("eq", xs[0], b.const(0.0)), args), args)
    if fn in _ARITH:
        _arity(el, fn, xs, 2)
        r = b.binary(_ARITH[fn], xs[0], xs[1])
        if fn == "/":  # JPMML: a division by zero is an invalid result
            r = b.nan_where(b.compare("eq", xs[1], b.const(0.0)), r)
    elif fn in _UNARY_FUNCS:
        _arity(el, fn, xs, 1)
        r = b.unary(_UNARY_FUNCS[fn], xs[0])
    elif fn == "log10":
        _arity(el, fn, xs, 1)
        r = b.binary("/", b.unary("ln", xs[0]), b.const(math.log(10.0)))
    elif fn in ("pow", "x-pow"):
        _arity(el, fn, xs, 2)
        r = b.binary("pow", xs[0], xs[1])
    elif fn == "threshold":
        _arity(el, fn, xs, 2)
        r = b.to_float(b.compare("gt", xs[0], xs[1]))
    elif fn == "round":
        _arity(el, fn, xs, 1)
        r = b.round_half_up(xs[0])
    elif fn in ("rint", "x-rint"):
        _arity(el, fn, xs, 1)
        r = _rint(b, xs[0])
    elif fn in ("min", "max", "sum", "avg", "product", "median"):
        if not xs:
            raise bad(el, f"{fn} takes at least one argument.")
        r = _aggregate(b, fn, xs, el)
    elif fn in ("x-expm1", "expm1"):
        _arity(el, fn, xs, 1)
        r = b.binary("-", b.unary("exp", xs[0]), b.const(1.0))
    elif fn in ("x-ln1p", "ln1p"):
        _arity(el, fn, xs, 1)
        r = b.unary("ln", b.binary("+", xs[0], b.const(1.0)))
    elif fn in ("x-atan2", "atan2"):
        raise unsupported(el, f"the PMML function {fn!r} is not supported")
    elif fn in ("stdNormalCDF", "x-stdNormalCDF"):
        _arity(el, fn, xs, 1)
        r = b.mul(b.const(0.5), b.binary("+", b.const(1.0), b.unary("erf", b.mul(xs[0], b.const(1 / math.sqrt(2))))))
    elif fn in ("x-logit", "logit"):
        _arity(el, fn, xs, 1)
        r = b.unary("ln", b.binary("/", xs[0], b.binary("-", b.const(1.0), xs[0])))
    elif fn in ("x-sigmoid", "sigmoid"):
        _arity(el, fn, xs, 1)
        r = b.binary("/", b.const(1.0), b.binary("+", b.const(1.0), b.unary("exp", b.unary("neg", xs[0]))))
    else:
        raise unsupported(el, f"the PMML function {fn!r} is not supported",
                          hint="modelport evaluates PMML's arithmetic, comparison, boolean, math and if built-ins")
    if fn not in ("min", "max", "sum", "avg", "median", "product"):
        any_missing = b.false()
        for x in xs:
            any_missing = b.logic("or", any_missing, b.isnan(x))
        r = b.nan_where(any_missing, r)
    # a value a function cannot compute (log of a negative number, 0/0) is missing here
    with_nan = b.where(b.logic("or", b.compare("eq", r, b.const(math.inf)), b.compare("eq", r, b.const(-math.inf))),
                       r, r)
    return _apply_defaults(el, env, Val(with_nan), args)


def _rint(b: Backend, x: Any) -> Any:
    """Round half to even."""
    f = b.unary("floor", x)
    diff = b.binary("-", x, f)
    half = b.compare("eq", diff, b.const(0.5))
    even = b.compare("eq", b.binary("-", f, b.mul(b.const(2.0), b.unary("floor", b.binary("/", f, b.const(2.0))))),
                     b.const(0.0))
    up = b.binary("+", f, b.const(1.0))
    return b.where(half, b.where(even, f, up), b.where(b.compare("gt", diff, b.const(0.5)), up, f))


def _arity(el: Element, fn: str, xs: Sequence[Any], n: int) -> None:
    if len(xs) != n:
        raise bad(el, f"{fn} takes {n} argument(s); got {len(xs)}.")


def _aggregate(b: Backend, fn: str, xs: Sequence[Any], el: Element) -> Any:
    """min / max / sum / avg / product / median over the arguments that are not missing."""
    present = [b.logic("not", b.isnan(x)) for x in xs]
    count = b.sum([b.to_float(p) for p in present])
    none = b.compare("eq", count, b.const(0.0))
    if fn in ("sum", "avg"):
        total = b.sum([b.where(p, x, b.const(0.0)) for p, x in zip(present, xs)])
        r = total if fn == "sum" else b.binary("/", total, count)
    elif fn == "product":
        r = xs[0] if len(xs) == 1 else b.sum([b.const(0.0)])
        r = b.where(present[0], xs[0], b.const(1.0))
        for p, x in zip(present[1:], xs[1:]):
            r = b.binary("*", r, b.where(p, x, b.const(1.0)))
    elif fn in ("min", "max"):
        big = math.inf if fn == "min" else -math.inf
        r = b.where(present[0], xs[0], b.const(big))
        for p, x in zip(present[1:], xs[1:]):
            y = b.where(p, x, b.const(big))
            r = b.where(b.compare("lt" if fn == "min" else "gt", y, r), y, r)
    else:
        if len(xs) > 32:
            raise unsupported(el, "median of more than 32 arguments is not supported")
        r = median(b, xs)
    return b.nan_where(none, r)


def median(b: Backend, xs: Sequence[Any]) -> Any:
    """The median of the non-missing values (the mean of the two middle ones for an even count)."""
    n = len(xs)
    present = [b.logic("not", b.isnan(x)) for x in xs]
    count = b.sum([b.to_float(p) for p in present])
    # rank of each value among the present ones (ties broken by position)
    ranks = []
    for i, xi in enumerate(xs):
        r = b.const(0.0)
        for j, xj in enumerate(xs):
            if i == j:
                continue
            before = b.compare("lt", xj, xi) if j > i else b.compare("le", xj, xi)
            r = b.binary("+", r, b.to_float(b.logic("and", present[j], before)))
        ranks.append(r)
    lo = b.unary("floor", b.binary("/", b.binary("-", count, b.const(1.0)), b.const(2.0)))
    hi = b.unary("floor", b.binary("/", count, b.const(2.0)))
    pick_lo = b.const(0.0)
    pick_hi = b.const(0.0)
    for i in range(n):
        xi = b.where(present[i], xs[i], b.const(0.0))
        pick_lo = b.binary("+", pick_lo, b.where(b.logic("and", present[i], b.compare("eq", ranks[i], lo)), xi, b.const(0.0)))
        pick_hi = b.binary("+", pick_hi, b.where(b.logic("and", present[i], b.compare("eq", ranks[i], hi)), xi, b.const(0.0)))
    return b.binary("/", b.binary("+", pick_lo, pick_hi), b.const(2.0))


def _same(b: Backend, x: Val, y: Val, el: Element) -> Any:
    if (x.domain is None) != (y.domain is None):
        # a number compared with text: by the text's number, as a PMML evaluator parses it
        num, txt = (x, y) if x.domain is None else (y, x)
        assert txt.domain is not None
        nums = [_as_number(s) for s in txt.domain]
        table = [float(v) if v is not None else math.nan for v in nums]
        return b.compare("eq", num.data, b.lookup(table, txt.data))
    if x.domain is None:
        return b.compare("eq", x.data, y.data)
    dom = union_domain([x, y])
    xa, ya = recode(b, x, dom), recode(b, y, dom)
    return b.logic("and", b.compare("eq", xa.data, ya.data), b.compare("ne", xa.data, b.const(OTHER)))


def _unless_missing(b: Any, truth: Any, args: Sequence[Val]) -> Val:
    """A comparison or boolean function's value (1 / 0), missing where an argument is missing:
    PMML's rule, and JPMML's (it gives no answer for such a record)."""
    out = b.to_float(truth)
    for a in args:
        out = b.nan_where(b.isnan(a.data), out)
    return Val(out)


def _apply_defaults(el: Element, env: Env, result: Val, args: Sequence[Val]) -> Val:
    b = env.b
    mapmiss = attr(el, "mapMissingTo")
    default = attr(el, "defaultValue")
    inv = attr(el, "invalidValueTreatment", "returnInvalid")
    if inv not in ("returnInvalid", "asIs", "asMissing"):
        raise bad(el, f"unknown invalidValueTreatment {inv!r}.")
    out = result
    any_missing = b.false()
    for a in args:
        any_missing = b.logic("or", any_missing, b.isnan(a.data))
    if default is not None:
        # defaultValue answers for a result the function could not give from present arguments;
        # a missing argument stays missing (JPMML: no answer for the record) unless mapMissingTo
        filled = _map_missing(b, out, default, el, env)
        if args and filled.domain is None and out.domain is None:
            filled = Val(b.where(any_missing, out.data, filled.data))
        out = filled
    if mapmiss is not None and args:
        if out.domain is not None:
            dom = tuple(dict.fromkeys([*out.domain, mapmiss]))
            o2 = recode(b, out, dom)
            out = Val(b.where(any_missing, b.const(float(dom.index(mapmiss))), o2.data), dom)
        else:
            out = Val(b.where(any_missing, b.const(parse_number(mapmiss, el, "mapMissingTo")), out.data))
    return out


def _user_function(el: Element, env: Env, fn: Element, arg_els: list[Element]) -> Val:
    params = [p for p in fn.findall("ParameterField")]
    body = [c for c in fn.children if c.tag not in ("ParameterField", "Extension")]
    if len(body) != 1:
        raise bad(fn, "a DefineFunction must hold one expression.")
    if len(params) != len(arg_els):
        raise bad(el, f"the function {attr(fn, 'name')!r} takes {len(params)} argument(s); got {len(arg_els)}.")
    inner = Env(env.doc, env.b)
    for p, a in zip(params, arg_els):
        pname = attr(p, "name", required=True) or ""
        v = expression(a, env)
        pt = attr(p, "dataType")
        inner.set(pname, cast(env.b, v, pt, p) if pt else v, FieldDef(pname, attr(p, "optype", "continuous") or "", pt or "double"))
    depth = getattr(env.doc, "_fn_depth", 0)
    if depth > 50:
        raise bad(el, "user-defined functions call each other more than 50 levels deep.")
    env.doc._fn_depth = depth + 1
    try:
        out = expression(body[0], inner)
    finally:
        env.doc._fn_depth = depth
    dt = attr(fn, "dataType")
    return cast(env.b, out, dt, fn) if dt else out


# --------------------------------------------------------------------------- predicates

Pred = tuple[Any, Any]  # (true, false) boolean columns

_ARRAY_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')


def parse_array(el: Element) -> list[str]:
    return [m.group(1).replace('\\"', '"') if m.group(1) is not None else m.group(2)
            for m in _ARRAY_TOKEN.finditer(el.text)]


def predicate(el: Element, env: Env) -> Pred:
    b = env.b
    tag = el.tag
    if tag == "True":
        return b.true(), b.false()
    if tag == "False":
        return b.false(), b.true()
    if tag == "SimplePredicate":
        name = attr(el, "field", required=True) or ""
        op = attr(el, "operator", required=True) or ""
        v = env.get(name, el)
        missing = b.isnan(v.data)
        if op in ("isMissing", "isNotMissing"):
            t = missing if op == "isMissing" else b.logic("not", missing)
            return t, b.logic("not", t)
        text = attr(el, "value", required=True) or ""
        fdef = env.fdef(name)
        if op in ("equal", "notEqual"):
            hit = equals(b, v, text, el, fdef)
            if op == "notEqual":
                hit = b.logic("not", hit)
        elif op in ("lessThan", "lessOrEqual", "greaterThan", "greaterOrEqual"):
            cmp = _COMPARE[op]
            if v.domain is not None:
                order = v.ordinal
                if order is None or text not in order:
                    raise unsupported(el, f"{op} on the text field {name!r}, which is not ordinal (or does not list "
                                          f"{text!r} among its values), is not supported")
                pos = [float(order.index(s)) if s in order else math.nan for s in v.domain]
                rank = b.lookup(pos, v.data)
                hit = b.compare(cmp, rank, b.const(float(order.index(text))))
            else:
                dtype = fdef.dtype if fdef is not None and fdef.numeric else "double"
                hit = b.compare(cmp, v.data, b.const(float(typed_value(text, dtype, el))))
        else:
            raise bad(el, f"unknown SimplePredicate operator {op!r}.")
        hit = b.logic("and", hit, b.logic("not", missing))
        return hit, b.logic("and", b.logic("not", hit), b.logic("not", missing))
    if tag == "SimpleSetPredicate":
        name = attr(el, "field", required=True) or ""
        op = attr(el, "booleanOperator", required=True) or ""
        if op not in ("isIn", "isNotIn"):
            raise bad(el, f"booleanOperator must be isIn or isNotIn; got {op!r}.")
        arr = el.find("Array")
        if arr is None:
            raise bad(el, "a SimpleSetPredicate needs an Array.")
        v = env.get(name, el)
        fdef = env.fdef(name)
        hit = b.false()
        for text in parse_array(arr):
            hit = b.logic("or", hit, equals(b, v, text, arr, fdef))
        if op == "isNotIn":
            hit = b.logic("not", hit)
        missing = b.isnan(v.data)
        hit = b.logic("and", hit, b.logic("not", missing))
        return hit, b.logic("and", b.logic("not", hit), b.logic("not", missing))
    if tag == "CompoundPredicate":
        op = attr(el, "booleanOperator", required=True) or ""
        parts = [predicate(c, env) for c in el.children if c.tag != "Extension"]
        if len(parts) < 2:
            raise bad(el, "a CompoundPredicate needs at least two predicates.")
        if op == "and":
            t, f = parts[0]
            for t2, f2 in parts[1:]:
                t, f = b.logic("and", t, t2), b.logic("or", f, f2)
            return t, f
        if op == "or":
            t, f = parts[0]
            for t2, f2 in parts[1:]:
                t, f = b.logic("or", t, t2), b.logic("and", f, f2)
            return t, f
        if op == "xor":
            t, f = parts[0]
            known = b.logic("or", t, f)
            for t2, f2 in parts[1:]:
                known = b.logic("and", known, b.logic("or", t2, f2))
                t = b.logic("xor", t, t2)
            return b.logic("and", t, known), b.logic("and", b.logic("not", t), known)
        if op == "surrogate":
            # the first predicate that is not UNKNOWN decides
            t, f = parts[-1]
            for t2, f2 in reversed(parts[:-1]):
                known = b.logic("or", t2, f2)
                t = b.logic("or", t2, b.logic("and", b.logic("not", known), t))
                f = b.logic("or", f2, b.logic("and", b.logic("not", known), f))
            return t, f
        raise bad(el, f"booleanOperator must be and, or, xor or surrogate; got {op!r}.")
    raise unsupported(el, f"the PMML predicate <{tag}> is not supported")


PREDICATES = ("True", "False", "SimplePredicate", "SimpleSetPredicate", "CompoundPredicate")


def predicate_of(el: Element) -> Element:
    """The predicate child of a Node, Segment or Attribute."""
    for c in el.children:
        if c.tag in PREDICATES:
            return c
    raise bad(el, f"<{el.tag}> has no predicate (True, False, SimplePredicate, SimpleSetPredicate or "
                  "CompoundPredicate).")


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """What a model gives per row.

    ``value``: the prediction of a regression (NaN: no prediction). For classification and
    clustering, ``classes`` (label texts), ``probs`` (one column per class; NaN: no prediction) and
    ``label`` (codes into ``classes``; NaN: no prediction). ``extras`` holds named outputs beside
    them (reason codes, entity ids, ...).
    """

    kind: str
    value: Any = None
    classes: tuple[str, ...] = ()
    probs: list[Any] = field(default_factory=list)
    label: Any = None
    extras: dict[str, Val] = field(default_factory=dict)
    #: the numeric value of each class label, where the target is numeric (for votes and ordering)
    class_values: tuple[float | None, ...] = ()


def probs_label(b: Backend, probs: Sequence[Any]) -> Any:
    """The code of the most probable class (the first of ties); NaN where the probabilities are."""
    best = probs[0]
    code = b.const(0.0)
    for k, p in enumerate(probs[1:], start=1):
        better = b.compare("gt", p, best)
        code = b.where(better, b.const(float(k)), code)
        best = b.where(better, p, best)
    return b.nan_where(b.isnan(probs[0]), b.where(b.isnan(best), b.nan(), b.add(code, b.const(0.0))))


def normalize_label(text: str, classes: Sequence[str], numeric: bool) -> str | None:
    """The class among ``classes`` that ``text`` names (numerically for a numeric target)."""
    if text in classes:
        return text
    if numeric:
        v = _as_number(text)
        for c in classes:
            if v is not None and _as_number(c) == v:
                return c
    return None


def class_list(target: FieldDef | None, found: Sequence[str]) -> tuple[str, ...]:
    """The class labels: the target's valid values, else those the model names, in order."""
    if target is not None and target.texts:
        out = list(target.texts)
        for t in found:
            if normalize_label(t, out, target.numeric) is None:
                out.append(t)
        return tuple(out)
    return tuple(dict.fromkeys(found))


Evaluator = Callable[[Element, Env], Result]
