"""ONNX models that are already ONNX: packed as they are ("passthrough"), with a signature,
reference data and digests like any other bundle.

The graph is checked the way the bundle loader checks it (standard operator domains only, no
external data), outputs can be renamed to modelport's names (``label`` / ``probabilities`` for a
classifier, ``prediction`` for a regressor), and a 2-D numeric input, or one input per column,
gets named columns so that tables can be scored. Parity compares ONNX Runtime with itself on
the sample, which proves the graph loads and runs here, not that it matches a training library.

Options: ``task`` (``tensor`` default, ``classification``, ``regression``, ``transform``),
``classes``, ``rename`` (graph output -> new name), ``columns`` (names for a 2-D input).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from modelport.bundle.graph import check as check_graph
from modelport.bundle.signature import Column, Signature, TensorSpec
from modelport.convert._graph import keep_outputs, rename_tensors
from modelport.convert._sample import column_kinds, is_dataframe
from modelport.convert.base import Converted, Converter
from modelport.errors import ConversionError, InputError, IntegrityError

_OPTIONS = frozenset({"task", "classes", "rename", "columns"})
_NP_TO_NAME = {np.dtype(np.object_): "str"}


class OnnxModel:
    """An ONNX model read from a file, to be packed as it is."""

    def __init__(self, model: onnx.ModelProto, *, path: str | None = None) -> None:
        self.model = model
        self.path = path

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> OnnxModel:
        p = Path(path)
        try:
            model = onnx.load_model_from_string(p.read_bytes())
        except Exception as exc:  # protobuf DecodeError and friends
            raise ConversionError(f"{p}: not a valid ONNX model (truncated or another format?): {exc}") from exc
        if not model.graph.node:
            raise ConversionError(f"{p}: the ONNX model has an empty graph (truncated or not ONNX?).")
        return cls(model, path=str(p))

    def __repr__(self) -> str:
        return f"<OnnxModel {self.path or self.model.graph.name!r}>"


class OnnxConverter(Converter):
    name = "onnx"
    framework = "onnx"
    modules = ("modelport.convert.passthrough", "onnx")

    def __init__(self) -> None:
        # per converted model (by id): the conversion, and the session that answers for "the original"
        self._converted: dict[int, Converted] = {}
        self._sessions: dict[int, tuple[Any, Signature, Any]] = {}

    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted:
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ConversionError(f"unknown onnx option(s): {', '.join(unknown)}; known: {', '.join(sorted(_OPTIONS))}.")
        proto = model.model if isinstance(model, OnnxModel) else model
        if not isinstance(proto, onnx.ModelProto):
            raise ConversionError(f"the onnx converter takes an ONNX ModelProto; got {type(model).__name__}.")
        onx = onnx.ModelProto()
        onx.CopyFrom(proto)
        origin = getattr(model, "path", None) or "the ONNX model"
        try:
            check_graph(onx, origin=origin)
        except IntegrityError as exc:
            raise ConversionError(exc.message, hint="modelport bundles hold standard ONNX operators only") from exc
        rename = dict(options.get("rename") or {})
        if rename:
            missing = [k for k in rename if k not in {o.name for o in onx.graph.output}]
            if missing:
                raise ConversionError(f"rename names output(s) {missing} that the graph does not have.")
            rename_tensors(onx, rename)
        outputs = [o.name for o in onx.graph.output]
        task = options.get("task", "tensor")
        classes = options.get("classes")
        if task == "classification":
            if outputs[:2] != ["label", "probabilities"] and {"label", "probabilities"} <= set(outputs):
                keep_outputs(onx, ["label", "probabilities"])
            elif outputs[:2] != ["label", "probabilities"]:
                raise ConversionError(
                    f"a classifier must output 'label' and 'probabilities'; this graph outputs {outputs}.",
                    hint="rename them with options={'rename': {'output_label': 'label', 'output_probability': 'probabilities'}}",
                )
            if classes is None:
                width = _static_width(onx, "probabilities")
                if width is None:
                    raise ConversionError("pass options={'classes': [...]}: the probability width is not static.")
                classes = list(range(width))
            classes = [c.item() if hasattr(c, "item") else c for c in classes]
        elif task == "regression":
            if "prediction" not in outputs:
                raise ConversionError(
                    f"a regressor must output 'prediction'; this graph outputs {outputs}.",
                    hint="rename it with options={'rename': {'variable': 'prediction'}}",
                )
        elif task not in ("tensor", "transform"):
            raise ConversionError(f"option task must be tensor, classification, regression or transform; got {task!r}.")
        columns = _columns(onx, sample, options.get("columns"))
        producer = f"{proto.producer_name} {proto.producer_version}".strip() or "unknown"
        result = Converted(
            onnx_model=onx,
            task=task,
            columns=columns,
            classes=classes,
            source={
                "framework": "onnx",
                "framework_version": f"ir {proto.ir_version}",
                "estimator": f"ONNX graph ({producer})",
                "converter": "passthrough",
                "converter_version": onnx.__version__,
                "options": {"rename": rename} if rename else {},
            },
            notes=["passthrough: the model was ONNX already; parity compares ONNX Runtime with itself on the sample."],
        )
        self._converted[id(model)] = result
        self._sessions.pop(id(model), None)
        return result

    def prepare(self, model: Any, bundle: Any) -> None:
        """Learn from ``bundle`` how ``model`` was packed (renamed outputs, task, columns), for
        :meth:`reference` in a session that did not pack it (``modelport.verify``)."""
        if id(model) in self._converted:
            return
        proto = model.model if isinstance(model, OnnxModel) else model
        if not isinstance(proto, onnx.ModelProto):
            raise ConversionError(f"the onnx converter takes an ONNX ModelProto; got {type(model).__name__}.")
        onx = onnx.ModelProto()
        onx.CopyFrom(proto)
        options = (bundle.manifest.get("source") or {}).get("options") or {}
        try:
            rename_tensors(onx, dict(options.get("rename") or {}))
            keep_outputs(onx, bundle.signature.output_names)
        except ValueError as exc:
            raise ConversionError(f"this ONNX model is not the one {bundle.origin} was packed from: {exc}") from exc
        self._converted[id(model)] = Converted(
            onnx_model=onx, task=bundle.task, columns=bundle.signature.columns, classes=bundle.classes, source={}
        )
        self._sessions.pop(id(model), None)

    def reference(self, model: Any, data: Any) -> dict[str, np.ndarray]:
        from modelport.runtime.coerce import feeds
        from modelport.runtime.sandbox import create_session

        key = id(model)
        if key not in self._sessions:
            converted = self._converted.get(key) or self.convert(model, data, {})
            sig = _signature(converted)
            session = create_session(converted.onnx_model.SerializeToString(), origin=str(getattr(model, "path", None) or "the ONNX model"),
                                     model=converted.onnx_model, error=ConversionError, hint=None)
            self._sessions[key] = (session, sig, model)
        session, sig, _ = self._sessions[key]
        inputs = _tabular_columns(data, sig) if sig.columns is not None else data
        names = [o.name for o in session.get_outputs()]
        out = dict(zip(names, session.run(names, feeds(sig, inputs)), strict=True))
        return out


def _static_width(onx: onnx.ModelProto, name: str) -> int | None:
    for o in onx.graph.output:
        if o.name == name:
            dims = o.type.tensor_type.shape.dim
            if len(dims) == 2 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
    return None


def _graph_inputs(onx: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    init = {t.name for t in onx.graph.initializer}
    return [i for i in onx.graph.input if i.name not in init]


def _dtype_name(elem_type: int) -> str:
    dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    return _NP_TO_NAME.get(dt, dt.name)


def _columns(onx: onnx.ModelProto, sample: Any, names: list[str] | None) -> tuple[Column, ...] | None:
    inputs = _graph_inputs(onx)
    if is_dataframe(sample):
        kinds = column_kinds(sample)
        by_name = {i.name: i for i in inputs}
        if len(inputs) > 1 or (len(inputs) == 1 and inputs[0].name in {k[0] for k in kinds}):
            missing = [i.name for i in inputs if i.name not in {k[0] for k in kinds}]
            if missing:
                raise InputError(
                    f"the sample lacks column(s) for the graph input(s) {missing}; its columns are "
                    f"{[k[0] for k in kinds]}."
                )
            return tuple(Column(n, k, n, None, cats) for n, k, cats in kinds if n in by_name)
        names = names or [k[0] for k in kinds]
        return _matrix_columns(inputs, names, [k[1] for k in kinds])
    if len(inputs) == 1 and not isinstance(sample, Mapping):
        arr = np.asarray(sample)
        if arr.ndim == 2 and arr.dtype.kind in "biuf":
            kind = "float32" if arr.dtype == np.float32 else ("int64" if arr.dtype.kind in "iu" else "float64")
            return _matrix_columns(inputs, names or [f"f{i}" for i in range(arr.shape[1])], [kind] * arr.shape[1])
    return None


def _matrix_columns(inputs: list[onnx.ValueInfoProto], names: list[str], kinds: list[str]) -> tuple[Column, ...] | None:
    if len(inputs) != 1:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    elem = _dtype_name(inputs[0].type.tensor_type.elem_type)
    if len(dims) != 2 or elem == "str":
        return None
    if dims[1].HasField("dim_value") and dims[1].dim_value != len(names):
        raise InputError(
            f"the graph input {inputs[0].name!r} takes {dims[1].dim_value} columns but the sample has {len(names)}."
        )
    return tuple(Column(n, k, inputs[0].name, i) for i, (n, k) in enumerate(zip(names, kinds, strict=True)))


def _signature(converted: Converted) -> Signature:
    def spec(vi: onnx.ValueInfoProto) -> TensorSpec:
        tt = vi.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        return TensorSpec(vi.name, _dtype_name(tt.elem_type), shape)

    g = converted.onnx_model.graph
    return Signature(
        inputs=tuple(spec(i) for i in _graph_inputs(converted.onnx_model)),
        outputs=tuple(spec(o) for o in g.output),
        columns=converted.columns,
    )


def _tabular_columns(data: Any, sig: Signature) -> Any:
    if is_dataframe(data) or isinstance(data, Mapping):
        return data
    arr = np.asarray(data)
    if arr.ndim == 2 and sig.columns is not None and arr.shape[1] == len(sig.columns):
        return {c.name: arr[:, i] for i, c in enumerate(sig.columns)}
    return data
