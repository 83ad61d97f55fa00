"""The one place that executes a bundle: an ONNX Runtime session with input coercion,
output naming and error translation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from modelport.errors import InputError, ModelportError
from modelport.runtime.coerce import FeedBuilder

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
    ) -> None:
        """``session_config``: extra ONNX Runtime session configuration entries
        (``SessionOptions.add_session_config_entry``), e.g. ``{"session.dynamic_block_base": "4"}``."""
        self.bundle = bundle
        self.signature = bundle.signature
        options = ort.SessionOptions()
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        if inter_op_threads is not None:
            options.inter_op_num_threads = inter_op_threads
        for key, value in (session_config or {}).items():
            options.add_session_config_entry(key, value)
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                bundle.model_bytes, options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ModelportError(
                f"{bundle.origin}: ONNX Runtime {ort.__version__} cannot load this graph: {_first_line(exc)}",
                hint="the bundle may need a newer onnxruntime: pip install -U onnxruntime",
            ) from exc
        self.output_names = self.signature.output_names
        self._output_set = frozenset(self.output_names)
        self._classes = bundle.classes
        self._feeds = FeedBuilder(self.signature)
        # the session's own run() re-validates on every call; the bound C++ method is the same
        # computation without that overhead (falls back to the public API if it ever moves)
        self._run = getattr(getattr(self.session, "_sess", None), "run", None) or (
            lambda names, feeds, options: self.session.run(names, feeds, options)
        )

    def feeds(self, data: Any) -> dict[str, np.ndarray]:
        return self._feeds(data)

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
        return self.run(self.feeds(data), outputs)

    def predict_frame(self, data: Any) -> pd.DataFrame:
        from modelport._deps import require

        pd = require("pandas", purpose="predict_frame")
        return pd.DataFrame(output_columns(self.predict(data), self._classes))

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
