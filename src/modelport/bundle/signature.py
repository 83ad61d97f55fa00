"""The signature of a bundle: its graph tensors, and the named columns a tabular model reads.

Two views of one model's inputs are kept:

* ``inputs`` / ``outputs``: the ONNX graph's own tensors (name, element dtype, shape with
  ``None`` for dynamic dimensions);
* ``columns``: for tabular models, the user-facing columns (name, logical dtype, categories)
  and where each one lands in the graph: a whole input of shape ``[N]`` / ``[N, 1]`` (``index``
  is None) or one slot of a matrix input ``[N, F]`` (``index`` is the slot). Unnamed array inputs
  get columns ``f0 .. f{n-1}``. Every graph input of a tabular signature is fed by its columns:
  either one column, or one column per slot, each slot exactly once (checked when the signature
  is read, so that no slot is left unset and no column writes past its input).

Columns with ``categories`` (``category`` columns, and ``str`` columns whose encoders list the
values they know) also say what happens to a value outside them: ``unknown`` is the policy chosen
when the bundle was packed (``native``, ``missing`` or ``error``; see :data:`UNKNOWN_POLICIES`),
``native`` what the original library does with such a value (:data:`NATIVE_UNKNOWN`). Bundles
written before these fields existed read as ``unknown="missing"`` (their category columns scored
such values as missing), which is how they behaved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import BundleError

#: element types a bundle may use at its boundary, as numpy dtype names ("str" for strings)
TENSOR_DTYPES = (
    "float32", "float64", "float16", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool", "str",
)
#: logical column types
COLUMN_DTYPES = ("float64", "float32", "int64", "int32", "bool", "str", "category")
#: what may happen to a value outside a column's categories: as the original library does
#: (``native``), scored as a missing value (``missing``), or refused (``error``); every value
#: that is accepted is counted
UNKNOWN_POLICIES = ("native", "missing", "error")
#: what the original library does with a value outside the categories: scores it as missing
#: (LightGBM: pandas codes it NaN), refuses it (XGBoost, ``handle_unknown="error"``), or hands it
#: to the model's encoder, which the graph reproduces (one-hot all zeros, ``unknown_value``)
NATIVE_UNKNOWN = ("missing", "error", "encoder")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        _require_keys(d, ("name", "dtype", "shape"), "tensor")
        name = d["name"]
        if not isinstance(name, str) or not name:
            raise BundleError(f"signature: a tensor name must be a non-empty string; got {_brief(name)}.")
        if d["dtype"] not in TENSOR_DTYPES:
            raise BundleError(f"signature: tensor {name!r} has unknown dtype {_brief(d['dtype'])}.")
        shape = d["shape"]
        if not isinstance(shape, list) or not all(s is None or (type(s) is int and 0 <= s < 2**62) for s in shape):
            raise BundleError(f"signature: tensor {name!r} has an invalid shape {_brief(shape)}; "
                              "it must be a list of sizes (>= 0) or nulls.")
        return cls(name, str(d["dtype"]), tuple(shape))


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    input: str
    index: int | None = None
    categories: tuple[Any, ...] | None = None
    nullable: bool = True
    #: policy for values outside ``categories`` (None: a bundle from before policies, read as "missing")
    unknown: str | None = None
    #: what the original library does with such a value (None: not recorded)
    native: str | None = None

    @property
    def is_numeric(self) -> bool:
        return self.dtype in ("float64", "float32", "int64", "int32", "bool")

    @property
    def unknown_policy(self) -> str:
        """The policy in effect for values outside the categories: as recorded, else how bundles
        behaved before policies were recorded ("missing" for category columns; a string column's
        encoder sees the value itself, "native")."""
        return self.unknown or ("native" if self.dtype == "str" else "missing")

    @property
    def unknown_treatment(self) -> str | None:
        """What a value outside the categories gets, in one word: ``missing``, ``error`` or
        ``encoder`` (the model's own encoder sees it), or the library's recorded ``native`` rule.
        None for a column without categories."""
        if self.categories is None and self.dtype != "category":
            return None
        policy = self.unknown_policy
        if policy != "native":
            return policy
        return self.native or ("missing" if self.dtype == "category" else "encoder")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "input": self.input, "index": self.index}
        if self.categories is not None:
            d["categories"] = list(self.categories)
        d["nullable"] = self.nullable
        if self.unknown is not None:
            d["unknown"] = self.unknown
        if self.native is not None:
            d["native"] = self.native
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Column:
        _require_keys(d, ("name", "dtype", "input"), "column")
        name = d["name"]
        if not isinstance(name, str) or not name:
            raise BundleError(f"signature: a column name must be a non-empty string; got {_brief(name)}.")
        if d["dtype"] not in COLUMN_DTYPES:
            raise BundleError(f"signature: column {name!r} has unknown dtype {_brief(d['dtype'])}.")
        if not isinstance(d["input"], str):
            raise BundleError(f"signature: column {name!r} names its input as {_brief(d['input'])}; it must be a string.")
        index = d.get("index")
        if index is not None and (type(index) is not int or not 0 <= index < 2**31):
            raise BundleError(f"signature: column {name!r} has slot index {_brief(index)}; it must be an integer >= 0 or null.")
        if type(d.get("nullable", True)) is not bool:
            raise BundleError(f"signature: 'nullable' of column {name!r} must be true or false.")
        cats = d.get("categories")
        if cats is not None:
            if not isinstance(cats, list) or not all(type(c) in (str, int, float, bool) for c in cats):
                raise BundleError(f"signature: the categories of column {name!r} must be a list of strings or numbers.")
            if len(set(cats)) != len(cats):
                raise BundleError(f"signature: column {name!r} lists a category twice.")
        unknown, native = d.get("unknown"), d.get("native")
        if unknown is not None and unknown not in UNKNOWN_POLICIES:
            raise BundleError(
                f"signature: column {name!r} has unknown-category policy {unknown!r}; "
                f"expected one of {', '.join(UNKNOWN_POLICIES)}."
            )
        if native is not None and native not in NATIVE_UNKNOWN:
            raise BundleError(
                f"signature: column {name!r} records native unknown-category handling {native!r}; "
                f"expected one of {', '.join(NATIVE_UNKNOWN)}."
            )
        return cls(
            name=name,
            dtype=str(d["dtype"]),
            input=str(d["input"]),
            index=index,
            categories=tuple(cats) if cats is not None else None,
            nullable=bool(d.get("nullable", True)),
            unknown=unknown,
            native=native,
        )


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    columns: tuple[Column, ...] | None = None
    _by_name: dict[str, Column] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = [t.name for t in self.inputs]
        if len(set(names)) != len(names):
            raise BundleError("signature: graph input names are not unique.")
        if self.columns is not None:
            object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})
            if len(self._by_name) != len(self.columns):
                raise BundleError("signature: column names are not unique.")
            _check_slots(self.inputs, self.columns)

    @property
    def is_tabular(self) -> bool:
        return self.columns is not None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns] if self.columns is not None else []

    def column(self, name: str) -> Column:
        return self._by_name[name]

    def input(self, name: str) -> TensorSpec:
        for t in self.inputs:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }
        d["columns"] = [c.to_dict() for c in self.columns] if self.columns is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Signature:
        _require_keys(d, ("inputs", "outputs"), "signature")
        for key in ("inputs", "outputs"):
            if not isinstance(d[key], list):
                raise BundleError(f"signature: {key!r} must be a list of tensor objects.")
        cols = d.get("columns")
        if cols is not None and not isinstance(cols, list):
            raise BundleError("signature: 'columns' must be a list of column objects or null.")
        outs = [repr(t.get("name")) if isinstance(t, Mapping) else None for t in d["outputs"]]
        ins = {repr(t.get("name")) if isinstance(t, Mapping) else None for t in d["inputs"]}
        if len(set(outs)) != len(outs) or ins & set(outs):  # duplicate inputs: refused in __post_init__
            raise BundleError("signature: output names must be unique and differ from the input names.")
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            columns=tuple(Column.from_dict(c) for c in cols) if cols is not None else None,
        )


def _check_slots(inputs: Sequence[TensorSpec], columns: Sequence[Column]) -> None:
    """Every graph input is fed by its columns, each slot exactly once (a crafted manifest that puts
    two columns on one slot would leave another slot unset; an index past the input writes nowhere)."""
    specs = {t.name: t for t in inputs}
    members: dict[str, list[Column]] = {name: [] for name in specs}
    for c in columns:
        if c.input not in specs:
            raise BundleError(f"signature: column {c.name!r} maps to input {c.input!r}, which the graph does not have.")
        members[c.input].append(c)
    for name, cols in members.items():
        spec = specs[name]
        if not cols:
            raise BundleError(
                f"signature: graph input {name!r} is fed by no column; a tabular signature maps every input to columns."
            )
        whole = [c for c in cols if c.index is None]
        if whole:
            if len(cols) != 1:
                raise BundleError(
                    f"signature: graph input {name!r} is fed by {len(cols)} columns "
                    f"({', '.join(repr(c.name) for c in cols[:5])}), but column {whole[0].name!r} has no slot index; "
                    "a column without an index takes a whole [N] or [N, 1] input alone."
                )
            if len(spec.shape) not in (1, 2) or (len(spec.shape) == 2 and spec.shape[1] not in (None, 1)):
                raise BundleError(
                    f"signature: column {whole[0].name!r} takes the whole input {name!r}, whose shape "
                    f"{list(spec.shape)} is not [N] or [N, 1]."
                )
            continue
        if len(spec.shape) != 2:
            raise BundleError(
                f"signature: columns {', '.join(repr(c.name) for c in cols[:5])} are slots of input {name!r}, "
                f"which is not a matrix (shape {list(spec.shape)})."
            )
        width = spec.shape[1] if spec.shape[1] is not None else len(cols)
        seen: dict[int, str] = {}
        for c in cols:
            assert c.index is not None
            if c.index >= width:
                raise BundleError(
                    f"signature: column {c.name!r} has slot {c.index}, outside input {name!r} "
                    f"of width {width} (slots 0..{width - 1})."
                )
            if c.index in seen:
                raise BundleError(
                    f"signature: columns {seen[c.index]!r} and {c.name!r} both map to slot {c.index} of input {name!r}."
                )
            seen[c.index] = c.name
        if len(seen) != width:
            unset = [i for i in range(width) if i not in seen]
            shown = ", ".join(map(str, unset[:10])) + (" ..." if len(unset) > 10 else "")
            raise BundleError(
                f"signature: slot(s) {shown} of input {name!r} (width {width}) are fed by no column; "
                "every slot of a matrix input must have exactly one column."
            )


def matrix_columns(input_name: str, names: Sequence[str], dtypes: Iterable[str]) -> tuple[Column, ...]:
    """Columns that are the slots of one matrix input, in order."""
    return tuple(Column(name=n, dtype=t, input=input_name, index=i) for i, (n, t) in enumerate(zip(names, dtypes)))


def default_column_names(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


def _brief(value: Any, limit: int = 80) -> str:
    """A manifest value in an error message, cut short (a crafted manifest can hold megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _require_keys(d: Mapping[str, Any], keys: Sequence[str], what: str) -> None:
    if not isinstance(d, Mapping):
        raise BundleError(f"signature: expected a {what} object, got {type(d).__name__}.")
    missing = [k for k in keys if k not in d]
    if missing:
        raise BundleError(f"signature: a {what} entry lacks {', '.join(missing)}.")
