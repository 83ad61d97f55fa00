"""The array operations PMML semantics are written in, with two executions: numpy (modelport's
reference evaluation of the document) and ONNX (the bundle's graph).

Every value is a column of one number per row (float64; ``NaN`` is PMML's *missing*), or a column of
booleans. The semantics of each PMML element is written once, in :mod:`.semantics` and the model
modules, against :class:`Backend`; :class:`NumpyBackend` computes it eagerly on the rows it is given
and :class:`OnnxBackend` records the same operations as ONNX nodes. What the two do not share is
kept apart on purpose: tree routing (:mod:`.trees`: an ONNX ``TreeEnsembleRegressor`` built by
:mod:`modelport.convert._trees` against a walk of the PMML nodes, record by record) and the
numerics (ONNX Runtime's kernels against numpy's), which is what pack-time parity compares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

#: functions of one argument both backends compute (the ONNX operator of each)
UNARY = {
    "exp": "Exp", "ln": "Log", "sqrt": "Sqrt", "abs": "Abs", "floor": "Floor", "ceil": "Ceil",
    "tanh": "Tanh", "neg": "Neg", "sin": "Sin", "cos": "Cos", "tan": "Tan", "asin": "Asin",
    "acos": "Acos", "atan": "Atan", "sinh": "Sinh", "cosh": "Cosh", "sigmoid": "Sigmoid",
    "erf": "Erf", "reciprocal": "Reciprocal",
}
BINARY = {"+": "Add", "-": "Sub", "*": "Mul", "/": "Div", "pow": "Pow"}
COMPARE = {"lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual", "eq": "Equal"}


class Backend:
    """Column operations; ``Any`` values are numpy arrays or ONNX tensor names."""

    float_context = False

    def const(self, value: float) -> Any: ...
    def full(self, value: float) -> Any: ...
    def binary(self, op: str, a: Any, b: Any) -> Any: ...
    def unary(self, fn: str, a: Any) -> Any: ...
    def compare(self, op: str, a: Any, b: Any) -> Any: ...
    def isnan(self, a: Any) -> Any: ...
    def logic(self, op: str, a: Any, b: Any | None = None) -> Any: ...
    def where(self, cond: Any, a: Any, b: Any) -> Any: ...
    def to_float(self, cond: Any) -> Any: ...
    def f32(self, a: Any) -> Any: ...
    def round_half_up(self, a: Any) -> Any: ...
    def lookup(self, table: Sequence[float], codes: Any) -> Any: ...
    def stack(self, columns: Sequence[Any]) -> Any: ...
    def column(self, matrix: Any, k: int) -> Any: ...
    def gather_rows(self, table: np.ndarray, index: Any) -> Any: ...
    def reduce(self, op: str, matrix: Any) -> Any: ...
    def true(self) -> Any: ...
    def false(self) -> Any: ...

    # ------------------------------------------------------------ derived helpers, one definition
    def nan(self) -> Any:
        return self.full(np.nan)

    def add(self, a: Any, b: Any) -> Any:
        return self.arith("+", a, b)

    def mul(self, a: Any, b: Any) -> Any:
        return self.arith("*", a, b)

    def arith(self, op: str, a: Any, b: Any) -> Any:
        """Arithmetic in the model's math context (float32 under ``x-mathContext="float"``)."""
        r = self.binary(op, a, b)
        return self.f32(r) if self.float_context else r

    def missing(self, a: Any) -> Any:
        return self.isnan(a)

    def present(self, a: Any) -> Any:
        return self.logic("not", self.isnan(a))

    def fill_missing(self, a: Any, value: Any) -> Any:
        return self.where(self.isnan(a), value, a)

    def nan_where(self, cond: Any, a: Any) -> Any:
        return self.where(cond, self.nan(), a)

    def sum(self, items: Sequence[Any]) -> Any:
        out = items[0]
        for it in items[1:]:
            out = self.add(out, it)
        return out

    def maximum(self, a: Any, b: Any) -> Any:
        """max with PMML's missing rule (missing if either is missing)."""
        m = self.where(self.compare("ge", a, b), a, b)
        return self.nan_where(self.logic("or", self.isnan(a), self.isnan(b)), m)

    def minimum(self, a: Any, b: Any) -> Any:
        m = self.where(self.compare("le", a, b), a, b)
        return self.nan_where(self.logic("or", self.isnan(a), self.isnan(b)), m)


