"""A small typed IR of one row's computation, lowered from a bundle's ONNX graph.

Every target (C, SQL, Python) renders the same :class:`Program`: a DAG of scalar expressions
over the input columns of one row, plus tree ensembles kept as trees (so each target can walk
them its own way). Lowering walks the graph in order and hands each node to the emitter that
the operator table (:mod:`modelport.codegen.ops`) holds for it; an operator without one is a
:class:`~modelport.errors.CodegenError` naming it and its node.

Values flowing between emitters are :class:`Val`: either a numpy constant (initializers, folded
shapes) or an object array of :class:`Expr` whose shape is the per-row shape (the batch axis
dropped). Expression kinds: ``f`` float, ``i`` integer, ``s`` string, ``b`` boolean.
"""

from __future__ import annotations

import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import onnx
from onnx import helper, numpy_helper

from modelport.errors import CodegenError

T = TypeVar("T")

# --------------------------------------------------------------------------- float32 helpers


_F32 = struct.Struct("<f")


def f32(v: float) -> float:
    """``v`` rounded to the nearest float32 (ties to even), as a Python float."""
    try:
        return _F32.unpack(_F32.pack(v))[0]
    except OverflowError:  # beyond the float32 range: rounds to infinity unless within half an ulp
        return math.copysign(math.inf, v) if abs(v) >= 2.0**128 - 2.0**103 else math.copysign(3.4028234663852886e38, v)


def next_up32(v: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.nextafter(np.float32(v), np.float32(np.inf)))


def next_down32(v: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.nextafter(np.float32(v), np.float32(-np.inf)))


def f32_bits(v: float) -> int:
    return struct.unpack("<I", struct.pack("<f", v))[0]


def floor32(v: float) -> float:
    """The largest float32 <= v (v a double)."""
    r = f32(v)
    return r if r <= v else next_down32(r)


# --------------------------------------------------------------------------- expressions


class Expr:
    """A scalar value of one row. Identity matters: a node used twice is computed once."""

    kind: str = "f"

    def children(self) -> Sequence[Expr]:
        return ()

    def accept(self, visitor: ExprVisitor[T]) -> T:
        raise TypeError(f"{type(self).__name__} is not an IR expression node a target can render.")


@dataclass(eq=False)
class Num(Expr):
    value: float
    kind: str = "f"

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.num(self)


@dataclass(eq=False)
class Text(Expr):
    value: str
    kind: str = "s"

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.text(self)


@dataclass(eq=False)
class Col(Expr):
    """Input column ``index`` as the graph sees it (``f32``: the graph reads it as float32)."""

    index: int
    kind: str = "f"
    f32: bool = True

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.col(self)


def _promote(obj: Any, items: Sequence[Expr]) -> None:
    """Float results are double when any non-constant operand is double (numpy's rule)."""
    if obj.kind == "f" and any(e.kind == "d" for e in items if not isinstance(e, Num)):
        obj.kind = "d"


@dataclass(eq=False)
class Bin(Expr):
    op: str  # + - * /
    a: Expr
    b: Expr
    kind: str = "f"

    def __post_init__(self) -> None:
        _promote(self, (self.a, self.b))

    def children(self) -> Sequence[Expr]:
        return (self.a, self.b)

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.bin(self)


@dataclass(eq=False)
class Call(Expr):
    fn: str  # exp log sqrt tanh abs max sigmoid
    args: tuple[Expr, ...]
    kind: str = "f"

    def __post_init__(self) -> None:
        _promote(self, self.args)

    def children(self) -> Sequence[Expr]:
        return self.args

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.call(self)


@dataclass(eq=False)
class Dot(Expr):
    """bias + sum(w * x), accumulated in double, rounded to float32 once (like a GEMM would)."""

    terms: tuple[tuple[float, Expr], ...]
    bias: float = 0.0
    kind: str = "f"

    def __post_init__(self) -> None:
        _promote(self, [e for _, e in self.terms])

    def children(self) -> Sequence[Expr]:
        return tuple(e for _, e in self.terms)

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.dot(self)


@dataclass(eq=False)
class Cmp(Expr):
    """IEEE comparison: false when either side is NaN, except ``!=``."""

    op: str  # < <= > >= == !=
    a: Expr
    b: Expr
    kind: str = "b"

    def children(self) -> Sequence[Expr]:
        return (self.a, self.b)

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.cmp(self)


