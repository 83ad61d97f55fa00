"""What Keras and TensorFlow networks share on the way to a bundle: their inputs (and how a
user's data becomes them), their heads (which output is a classifier's scores or a regressor's
values), the finished graph, and the parity check that decides between export routes.

Inputs keep the model's own names. A sample that is a table maps onto the inputs in one of two
ways: one 2-D input ``[N, F]`` takes the table's ``F`` columns as slots (a DataFrame keeps its
column names, an array gives ``f0 .. f{F-1}``), or several inputs of shape ``[N]`` / ``[N, 1]``
take the DataFrame columns of the same names. Anything else (images, sequences, token ids, dicts
of arrays) stays a tensor input.

Heads, unless the caller names the task: one output made by a ``softmax`` layer with two or more
columns is a classifier (``label`` + ``probabilities``); one ``sigmoid`` column is a binary
classifier; one float output of shape ``[N]`` or ``[N, k]`` with any other activation is a
regressor (``prediction``); several outputs, or ``sigmoid`` over several columns (multi-label),
stay tensors under their own names.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from modelport.bundle.signature import Column
from modelport.convert import _heads
from modelport.convert._keras_graph import normalise_batch_dim, rename_safely, strip_metadata
from modelport.convert._sample import column_kinds, is_dataframe
from modelport.convert.base import Converter
from modelport.errors import ConversionError, InputError, ModelportError

TASKS = ("auto", "tensor", "classification", "regression")


@dataclass(frozen=True)
class Tensor:
    """An input or output of a network: name, numpy dtype name, shape with None for the batch and
    other free dimensions."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    activation: str | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tensor:
        shape = tuple(None if s is None else int(s) for s in d.get("shape") or ())
        return cls(str(d["name"]), str(d.get("dtype") or "float32"), shape, d.get("activation"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "activation": self.activation}


def to_numpy(value: Any) -> np.ndarray:
    """An array from numpy, pandas, torch or TensorFlow values."""
    mod = type(value).__module__
    if mod.startswith("torch"):
        return value.detach().cpu().numpy()
    if is_dataframe(value) or mod.startswith("pandas"):
        return np.asarray(value.to_numpy())
    if mod.startswith(("tensorflow", "keras")) and hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)


