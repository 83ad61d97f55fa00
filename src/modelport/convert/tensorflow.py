"""TensorFlow SavedModels -> ONNX through tf2onnx, from the serving signature.

A SavedModel directory (``tf.saved_model.save`` / ``keras_model.export``) is read like an untrusted
bundle directory (relative names, no links, size limits) into memory and copied to a private
temporary directory before TensorFlow opens it. Loading a SavedModel runs its graph's init ops,
and asking it for predictions runs its serving function, so both are checked first: every
operation reachable from the signature and the init ops is listed, and operations that touch
files or run Python (``ReadFile``, ``WriteFile``, ``PyFunc``, readers, savers, summaries, print
to a file, datasets) are refused, the op and its node named, unless ``trust_code=True``
(``--trust-code``).

The signature (default ``serving_default``) is converted by tf2onnx's SavedModel path, which
freezes variables (and keeps an adapted Keras ``Normalization`` layer's statistics as constants),
with the signature's input and output names. A SavedModel without the signature is refused,
listing the ones it has. The bundle's task follows the same rules as Keras models
(:mod:`modelport.convert._keras_io`): a Softmax output is a classifier, a one-column Sigmoid a
binary classifier, another single float output a regressor.

Options: ``signature``, ``task``, ``classes``, ``scores``, ``columns``, ``tabular``, ``opset``
(see :mod:`modelport.convert.keras`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from modelport._deps import require
from modelport.bundle.archive import read as read_directory
from modelport.convert._keras_engine import quiet
from modelport.convert._keras_graph import rename_safely
from modelport.convert._keras_io import Head, Inputs, NetworkConverter, Packed, Tensor, check_parity, finish
from modelport.convert.base import Converted
from modelport.errors import BundleError, ConversionError, InputError, UnsupportedModelError

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
_OPTIONS = frozenset({"signature", "task", "classes", "scores", "columns", "tabular", "opset"})
_INIT_SIGNATURE = "__saved_model_init_op"
#: operations that read or write files, run Python, or talk to the outside: a serving function
#: that a SavedModel's author could use against the machine that loads it
_UNSAFE_PARTS = ("File", "Reader", "Save", "Restore", "Load", "PyFunc", "Summary", "Dataset", "Print", "Debug",
                 "Checkpoint", "Send", "Recv", "Collective", "ImmutableConst", "Rpc", "Gcs", "BigQuery",
                 # DecodeProto / EncodeProto read their message descriptors from a path they are given
                 "Proto")
_TRUST_HINT = "if you trust the SavedModel and its author, pass --trust-code (trust_code=True)"
_NP_DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "str", 9: "int64",
              10: "bool", 17: "uint16", 19: "float16", 22: "uint32", 23: "uint64"}


@dataclass(frozen=True)
class SignatureInfo:
    name: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    #: graph tensor names of the outputs, for the op check
    output_tensors: list[str]


class SavedModelDir:
    """A SavedModel directory, read and checked into memory; TensorFlow only ever opens a copy."""

    def __init__(self, origin: str, files: dict[str, bytes], *, trust_code: bool = False) -> None:
        self.origin = origin
        self.files = files
        self.trust_code = trust_code
        self._dirs: list[Path] = []
        self._loaded: Any = None
        self._finalizer = weakref.finalize(self, _remove, self._dirs)
        self._meta: Any = None

    @classmethod
    def read(cls, path: str | os.PathLike[str], *, trust_code: bool = False) -> SavedModelDir:
        p = Path(path)
        if not p.is_dir():
            raise InputError(f"{p}: a SavedModel is a directory (with saved_model.pb); this is not one.")
        try:
            files = read_directory(p, check_table=False)  # a SavedModel has no manifest
        except BundleError as exc:
            raise ConversionError(
                f"refusing the SavedModel directory: {exc.message}",
                hint="a SavedModel is the directory tf.saved_model.save or model.export writes; write it again",
            ) from exc
        if not any(f in files for f in SAVED_MODEL_FILES):
            raise ConversionError(f"{p}: no saved_model.pb in the directory; not a TensorFlow SavedModel.")
        return cls(str(p), files, trust_code=trust_code)

    def __repr__(self) -> str:
        return f"SavedModelDir({self.origin!r})"

    # the meta graph (tag "serve") of saved_model.pb, parsed with TensorFlow's own protobuf classes
    def meta_graph(self) -> Any:
        if self._meta is None:
            require("tensorflow", purpose="reading TensorFlow SavedModels")
            from tensorflow.core.protobuf import saved_model_pb2

            sm = saved_model_pb2.SavedModel()
            try:
                if "saved_model.pb" in self.files:
                    sm.ParseFromString(self.files["saved_model.pb"])
                else:
                    from google.protobuf import text_format

                    text_format.Parse(self.files["saved_model.pbtxt"].decode(), sm)
            except Exception as exc:  # protobuf's DecodeError / ParseError
                raise ConversionError(f"{self.origin}: saved_model.pb cannot be read ({exc}); write it again.") from exc
            tagged = [mg for mg in sm.meta_graphs if TAG in mg.meta_info_def.tags]
            if not tagged:
                tags = [list(mg.meta_info_def.tags) for mg in sm.meta_graphs]
                raise ConversionError(
                    f"{self.origin}: the SavedModel has no meta graph tagged {TAG!r} (it has {tags}).",
                    hint="save it with tf.saved_model.save(obj, path, signatures=...), which tags it 'serve'",
                )
            self._meta = tagged[0]
        return self._meta

    def signature(self, name: str = DEFAULT_SIGNATURE) -> SignatureInfo:
        mg = self.meta_graph()
        public = sorted(k for k in mg.signature_def if not k.startswith("__"))
        if name not in mg.signature_def or name.startswith("__"):
            raise ConversionError(
                f"{self.origin}: the SavedModel has no signature {name!r}; it has "
                f"{', '.join(map(repr, public)) if public else 'none'}.",
                hint="save it with tf.saved_model.save(obj, path, signatures={'serving_default': fn}) "
                "(Keras: model.export(path)), or pick one with options={'signature': NAME}",
            )
        sig = mg.signature_def[name]

        def tensor(key: str, info: Any) -> Tensor:
            dtype = _NP_DTYPES.get(int(info.dtype), f"dtype#{int(info.dtype)}")
            if info.tensor_shape.unknown_rank:
                raise ConversionError(f"{self.origin}: signature {name!r}: {key!r} has an unknown rank; "
                                      "modelport needs input and output shapes (at least their rank).")
            shape = tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
            return Tensor(key, dtype, shape)

        inputs = [tensor(k, sig.inputs[k]) for k in sorted(sig.inputs)]
        outputs = [tensor(k, sig.outputs[k]) for k in _ordered(sig.outputs)]
        return SignatureInfo(name, inputs, outputs, [sig.outputs[k].name for k in _ordered(sig.outputs)])

    def check_ops(self, signature: SignatureInfo) -> list[str]:
        """The op types the signature and the init ops run; refuses unsafe ones unless trusted."""
        mg = self.meta_graph()
        roots = list(signature.output_tensors)
        if _INIT_SIGNATURE in mg.signature_def:
            roots += [t.name for t in mg.signature_def[_INIT_SIGNATURE].outputs.values()]
        for key in ("saved_model_main_op", "legacy_init_op"):
            if key in mg.collection_def:
                roots += list(mg.collection_def[key].node_list.value)
        found = _reachable_ops(mg.graph_def, roots)
        unsafe = [(op, node) for op, node in found if is_unsafe_op(op)]
        if unsafe and not self.trust_code:
            op, node = unsafe[0]
            more = sorted({o for o, _ in unsafe[1:]} - {op})
            raise ConversionError(
                f"{self.origin}: signature {signature.name!r} runs the operation {op} (node {node!r})"
                + (f", and also {', '.join(more)}" if more else "")
                + "; it can read or write files or run code on the machine that loads the model, so modelport "
                "does not load it by default.",
                hint=_TRUST_HINT,
            )
        return sorted({op for op, _ in found})

    def path(self) -> Path:
        """The checked files, written to a private temporary directory for TensorFlow to open."""
        if not self._dirs:
            root = Path(tempfile.mkdtemp(prefix="modelport-savedmodel-"))
            self._dirs.append(root)
            for name, blob in self.files.items():
                dest = root / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(blob)
        return self._dirs[0]

    def loaded(self) -> Any:
        if self._loaded is None:
            tf = require("tensorflow", purpose="running TensorFlow SavedModels")
            with quiet():
                try:
                    self._loaded = tf.saved_model.load(str(self.path()), tags=[TAG])
                except Exception as exc:
                    raise ConversionError(f"{self.origin}: TensorFlow {tf.__version__} cannot load the SavedModel: "
                                          f"{type(exc).__name__}: {_first_line(exc)}") from exc
        return self._loaded

    def close(self) -> None:
        self._loaded = None
        self._finalizer()


def is_unsafe_op(op: str) -> bool:
    """Whether a TensorFlow operation type can read or write files, run Python or reach another
    machine (see ``_UNSAFE_PARTS``): refused in an untrusted SavedModel."""
    return any(part in op for part in _UNSAFE_PARTS)


def _remove(dirs: list[Path]) -> None:
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    dirs.clear()


def _ordered(outputs: Iterable[str]) -> list[str]:
    """Output keys in call order: ``output_0, output_1, .., output_10`` by number, others by name."""
    def key(k: str) -> tuple[int, int, str]:
        stem, _, num = k.rpartition("_")
        return (0, int(num), stem) if num.isdigit() else (1, 0, k)

    return sorted(outputs, key=key)


def _reachable_ops(graph_def: Any, roots: list[str]) -> list[tuple[str, str]]:
    """(op type, node name) of every node the roots depend on, through called functions too."""
    nodes = {n.name: n for n in graph_def.node}
    functions = {f.signature.name: f for f in graph_def.library.function}
    found: list[tuple[str, str]] = []
    seen_nodes: set[str] = set()
    seen_functions: set[str] = set()
    stack = [r.lstrip("^").split(":")[0] for r in roots]
    pending_functions: list[str] = []

    def called(node: Any) -> list[str]:
        names = [node.op] if node.op in functions else []
        for attr in node.attr.values():
            if attr.HasField("func"):
                names.append(attr.func.name)
            names.extend(f.name for f in attr.list.func)
        return names

    while stack:
        name = stack.pop()
        if name in seen_nodes or name not in nodes:
            continue
        seen_nodes.add(name)
        node = nodes[name]
        found.append((node.op, node.name))
        pending_functions.extend(called(node))
        stack.extend(i.lstrip("^").split(":")[0] for i in node.input)
    while pending_functions:
        fname = pending_functions.pop()
        if fname in seen_functions or fname not in functions:
            continue
        seen_functions.add(fname)
        for node in functions[fname].node_def:
            found.append((node.op, f"{fname}/{node.name}"))
            pending_functions.extend(called(node))
    return found


def saved_model_to_onnx(
    path: str | os.PathLike[str], *, signature: str = DEFAULT_SIGNATURE, opset: int | None = None
) -> tuple[onnx.ModelProto, list[str], list[str]]:
    """Convert one signature of a (checked) SavedModel directory with tf2onnx; returns the graph and
    its input and output names (the signature's keys)."""
    require("tensorflow", purpose="converting TensorFlow SavedModels")
    tf2onnx = require("tf2onnx", purpose="converting TensorFlow SavedModels to ONNX")
    from tf2onnx import tf_loader

    with quiet():
        try:
            frozen, inputs, outputs, renames = tf_loader.from_saved_model(
                str(path), None, None, tag=[TAG], signatures=[signature], return_tensors_to_rename=True
            )
            onx, _ = tf2onnx.convert.from_graph_def(
                frozen, name="model", input_names=inputs, output_names=outputs, opset=opset,
                tensors_to_rename=renames,
            )
        except Exception as exc:
            raise ConversionError(
                f"tf2onnx {tf2onnx.__version__} could not convert the SavedModel's signature {signature!r}: "
                f"{type(exc).__name__}: {_first_line(exc)}",
                hint="every operation of the serving function must have an ONNX equivalent in tf2onnx",
            ) from exc
    graph_inputs = [i.name for i in onx.graph.input if i.name not in {t.name for t in onx.graph.initializer}]
    return onx, graph_inputs, [o.name for o in onx.graph.output]


class _SignatureEngine:
    """A SavedModel signature as the reference: named arrays in, outputs in signature order."""

    backend = "tensorflow"

    def __init__(self, model: SavedModelDir, signature: SignatureInfo) -> None:
        self.model = model
        self.signature = signature

    def predict(self, arrays: Mapping[str, np.ndarray], structure: str) -> list[np.ndarray]:
        import tensorflow as tf

        fn = self.model.loaded().signatures[self.signature.name]
        with quiet():
            try:
                out = fn(**{k: tf.constant(v) for k, v in arrays.items()})
            except Exception as exc:
                raise InputError(f"the SavedModel's signature failed on the input: {type(exc).__name__}: "
                                 f"{_first_line(exc)}") from exc
        return [np.asarray(out[o.name]) for o in self.signature.outputs]


class TensorFlowConverter(NetworkConverter):
    name = "tensorflow"
    framework = "tensorflow"
    modules = ("tensorflow", "modelport.convert.tensorflow")

    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted:
        opts = _options(options)
        original = model  # what pack() asks for reference answers: the caller's object, not the copy
        model = _as_saved_model(model)
        tf = require("tensorflow", purpose="converting TensorFlow SavedModels")
        tf2onnx = require("tf2onnx", purpose="converting TensorFlow SavedModels to ONNX")
        sig = model.signature(opts["signature"])
        ops = model.check_ops(sig)
        text = [t.name for t in sig.inputs if t.dtype not in _NUMERIC]
        if text:
            raise ConversionError(
                f"{model.origin}: signature {sig.name!r} takes {', '.join(repr(t) for t in text)} as "
                f"{'/'.join(sorted({t.dtype for t in sig.inputs if t.name in text}))} (serialized tf.Example?); "
                "modelport converts signatures that take numeric tensors.",
                hint="export a signature that takes the features as numbers, e.g. model.export(path) for Keras",
            )
        inputs = Inputs.plan(list(sig.inputs), "dict", sample, columns=opts["columns"], tabular=opts["tabular"],
                             where="the SavedModel")
        arrays = inputs.arrays(sample)
        if len(next(iter(arrays.values()))) == 0:
            raise InputError("the sample has no rows; pack needs at least one example input.")
        onx, graph_inputs, graph_outputs = saved_model_to_onnx(model.path(), signature=sig.name, opset=opts["opset"])
        if sorted(graph_inputs) != sorted(inputs.names) or sorted(graph_outputs) != sorted(o.name for o in sig.outputs):
            raise ConversionError(
                f"tf2onnx named the graph's inputs {graph_inputs} and outputs {graph_outputs}; the signature's are "
                f"{inputs.names} and {[o.name for o in sig.outputs]}."
            )
        outputs = [Tensor(o.name, o.dtype, o.shape, _activation(onx, o.name)) for o in sig.outputs]
        mapping = {n: f"mp_in_{i}" for i, n in enumerate(inputs.names)}
        mapping.update({o.name: f"mp_out_{j}" for j, o in enumerate(outputs)})
        rename_safely(onx, mapping)
        head = Head.plan(outputs, task=opts["task"], classes=opts["classes"], scores=opts["scores"])
        finished = finish(onx.SerializeToString(), inputs, outputs, head)
        engine = _SignatureEngine(model, sig)
        worst = check_parity(finished, inputs, head, engine, arrays, "tf2onnx")
        source = {
            "framework": "tensorflow",
            "framework_version": tf.__version__,
            "estimator": "SavedModel",
            "signature": sig.name,
            "converter": "tf2onnx (SavedModel)",
            "converter_version": f"tf2onnx {tf2onnx.__version__}",
            "call": {**inputs.to_dict(), **head.to_dict(), "signature": sig.name,
                     "outputs_raw": [o.to_dict() for o in outputs]},
        }
        self.remember(original, Packed(inputs, outputs, head, engine))
        notes = [*head.notes, f"the signature {sig.name!r} runs {len(ops)} kinds of operation; checked against "
                 f"TensorFlow on batches of 1 and more rows before packing (max abs error {worst:.3g})."]
        columns = inputs.columns
        return Converted(
            onnx_model=finished,
            task=head.task,
            columns=columns,
            classes=head.classes,
            source=source,
            nullable={c.name: False for c in columns} if columns is not None else None,
            notes=notes,
        )

    def prepare(self, model: Any, bundle: Any) -> None:
        """Learn from ``bundle`` how ``model`` was packed, for :meth:`reference` in another session."""
        if self.remembered(model) is not None:
            return
        call = (bundle.manifest.get("source") or {}).get("call")
        if not isinstance(call, Mapping) or "inputs" not in call:
            raise ConversionError(f"{bundle.origin}: the manifest does not record how the SavedModel was called.",
                                  hint="pack the model again")
        saved = _as_saved_model(model)
        sig = saved.signature(str(call.get("signature", DEFAULT_SIGNATURE)))
        saved.check_ops(sig)
        inputs = Inputs.restore(call, bundle.signature.columns)
        outputs = [Tensor.from_dict(d) for d in call.get("outputs_raw") or []]
        self.remember(model, Packed(inputs, outputs, Head.restore(call, bundle.classes), _SignatureEngine(saved, sig)))


_NUMERIC = frozenset({"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                      "uint32", "uint64", "bool"})


def _as_saved_model(model: Any) -> SavedModelDir:
    if isinstance(model, SavedModelDir):
        return model
    if hasattr(model, "signatures") and type(model).__module__.startswith("tensorflow"):
        # a tf.Module or a loaded SavedModel in memory: saved once, then read like a directory
        tf = require("tensorflow", purpose="converting TensorFlow models")
        tmp = tempfile.mkdtemp(prefix="modelport-savedmodel-")
        try:
            with quiet():
                tf.saved_model.save(model, tmp, signatures=dict(model.signatures) or None)
            return SavedModelDir.read(tmp, trust_code=True)
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"saving the TensorFlow object as a SavedModel failed: {type(exc).__name__}: "
                                  f"{_first_line(exc)}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise UnsupportedModelError(
        f"modelport converts TensorFlow SavedModel directories and tf.Module objects with a serving signature; "
        f"got {type(model).__name__}.",
        hint="save the model with tf.saved_model.save(obj, path, signatures={'serving_default': fn}) and pack the "
        "directory; Keras models are packed directly (modelport.pack(keras_model, x))",
    )


def _activation(onx: onnx.ModelProto, name: str) -> str | None:
    """softmax / sigmoid when the node making output ``name`` (through Identity nodes) is one."""
    producers = {o: n for n in onx.graph.node for o in n.output}
    node = producers.get(name)
    while node is not None and node.op_type == "Identity":
        node = producers.get(node.input[0])
    if node is None:
        return None
    return {"Softmax": "softmax", "Sigmoid": "sigmoid"}.get(node.op_type)


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ConversionError(
            f"unknown TensorFlow converter option(s): {', '.join(unknown)}; known: {', '.join(sorted(_OPTIONS))}."
        )
    signature = options.get("signature", DEFAULT_SIGNATURE)
    if not isinstance(signature, str) or not signature:
        raise ConversionError(f"option signature must be a signature name; got {signature!r}.")
    columns = options.get("columns")
    if columns is not None and (isinstance(columns, str) or not all(isinstance(x, str) and x for x in columns)):
        raise ConversionError(f"option columns must be a list of non-empty strings; got {columns!r}.")
    opset = options.get("opset")
    if opset is not None and (not isinstance(opset, int) or isinstance(opset, bool)):
        raise ConversionError(f"option opset must be an integer; got {opset!r}.")
    return {
        "signature": signature,
        "task": options.get("task", "auto"),
        "classes": options.get("classes"),
        "scores": options.get("scores"),
        "columns": list(columns) if columns else None,
        "tabular": options.get("tabular"),
        "opset": opset,
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