@dataclass(eq=False)
class IsNaN(Expr):
    a: Expr
    kind: str = "b"

    def children(self) -> Sequence[Expr]:
        return (self.a,)

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.isnan(self)


@dataclass(eq=False)
class Logic(Expr):
    op: str  # and or not
    args: tuple[Expr, ...]
    kind: str = "b"

    def children(self) -> Sequence[Expr]:
        return self.args

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.logic(self)


@dataclass(eq=False)
class Select(Expr):
    cond: Expr
    a: Expr
    b: Expr
    kind: str = "f"

    def __post_init__(self) -> None:
        _promote(self, (self.a, self.b))

    def children(self) -> Sequence[Expr]:
        return (self.cond, self.a, self.b)

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.select(self)


@dataclass(eq=False)
class ArgMax(Expr):
    """Index of the first largest item (NaN never wins)."""

    items: tuple[Expr, ...]
    kind: str = "i"

    def children(self) -> Sequence[Expr]:
        return self.items

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.argmax(self)


@dataclass(eq=False)
class Switch(Expr):
    """``values[index]`` for an integer ``index`` (out of range: ``default``)."""

    index: Expr
    values: tuple[Expr, ...]
    default: Expr
    kind: str = "f"

    def children(self) -> Sequence[Expr]:
        return (self.index, *self.values, self.default)

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.switch(self)


@dataclass(eq=False)
class Round32(Expr):
    """A double value rounded to float32 (ONNX Cast to FLOAT)."""

    a: Expr
    kind: str = "f"

    def children(self) -> Sequence[Expr]:
        return (self.a,)

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.round32(self)


@dataclass(eq=False)
class ToInt(Expr):
    """Float to int64 by truncation toward zero (ONNX Cast to INT64)."""

    a: Expr
    kind: str = "i"

    def children(self) -> Sequence[Expr]:
        return (self.a,)

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.toint(self)


@dataclass(eq=False)
class ToFloat(Expr):
    """An integer (or float32) value as float32 (kind f) or double (kind d)."""

    a: Expr
    kind: str = "f"

    def children(self) -> Sequence[Expr]:
        return (self.a,)

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.tofloat(self)


@dataclass(eq=False)
class TreeOut(Expr):
    """Aggregated leaf values of target ``target`` of a tree ensemble (sum, min or max)."""

    ensemble: Ensemble
    target: int
    kind: str = "f"

    def __post_init__(self) -> None:
        if self.ensemble.double:
            self.kind = "d"

    def children(self) -> Sequence[Expr]:
        return tuple(self.ensemble.inputs)

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.treeout(self)


@dataclass(eq=False)
class Coupling:
    """ONNX Runtime's multiclass_probability: pairwise probabilities r[i<j] -> k class probabilities."""

    pairs: tuple[Expr, ...]
    k: int


@dataclass(eq=False)
class CouplingOut(Expr):
    coupling: Coupling
    index: int
    kind: str = "f"

    def children(self) -> Sequence[Expr]:
        return self.coupling.pairs

    def accept(self, visitor: ExprVisitor[T]) -> T:
        return visitor.couplingout(self)


class ExprVisitor(ABC, Generic[T]):
    """A target's rendering of expression nodes: one method per node type (typed dispatch).

    Every method is abstract, so a target that misses a node type cannot be instantiated, and
    mypy reports it ("Cannot instantiate abstract class ... with abstract attribute ...") before
    any model reaches it. Adding a node type to the IR means adding its method here."""

    def visit(self, e: Expr) -> T:
        return e.accept(self)

    @abstractmethod
    def num(self, e: Num) -> T: ...

    @abstractmethod
    def text(self, e: Text) -> T: ...

    @abstractmethod
    def col(self, e: Col) -> T: ...

    @abstractmethod
    def bin(self, e: Bin) -> T: ...

    @abstractmethod
    def call(self, e: Call) -> T: ...

    @abstractmethod
    def dot(self, e: Dot) -> T: ...

    @abstractmethod
    def cmp(self, e: Cmp) -> T: ...

    @abstractmethod
    def isnan(self, e: IsNaN) -> T: ...

    @abstractmethod
    def logic(self, e: Logic) -> T: ...

    @abstractmethod
    def select(self, e: Select) -> T: ...

    @abstractmethod
    def argmax(self, e: ArgMax) -> T: ...

    @abstractmethod
    def switch(self, e: Switch) -> T: ...

    @abstractmethod
    def round32(self, e: Round32) -> T: ...

    @abstractmethod
    def toint(self, e: ToInt) -> T: ...

    @abstractmethod
    def tofloat(self, e: ToFloat) -> T: ...

    @abstractmethod
    def treeout(self, e: TreeOut) -> T: ...

    @abstractmethod
    def couplingout(self, e: CouplingOut) -> T: ...