# ---------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    """The network's inputs, how it is called with them, and the tabular view of them (if any)."""

    specs: list[Tensor]
    #: how the network takes them: one tensor, a list, or a dict by name
    structure: str
    columns: tuple[Column, ...] | None = None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def to_dict(self) -> dict[str, Any]:
        return {"structure": self.structure, "inputs": [s.to_dict() for s in self.specs]}

    @classmethod
    def restore(cls, call: Mapping[str, Any], columns: Sequence[Column] | None) -> Inputs:
        specs = [Tensor.from_dict(d) for d in call["inputs"]]
        return cls(specs, str(call.get("structure", "single")), tuple(columns) if columns else None)

    @classmethod
    def plan(
        cls,
        specs: list[Tensor] | None,
        structure: str | None,
        sample: Any,
        *,
        columns: list[str] | None = None,
        tabular: bool | None = None,
        where: str = "the model",
    ) -> Inputs:
        """The inputs of a network (``specs``; None when it does not declare them) fed with ``sample``."""
        if specs is None:
            specs, structure = _specs_from_sample(sample)
        assert structure is not None
        plan = cls(specs, structure)
        if tabular is not False:
            plan.columns = plan._columns(sample, columns, where)
        if columns is not None and plan.columns is None:
            raise ConversionError("option columns applies to a model with one 2-D input [N, F] only.")
        # the sample must fit (names, ranks, fixed dimensions): the errors say how
        plan.arrays(sample)
        return plan

    def _columns(self, sample: Any, names: list[str] | None, where: str) -> tuple[Column, ...] | None:
        specs = self.specs
        if is_dataframe(sample):
            kinds = column_kinds(sample)
            text = [n for n, k, _ in kinds if k in ("str", "category")]
            if text:
                raise InputError(
                    f"{where} takes numbers; the sample has non-numeric column(s): {', '.join(text)}.",
                    hint="encode those columns as numbers, as the network was trained on them",
                )
            frame_names = [n for n, _, _ in kinds]
            dtypes = {n: k for n, k, _ in kinds}
            whole = all(s.rank in (1, 2) and (s.rank == 1 or s.shape[1] == 1) for s in specs)
            if whole and (len(specs) > 1 or specs[0].name in frame_names) and names is None:
                missing = [s.name for s in specs if s.name not in dtypes]
                extra = [n for n in frame_names if n not in {s.name for s in specs}]
                if missing or extra:
                    raise InputError(
                        f"{where} takes the inputs {self.names}; the sample's columns are {frame_names}"
                        + (f" (missing: {', '.join(missing)})" if missing else "")
                        + (f" (not inputs of the model: {', '.join(extra)})" if extra else "") + ".",
                        hint="pass a DataFrame with one column per input, named like the inputs",
                    )
                return tuple(Column(s.name, _column_dtype(dtypes[s.name], s), s.name, None) for s in specs)
            if len(specs) == 1 and specs[0].rank == 2:
                width = specs[0].shape[1]
                if width is not None and width != len(frame_names):
                    raise InputError(
                        f"{where}'s input {specs[0].name!r} takes {width} columns; the sample has {len(frame_names)}.",
                    )
                chosen = names or frame_names
                if len(chosen) != len(frame_names) or len(set(chosen)) != len(chosen):
                    raise ConversionError(
                        f"option columns needs {len(frame_names)} distinct names (one per input column); got {chosen!r}."
                    )
                return tuple(
                    Column(c, _column_dtype(dtypes[f], specs[0]), specs[0].name, i)
                    for i, (c, f) in enumerate(zip(chosen, frame_names))
                )
            raise InputError(
                f"a DataFrame sample is a table, but {where} takes {_describe(specs)}.",
                hint="pass a DataFrame only for one input of shape [N, F] (its columns), or for inputs of shape "
                "[N, 1] named like its columns; otherwise pass arrays (a dict of arrays by input name)",
            )
        if isinstance(sample, (Mapping, tuple, list)) or len(specs) != 1 or specs[0].rank != 2:
            return None
        arr = to_numpy(sample)
        if arr.ndim != 2 or arr.dtype.kind != "f" or np.dtype(specs[0].dtype).kind != "f":
            return None
        width = arr.shape[1]
        chosen = names or [f"f{i}" for i in range(width)]
        if len(chosen) != width or len(set(chosen)) != len(chosen):
            raise ConversionError(f"option columns needs {width} distinct names (one per input column); got {chosen!r}.")
        kind = "float32" if arr.dtype == np.float32 else "float64"
        return tuple(Column(c, kind, specs[0].name, i) for i, c in enumerate(chosen))

    def arrays(self, data: Any) -> dict[str, np.ndarray]:
        """``data`` (DataFrame, array, tuple or dict of arrays or tensors) as one array per input,
        in the network's dtypes; shapes are checked against the inputs'."""
        specs = self.specs
        if is_dataframe(data):
            if self.columns is None:
                raise InputError(f"this model takes {_describe(specs)}, not a table.")
            if self.columns[0].index is None:
                missing = [c.name for c in self.columns if c.name not in data.columns]
                if missing:
                    raise InputError(f"the data lacks column(s) {', '.join(missing)}; expected {self.names}.")
                raw = {s.name: data[s.name].to_numpy() for s in specs}
                values = {s.name: raw[s.name].reshape(-1, 1) if s.rank == 2 else raw[s.name] for s in specs}
            else:
                names = [c.name for c in self.columns]
                missing = [c for c in names if c not in data.columns]
                if missing and len(data.columns) == len(names):
                    names = list(data.columns)  # a table with the same number of columns, named otherwise
                elif missing:
                    raise InputError(f"the data lacks column(s) {', '.join(missing)}; expected {names}.")
                values = {specs[0].name: data[names].to_numpy()}
        elif isinstance(data, Mapping):
            missing = [n for n in self.names if n not in data]
            if missing and self.columns is not None and self.columns[0].index is not None and all(
                c.name in data for c in self.columns
            ):
                values = {specs[0].name: np.column_stack([to_numpy(data[c.name]) for c in self.columns])}
            elif missing:
                raise InputError(f"the data lacks input(s) {', '.join(missing)}; the model takes {self.names}.")
            else:
                unknown = [k for k in data if k not in self.names]
                if unknown:
                    raise InputError(f"unknown input(s) {', '.join(map(str, unknown))}; the model takes {self.names}.")
                values = {n: to_numpy(data[n]) for n in self.names}
        elif isinstance(data, (tuple, list)) and len(specs) > 1:
            if len(data) != len(specs):
                raise InputError(f"the model takes {len(specs)} inputs ({self.names}); got {len(data)} arrays.")
            values = {s.name: to_numpy(v) for s, v in zip(specs, data)}
        else:
            if len(specs) != 1:
                raise InputError(f"the model takes {len(specs)} inputs ({self.names}); pass a dict of arrays by name.")
            values = {specs[0].name: to_numpy(data)}
        out: dict[str, np.ndarray] = {}
        rows: set[int] = set()
        for s in specs:
            out[s.name] = _shaped(values[s.name], s)
            rows.add(out[s.name].shape[0])
        if len(rows) > 1:
            raise InputError(f"the inputs disagree on the number of rows: {sorted(rows)}; send the same N for every input.")
        return out


