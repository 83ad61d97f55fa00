"""PyTorch ``nn.Module`` and ``torch.export.ExportedProgram`` -> ONNX, through torch's own exporter.

The module is exported with ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript),
which gives a plain graph in the standard ONNX domain, with the batch dimension of every input
left dynamic. The converter then names the outputs, optionally puts a classifier head on the
graph (Softmax or Sigmoid, ArgMax and the class labels), and checks on a batch of one and on a
batch larger than the example that the exported graph really takes any batch size.

Options (``modelport.pack(model, x, options={...})``):

* ``task``: ``"tensor"`` (default; outputs ``output_0 ..`` or ``output_names``),
  ``"classification"`` (outputs ``label`` and ``probabilities``) or ``"regression"``
  (output ``prediction``);
* ``classes``: class labels for a classifier (default ``0 .. C-1``);
* ``scores``: what the classifier's first output holds, ``"logits"`` (default) or
  ``"probabilities"``; a single column with two classes is read as the positive class;
* ``output_names`` / ``input_names``: graph names for the module's outputs / positional inputs;
* ``columns``: column names for a single 2-D float input (default ``f0 .. f{n-1}``, or the
  DataFrame's names); ``tabular=False`` keeps such an input a plain tensor;
* ``opset``: the ONNX opset to export (default: the exporter's);
* ``dynamic_batch``: ``False`` keeps the example's batch size fixed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from modelport._deps import require
from modelport.bundle.signature import Column
from modelport.convert._graph import keep_outputs, rename_tensors
from modelport.convert._sample import is_dataframe
from modelport.convert.base import Converted, Converter
from modelport.errors import ConversionError, InputError, UnsupportedModelError

_OPTIONS = frozenset(
    {"task", "classes", "scores", "output_names", "input_names", "columns", "tabular", "opset", "dynamic_batch"}
)
_TASKS = ("tensor", "classification", "regression")
_INPUT_DTYPES = ("float32", "float64", "int64")
BATCH = "N"


class TorchConverter(Converter):
    name = "torch"
    framework = "pytorch"
    modules = ("torch",)

    def __init__(self) -> None:
        # what each converted model was packed as (task, classes, example), for reference()
        self._configs: weakref.WeakKeyDictionary[Any, _Config] = weakref.WeakKeyDictionary()
        self._by_id: dict[int, _Config] = {}

    def _remember(self, model: Any, config: _Config) -> None:
        try:
            self._configs[model] = config
        except TypeError:  # not weakly referenceable
            self._by_id[id(model)] = config

    def _config(self, model: Any) -> _Config | None:
        try:
            found = self._configs.get(model)
        except TypeError:
            found = None
        return found if found is not None else self._by_id.get(id(model))

    # ------------------------------------------------------------------ conversion
    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted:
        torch = require("torch", purpose="converting PyTorch models")
        require("onnxscript", purpose="exporting PyTorch models to ONNX (torch.onnx dynamo exporter)")
        opts = _options(options)
        is_program = _is_exported_program(model)
        if not is_program and not isinstance(model, torch.nn.Module):
            raise UnsupportedModelError(
                f"modelport converts torch.nn.Module and torch.export.ExportedProgram objects; got {type(model).__name__}.",
                hint="pass the module itself (or torch.export.export(module, args))",
            )
        example = _Example.build(sample, model, input_names=opts["input_names"], columns=opts["columns"])

        with _eval_mode(model):
            outputs = _flatten_outputs(_call(model, example.args, example.kwargs))
            names = _output_names(outputs, opts["output_names"])
            onx = _export(model, example, names, opts)

        batch_param = _normalise_batch_dim(onx, example)
        if batch_param is None and opts["dynamic_batch"]:
            raise ConversionError(
                f"the exported graph takes only batches of exactly {example.batch} row(s); "
                "modelport bundles take any batch size.",
                hint="export the ExportedProgram with dynamic_shapes={...: {0: torch.export.Dim('batch')}}, "
                "or pass options={'dynamic_batch': False} to keep the fixed size",
            )
        _strip_metadata(onx)
        task = opts["task"]
        classes: list[Any] | None = None
        notes: list[str] = []
        if task == "classification":
            if len(names) > 1:
                notes.append(f"the module returns {len(names)} outputs; the classifier reads the first ({names[0]!r}).")
            classes = _add_classifier_head(onx, names[0], outputs[0], opts)
        elif task == "regression":
            if len(names) > 1:
                notes.append(f"the module returns {len(names)} outputs; the regressor reads the first ({names[0]!r}).")
            _add_regression_head(onx, names[0], outputs[0])
        onnx.checker.check_model(onx)

        columns = None
        graph_inputs = [i for i in onx.graph.input if i.name not in {t.name for t in onx.graph.initializer}]
        if opts["tabular"] is not False and example.tabular_candidate and len(graph_inputs) == 1:
            dtype = example.column_dtypes
            columns = tuple(
                Column(n, dtype[i], graph_inputs[0].name, i) for i, n in enumerate(example.column_names)
            )
        config = _Config(task, classes, opts["scores"], example, names)
        if batch_param is not None:
            notes.append(_check_dynamic_batch(model, example, onx, config))
        else:
            notes.append(f"the batch size is fixed at {example.batch} (dynamic_batch=False).")

        onnxscript = require("onnxscript")
        source = {
            "framework": "pytorch",
            "framework_version": torch.__version__,
            "estimator": "ExportedProgram" if is_program else type(model).__name__,
            "converter": "torch.onnx.export(dynamo=True)",
            "converter_version": f"torch {torch.__version__}, onnxscript {onnxscript.__version__}",
            # what prepare() needs to ask the module the same question in another session
            "call": {"kind": example.kind, "inputs": example.names, "outputs": names, "scores": opts["scores"]},
        }
        self._remember(model, config)
        return Converted(
            onnx_model=onx,
            task=task,
            columns=columns,
            classes=classes,
            source=source,
            # a network has no notion of a missing value: NaN in gives NaN out, never an answer
            nullable={c.name: False for c in columns} if columns is not None else None,
            notes=notes,
        )

    def prepare(self, model: Any, bundle: Any) -> None:
        """Learn from ``bundle`` how ``model`` was packed (task, classes, inputs), so that
        :meth:`reference` works in a session that did not pack it (``modelport.verify``)."""
        if self._config(model) is not None:
            return
        call = (bundle.manifest.get("source") or {}).get("call")
        if not isinstance(call, Mapping):
            raise ConversionError(
                f"{bundle.origin}: the manifest does not record how the torch module was called; "
                "it was packed by an older modelport.",
                hint="pack the module again, or compare in the session that packed it",
            )
        specs = list(bundle.signature.inputs)
        arrays = [np.zeros([1 if d is None else d for d in t.shape] or [1], dtype=t.dtype) for t in specs]
        columns = bundle.signature.columns
        example = _Example(
            str(call.get("kind", "single")),
            list(call["inputs"]) if call.get("inputs") else None,
            arrays,
            column_names=[c.name for c in columns] if columns else None,
            column_dtypes=[c.dtype for c in columns] if columns else None,
            float_dtype=_float_dtype(model),
        )
        example.tabular_candidate = columns is not None
        if columns is None:
            example.column_names = []
        outputs = list(call.get("outputs") or bundle.signature.output_names)
        config = _Config(bundle.task, bundle.classes, str(call.get("scores", "logits")), example, outputs)
        self._remember(model, config)

    # ------------------------------------------------------------------ the original's answers
    def reference(self, model: Any, data: Any) -> dict[str, np.ndarray]:
        """Outputs of the module on ``data``, named and shaped like the bundle's."""
        require("torch", purpose="running PyTorch models")
        config = self._config(model)
        if config is None:
            raise ConversionError(
                "the torch converter has not seen this module yet, so it does not know its task and outputs.",
                hint="pack the module first, or call TorchConverter.prepare(module, bundle) "
                "(modelport.verify does) with the bundle it was packed into",
            )
        args, kwargs = config.example.inputs_like(data, model)
        with _eval_mode(model):
            outputs = _flatten_outputs(_call(model, args, kwargs))
        return _named_outputs(outputs, config)

    def tensor_inputs(self, data: Any, signature: Any) -> dict[str, np.ndarray]:
        names = [t.name for t in signature.inputs]
        dtypes = {t.name: t.dtype for t in signature.inputs}
        if isinstance(data, Mapping):
            items = list(data.items())
        elif isinstance(data, (tuple, list)):
            items = list(zip(names, data, strict=False))
        else:
            items = [(names[0], data)]
        out = {}
        for name, value in items:
            arr = _to_numpy(value)
            if name in dtypes and arr.dtype != np.dtype(dtypes[name]) and dtypes[name] != "str":
                arr = arr.astype(dtypes[name])
            out[name] = arr
        return out


