"""The signature of a bundle: its graph tensors, and the named columns a tabular model reads.

Two views of one model's inputs are kept:

* ``inputs`` / ``outputs``: the ONNX graph's own tensors (name, element dtype, shape with
  ``None`` for dynamic dimensions);
* ``columns``: for tabular models, the user-facing columns (name, logical dtype, categories)
  and where each one lands in the graph: a whole input of shape ``[N, 1]`` (``index`` is None)
  or one slot of a matrix input ``[N, F]`` (``index`` is the slot). Unnamed array inputs get
  columns ``f0 .. f{n-1}``.
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
        if d["dtype"] not in TENSOR_DTYPES:
            raise BundleError(f"signature: tensor {d['name']!r} has unknown dtype {d['dtype']!r}.")
        shape = d["shape"]
        if not isinstance(shape, list) or not all(s is None or (isinstance(s, int) and s >= 0) for s in shape):
            raise BundleError(f"signature: tensor {d['name']!r} has an invalid shape {shape!r}.")
        return cls(str(d["name"]), str(d["dtype"]), tuple(shape))


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    input: str
    index: int | None = None
    categories: tuple[Any, ...] | None = None
    nullable: bool = True

    @property
    def is_numeric(self) -> bool:
        return self.dtype in ("float64", "float32", "int64", "int32", "bool")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "input": self.input, "index": self.index}
        if self.categories is not None:
            d["categories"] = list(self.categories)
        d["nullable"] = self.nullable
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Column:
        _require_keys(d, ("name", "dtype", "input"), "column")
        if d["dtype"] not in COLUMN_DTYPES:
            raise BundleError(f"signature: column {d['name']!r} has unknown dtype {d['dtype']!r}.")
        cats = d.get("categories")
        return cls(
            name=str(d["name"]),
            dtype=str(d["dtype"]),
            input=str(d["input"]),
            index=d.get("index"),
            categories=tuple(cats) if cats is not None else None,
            nullable=bool(d.get("nullable", True)),
        )


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    columns: tuple[Column, ...] | None = None
    _by_name: dict[str, Column] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.columns is not None:
            object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})
            names = {t.name for t in self.inputs}
            for c in self.columns:
                if c.input not in names:
                    raise BundleError(
                        f"signature: column {c.name!r} maps to input {c.input!r}, which the graph does not have."
                    )
            if len(self._by_name) != len(self.columns):
                raise BundleError("signature: column names are not unique.")

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
        cols = d.get("columns")
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
            columns=tuple(Column.from_dict(c) for c in cols) if cols is not None else None,
        )


def matrix_columns(input_name: str, names: Sequence[str], dtypes: Iterable[str]) -> tuple[Column, ...]:
    """Columns that are the slots of one matrix input, in order."""
    return tuple(Column(name=n, dtype=t, input=input_name, index=i) for i, (n, t) in enumerate(zip(names, dtypes)))


def default_column_names(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


def _require_keys(d: Mapping[str, Any], keys: Sequence[str], what: str) -> None:
    if not isinstance(d, Mapping):
        raise BundleError(f"signature: expected a {what} object, got {type(d).__name__}.")
    missing = [k for k in keys if k not in d]
    if missing:
        raise BundleError(f"signature: a {what} entry lacks {', '.join(missing)}.")