# --------------------------------------------------------------------------- trees


@dataclass(eq=False)
class Leaf:
    weights: dict[int, float]


@dataclass(eq=False)
class Split:
    feature: int
    mode: str  # LEQ LT GTE GT EQ NEQ MEMBER
    threshold: float  # exact value in the ensemble's threshold type
    missing_true: bool
    true: Leaf | Split
    false: Leaf | Split
    members: tuple[float, ...] = ()


@dataclass(eq=False)
class Ensemble:
    inputs: list[Expr]  # feature id -> expression
    trees: list[Leaf | Split]
    n_targets: int
    aggregate: str  # SUM AVERAGE MIN MAX (AVERAGE accumulates as SUM; the emitter divides)
    double: bool  # thresholds and accumulation in double (else float32)
    index: int = 0

    def depth(self, node: Leaf | Split) -> int:
        if isinstance(node, Leaf):
            return 0
        return 1 + max(self.depth(node.true), self.depth(node.false))


def split_condition(x: Expr, s: Split) -> Expr:
    """The boolean 'go to the true branch' of a split, with ONNX Runtime's NaN rules."""
    t = Num(s.threshold)
    if s.mode == "MEMBER":
        c: Expr = Logic("or", tuple(Cmp("==", x, Num(m)) for m in s.members)) if s.members else Logic("or", ())
    else:
        op = {"LEQ": "<=", "LT": "<", "GTE": ">=", "GT": ">", "EQ": "==", "NEQ": "!="}[s.mode]
        c = Cmp(op, x, t)
    if s.missing_true:
        c = Logic("or", (c, IsNaN(x)))
    return c


# --------------------------------------------------------------------------- values


@dataclass
class Val:
    """A per-row tensor: ``exprs`` (object array, per-row shape) or a numpy ``const``."""

    exprs: np.ndarray | None = None
    const: np.ndarray | None = None
    kind: str = "f"

    def __post_init__(self) -> None:
        if self.exprs is not None and not isinstance(self.exprs, np.ndarray):
            # indexing an object array with scalars (Gather of one column) yields the element itself
            wrapped = np.empty((), dtype=object)
            wrapped[()] = self.exprs
            self.exprs = wrapped

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def shape(self) -> tuple[int, ...]:
        assert self.exprs is not None
        return tuple(self.exprs.shape)

    def flat(self) -> list[Expr]:
        assert self.exprs is not None
        return list(self.exprs.reshape(-1))


def const_expr(v: Any) -> Expr:
    if isinstance(v, (str, bytes)):
        return Text(v.decode() if isinstance(v, bytes) else v)
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return Num(float(v), kind="i")
    if isinstance(v, (np.float64, float)) and not isinstance(v, np.float32):
        return Num(float(v), kind="d")
    return Num(float(v))


def exprs_of(v: Val, batch_rank: int | None = None) -> np.ndarray:
    """Object array of expressions; constants are lifted (a leading 1 of a full-rank const dropped)."""
    if v.exprs is not None:
        return v.exprs
    c = np.asarray(v.const)
    if batch_rank is not None and c.ndim == batch_rank + 1 and c.shape[0] == 1:
        c = c[0]
    out = np.empty(c.shape, dtype=object)
    for idx in np.ndindex(c.shape):
        out[idx] = const_expr(c[idx].item() if hasattr(c[idx], "item") else c[idx])
    return out


def from_list(items: Sequence[Expr], shape: tuple[int, ...] | None = None, kind: str = "f") -> Val:
    arr = np.empty(len(items), dtype=object)
    for i, e in enumerate(items):
        arr[i] = e
    return Val(exprs=arr.reshape(shape if shape is not None else (len(items),)), kind=kind)


# --------------------------------------------------------------------------- simplifying builders


def add(a: Expr, b: Expr) -> Expr:
    if isinstance(b, Num) and b.value == 0 and not math.copysign(1, b.value) < 0 and a.kind == "f":
        return a
    return fold("+", a, b)