# ---------------------------------------------------------------------- configuration per model
class _Config:
    def __init__(
        self, task: str, classes: list[Any] | None, scores: str, example: _Example, output_names: list[str]
    ) -> None:
        self.task = task
        self.classes = classes
        self.scores = scores
        self.example = example
        self.output_names = output_names


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ConversionError(
            f"unknown torch converter option(s): {', '.join(unknown)}; known: {', '.join(sorted(_OPTIONS))}."
        )
    task = options.get("task", "tensor")
    if task not in _TASKS:
        raise ConversionError(f"option task must be one of {', '.join(_TASKS)}; got {task!r}.")
    scores = options.get("scores", "logits")
    if scores not in ("logits", "probabilities"):
        raise ConversionError(f"option scores must be 'logits' or 'probabilities'; got {scores!r}.")
    classes = options.get("classes")
    if classes is not None:
        classes = [_py(c) for c in classes]
        if task != "classification":
            raise ConversionError("option classes needs task='classification'.")
        if len(set(map(repr, classes))) != len(classes) or len(classes) < 2:
            raise ConversionError(f"classes must be at least two distinct labels; got {classes!r}.")
        kinds = {type(c) for c in classes}
        if not (kinds <= {int} or kinds <= {str}):
            raise ConversionError(f"classes must be all integers or all strings; got {classes!r}.")
    for key in ("output_names", "input_names", "columns"):
        v = options.get(key)
        if v is not None and (isinstance(v, str) or not all(isinstance(x, str) and x for x in v)):
            raise ConversionError(f"option {key} must be a list of non-empty strings; got {v!r}.")
    opset = options.get("opset")
    if opset is not None and not isinstance(opset, int):
        raise ConversionError(f"option opset must be an integer; got {opset!r}.")
    return {
        "task": task,
        "classes": classes,
        "scores": scores,
        "output_names": list(options["output_names"]) if options.get("output_names") else None,
        "input_names": list(options["input_names"]) if options.get("input_names") else None,
        "columns": list(options["columns"]) if options.get("columns") else None,
        "tabular": options.get("tabular"),
        "opset": opset,
        "dynamic_batch": bool(options.get("dynamic_batch", True)),
    }


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


