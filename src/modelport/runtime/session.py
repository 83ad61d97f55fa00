"""The one place that executes a bundle: an ONNX Runtime session with input coercion,
output naming and error translation."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from modelport.errors import InputError, ModelportError
from modelport.runtime.coerce import Built, Checked, FeedBuilder
from modelport.runtime.sandbox import create_session

if TYPE_CHECKING:
    import pandas as pd

    from modelport.bundle.core import Bundle

ort.set_default_logger_severity(3)


class Runtime:
    """Runs one bundle. Thread-safe: ONNX Runtime sessions allow concurrent ``run`` calls."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        providers: list[str] | None = None,
        session_config: Mapping[str, str] | None = None,
        unknown_categories: str | None = None,
    ) -> None:
        """``session_config``: extra ONNX Runtime session configuration entries
        (``SessionOptions.add_session_config_entry``), e.g. ``{"session.dynamic_block_base": "4"}``.
        ``unknown_categories`` overrides the bundle's policy for values outside a column's
        categories (``native``, ``missing``, ``error``; see :mod:`modelport.runtime.coerce`)."""
        self.bundle = bundle
        self.signature = bundle.signature
        # the input rules are planned before the (expensive) session exists: a bad override fails fast
        self.builder = FeedBuilder(self.signature, unknown_categories=unknown_categories)
        #: unknown categories scored so far by this runtime, per column (see ``feeds``)
        self.unknown_categories: dict[str, int] = {}
        self._count_lock = threading.Lock()
        # the one session factory: no external data reachable, ONNX format only (runtime/sandbox.py)
        self.session = create_session(
            bundle.model_bytes, origin=bundle.origin, model=bundle.onnx_model, providers=providers,
            intra_op_threads=intra_op_threads, inter_op_threads=inter_op_threads, session_config=session_config,
        )
        self.output_names = self.signature.output_names
        self._output_set = frozenset(self.output_names)
        self._classes = bundle.classes
        self._feeds = self.builder
        self._plain = not self.builder.has_categories
        # the session's own run() re-validates on every call; the bound C++ method is the same
        # computation without that overhead (falls back to the public API if it ever moves)
        self._run = getattr(getattr(self.session, "_sess", None), "run", None) or (
            lambda names, feeds, options: self.session.run(names, feeds, options)
        )

    def feeds(self, data: Any) -> dict[str, np.ndarray]:
        """Feeds for ``data`` under the input rules (:mod:`modelport.runtime.coerce`); InputError
        for the first problem. Unknown categories scored are added to ``unknown_categories``."""
        if self._plain:
            return self._feeds(data)
        return self.build(data).feeds

    def build(self, data: Any, *, form: str = "auto") -> Built:
        """Like :meth:`feeds`, with the row count and the unknown categories of this input."""
        built = self.builder.build(data, form=form)
        if built.unknown:
            self.count_unknown(built.unknown)
        return built

    def check(self, data: Any, *, form: str = "auto") -> Checked:
        """Feeds for the rows of ``data`` that can be scored, and why the others cannot (batch)."""
        checked = self.builder.check(data, form=form)
        counts = checked.unknown_counts
        if counts:
            self.count_unknown(counts)
        return checked

    def count_unknown(self, counts: Mapping[str, int]) -> None:
        with self._count_lock:
            for k, v in counts.items():
                self.unknown_categories[k] = self.unknown_categories.get(k, 0) + v

    def run_rows(
        self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[int, str]]:
        """Run feeds of N rows, finding the rows ONNX Runtime refuses by bisection.

        Returns the outputs of the accepted rows (in order), the mask of accepted rows and, for
        each refused row, why. Rows are independent here, as in every batch-major graph.
        """
        n = _rows(feeds)
        ok = np.zeros(n, dtype=bool)
        reasons: dict[int, str] = {}
        parts: list[tuple[int, int, dict[str, np.ndarray]]] = []
        stack = [(0, n)] if n else []
        while stack:
            lo, hi = stack.pop()
            part = feeds if (lo, hi) == (0, n) else {k: v[lo:hi] for k, v in feeds.items()}
            try:
                result = self.run(part, outputs)
            except ModelportError as exc:
                if hi - lo == 1:
                    reasons[lo] = exc.message
                else:
                    mid = (lo + hi) // 2
                    stack.extend([(mid, hi), (lo, mid)])
                continue
            ok[lo:hi] = True
            parts.append((lo, hi, result))
        if len(parts) == 1:
            return parts[0][2], ok, reasons
        names = self.output_names if outputs is None else list(outputs)
        if not parts:
            return self._empty(names), ok, reasons
        parts.sort(key=lambda p: p[0])
        return {k: np.concatenate([p[2][k] for p in parts], axis=0) for k in names}, ok, reasons

    def run(
        self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None, *, run_options: Any = None
    ) -> dict[str, np.ndarray]:
        """Run prepared feeds; ``outputs`` selects outputs by name (default: all in the signature).

        ``run_options``: an ``onnxruntime.RunOptions`` for this call; setting its ``terminate`` to
        True from another thread stops the call (it then raises ModelportError)."""
        names = self.output_names if outputs is None else list(outputs)
        if outputs is not None and not self._output_set.issuperset(names):
            unknown = [n for n in names if n not in self._output_set]
            raise InputError(
                f"unknown output(s) {', '.join(unknown)}; this model produces {', '.join(self.output_names)}."
            )
        for first in feeds.values():
            if first.shape[0] == 0:
                return self._empty(names)
            break
        try:
            results = self._run(names, feeds, run_options)
        except Exception as exc:  # InvalidArgument, Fail, RuntimeException from onnxruntime
            kind = type(exc).__name__
            if kind in ("InvalidArgument", "InvalidGraph"):
                raise InputError(f"the model rejected the input: {_first_line(exc)}") from exc
            raise ModelportError(f"ONNX Runtime failed while scoring ({kind}): {_first_line(exc)}") from exc
        return dict(zip(names, results))

    def predict(self, data: Any, *, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        return self.run(self._feeds(data) if self._plain else self.build(data).feeds, outputs)

    def predict_frame(self, data: Any) -> pd.DataFrame:
        from modelport._deps import require

        pd = require("pandas", purpose="predict_frame")
        return pd.DataFrame(output_columns(self.predict(data), self._classes))

    def empty_outputs(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Outputs of an empty batch (zero rows), named like ``run``'s."""
        return self._empty(self.output_names if names is None else list(names))

    def _empty(self, names: list[str]) -> dict[str, np.ndarray]:
        from modelport.runtime.coerce import numpy_dtype

        out = {}
        for spec in self.signature.outputs:
            if spec.name in names:
                shape = tuple(0 if i == 0 else (d if d is not None else 0) for i, d in enumerate(spec.shape)) or (0,)
                out[spec.name] = np.empty(shape, dtype=numpy_dtype(spec.dtype))
        return out


def output_columns(result: dict[str, np.ndarray], classes: list[Any] | None) -> dict[str, np.ndarray]:
    """Flatten predict() results into named 1-D columns (``label``, ``proba_<class>``, ...)."""
    cols: dict[str, np.ndarray] = {}
    for name, arr in result.items():
        if name == "probabilities" and classes is not None and arr.ndim == 2 and arr.shape[1] == len(classes):
            for j, c in enumerate(classes):
                cols[f"proba_{c}"] = arr[:, j]
        elif arr.ndim == 2 and arr.shape[1] == 1:
            cols[name] = arr[:, 0]
        elif arr.ndim == 2:
            for j in range(arr.shape[1]):
                cols[f"{name}_{j}"] = arr[:, j]
        elif arr.ndim > 2:
            flat = arr.reshape(arr.shape[0], -1)
            for j in range(flat.shape[1]):
                cols[f"{name}_{j}"] = flat[:, j]
        else:
            cols[name] = arr
    return cols


def _rows(feeds: Mapping[str, np.ndarray]) -> int:
    for v in feeds.values():
        return int(v.shape[0]) if v.ndim else 1
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