class NumpyBackend(Backend):
    """Eager evaluation on ``n`` rows."""

    def __init__(self, n: int, *, float_context: bool = False) -> None:
        self.n = n
        self.float_context = float_context

    def const(self, value: float) -> Any:
        return np.float64(value)

    def full(self, value: float) -> Any:
        return np.full(self.n, value, dtype=np.float64)

    def true(self) -> Any:
        return np.ones(self.n, dtype=bool)

    def false(self) -> Any:
        return np.zeros(self.n, dtype=bool)

    def binary(self, op: str, a: Any, b: Any) -> Any:
        with np.errstate(all="ignore"):
            if op == "+":
                r = np.add(a, b)
            elif op == "-":
                r = np.subtract(a, b)
            elif op == "*":
                r = np.multiply(a, b)
            elif op == "/":
                r = np.divide(a, b)
            elif op == "pow":
                r = np.power(a, b)
            else:
                raise ValueError(op)
        return np.broadcast_to(np.asarray(r, dtype=np.float64), (self.n,)).copy()

    def unary(self, fn: str, a: Any) -> Any:
        a = np.asarray(a, dtype=np.float64)
        with np.errstate(all="ignore"):
            if fn == "sigmoid":
                r = 1.0 / (1.0 + np.exp(-a))
            elif fn == "neg":
                r = -a
            elif fn == "ln":
                r = np.log(a)
            elif fn == "reciprocal":
                r = 1.0 / a
            elif fn == "erf":
                import math

                r = np.array([math.erf(v) if v == v else np.nan for v in np.ravel(a)]).reshape(np.shape(a))
            else:
                r = getattr(np, {"asin": "arcsin", "acos": "arccos", "atan": "arctan"}.get(fn, fn))(a)
        return np.broadcast_to(r, (self.n,)).astype(np.float64)

    def compare(self, op: str, a: Any, b: Any) -> Any:
        with np.errstate(invalid="ignore"):
            r = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
                 "eq": np.equal, "ne": np.not_equal}[op](a, b)
        return np.broadcast_to(r, (self.n,)).copy()

    def isnan(self, a: Any) -> Any:
        return np.broadcast_to(np.isnan(a), (self.n,)).copy()

    def logic(self, op: str, a: Any, b: Any | None = None) -> Any:
        if op == "not":
            return ~np.asarray(a)
        assert b is not None, op
        return {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}[op](a, b)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return np.broadcast_to(np.where(cond, a, b), (self.n,)).astype(np.float64)

    def to_float(self, cond: Any) -> Any:
        return np.asarray(cond, dtype=np.float64)

    def f32(self, a: Any) -> Any:
        with np.errstate(over="ignore"):
            return np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)

    def round_half_up(self, a: Any) -> Any:
        return np.floor(np.asarray(a, dtype=np.float64) + 0.5)

    def lookup(self, table: Sequence[float], codes: Any) -> Any:
        t = np.asarray(table, dtype=np.float64)
        c = np.asarray(codes, dtype=np.float64)
        ok = ~np.isnan(c) & (c >= 0) & (c < len(t))
        idx = np.where(ok, c, 0).astype(np.int64)
        return np.where(ok, t[idx] if len(t) else np.nan, np.nan)

    def stack(self, columns: Sequence[Any]) -> Any:
        return np.column_stack([np.broadcast_to(c, (self.n,)) for c in columns])

    def column(self, matrix: Any, k: int) -> Any:
        return np.asarray(matrix)[:, k].astype(np.float64)

    def gather_rows(self, table: np.ndarray, index: Any) -> Any:
        return np.asarray(table)[np.asarray(index, dtype=np.int64)]

    def reduce(self, op: str, matrix: Any) -> Any:
        m = np.asarray(matrix, dtype=np.float64)
        if op == "sum":
            if self.float_context:
                acc = np.zeros(m.shape[0], dtype=np.float32)
                for k in range(m.shape[1]):
                    acc = (acc + m[:, k].astype(np.float32)).astype(np.float32)
                return acc.astype(np.float64)
            acc64 = np.zeros(m.shape[0])
            for k in range(m.shape[1]):  # in order, as a PMML evaluator adds them
                acc64 = acc64 + m[:, k]
            return acc64
        raise ValueError(op)