# ---------------------------------------------------------------------- the example input
class _Example:
    """The user's example input as torch call arguments, and how to rebuild new data the same way."""

    def __init__(
        self,
        kind: str,
        names: list[str] | None,
        arrays: list[np.ndarray],
        *,
        column_names: list[str] | None = None,
        column_dtypes: list[str] | None = None,
        float_dtype: np.dtype[Any],
    ) -> None:
        self.kind = kind  # "single", "args" or "kwargs"
        self.names = names
        self.arrays = arrays
        self.float_dtype = float_dtype
        single_2d = kind == "single" and arrays[0].ndim == 2 and arrays[0].dtype.kind == "f"
        self.tabular_candidate = single_2d
        self.column_names = column_names or ([f"f{i}" for i in range(arrays[0].shape[1])] if single_2d else [])
        self.column_dtypes = column_dtypes or ([str(arrays[0].dtype)] * len(self.column_names))
        self.batch = int(arrays[0].shape[0]) if arrays and arrays[0].ndim else 1

    @classmethod
    def build(
        cls, sample: Any, model: Any, *, input_names: list[str] | None, columns: list[str] | None
    ) -> _Example:
        fdt = _float_dtype(model)
        column_dtypes = None
        if is_dataframe(sample):
            from modelport.convert._sample import column_kinds

            kinds = column_kinds(sample)
            bad = [n for n, k, _ in kinds if k not in ("float64", "float32", "int64", "bool")]
            if bad:
                raise InputError(
                    f"a torch module takes numbers; the sample has non-numeric column(s): {', '.join(bad)}.",
                    hint="encode those columns as numbers before training and packing",
                )
            names = [n for n, _, _ in kinds]
            column_dtypes = [k for _, k, _ in kinds]
            if columns is None:
                columns = names
            arrays = [sample.to_numpy(dtype=fdt)]
            kind = "single"
            arg_names = None
        elif isinstance(sample, Mapping):
            if not sample or not all(isinstance(k, str) for k in sample):
                raise InputError("a dict example input must map the forward() argument names to tensors.")
            arg_names = list(sample)
            kind = "kwargs"
            positional = _positional_inputs(model)
            if positional is not None:
                # an ExportedProgram traced with positional inputs: the dict names them
                if set(arg_names) != set(positional):
                    raise InputError(
                        f"the ExportedProgram takes the inputs {positional}; the example names {arg_names}."
                    )
                arg_names = positional
                kind = "args" if len(positional) > 1 else "single"
            arrays = [_example_array(sample[k], fdt, where=f"input {k!r}") for k in arg_names]
        elif isinstance(sample, (tuple, list)):
            if not sample:
                raise InputError("the example input is an empty tuple; pass the tensors forward() takes.")
            arrays = [_example_array(v, fdt, where=f"input {i}") for i, v in enumerate(sample)]
            arg_names = input_names
            kind = "args" if len(arrays) > 1 else "single"
        else:
            arrays = [_example_array(sample, fdt, where="the example input")]
            arg_names = input_names
            kind = "single"
        if input_names is not None and len(input_names) != len(arrays):
            raise ConversionError(f"input_names has {len(input_names)} names but the module takes {len(arrays)} inputs.")
        if columns is not None:
            if not (kind == "single" and arrays[0].ndim == 2) or isinstance(sample, (Mapping, tuple, list)):
                raise ConversionError("option columns applies to a single 2-D input only.")
            if len(columns) != arrays[0].shape[1] or len(set(columns)) != len(columns):
                raise ConversionError(
                    f"option columns needs {arrays[0].shape[1]} distinct names (one per input column); got {columns!r}."
                )
        batches = {a.shape[0] for a in arrays if a.ndim}
        if any(a.ndim == 0 for a in arrays) or 0 in batches:
            raise InputError("every example input needs a batch dimension with at least one row.")
        example = cls(kind, arg_names, arrays, column_names=columns, column_dtypes=column_dtypes, float_dtype=fdt)
        if isinstance(sample, (Mapping, tuple, list)):
            # pack() reads tabular samples as tables; a dict or tuple of tensors stays a tensor input
            example.tabular_candidate = False
            example.column_names = []
        return example

    # torch call arguments for a set of numpy arrays shaped like the example's
    def call_args(self, arrays: Sequence[np.ndarray]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        if self.kind == "kwargs":
            assert self.names is not None
            return (), dict(zip(self.names, tensors, strict=False))
        return tuple(tensors), {}

    @property
    def args(self) -> tuple[Any, ...]:
        return self.call_args(self.arrays)[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.call_args(self.arrays)[1]

    def batched(self) -> list[bool]:
        return [a.ndim > 0 and a.shape[0] == self.batch for a in self.arrays]

    def take(self, rows: np.ndarray) -> list[np.ndarray]:
        return [a[rows] if b else a for a, b in zip(self.arrays, self.batched(), strict=False)]

    def inputs_like(self, data: Any, model: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``data`` (tensor, array, tuple, dict or DataFrame) as call arguments, typed like the example."""
        if is_dataframe(data):
            missing = [c for c in self.column_names if c not in data.columns]
            if missing:
                raise InputError(f"the data lacks column(s) {', '.join(missing)}; expected {self.column_names}.")
            values = [data[self.column_names].to_numpy(dtype=self.float_dtype)]
        elif isinstance(data, Mapping):
            if self.kind == "kwargs":
                assert self.names is not None
                missing = [n for n in self.names if n not in data]
                if missing:
                    raise InputError(f"the data lacks input(s) {', '.join(missing)}; expected {self.names}.")
                values = [_to_numpy(data[n]) for n in self.names]
            elif self.tabular_candidate and all(c in data for c in self.column_names):
                values = [np.column_stack([_to_numpy(data[c]) for c in self.column_names])]
            else:
                values = [_to_numpy(v) for v in data.values()]
        elif isinstance(data, (tuple, list)):
            values = [_to_numpy(v) for v in data]
        else:
            values = [_to_numpy(data)]
        if len(values) != len(self.arrays):
            raise InputError(f"the module takes {len(self.arrays)} input(s); got {len(values)}.")
        cast = [v.astype(e.dtype, copy=False) if v.dtype != e.dtype and v.dtype.kind in "biuf" else v
                for v, e in zip(values, self.arrays, strict=False)]
        return self.call_args(cast)


def _float_dtype(model: Any) -> np.dtype[Any]:
    """The float type the module computes in (its first float parameter), float32 when it has none."""
    import torch

    module = model.module() if _is_exported_program(model) else model
    for p in list(module.parameters()) + list(module.buffers()):
        if p.is_floating_point():
            return np.dtype(str(p.dtype).replace("torch.", ""))
    del torch
    return np.dtype(np.float32)


def _positional_inputs(model: Any) -> list[str] | None:
    """The user input names of an ExportedProgram traced with positional arguments, else None."""
    if not _is_exported_program(model):
        return None
    example = getattr(model, "example_inputs", None)
    if example is not None and example[1]:
        return None
    from torch.export.graph_signature import InputKind

    return [spec.arg.name for spec in model.graph_signature.input_specs if spec.kind == InputKind.USER_INPUT]


def _to_numpy(value: Any) -> np.ndarray:
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    if is_dataframe(value):
        return value.to_numpy()
    return np.asarray(value)


def _example_array(value: Any, float_dtype: np.dtype[Any], *, where: str) -> np.ndarray:
    is_tensor = type(value).__module__.startswith("torch")
    arr = _to_numpy(value)
    if arr.dtype.kind == "f" and not is_tensor:
        arr = arr.astype(float_dtype)  # numpy data defaults to float64; the module decides
    elif arr.dtype.kind in "iu" and arr.dtype != np.int64:
        arr = arr.astype(np.int64)
    if str(arr.dtype) not in _INPUT_DTYPES:
        raise InputError(
            f"{where} has dtype {arr.dtype}; the torch converter takes float32, float64 or int64 inputs.",
            hint="cast the example input (tensor.float(), tensor.long())",
        )
    return arr


def _is_exported_program(model: Any) -> bool:
    return type(model).__name__ == "ExportedProgram" and type(model).__module__.startswith("torch.export")


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for export and reference; every submodule gets its own mode back afterwards."""
    if _is_exported_program(model):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _call(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import torch

    fn = model.module() if _is_exported_program(model) else model
    with torch.no_grad():
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise InputError(
                f"the module failed on the input: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}",
                hint="pass data shaped like the example input the module was packed with",
            ) from exc


def _flatten_outputs(out: Any) -> list[Any]:
    """The module's outputs as a flat list of tensors (tuples, lists and dicts are flattened in order)."""
    import torch
    from torch.utils._pytree import tree_flatten

    leaves, _ = tree_flatten(out)
    if not leaves:
        raise ConversionError("the module returned no tensors.")
    bad = [type(v).__name__ for v in leaves if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"the module returns non-tensor values ({', '.join(bad)}); ONNX outputs must be tensors.")
    return leaves


def _output_names(outputs: list[Any], given: list[str] | None) -> list[str]:
    if given is not None:
        if len(given) != len(outputs) or len(set(given)) != len(given):
            raise ConversionError(f"output_names needs {len(outputs)} distinct names; got {given!r}.")
        return list(given)
    return [f"output_{i}" for i in range(len(outputs))]


# ---------------------------------------------------------------------- export
def _export(model: Any, example: _Example, names: list[str], opts: dict[str, Any]) -> onnx.ModelProto:
    import torch

    args, kwargs = example.args, example.kwargs
    dynamic: Any = None
    if not _is_exported_program(model) and opts["dynamic_batch"]:
        # torch specialises dimensions of size 1, so a one-row example is exported as two rows
        if example.batch == 1:
            arrays = [np.concatenate([a, a]) if b else a for a, b in zip(example.arrays, example.batched(), strict=False)]
            args, kwargs = example.call_args(arrays)
        batch = torch.export.Dim("batch")
        specs = [{0: batch} if b else None for b in example.batched()]
        if example.kind == "kwargs":
            assert example.names is not None
            dynamic = dict(zip(example.names, specs, strict=False))
        else:
            dynamic = tuple(specs)
    input_names = example.names if example.kind != "kwargs" else None
    with _quiet(), _shared_torchlib_registry():
        try:
            program = torch.onnx.export(
                model,
                args if not _is_exported_program(model) else (),
                kwargs=kwargs if not _is_exported_program(model) else None,
                dynamo=True,
                verbose=False,
                input_names=input_names,
                output_names=names,
                opset_version=opts["opset"],
                dynamic_shapes=dynamic,
                external_data=False,
                optimize=True,
            )
        except Exception as exc:
            msg = str(exc).strip().splitlines()
            raise ConversionError(
                f"torch.onnx.export could not export {type(model).__name__}: {type(exc).__name__}: "
                f"{msg[0] if msg else ''}",
                hint="the module must be traceable by torch.export (no data-dependent Python control flow) and "
                "must not fix its batch size (x.reshape(x.shape[0], -1), not x.reshape(4, -1)); "
                "see https://pytorch.org/docs/stable/export.html",
            ) from exc
    if program is None:
        raise ConversionError("torch.onnx.export returned no ONNX program.")
    onx = program.model_proto
    # a round trip through bytes gives a plain, independent protobuf
    return onnx.load_model_from_string(onx.SerializeToString())


_TORCHLIB_REGISTRIES: dict[Any, Any] = {}


@contextlib.contextmanager
def _shared_torchlib_registry() -> Iterator[None]:
    """Build torch's ATen -> ONNX function table once per process instead of once per export.

    torch.onnx rebuilds it on every export (about 3 s of parsing onnxscript sources); it is only
    read during an export unless a custom translation table is given, which modelport never does.
    Where torch's internals differ from what this expects, exports simply run unshared.
    """
    try:
        from torch.onnx._internal.exporter import _registration

        original = _registration.ONNXRegistry.__dict__["from_torchlib"]
        build = original.__func__
    except (ImportError, KeyError, AttributeError):
        yield
        return

    def from_torchlib(cls: Any, *args: Any, **kwargs: Any) -> Any:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _TORCHLIB_REGISTRIES:
            _TORCHLIB_REGISTRIES[key] = build(cls, *args, **kwargs)
        return _TORCHLIB_REGISTRIES[key]

    _registration.ONNXRegistry.from_torchlib = classmethod(from_torchlib)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        _registration.ONNXRegistry.from_torchlib = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's exporter warns about its own internals and logs progress; none of it is for our users."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=False):
            lg.setLevel(level)


def _normalise_batch_dim(onx: onnx.ModelProto, example: _Example) -> str | None:
    """Name the symbolic batch dimension ``N`` everywhere; None when the inputs have a fixed batch."""
    init = {t.name for t in onx.graph.initializer}
    symbols = set()
    for vi in onx.graph.input:
        if vi.name in init:
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            symbols.add(dims[0].dim_param)
    if not symbols:
        return None
    for vi in [*onx.graph.input, *onx.graph.output, *onx.graph.value_info]:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in symbols:
                d.dim_param = BATCH
    return BATCH


def _strip_metadata(onx: onnx.ModelProto) -> None:
    """Drop torch's per-node metadata: stack traces hold local file paths, and none of it is needed to run."""
    del onx.metadata_props[:]
    for g in [onx.graph, *onx.functions]:
        del g.metadata_props[:]
        for n in g.node:
            del n.metadata_props[:]
            n.doc_string = ""
        for vi in [*getattr(g, "input", []), *getattr(g, "output", []), *getattr(g, "value_info", [])]:
            del vi.metadata_props[:]
        for t in getattr(g, "initializer", []):
            del t.metadata_props[:]


# ---------------------------------------------------------------------- heads
def _output_info(onx: onnx.ModelProto, name: str) -> tuple[int, list[int | None]]:
    for o in onx.graph.output:
        if o.name == name:
            tt = o.type.tensor_type
            return tt.elem_type, [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    raise ConversionError(f"the exported graph has no output {name!r}.")


def _add_classifier_head(onx: onnx.ModelProto, source: str, first: Any, opts: dict[str, Any]) -> list[Any]:
    elem, shape = _output_info(onx, source)
    if elem not in (TensorProto.FLOAT, TensorProto.DOUBLE):
        raise ConversionError(f"a classifier's first output must be float scores; {source!r} has ONNX type {elem}.")
    if len(shape) not in (1, 2):
        raise ConversionError(
            f"a classifier's first output must have shape [N, classes] or [N]; {source!r} has {list(first.shape)}."
        )
    width = 1 if len(shape) == 1 else int(first.shape[1])
    binary = width == 1
    classes = opts["classes"] if opts["classes"] is not None else list(range(2 if binary else width))
    if (2 if binary else width) != len(classes):
        raise ConversionError(
            f"the module gives {width} score column(s) but {len(classes)} classes were named: {classes!r}.",
            hint="a single column is read as the score of the second (positive) class of two",
        )
    g = onx.graph
    nodes: list[onnx.NodeProto] = []
    scores = source
    if binary:
        if len(shape) == 1:
            g.initializer.append(helper.make_tensor("mp_axes_1", TensorProto.INT64, [1], [1]))
            nodes.append(helper.make_node("Unsqueeze", [source, "mp_axes_1"], ["mp_score_2d"], name="mp_unsqueeze"))
            scores = "mp_score_2d"
        positive = scores
        if opts["scores"] == "logits":
            nodes.append(helper.make_node("Sigmoid", [scores], ["mp_positive"], name="mp_sigmoid"))
            positive = "mp_positive"
        one = np.ones((), dtype=np.float32 if elem == TensorProto.FLOAT else np.float64)
        g.initializer.append(onnx.numpy_helper.from_array(one, "mp_one"))
        nodes.append(helper.make_node("Sub", ["mp_one", positive], ["mp_negative"], name="mp_negative"))
        nodes.append(helper.make_node("Concat", ["mp_negative", positive], ["probabilities"], axis=1, name="mp_concat"))
    elif opts["scores"] == "logits":
        nodes.append(helper.make_node("Softmax", [source], ["probabilities"], axis=-1, name="mp_softmax"))
    else:
        nodes.append(helper.make_node("Identity", [source], ["probabilities"], name="mp_probabilities"))
    nodes.append(helper.make_node("ArgMax", ["probabilities"], ["mp_argmax"], axis=1, keepdims=0, name="mp_argmax"))
    if isinstance(classes[0], str):
        encoded: Any = [str(c).encode() for c in classes]
        labels = helper.make_tensor("mp_classes", TensorProto.STRING, [len(classes)], encoded)
        label_type = TensorProto.STRING
    else:
        labels = helper.make_tensor("mp_classes", TensorProto.INT64, [len(classes)], classes)
        label_type = TensorProto.INT64
    g.initializer.append(labels)
    nodes.append(helper.make_node("Gather", ["mp_classes", "mp_argmax"], ["label"], axis=0, name="mp_label"))
    g.node.extend(nodes)
    g.output.append(helper.make_tensor_value_info("label", label_type, [BATCH]))
    g.output.append(helper.make_tensor_value_info("probabilities", elem, [BATCH, len(classes)]))
    keep_outputs(onx, ["label", "probabilities"])
    return classes


def _add_regression_head(onx: onnx.ModelProto, source: str, first: Any) -> None:
    elem, shape = _output_info(onx, source)
    if elem not in (TensorProto.FLOAT, TensorProto.DOUBLE):
        raise ConversionError(f"a regressor's first output must be float values; {source!r} has ONNX type {elem}.")
    if len(shape) == 2 and int(first.shape[1]) == 1:
        g = onx.graph
        g.initializer.append(helper.make_tensor("mp_flat_shape", TensorProto.INT64, [1], [-1]))
        g.node.append(helper.make_node("Reshape", [source, "mp_flat_shape"], ["prediction"], name="mp_flatten"))
        g.output.append(helper.make_tensor_value_info("prediction", elem, [BATCH]))
    elif len(shape) in (1, 2):
        rename_tensors(onx, {source: "prediction"})
    else:
        raise ConversionError(
            f"a regressor's first output must have shape [N] or [N, targets]; {source!r} has {list(first.shape)}."
        )
    keep_outputs(onx, ["prediction"])


def _named_outputs(outputs: list[Any], config: _Config) -> dict[str, np.ndarray]:
    import torch

    first = outputs[0]
    if config.task == "classification":
        assert config.classes is not None
        scores = first if first.ndim == 2 else first.reshape(-1, 1)
        if scores.shape[1] == 1:
            positive = torch.sigmoid(scores) if config.scores == "logits" else scores
            probs = torch.cat([1 - positive, positive], dim=1)
        else:
            probs = torch.softmax(scores, dim=-1) if config.scores == "logits" else scores
        p = probs.detach().cpu().numpy()
        idx = p.argmax(axis=1)
        label_dtype = object if isinstance(config.classes[0], str) else np.int64
        labels = np.asarray(config.classes, dtype=label_dtype)[idx]
        return {"label": labels, "probabilities": p}
    if config.task == "regression":
        pred = first.detach().cpu().numpy()
        if pred.ndim == 2 and pred.shape[1] == 1:
            pred = pred[:, 0]
        return {"prediction": pred}
    return {name: t.detach().cpu().numpy() for name, t in zip(config.output_names, outputs, strict=False)}


# ---------------------------------------------------------------------- dynamic batch check
def _check_dynamic_batch(model: Any, example: _Example, onx: onnx.ModelProto, config: _Config) -> str:
    """Run the graph on a batch of one and on a batch larger than the example, against torch."""
    from modelport.runtime.sandbox import create_session

    session = create_session(onx.SerializeToString(), origin="the exported graph", model=onx,
                             error=ConversionError, hint=None)
    rng = np.random.default_rng(0)
    n = example.batch
    big_rows = np.concatenate([np.arange(n), rng.integers(0, n, size=n + 3)])
    big = example.take(big_rows)
    # fresh values beside the example's: jitter float inputs, keep integer ones (indices, ids)
    for i, (a, b) in enumerate(zip(big, example.batched(), strict=False)):
        if b and a.dtype.kind == "f":
            scale = np.nanstd(example.arrays[i]) or 1.0
            jitter = rng.normal(0.0, 0.1 * scale, size=a[n:].shape).astype(a.dtype)
            big[i] = np.concatenate([a[:n], a[n:] + jitter])
    worst = 0.0
    input_names = [i.name for i in session.get_inputs()]
    for arrays in (example.take(np.array([0])), big):
        rows = arrays[0].shape[0]
        feeds = dict(zip(input_names, arrays, strict=False)) if example.kind != "kwargs" else dict(zip(example.names or [], arrays, strict=False))
        try:
            got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=False))
        except Exception as exc:
            raise ConversionError(
                f"the exported graph does not run on a batch of {rows} row(s): {str(exc).strip().splitlines()[0]}",
                hint="the module fixes its batch size (a reshape/view with a constant batch, or an "
                "ExportedProgram exported without dynamic_shapes); export it with "
                "dynamic_shapes={...: {0: torch.export.Dim('batch')}} or use x.reshape(x.shape[0], -1)",
            ) from exc
        args, kwargs = example.call_args(arrays)
        with _eval_mode(model):
            try:
                expected_raw = _flatten_outputs(_call(model, args, kwargs))
            except InputError as exc:
                raise ConversionError(
                    f"the module does not run on a batch of {rows} row(s) ({exc.message})",
                    hint="an ExportedProgram exported with a fixed batch size cannot take other batch sizes; "
                    "export it with dynamic_shapes={...: {0: torch.export.Dim('batch')}}",
                ) from exc
        expected = _named_outputs(expected_raw, config)
        for name, e in expected.items():
            a = got[name]
            if a.shape != e.shape:
                raise ConversionError(
                    f"on a batch of {rows} row(s) the graph's output {name!r} has shape {a.shape}, "
                    f"but the module's has {e.shape}; the exported graph fixed a dimension it should not have."
                )
            if e.dtype.kind in "fc":
                diff = np.abs(e.astype(np.float64) - a.astype(np.float64))
                scale = max(1.0, float(np.nanmax(np.abs(e))) if e.size else 1.0)
                worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
                if diff.size and float(np.nanmax(diff)) > 1e-3 * scale:
                    raise ConversionError(
                        f"on a batch of {rows} row(s) the graph's output {name!r} differs from the module's by "
                        f"{float(np.nanmax(diff)):.3g}; the exported graph does not handle other batch sizes correctly."
                    )
    return f"dynamic batch checked against torch on batches of 1 and {big[0].shape[0]} rows (max abs error {worst:.3g})."