def _describe(specs: Sequence[Tensor]) -> str:
    return ", ".join(f"{s.name!r} {_shape_text(s.shape)} {s.dtype}" for s in specs)


def _shape_text(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("N" if i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(shape)) + "]"


def _column_dtype(kind: str, spec: Tensor) -> str:
    if kind in ("float64", "float32", "int64", "bool"):
        return kind
    return "float64" if np.dtype(spec.dtype).kind == "f" else "int64"


def _shaped(value: np.ndarray, spec: Tensor) -> np.ndarray:
    arr = value
    if arr.dtype.kind not in "biuf":
        raise InputError(
            f"input {spec.name!r} must be numbers ({spec.dtype}); got {arr.dtype} values.",
            hint="networks take numeric tensors; encode text before the model",
        )
    if arr.ndim != spec.rank:
        if spec.rank == 2 and arr.ndim == 1 and spec.shape[1] == 1:
            arr = arr.reshape(-1, 1)
        elif spec.rank == 1 and arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr.reshape(-1)
        else:
            raise InputError(
                f"input {spec.name!r} must have shape {_shape_text(spec.shape)}; got an array of shape {list(arr.shape)}."
            )
    for i, (got, want) in enumerate(zip(arr.shape[1:], spec.shape[1:]), start=1):
        if want is not None and got != want:
            raise InputError(
                f"input {spec.name!r} must have shape {_shape_text(spec.shape)}; got {list(arr.shape)} "
                f"(dimension {i} is {got}, not {want})."
            )
    dtype = np.dtype(spec.dtype)
    if arr.dtype != dtype:
        if dtype.kind in "iu" and arr.dtype.kind == "f":
            finite = arr[np.isfinite(arr)]
            if (finite.size and not np.array_equal(finite, np.round(finite))) or finite.size != arr.size:
                raise InputError(f"input {spec.name!r} takes whole numbers ({spec.dtype}); got fractions or NaN.")
        arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def _specs_from_sample(sample: Any) -> tuple[list[Tensor], str]:
    """Inputs of a network that does not declare them (a subclassed keras.Model), from the sample."""
    def spec(name: str, value: Any) -> Tensor:
        arr = value.to_numpy() if is_dataframe(value) else to_numpy(value)
        if arr.ndim == 0:
            raise InputError(f"the sample's {name!r} has no batch dimension.")
        dtype = "float32" if arr.dtype.kind == "f" else ("int64" if arr.dtype.kind in "iu" else str(arr.dtype))
        return Tensor(name, dtype, (None, *arr.shape[1:]))

    if isinstance(sample, Mapping):
        if not sample or not all(isinstance(k, str) for k in sample):
            raise InputError("a dict sample must map input names to arrays.")
        return [spec(k, v) for k, v in sample.items()], "dict"
    if isinstance(sample, (tuple, list)) and sample and not np.isscalar(sample[0]):
        return [spec(f"input_{i}", v) for i, v in enumerate(sample)], "list"
    return [spec("input", sample)], "single"


# ---------------------------------------------------------------------- heads
@dataclass
class Head:
    """Which of the network's outputs the bundle's outputs come from, and how."""

    task: str
    output_names: list[str]
    classes: list[Any] | None = None
    scores: str = "probabilities"
    #: output the classifier / regressor reads
    source: int = 0
    #: its number of columns (None: one-dimensional)
    width: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "outputs": self.output_names, "scores": self.scores, "source": self.source,
                "width": self.width}

    @classmethod
    def restore(cls, call: Mapping[str, Any], classes: list[Any] | None) -> Head:
        width = call.get("width")
        return cls(str(call["task"]), list(call["outputs"]), classes, str(call.get("scores", "probabilities")),
                   int(call.get("source", 0)), None if width is None else int(width))

    @classmethod
    def plan(
        cls,
        outputs: list[Tensor],
        *,
        task: str = "auto",
        classes: Sequence[Any] | None = None,
        scores: str | None = None,
    ) -> Head:
        names = [o.name for o in outputs]
        labels = _heads.check_classes(classes)
        if task not in TASKS:
            raise ConversionError(f"option task must be one of {', '.join(TASKS)}; got {task!r}.")
        if scores is not None and scores not in _heads.SCORES:
            raise ConversionError(f"option scores must be 'logits' or 'probabilities'; got {scores!r}.")
        notes: list[str] = []
        first = outputs[0]
        width = first.shape[1] if first.rank == 2 else None
        act = first.activation
        if task == "auto":
            task = "classification" if labels is not None else _auto_task(outputs, notes)
        if task in ("classification", "regression"):
            if len(outputs) > 1:
                notes.append(f"the model has {len(outputs)} outputs; the {task[:-3] + 'er' if task == 'regression' else 'classifier'} "
                             f"reads the first ({first.name!r}).")
            if np.dtype(first.dtype).kind != "f":
                raise ConversionError(f"the {task} output {first.name!r} must be floats; it is {first.dtype}.")
            if first.rank not in (1, 2) or (first.rank == 2 and width is None):
                raise ConversionError(
                    f"a {task} head reads an output of shape [N] or [N, k]; {first.name!r} has shape "
                    f"{_shape_text(first.shape)}.",
                    hint="pass task='tensor' to keep the model's outputs as they are",
                )
        if task == "classification":
            if scores is None:
                scores = "probabilities" if act in ("softmax", "sigmoid") else "logits"
            if scores == "probabilities" and act == "sigmoid" and width not in (None, 1):
                raise ConversionError(
                    f"{first.name!r} has {width} sigmoid columns (multi-label scores), not one class of two "
                    "classes or a softmax over classes; a single-label classifier cannot be read from it.",
                    hint="pack it with task='tensor' to keep the per-label probabilities",
                )
            n = _heads.class_count(width)
            labels = labels if labels is not None else list(range(n))
            if len(labels) != n:
                raise ConversionError(
                    f"the model gives {width or 1} score column(s) but {len(labels)} classes were named: {labels!r}.",
                    hint="a single column is the score of the second (positive) class of two",
                )
            return cls(task, names, labels, scores, 0, width, notes)
        if labels is not None:
            raise ConversionError("option classes needs task='classification'.")
        return cls(task, names, None, scores or "probabilities", 0, width, notes)

    def apply(self, onx: onnx.ModelProto) -> None:
        src = self.output_names[self.source]
        if self.task == "classification":
            assert self.classes is not None
            _heads.classifier_head(onx, src, width=self.width, classes=self.classes, scores=self.scores)
        elif self.task == "regression":
            _heads.regression_head(onx, src, width=self.width)

    def reference(self, raw: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """The original network's outputs, shaped like the bundle's."""
        if self.task == "classification":
            assert self.classes is not None
            return _heads.classify(raw[self.source], classes=self.classes, scores=self.scores)
        if self.task == "regression":
            return _heads.regress(raw[self.source])
        return {name: np.asarray(v) for name, v in zip(self.output_names, raw)}


def _auto_task(outputs: list[Tensor], notes: list[str]) -> str:
    if len(outputs) != 1:
        notes.append(f"the model has {len(outputs)} outputs, kept as tensors; pass task='classification' or "
                     "'regression' to read the first as a classifier or regressor.")
        return "tensor"
    out = outputs[0]
    width = out.shape[1] if out.rank == 2 else None
    if np.dtype(out.dtype).kind != "f" or out.rank not in (1, 2) or (out.rank == 2 and width is None):
        return "tensor"
    if out.activation == "softmax" and width is not None and width >= 2:
        return "classification"
    if out.activation == "sigmoid":
        if width in (None, 1):
            return "classification"
        notes.append(f"{out.name!r} is {width} sigmoid columns (multi-label), kept as a tensor of probabilities.")
        return "tensor"
    return "regression"


# ---------------------------------------------------------------------- the finished graph
def finish(onnx_bytes: bytes, inputs: Inputs, outputs: list[Tensor], head: Head) -> onnx.ModelProto:
    """An exported graph (inputs ``mp_in_<i>``, outputs ``mp_out_<j>``) under the model's names, with
    a batch dimension ``N`` and the head."""
    onx = onnx.load_model_from_string(onnx_bytes)
    mapping = {f"mp_in_{i}": n for i, n in enumerate(inputs.names)}
    mapping.update({f"mp_out_{j}": o.name for j, o in enumerate(outputs)})
    present = {v.name for v in [*onx.graph.input, *onx.graph.output]}
    lost = [k for k in mapping if k not in present]
    if lost:
        raise ConversionError(f"the exported graph lacks {lost}; it has {sorted(present)}.")
    rename_safely(onx, mapping)
    strip_metadata(onx)
    if not normalise_batch_dim(onx):
        raise ConversionError(
            "the exported graph takes only a fixed number of rows; modelport bundles take any batch size."
        )
    head.apply(onx)
    try:
        onnx.checker.check_model(onx)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the exported graph is not valid ONNX: {str(exc).splitlines()[0]}") from exc
    return onx


def parity_batches(arrays: Mapping[str, np.ndarray], *, rows: int = 64, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Batches to compare a route on: one row, the first ``rows`` rows of the sample, and a larger
    batch of sample rows with fresh float values (jittered), so that other batch sizes and values
    than the example's are seen."""
    n = len(next(iter(arrays.values())))
    rng = np.random.default_rng(seed)
    head = {k: v[: min(n, rows)] for k, v in arrays.items()}
    idx = rng.integers(0, n, size=min(n, rows) + 3)
    big: dict[str, np.ndarray] = {}
    for k, v in arrays.items():
        taken = v[idx]
        if v.dtype.kind == "f":
            scale = float(np.nanstd(v)) or 1.0
            taken = (taken + rng.normal(0.0, 0.05 * scale, size=taken.shape)).astype(v.dtype)
        big[k] = np.concatenate([v[: min(n, rows)], taken])
    return [{k: v[:1] for k, v in arrays.items()}, head, big]


def compare_route(expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], *, rel: float = 1e-4) -> str | None:
    """None when the graph's outputs match the original's, else what differs."""
    for name, e in expected.items():
        a = got.get(name)
        if a is None:
            return f"the graph has no output {name!r}"
        a = np.asarray(a)
        if a.shape != e.shape:
            return f"output {name!r} has shape {list(a.shape)}, the model's {list(e.shape)}"
        if e.dtype.kind in "OUSiub":
            if name == "label":
                continue  # labels follow the probabilities, which are compared
            if not np.array_equal(e.astype(str), a.astype(str)):
                return f"output {name!r} differs"
            continue
        e64, a64 = e.astype(np.float64), a.astype(np.float64)
        if e64.size == 0:
            continue
        both_nan = np.isnan(e64) & np.isnan(a64)
        diff = np.where(both_nan, 0.0, np.abs(e64 - a64))
        scale = max(float(np.nanmax(np.abs(e64))) if np.isfinite(e64).any() else 1.0, 1.0 if name == "probabilities" else 1e-12)
        if not np.isfinite(diff).all() or float(diff.max()) > rel * scale:
            return f"output {name!r} differs by up to {float(np.nanmax(diff)):.3g}"
    return None


# ---------------------------------------------------------------------- the original's answers
@dataclass
class Packed:
    """How a model was packed: what ``reference`` needs to ask it the same question."""

    inputs: Inputs
    outputs: list[Tensor]
    head: Head
    #: answers ``predict(arrays, structure)`` with the original model
    engine: Any


class RouteMismatch(ConversionError):
    """An export route gave a graph that does not reproduce the model (another route may)."""


def predict(engine: Any, inputs: Inputs, head: Head, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The original model's outputs on ``arrays``, shaped like the bundle's."""
    n = len(next(iter(arrays.values())))
    if n == 0:  # Keras cannot predict on no rows: the shapes of one row, none of its values
        one = {s.name: np.zeros((1, *[d or 1 for d in s.shape[1:]]), dtype=s.dtype) for s in inputs.specs}
        return {k: v[:0] for k, v in head.reference(engine.predict(one, inputs.structure)).items()}
    return head.reference(engine.predict(dict(arrays), inputs.structure))


def check_parity(onx: onnx.ModelProto, inputs: Inputs, head: Head, engine: Any, arrays: Mapping[str, np.ndarray],
                 route: str) -> float:
    """Compare the finished graph with the original on :func:`parity_batches`; the largest
    absolute difference, or RouteMismatch."""
    from modelport.runtime.session import run_graph

    worst = 0.0
    batches = parity_batches(arrays)
    shorter = _shorter(onx, inputs, arrays)
    if shorter is not None:
        batches.append(shorter)
    try:
        results = run_graph(onx.SerializeToString(), batches, origin=f"the graph exported through {route}", model=onx)
    except ModelportError as exc:
        raise RouteMismatch(exc.message) from exc
    for batch, got in zip(batches, results, strict=True):
        rows = len(next(iter(batch.values())))
        expected = predict(engine, inputs, head, batch)
        problem = compare_route(expected, got)
        if problem is not None:
            raise RouteMismatch(f"the graph exported through {route} does not match the model on a batch of "
                                f"{rows} row(s): {problem}")
        for k, e in expected.items():
            if e.dtype.kind == "f" and e.size:
                worst = max(worst, float(np.nanmax(np.abs(e.astype(np.float64) - got[k].astype(np.float64)))))
    return worst


def _shorter(onx: onnx.ModelProto, inputs: Inputs, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """For a model with one input whose free sizes (a sequence length) the graph keeps free: the
    sample cut one shorter along them, so that parity sees another size than the sample's."""
    graph = {vi.name: vi.type.tensor_type.shape.dim for vi in onx.graph.input}
    free = [s for s in inputs.specs if any(d is None for d in s.shape[1:])]
    if len(free) != 1 or len(inputs.specs) != 1:
        return None
    spec = free[0]
    arr = arrays[spec.name][:16]
    dims = graph.get(spec.name)
    index: list[slice] = [slice(None)]
    for i, want in enumerate(spec.shape[1:], start=1):
        kept_free = dims is not None and i < len(dims) and not dims[i].HasField("dim_value")
        index.append(slice(0, arr.shape[i] - 1) if want is None and kept_free and arr.shape[i] > 2 else slice(None))
    cut = arr[tuple(index)]
    return None if cut.shape == arr.shape else {spec.name: np.ascontiguousarray(cut)}


class NetworkConverter(Converter):
    """What the Keras and TensorFlow converters share: remembering how each model was packed, and
    asking it the same question again (``reference``, ``tensor_inputs``)."""

    def __init__(self) -> None:
        self._packed: weakref.WeakKeyDictionary[Any, Packed] = weakref.WeakKeyDictionary()
        self._by_id: dict[int, Packed] = {}

    def remember(self, model: Any, packed: Packed) -> None:
        try:
            self._packed[model] = packed
        except TypeError:  # not weakly referenceable or not hashable
            self._by_id[id(model)] = packed

    def remembered(self, model: Any) -> Packed | None:
        try:
            found = self._packed.get(model)
        except TypeError:
            found = None
        return found if found is not None else self._by_id.get(id(model))

    def reference(self, model: Any, data: Any) -> dict[str, np.ndarray]:
        packed = self.remembered(model)
        if packed is None:
            raise ConversionError(
                f"the {self.framework} converter has not seen this model yet, so it does not know its inputs and head.",
                hint=f"pack the model first, or call {type(self).__name__}.prepare(model, bundle) "
                "(modelport.verify does) with the bundle it was packed into",
            )
        return predict(packed.engine, packed.inputs, packed.head, packed.inputs.arrays(data))

    def tensor_inputs(self, data: Any, signature: Any) -> dict[str, np.ndarray]:
        wanted = [(t.name, t.dtype) for t in signature.inputs]
        for packed in [*self._packed.values(), *self._by_id.values()]:
            if [(s.name, s.dtype) for s in packed.inputs.specs] == wanted:
                return packed.inputs.arrays(data)
        return super().tensor_inputs(data, signature)
