"""One served model version: a bundle, its ONNX Runtime session and batcher, and the mapping
between Open Inference Protocol tensors and the bundle's signature.

How V2 inputs map to a bundle (documented for users in docs/serving.md):

* **tensor form**: one V2 input per graph input, named like it (for most tabular bundles a single
  matrix ``X`` of shape ``[N, F]``; ``[N]`` is accepted for an ``[N, 1]`` input);
* **column form** (tabular bundles only): one V2 input per named column, each of shape ``[N]`` or
  ``[N, 1]``; string and category columns are BYTES. The columns are assembled into the graph's
  inputs exactly as :meth:`Bundle.predict` does with a DataFrame.

What an input may hold is decided by :mod:`modelport.runtime.coerce` alone (the same rules and
messages as ``bundle.predict`` and batch scoring); this module only routes V2 inputs to the
tensor or the column form and adds what the model expects to the error. Unknown categories that
are scored are counted in ``modelport_unknown_categories_total{model,version,column}``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import InputError
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
        unknown_categories: str | None = None,
        unknown_counter: Any = None,
    ) -> None:
        """``unknown_categories`` overrides the bundle's unknown-category policy; ``unknown_counter``
        is a metric family whose ``labels(model, version, column)`` counts scored unknown categories."""
        from modelport.runtime.session import Runtime

        self.bundle = bundle
        self.name = name
        self.version = version
        self.source = source
        self.digest = bundle.digest
        try:
            self.runtime = Runtime(bundle, intra_op_threads=intra_op_threads, unknown_categories=unknown_categories)
        except InputError as exc:  # an override this bundle cannot honour
            raise InputError(f"model {name!r} version {version}: {exc.message}", hint=exc.hint) from None
        self._builder = self.runtime.builder
        self._unknown_counter = unknown_counter
        self._unknown_children: dict[str, Any] = {}
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
            data = inputs[0].data
            arr = self._builder.tensor(self._single, data)
            if arr is not None:
                return {self._single: arr}, arr.shape[0]
        names = [i.name for i in inputs]
        given = set(names)
        if len(given) != len(names):
            dup = sorted(n for n, k in Counter(names).items() if k > 1)
            raise InputError(f"input(s) given twice: {', '.join(map(repr, dup[:20]))}. {self.expected()}")
        if given == self.input_names:
            form = "tensors"
        elif self.signature.columns is not None and given == self.column_names:
            form = "columns"
        else:  # the form the inputs come closer to names what is missing and what is unexpected
            by_column, by_input = len(given & self.column_names), len(given & self.input_names)
            # (a bundle with one input per column has the same names both ways: its words are columns)
            closer = self.signature.columns is not None and (
                by_column > by_input or (by_column == by_input and (by_column > 0 or self.column_names == self.input_names))
            )
            form = "columns" if closer else "tensors"
        try:
            built = self._builder.build({i.name: i.data for i in inputs}, form=form)
        except InputError as exc:
            raise InputError(f"{exc.message} {self.expected()}", hint=exc.hint) from None
        self._count(built.unknown)
        return built.feeds, built.rows

    def feeds_from_records(self, records: list[Any]) -> tuple[dict[str, np.ndarray], int]:
        """Graph feeds and row count for a list of records (an empty list is an empty batch)."""
        if not isinstance(records, list):
            raise InputError(
                "the body must be an object with a list under 'records', e.g. "
                '{"records": [{"f0": 1.0, ...}]}. ' + self.expected(records=True)
            )
        try:
            if records and not isinstance(records[0], dict):
                raise InputError(
                    f"records must all be objects (dicts) mapping column names to values; record 0 is a "
                    f"{type(records[0]).__name__}."
                )
            built = self._builder.build(records)
        except InputError as exc:
            raise InputError(f"{exc.message} {self.expected(records=True)}", hint=exc.hint) from None
        self._count(built.unknown)
        return built.feeds, built.rows

    def _count(self, unknown: dict[str, int]) -> None:
        if not unknown:
            return
        self.runtime.count_unknown(unknown)
        if self._unknown_counter is None:
            return
        for column, n in unknown.items():
            child = self._unknown_children.get(column)
            if child is None:
                child = self._unknown_children[column] = self._unknown_counter.labels(self.name, self.version, column)
            child.inc(n)

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
