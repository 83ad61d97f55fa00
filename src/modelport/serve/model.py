"""One served model version: a bundle, its ONNX Runtime session and batcher, and the mapping
between Open Inference Protocol tensors and the bundle's signature.

How V2 inputs map to a bundle (documented for users in docs/serving.md):

* **tensor form**: one V2 input per graph input, named like it (for most tabular bundles a single
  matrix ``X`` of shape ``[N, F]``; ``[N]`` is accepted for an ``[N, 1]`` input);
* **column form** (tabular bundles only): one V2 input per named column, each of shape ``[N]`` or
  ``[N, 1]``; string and category columns are BYTES. The columns are assembled into the graph's
  inputs exactly as :meth:`Bundle.predict` does with a DataFrame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InputError
from modelport.runtime.coerce import numpy_dtype
from modelport.serve.batching import Batcher, BatchStats
from modelport.serve.codec import COLUMN_TO_V2, SIGNATURE_TO_V2, InferInput

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle
    from modelport.bundle.signature import TensorSpec

PLATFORM = "onnx_onnxv1"


@dataclass(frozen=True)
class BatchingConfig:
    """Adaptive batching of one model: ``max_batch_size`` rows (1 turns batching off), the
    longest a request may wait for companions, and the queue bound beyond which requests are shed."""

    max_batch_size: int = 8
    max_queue_delay: float = 0.0
    max_queue: int = 2048
    inline_rows: int = 256
    inline_seconds: float = 0.002


class ServedModel:
    """A loaded, ready-to-score model version."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        name: str,
        version: str,
        source: str,
        batching: BatchingConfig = BatchingConfig(),
        intra_op_threads: int | None = None,
        executor: Executor | None = None,
        on_batch: Callable[[ServedModel, BatchStats], None] | None = None,
    ) -> None:
        from modelport.runtime.session import Runtime

        self.bundle = bundle
        self.name = name
        self.version = version
        self.source = source
        self.digest = bundle.digest
        self.runtime = Runtime(bundle, intra_op_threads=intra_op_threads)
        self.signature = bundle.signature
        self.output_names = self.signature.output_names
        self._batching = batching
        self._executor = executor
        self._on_batch = on_batch
        self._batcher: Batcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.input_names = {t.name for t in self.signature.inputs}
        self._specs = {t.name: t for t in self.signature.inputs}
        self._single = self.signature.inputs[0].name if len(self.signature.inputs) == 1 else None
        self.column_names = set(self.signature.column_names)
        # rows are independent only if every tensor is batch-major with a free first dimension
        self.batchable = all(t.shape and t.shape[0] is None for t in (*self.signature.inputs, *self.signature.outputs))
        self._nonnull = self._non_nullable_slots()
        self.output_datatypes = {t.name: SIGNATURE_TO_V2[t.dtype] for t in self.signature.outputs}

    # ------------------------------------------------------------------ scoring
    def batcher(self) -> Batcher:
        """The batcher of this version, bound to the running event loop on first use."""
        loop = asyncio.get_running_loop()
        if self._batcher is None or self._loop is not loop:
            b = self._batching
            hook = self._on_batch
            self._batcher = Batcher(
                self.runtime.run,
                self.output_names,
                max_batch_size=b.max_batch_size if self.batchable else 1,
                max_queue_delay=b.max_queue_delay,
                max_queue=b.max_queue,
                inline_rows=b.inline_rows,
                inline_seconds=b.inline_seconds,
                executor=self._executor,
                on_batch=(lambda stats: hook(self, stats)) if hook is not None else None,
            )
            self._loop = loop
        return self._batcher

    def check_outputs(self, names: Sequence[str] | None) -> list[str]:
        if names is None:
            return self.output_names
        unknown = [n for n in names if n not in self.output_datatypes]
        if unknown:
            raise InputError(
                f"unknown output(s) {', '.join(map(repr, unknown))} requested from model {self.name!r}; "
                f"it produces {', '.join(self.output_names)}."
            )
        if len(set(names)) != len(names):
            raise InputError(f"output(s) requested twice: {', '.join(names)}.")
        return list(names)

    def feeds_from_v2(self, inputs: Sequence[InferInput]) -> tuple[dict[str, np.ndarray], int]:
        """Graph feeds and row count for V2 inputs in the tensor form or the column form."""
        if len(inputs) == 1 and inputs[0].name == self._single:  # the common matrix case, fast
            arr = self._tensor_feed(inputs[0])
            return {self._single: arr}, arr.shape[0] if arr.ndim else 1
        names = [i.name for i in inputs]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise InputError(f"input(s) given twice: {', '.join(dup)}. {self.expected()}")
        given = set(names)
        if given == self.input_names:
            feeds = {i.name: self._tensor_feed(i) for i in inputs}
        elif self.signature.columns is not None and given == self.column_names:
            feeds = self._column_feeds(inputs)
        else:
            raise InputError(f"{self._mismatch(given)} {self.expected()}")
        rows = _rows(feeds)
        return feeds, rows

    def feeds_from_records(self, records: list[Any]) -> tuple[dict[str, np.ndarray], int]:
        if not records:
            raise InputError("'records' is empty; send at least one record.")
        if not all(isinstance(r, dict) for r in records):
            raise InputError("every record must be an object mapping column names to values.")
        try:
            feeds = self.runtime.feeds(records)
        except InputError as exc:
            raise InputError(f"{exc.message} {self.expected(records=True)}", hint=exc.hint) from None
        return feeds, _rows(feeds)

    # ------------------------------------------------------------------ metadata
    def tensor_metadata(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        def meta(t: TensorSpec) -> dict[str, Any]:
            return {"name": t.name, "datatype": SIGNATURE_TO_V2[t.dtype], "shape": [-1 if d is None else d for d in t.shape]}

        return [meta(t) for t in self.signature.inputs], [meta(t) for t in self.signature.outputs]

    def properties(self) -> dict[str, str]:
        """Extra metadata as strings (gRPC ``properties``; ``parameters`` in REST)."""
        import json

        props = {"digest": self.digest, "task": self.bundle.task, "source": self.source}
        if self.bundle.classes is not None:
            props["classes"] = json.dumps(self.bundle.classes)
        if self.signature.columns is not None:
            props["columns"] = json.dumps(
                [{"name": c.name, "datatype": COLUMN_TO_V2[c.dtype], "input": c.input, "index": c.index,
                  "nullable": c.nullable} for c in self.signature.columns]
            )
        return props

    def expected(self, *, records: bool = False) -> str:
        """The expected signature, in words, for error messages."""
        tensors = ", ".join(
            f"{t.name} {SIGNATURE_TO_V2[t.dtype]} [{', '.join('N' if d is None else str(d) for d in t.shape)}]"
            for t in self.signature.inputs
        )
        if self.signature.columns is None:
            return f"Model {self.name!r} version {self.version} expects inputs: {tensors}."
        cols = self.signature.columns
        shown = ", ".join(f"{c.name} {COLUMN_TO_V2[c.dtype]}" for c in cols[:20])
        more = f" ... ({len(cols)} in all)" if len(cols) > 20 else ""
        if records:
            return f"Model {self.name!r} version {self.version} expects records with columns: {shown}{more}."
        return (
            f"Model {self.name!r} version {self.version} expects either the tensor form ({tensors}) "
            f"or one input per column ({shown}{more}), each of shape [N]."
        )

    # ------------------------------------------------------------------ internals
    def _mismatch(self, given: set[str]) -> str:
        def diff(expected: set[str], what: str) -> str:
            parts = []
            missing = sorted(expected - given)
            extra = sorted(given - expected)
            if missing:
                parts.append(f"missing {what}(s) {', '.join(map(repr, missing[:20]))}")
            if extra:
                parts.append(f"unexpected {what}(s) {', '.join(map(repr, extra[:20]))}")
            return "; ".join(parts)

        if self.signature.columns is not None and len(given & self.column_names) > len(given & self.input_names):
            return f"The inputs do not match the model's columns: {diff(self.column_names, 'column')}."
        return f"The inputs do not match the model's inputs: {diff(self.input_names, 'input')}."

    def _tensor_feed(self, inp: InferInput) -> np.ndarray:
        spec = self._specs[inp.name]
        arr = _cast(inp, spec.dtype, self)
        want = spec.shape
        if len(want) == arr.ndim + 1 and want[-1] == 1:
            arr = arr.reshape(*arr.shape, 1)
        ok = len(want) == arr.ndim
        if ok:
            for w, g in zip(want, arr.shape):
                if w is not None and w != g:
                    ok = False
        if not ok:
            text = "[" + ", ".join("N" if d is None else str(d) for d in spec.shape) + "]"
            raise InputError(f"input {inp.name!r} has shape {list(inp.shape)}; the model expects {text}. {self.expected()}")
        slots = self._nonnull.get(inp.name)
        if slots is not None and arr.dtype.kind == "f" and arr.size:
            part = arr if slots is True else arr[:, slots]
            if np.isnan(part).any():
                bad_rows = np.flatnonzero(np.isnan(part.reshape(part.shape[0], -1)).any(axis=1))
                raise InputError(
                    f"input {inp.name!r} has missing values (NaN) in row(s) {_few(bad_rows.tolist())} "
                    f"where the model cannot take them{self._nan_columns(inp.name, part)}. {self.expected()}",
                    hint="impute missing values before sending, or pack a pipeline with an imputer",
                )
        return arr

    def _nan_columns(self, input_name: str, part: np.ndarray) -> str:
        cols = [c for c in (self.signature.columns or ()) if c.input == input_name and not c.nullable]
        if not cols or part.ndim != 2 or part.shape[1] != len(cols):
            return ""
        bad = [c.name for j, c in enumerate(cols) if np.isnan(part[:, j]).any()]
        return f" (column(s) {', '.join(bad)})"

    def _column_feeds(self, inputs: Sequence[InferInput]) -> dict[str, np.ndarray]:
        cols: dict[str, np.ndarray] = {}
        for inp in inputs:
            arr = inp.data
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise InputError(
                    f"column input {inp.name!r} has shape {list(inp.shape)}; each column must be [N] or [N, 1]. "
                    f"{self.expected()}"
                )
            if arr.dtype == object:
                arr = _text(inp.name, arr)
            cols[inp.name] = arr
        try:
            return self.runtime.feeds(cols)
        except InputError as exc:
            raise InputError(f"{exc.message} {self.expected()}", hint=exc.hint) from None

    def _non_nullable_slots(self) -> dict[str, Any]:
        """Per graph input: True (whole input) or the matrix slots that must not hold NaN."""
        out: dict[str, Any] = {}
        for c in self.signature.columns or ():
            if c.nullable or c.dtype in ("str", "category"):
                continue
            if c.index is None:
                out[c.input] = True
            elif out.get(c.input) is not True:
                out.setdefault(c.input, []).append(c.index)
        return {k: (v if v is True else np.asarray(sorted(v))) for k, v in out.items()}


def _cast(inp: InferInput, dtype: str, model: ServedModel) -> np.ndarray:
    arr = inp.data
    if dtype == "str":
        if arr.dtype != object:
            raise InputError(f"input {inp.name!r} must be BYTES (strings); got {inp.datatype}. {model.expected()}")
        text = _text(inp.name, arr)
        if any(v is None for v in text.ravel().tolist()):
            raise InputError(f"input {inp.name!r} holds null elements; this model needs a string in every row.")
        return text
    if arr.dtype == object:
        raise InputError(
            f"input {inp.name!r} must be {SIGNATURE_TO_V2[dtype]}; got {inp.datatype}. {model.expected()}"
        )
    want = numpy_dtype(dtype)
    if arr.dtype == want:
        return arr
    if want.kind in "iub" and arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
        raise InputError(
            f"input {inp.name!r} must hold whole numbers ({SIGNATURE_TO_V2[dtype]}); got fractional or NaN values. "
            f"{model.expected()}"
        )
    return arr.astype(want)


def _text(name: str, arr: np.ndarray) -> np.ndarray:
    flat = arr.ravel()
    out = np.empty(flat.shape[0], dtype=object)
    for i, v in enumerate(flat.tolist()):
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"input {name!r}: element {i} is not valid UTF-8 text.") from None
        out[i] = v
    return out.reshape(arr.shape)


def _rows(feeds: dict[str, np.ndarray]) -> int:
    rows = {v.shape[0] if v.ndim else 1 for v in feeds.values()}
    if len(rows) > 1:
        raise InputError(f"the inputs disagree on the number of rows ({sorted(rows)}); send the same N for every input.")
    return rows.pop() if rows else 0


def _few(items: list[Any], limit: int = 10) -> str:
    s = ", ".join(map(str, items[:limit]))
    return s + (f" ... ({len(items)} in all)" if len(items) > limit else "")