def fold(op: str, a: Expr, b: Expr) -> Expr:
    if isinstance(a, Num) and isinstance(b, Num):
        if "d" in (a.kind, b.kind):
            with np.errstate(all="ignore"):
                xd, yd = np.float64(a.value), np.float64(b.value)
                rd = {"+": xd + yd, "-": xd - yd, "*": xd * yd, "/": xd / yd if yd != 0 else np.float64(np.nan)}[op]
            return Num(float(rd), kind="d")
        x, y = np.float32(a.value), np.float32(b.value)
        with np.errstate(all="ignore"):
            r = {"+": x + y, "-": x - y, "*": x * y, "/": x / y if y != 0 else np.float32(np.nan)}[op]
        return Num(float(r))
    return Bin(op, a, b)


# --------------------------------------------------------------------------- program


@dataclass
class InputColumn:
    name: str
    kind: str  # f (number), i (integer), s (string), c (category code)
    nullable: bool
    categories: tuple[Any, ...] | None = None


@dataclass
class Program:
    """What every target renders: columns in, scores (and a class index) out."""

    name: str
    task: str
    columns: list[InputColumn]
    scores: list[Expr]
    score_names: list[str]
    classes: list[Any] | None = None
    label: Expr | None = None  # index into classes
    ensembles: list[Ensemble] = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return len(self.columns)

    @property
    def n_outputs(self) -> int:
        return len(self.scores)

    def outputs(self) -> list[Expr]:
        return [*self.scores, *([self.label] if self.label is not None else [])]


def topo(roots: Sequence[Expr]) -> tuple[list[Expr], dict[int, int]]:
    """Nodes reachable from ``roots`` in dependency order, and how often each is used."""
    order: list[Expr] = []
    uses: dict[int, int] = {}
    seen: set[int] = set()
    stack: list[tuple[Expr, bool]] = [(r, False) for r in reversed(roots)]
    for r in roots:
        uses[id(r)] = uses.get(id(r), 0) + 1
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for c in node.children():
            uses[id(c)] = uses.get(id(c), 0) + 1
            if id(c) not in seen:
                stack.append((c, False))
    return order, uses


# --------------------------------------------------------------------------- lowering


Emitter = Callable[["Lowering", onnx.NodeProto, list["Val | None"]], list[Val]]


class Lowering:
    """Walks one graph; emitters read attributes through it and register ensembles on it."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.ensembles: list[Ensemble] = []
        self.opsets = {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}

    def attrs(self, node: onnx.NodeProto) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            if isinstance(v, onnx.TensorProto):
                v = numpy_helper.to_array(v)
            elif isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [x.decode() for x in v]
            out[a.name] = v
        return out

    def add_ensemble(self, ens: Ensemble) -> Ensemble:
        ens.index = len(self.ensembles)
        self.ensembles.append(ens)
        return ens

    def fail(self, node: onnx.NodeProto, why: str, hint: str | None = None) -> CodegenError:
        return CodegenError(f"node {node.name or '(unnamed)'!r} ({node.op_type}): {why}", hint=hint)


def lower(bundle: Any) -> Program:
    """Lower a bundle's graph to a :class:`Program`."""
    from modelport.codegen.ops import emitter_for

    model = bundle.onnx_model
    sig = bundle.signature
    g = model.graph
    if sig.columns is None:
        raise CodegenError(
            f"bundle {bundle.name!r} is not tabular (its inputs are tensors, not columns); "
            "compile supports models over table columns.",
            hint="pack the model from a DataFrame or a 2-D array",
        )
    lw = Lowering(model)
    env: dict[str, Val | None] = {"": None}
    for init in g.initializer:
        env[init.name] = Val(const=numpy_helper.to_array(init))
    columns: list[InputColumn] = []
    by_input: dict[str, list[tuple[int, Any]]] = {}
    for i, c in enumerate(sig.columns):
        spec = sig.input(c.input)
        if spec.dtype == "str":
            kind = "s"
        elif c.dtype == "category":
            kind = "c"
        elif spec.dtype.startswith("int") or spec.dtype.startswith("uint") or spec.dtype == "bool":
            kind = "i"
        else:
            kind = "f"
        columns.append(InputColumn(c.name, kind, c.nullable, c.categories))
        by_input.setdefault(c.input, []).append((i, c))
    for spec in sig.inputs:
        members = by_input.get(spec.name, [])
        is32 = spec.dtype in ("float32", "float16")
        ekind = "s" if spec.dtype == "str" else ("i" if spec.dtype.startswith(("int", "uint", "bool")) else ("f" if is32 else "d"))
        if len(members) == 1 and members[0][1].index is None:
            arr = np.empty((1,), dtype=object)
            arr[0] = Col(members[0][0], kind=ekind, f32=is32)
            shape = tuple(spec.shape[1:]) if len(spec.shape) > 1 else ()
            env[spec.name] = Val(exprs=arr.reshape(shape) if shape else arr.reshape(()), kind=ekind)
        else:
            width = spec.shape[-1] if spec.shape and spec.shape[-1] is not None else len(members)
            arr = np.empty((width,), dtype=object)
            for i, c in members:
                arr[c.index] = Col(i, kind=ekind, f32=is32)
            if any(a is None for a in arr):
                raise CodegenError(f"input {spec.name!r}: some of its {width} slots map to no column.")
            env[spec.name] = Val(exprs=arr, kind=ekind)
    for node in g.node:
        emit = emitter_for(node)
        ins = []
        for name in node.input:
            if name not in env:
                raise lw.fail(node, f"its input {name!r} is produced by no earlier node.")
            ins.append(env[name])
        outs = emit(lw, node, ins)
        for name, v in zip(node.output, outs):
            env[name] = v
    return _program(bundle, lw, env, columns)