class OnnxBackend(Backend):
    """Records the operations as ONNX nodes (opset 17, ai.onnx.ml 3) on ``[N]`` double tensors."""

    def __init__(self, *, float_context: bool = False) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.float_context = float_context
        self._n = 0
        self._consts: dict[tuple[Any, ...], str] = {}
        self.ref: str | None = None  # a [N] tensor every full() takes its shape from

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def op(self, op_type: str, inputs: Sequence[str], *, domain: str = "", **attrs: Any) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.name("n"), domain=domain, **attrs))
        return out

    def array(self, value: np.ndarray, hint: str = "c") -> str:
        arr = np.asarray(value)
        key = (hint, arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self.name(hint)
            self.initializers.append(onnx.numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def const(self, value: float) -> Any:
        return self.array(np.array(value, dtype=np.float64))

    def full(self, value: float) -> Any:
        assert self.ref is not None
        shape = self.op("Shape", [self.ref])
        return self.op("ConstantOfShape", [shape], value=helper.make_tensor("v", TensorProto.DOUBLE, [1], [value]))

    def true(self) -> Any:
        return self.op("Not", [self.false()])

    def false(self) -> Any:
        return self.op("IsNaN", [self.full(0.0)])

    def binary(self, op: str, a: Any, b: Any) -> Any:
        return self.op(BINARY[op], [a, b])

    def unary(self, fn: str, a: Any) -> Any:
        return self.op(UNARY[fn], [a])

    def compare(self, op: str, a: Any, b: Any) -> Any:
        if op == "ne":
            return self.op("Not", [self.op("Equal", [a, b])])
        return self.op(COMPARE[op], [a, b])

    def isnan(self, a: Any) -> Any:
        return self.op("IsNaN", [a])

    def logic(self, op: str, a: Any, b: Any | None = None) -> Any:
        if op == "not":
            return self.op("Not", [a])
        assert b is not None, op
        return self.op({"and": "And", "or": "Or", "xor": "Xor"}[op], [a, b])

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return self.op("Where", [cond, a, b])

    def to_float(self, cond: Any) -> Any:
        return self.op("Cast", [cond], to=TensorProto.DOUBLE)

    def f32(self, a: Any) -> Any:
        return self.op("Cast", [self.op("Cast", [a], to=TensorProto.FLOAT)], to=TensorProto.DOUBLE)

    def round_half_up(self, a: Any) -> Any:
        return self.op("Floor", [self.op("Add", [a, self.const(0.5)])])

    def lookup(self, table: Sequence[float], codes: Any) -> Any:
        t = np.asarray([*list(table), np.nan], dtype=np.float64)  # the last entry answers for bad codes
        bad = self.logic("or", self.isnan(codes), self.logic("or", self.compare("lt", codes, self.const(0.0)),
                                                              self.compare("ge", codes, self.const(float(len(t) - 1)))))
        safe = self.where(bad, self.const(float(len(t) - 1)), codes)
        idx = self.op("Cast", [safe], to=TensorProto.INT64)
        return self.op("Gather", [self.array(t, "table"), idx], axis=0)

    def stack(self, columns: Sequence[Any]) -> Any:
        axis = self.array(np.array([1], dtype=np.int64), "axis")
        return self.op("Concat", [self.op("Unsqueeze", [c, axis]) for c in columns], axis=1)

    def column(self, matrix: Any, k: int) -> Any:
        return self.op("Gather", [matrix, self.array(np.array(k, dtype=np.int64), "k")], axis=1)

    def gather_rows(self, table: np.ndarray, index: Any) -> Any:
        return self.op("Gather", [self.array(np.asarray(table), "rows"), index], axis=0)

    def reduce(self, op: str, matrix: Any) -> Any:
        if op == "sum":
            m = self.op("Cast", [matrix], to=TensorProto.FLOAT) if self.float_context else matrix
            s = self.op("ReduceSum", [m, self.array(np.array([1], dtype=np.int64), "axis")], keepdims=0)
            return self.op("Cast", [s], to=TensorProto.DOUBLE) if self.float_context else s
        raise ValueError(op)
