"""Feature preprocessing and plumbing: Scaler, Normalizer, Imputer, Binarizer, OneHotEncoder,
LabelEncoder, ArrayFeatureExtractor, FeatureVectorizer, Cast, Concat, Identity, Reshape,
Flatten."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from modelport.codegen.ir import (
    Bin,
    Call,
    Cmp,
    Expr,
    IsNaN,
    Logic,
    Lowering,
    Num,
    Round32,
    Select,
    Switch,
    Text,
    ToFloat,
    ToInt,
    Val,
    const_expr,
    exprs_of,
    f32,
    fold,
    from_list,
)
from modelport.codegen.ops import register
from modelport.codegen.ops._util import as_matrix_row


def _rows(v: Val) -> np.ndarray:
    e = exprs_of(v)
    return e.reshape(1) if e.ndim == 0 else e


@register("ai.onnx.ml", "Scaler")
def scaler(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    assert ins[0] is not None
    x = as_matrix_row(ins[0])
    offset = [f32(v) for v in a.get("offset", [0.0])]
    scale = [f32(v) for v in a.get("scale", [1.0])]
    out = []
    for j, e in enumerate(x):
        o = offset[j] if len(offset) > 1 else offset[0]
        s = scale[j] if len(scale) > 1 else scale[0]
        v = fold("*", fold("-", _float(e), Num(o)), Num(s))
        out.append(Round32(v) if v.kind == "d" else v)  # the output is float32
    return [from_list(out, shape=exprs_of(ins[0]).shape)]


def _float(e: Expr) -> Expr:
    return ToFloat(e) if e.kind == "i" else e


@register("ai.onnx.ml", "Normalizer")
def normalizer(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    assert ins[0] is not None
    # ONNX Runtime casts every input value to float32 first
    x = [Round32(e) if e.kind == "d" else _float(e) for e in as_matrix_row(ins[0])]
    norm = a.get("norm", "MAX")
    if norm == "MAX":
        z: Expr = Call("max", tuple(x)) if len(x) > 1 else x[0]
        out = [Select(Cmp("!=", z, Num(0.0)), Bin("/", e, z), e) for e in x]
    elif norm == "L1":
        z = Call("abs", (x[0],))
        for e in x[1:]:
            z = Bin("+", z, Call("abs", (e,)))
        out = [Select(Cmp("!=", z, Num(0.0)), Bin("/", e, z), e) for e in x]
    elif norm == "L2":
        sq = [Bin("*", e, e) for e in x]
        z = sq[0]
        for e in sq[1:]:
            z = Bin("+", z, e)
        out = []
        for e, q in zip(x, sq):
            r = Call("sqrt", (Bin("/", q, z),))
            out.append(Select(Cmp("!=", z, Num(0.0)), Select(Cmp("<", e, Num(0.0)), Bin("-", Num(0.0), r), r), e))
    else:
        raise lw.fail(node, f"unknown norm {norm!r}; expected MAX, L1 or L2.")
    return [from_list(out, shape=exprs_of(ins[0]).shape)]


@register("ai.onnx.ml", "Imputer")
def imputer(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    assert ins[0] is not None
    x = as_matrix_row(ins[0])
    if "imputed_value_floats" in a:
        values = [f32(v) for v in a["imputed_value_floats"]]
        replaced = float(a.get("replaced_value_float", float("nan")))
        out = []
        for j, e in enumerate(x):
            v = Num(values[j] if len(values) > 1 else values[0])
            cond = IsNaN(e) if replaced != replaced else Cmp("==", e, Num(f32(replaced)))
            out.append(Select(cond, v, e))
    else:
        ivals = [float(v) for v in a.get("imputed_value_int64s", [])]
        rep = float(a.get("replaced_value_int64", 0))
        out = [
            Select(Cmp("==", e, Num(rep, kind="i")), Num(ivals[j] if len(ivals) > 1 else ivals[0], kind="i"), e, kind="i")
            for j, e in enumerate(x)
        ]
    return [from_list(out, shape=exprs_of(ins[0]).shape, kind=ins[0].kind)]


@register("ai.onnx.ml", "Binarizer")
def binarizer(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    assert ins[0] is not None
    t = Num(f32(a.get("threshold", 0.0)))
    e = exprs_of(ins[0])
    out = np.empty(e.shape, dtype=object)
    idx: tuple[int, ...]
    for idx in np.ndindex(e.shape):
        x: Expr = e[idx]
        # NaN stays NaN; everything else becomes 1 or 0
        out[idx] = Select(IsNaN(x), x, Select(Cmp(">", x, t), Num(1.0), Num(0.0)))
    return [Val(exprs=out)]


@register("ai.onnx.ml", "OneHotEncoder")
def one_hot(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    assert ins[0] is not None
    cats: list[Any]
    if "cats_strings" in a:
        cats = [Text(s) for s in a["cats_strings"]]
    else:
        cats = [Num(float(v), kind="i") for v in a.get("cats_int64s", [])]
    e = exprs_of(ins[0])
    out = np.empty((*e.shape, len(cats)), dtype=object)
    idx: tuple[int, ...]
    for idx in np.ndindex(e.shape):
        x: Expr = e[idx]
        for k, c in enumerate(cats):
            cmp_x = x if (x.kind == "s") == isinstance(c, Text) else (x if x.kind != "f" else ToInt(x))
            out[(*idx, k)] = Select(Cmp("==", cmp_x, c), Num(1.0), Num(0.0))
    # zeros=0 makes ORT fail on unseen categories; the generated code cannot fail per row, so it
    # encodes them as all zeros (the behaviour of zeros=1) and says so in the docs
    return [Val(exprs=out)]


@register("ai.onnx.ml", "LabelEncoder")
def label_encoder(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    assert ins[0] is not None
    keys: list[Expr]
    vals: list[Expr]
    if "keys_strings" in a:
        keys = [Text(s) for s in a["keys_strings"]]
    elif "keys_int64s" in a:
        keys = [Num(float(v), kind="i") for v in a["keys_int64s"]]
    elif "keys_floats" in a:
        keys = [Num(f32(v)) for v in a["keys_floats"]]
    elif "classes_strings" in a:  # opset 1
        keys = [Text(s) for s in a["classes_strings"]]
    else:
        raise lw.fail(node, "has no keys.")
    if "values_strings" in a:
        vals = [Text(s) for s in a["values_strings"]]
        default: Expr = Text(a.get("default_string", "_Unused"))
    elif "values_int64s" in a:
        vals = [Num(float(v), kind="i") for v in a["values_int64s"]]
        default = Num(float(a.get("default_int64", -1)), kind="i")
    elif "values_floats" in a:
        vals = [Num(f32(v)) for v in a["values_floats"]]
        default = Num(f32(a.get("default_float", -0.0)))
    elif "classes_strings" in a:  # opset 1: strings -> their index, ints -> strings
        if ins[0].kind == "s":
            vals = [Num(float(i), kind="i") for i in range(len(keys))]
            default = Num(float(a.get("default_int64", -1)), kind="i")
        else:
            vals, keys = keys, [Num(float(i), kind="i") for i in range(len(keys))]
            default = Text(a.get("default_string", "_Unused"))
    else:
        raise lw.fail(node, "has no values.")
    e = exprs_of(ins[0])
    out = np.empty(e.shape, dtype=object)
    idx: tuple[int, ...]
    for idx in np.ndindex(e.shape):
        x: Expr = e[idx]
        r: Expr = default
        for k, v in reversed(list(zip(keys, vals))):
            r = Select(Cmp("==", x, k), v, r, kind=default.kind)
        out[idx] = r
    return [Val(exprs=out, kind=default.kind)]


@register("ai.onnx.ml", "ArrayFeatureExtractor")
def array_feature_extractor(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    data, idx = ins[0], ins[1]
    assert data is not None and idx is not None
    if idx.is_const:
        ind = [int(i) for i in np.asarray(idx.const).reshape(-1)]
        if data.is_const:
            c = np.asarray(data.const)
            return [Val(const=np.take(c, ind, axis=-1))]
        e = exprs_of(data)
        if any(not 0 <= i < e.shape[-1] for i in ind):
            raise lw.fail(node, f"indices {ind} are out of range for {e.shape[-1]} values.")
        return [Val(exprs=np.take(e, ind, axis=-1), kind=data.kind)]
    # symbolic indices into a constant array (e.g. class labels picked by an ArgMax)
    if not data.is_const:
        raise lw.fail(node, "selects with per-row indices from a per-row array; only constant arrays are supported.")
    return [_pick_constant(np.asarray(data.const).reshape(-1), idx)]


@register("", "Gather")
def gather(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    data, idx = ins[0], ins[1]
    assert data is not None and idx is not None
    axis = int(lw.attrs(node).get("axis", 0))
    if data.is_const and idx.is_const:
        return [Val(const=np.take(np.asarray(data.const), np.asarray(idx.const), axis=axis))]
    if idx.is_const:
        e = exprs_of(data)
        if axis < 0:
            axis += e.ndim + 1
        if axis == 0:
            raise lw.fail(node, "gathers along the batch axis, which would mix rows.")
        ind = np.asarray(idx.const).astype(np.int64)
        ind = np.where(ind < 0, ind + e.shape[axis - 1], ind)
        return [Val(exprs=np.take(e, ind, axis=axis - 1), kind=data.kind)]
    if not data.is_const or axis != 0:
        raise lw.fail(node, "gathers with per-row indices from per-row data; only constant data is supported.")
    c = np.asarray(data.const)
    if c.ndim != 1:
        raise lw.fail(node, f"gathers per-row indices from a constant of shape {list(c.shape)}; only 1-D is supported.")
    return [_pick_constant(c, idx)]


def _pick_constant(c: np.ndarray, idx: Val) -> Val:
    """Per-row indices into a constant 1-D array (class labels picked by an ArgMax, ...)."""
    values = tuple(const_expr(v.item() if hasattr(v, "item") else v) for v in c)
    ie = exprs_of(idx)
    out = np.empty(ie.shape, dtype=object)
    k: tuple[int, ...]
    for k in np.ndindex(ie.shape):
        out[k] = Switch(ie[k], values, values[0], kind=values[0].kind)
    return Val(exprs=out, kind=values[0].kind)


@register("ai.onnx.ml", "FeatureVectorizer")
def feature_vectorizer(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    dims = list(a.get("inputdimensions", []))
    out: list[Expr] = []
    for j, v in enumerate(ins):
        assert v is not None
        items = [_float(e) for e in exprs_of(v).reshape(-1)]
        want = int(dims[j]) if j < len(dims) else len(items)
        items = (items + [Num(0.0)] * want)[:want]
        out.extend(items)
    return [from_list(out)]


_ONNX_KIND: dict[int, str] = {
    onnx.TensorProto.FLOAT: "f32", onnx.TensorProto.DOUBLE: "f64", onnx.TensorProto.FLOAT16: "f32",
    onnx.TensorProto.INT64: "i", onnx.TensorProto.INT32: "i", onnx.TensorProto.INT16: "i", onnx.TensorProto.INT8: "i",
    onnx.TensorProto.UINT8: "i", onnx.TensorProto.UINT16: "i", onnx.TensorProto.UINT32: "i", onnx.TensorProto.UINT64: "i",
    onnx.TensorProto.BOOL: "b", onnx.TensorProto.STRING: "s",
}


@register("", "Cast")
def cast(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    assert ins[0] is not None
    to = _ONNX_KIND.get(int(a["to"]))
    if to is None:
        raise lw.fail(node, f"casts to element type {a['to']}, which compile does not support.")
    if ins[0].is_const:
        return [ins[0]]
    e = exprs_of(ins[0])
    out = np.empty(e.shape, dtype=object)
    idx: tuple[int, ...]
    for idx in np.ndindex(e.shape):
        x: Expr = e[idx]
        if x.kind == "b" and to in ("f32", "f64", "i"):
            k = {"f32": "f", "f64": "d", "i": "i"}[to]
            out[idx] = Select(x, Num(1.0, kind=k), Num(0.0, kind=k), kind=k)
            continue
        if to == "f32":
            out[idx] = x if x.kind == "f" else Round32(_float(x))
        elif to == "f64":
            out[idx] = x if x.kind == "d" else ToFloat(x, kind="d")
        elif to == "i":
            out[idx] = x if x.kind == "i" else (ToInt(x) if x.kind in ("f", "d") else _bad_cast(lw, node, x))
        elif to == "b":
            out[idx] = Select(Cmp("!=", _float(x), Num(0.0)), Num(1.0, kind="i"), Num(0.0, kind="i"), kind="i")
        else:
            if x.kind != "s":
                raise lw.fail(node, "casts numbers to strings, which compile does not support.")
            out[idx] = x
    kind = {"f32": "f", "f64": "d", "i": "i", "b": "i", "s": "s"}[to]
    return [Val(exprs=out, kind=kind)]


def _bad_cast(lw: Lowering, node: Any, x: Expr) -> Expr:
    raise lw.fail(node, "casts strings to numbers, which compile does not support.")


@register("", "Identity")
def identity(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    assert ins[0] is not None
    return [ins[0]]


@register("", "Concat")
def concat(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    axis = int(a.get("axis", 1))
    vals = [v for v in ins if v is not None]
    if all(v.is_const for v in vals):
        return [Val(const=np.concatenate([np.asarray(v.const) for v in vals], axis=axis))]
    rank = max(len(v.shape) for v in vals if not v.is_const)
    if axis < 0:
        axis += rank + 1
    if axis == 0:
        raise lw.fail(node, "concatenates along the batch axis, which compile does not support.")
    parts = [exprs_of(v, rank) for v in vals]
    kinds = {v.kind for v in vals}
    return [Val(exprs=np.concatenate(parts, axis=axis - 1), kind=kinds.pop() if len(kinds) == 1 else "f")]


def _per_row_shape(lw: Lowering, node: Any, size: int, target: list[int], cur: tuple[int, ...]) -> tuple[int, ...]:
    if not target:
        raise lw.fail(node, "reshapes to a scalar, dropping the batch axis.")
    rest = [cur[i - 1] if (d == 0 and 0 < i <= len(cur)) else d for i, d in enumerate(target)][1:]
    if target[0] not in (-1, 0) and -1 in rest:
        raise lw.fail(node, f"reshapes to {target}: the batch axis must stay first.")
    if -1 in rest:
        known = int(np.prod([d for d in rest if d != -1])) if len(rest) > 1 else 1
        rest = [size // known if d == -1 else d for d in rest]
    if int(np.prod(rest)) != size:
        raise lw.fail(node, f"reshapes rows of {size} values to {target}.")
    return tuple(rest)


@register("", "Reshape")
def reshape(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    x, shape = ins[0], ins[1]
    assert x is not None
    if shape is None or not shape.is_const:
        raise lw.fail(node, "has a shape computed at run time; only constant shapes are supported.")
    target = [int(s) for s in np.asarray(shape.const).reshape(-1)]
    if x.is_const:
        return [Val(const=np.asarray(x.const).reshape(target))]
    e = exprs_of(x)
    return [Val(exprs=e.reshape(_per_row_shape(lw, node, e.size, target, e.shape)), kind=x.kind)]


@register("", "Flatten")
def flatten(lw: Lowering, node: Any, ins: list[Val | None]) -> list[Val]:
    a = lw.attrs(node)
    x = ins[0]
    assert x is not None
    if int(a.get("axis", 1)) != 1:
        raise lw.fail(node, "flattens with axis != 1, which would mix rows.")
    e = exprs_of(x)
    return [Val(exprs=e.reshape(-1), kind=x.kind)]


# keep Logic importable for emitters that build boolean masks
__all__ = ["Logic"]