def _program(bundle: Any, lw: Lowering, env: dict[str, Val | None], columns: list[InputColumn]) -> Program:
    task = bundle.task
    classes = bundle.classes
    outs = [o.name for o in bundle.onnx_model.graph.output]

    def flat(name: str) -> list[Expr]:
        v = env.get(name)
        if v is None:
            raise CodegenError(f"graph output {name!r} is not computed by the graph.")
        return list(exprs_of(v).reshape(-1))

    if task == "classification":
        assert classes is not None
        probs = flat("probabilities")
        if len(probs) != len(classes):
            raise CodegenError(
                f"the probabilities output has {len(probs)} values per row but the bundle has {len(classes)} classes."
            )
        label_items = flat("label")
        if len(label_items) != 1:
            raise CodegenError(f"the label output has {len(label_items)} values per row; expected 1.")
        label = class_index(label_items[0], classes)
        names = [f"proba_{c}" for c in classes]
        return Program(bundle.name, task, columns, probs, names, classes=list(classes), label=label, ensembles=lw.ensembles)
    if "prediction" in outs:
        preds = flat("prediction")
        names = ["prediction"] if len(preds) == 1 else [f"prediction_{j}" for j in range(len(preds))]
        return Program(bundle.name, task, columns, preds, names, ensembles=lw.ensembles)
    scores: list[Expr] = []
    names = []
    for o in outs:
        items = flat(o)
        scores.extend(items)
        names.extend([o] if len(items) == 1 else [f"{o}_{j}" for j in range(len(items))])
    if any(e.kind == "s" for e in scores):
        raise CodegenError("the graph outputs strings; only numeric outputs can be compiled (besides class labels).")
    return Program(bundle.name, task, columns, scores, names, ensembles=lw.ensembles)


def class_index(label: Expr, classes: Sequence[Any]) -> Expr:
    """An integer expression: the position of the row's label in ``classes``."""
    def key(v: Any) -> Any:
        if isinstance(v, Num):
            return float(v.value)
        if isinstance(v, Text):
            return v.value
        return None

    lookup: dict[Any, int] = {}
    for k, c in enumerate(classes):
        lookup.setdefault(float(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else str(c), k)
    if isinstance(label, Switch) and all(key(v) is not None for v in [*label.values]):
        vals = []
        for v in label.values:
            pos = lookup.get(key(v))
            if pos is None:
                raise CodegenError(f"the graph can output label {key(v)!r}, which is not among the classes {list(classes)}.")
            vals.append(Num(float(pos), kind="i"))
        if all(int(v.value) == j for j, v in enumerate(vals)) and label.index.kind == "i":
            return label.index
        return Switch(label.index, tuple(vals), Num(-1.0, kind="i"), kind="i")
    if isinstance(label, (Num, Text)):
        pos = lookup.get(key(label))
        return Num(float(-1 if pos is None else pos), kind="i")
    # generic: compare with every class value
    out: Expr = Num(-1.0, kind="i")
    for c, k in reversed(list(lookup.items())):
        lit: Expr = Text(c) if isinstance(c, str) else Num(c, kind=label.kind)
        out = Select(Cmp("==", label, lit), Num(float(k), kind="i"), out, kind="i")
    return out
