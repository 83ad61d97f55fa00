"""A Keras model to ask questions of (describe, predict, export to ONNX), here or in a worker process.

Keras picks its backend (TensorFlow, PyTorch, JAX) once per process, when it is first imported,
from ``KERAS_BACKEND``. A library must not choose it for its user's process, so a model that needs
a backend other than the one this process has (a ``.keras`` file exported through PyTorch, while
the user works in TensorFlow, or has not imported Keras at all) is loaded in a worker: a child
Python process started with ``KERAS_BACKEND`` set, which speaks a small request/response protocol
over its stdin/stdout (:mod:`modelport.convert._keras_worker`). :class:`LocalEngine` and
:class:`WorkerEngine` answer the same three questions:

* ``describe()``: inputs (names, dtypes, shapes, as the model is called), outputs (names, shapes,
  the activation of the layer that makes each), class, parameter count, versions;
* ``predict(arrays)``: the model's own ``predict`` on named arrays, one array per output;
* ``export(example)``: an ONNX graph with inputs ``mp_in_<i>`` and outputs ``mp_out_<j>`` in the
  order of ``describe()``; the caller gives them their names. Under the PyTorch backend the model
  is exported with ``torch.onnx.export(dynamo=True)`` through a small wrapper module; under
  TensorFlow it is exported as a SavedModel (``model.export``) and converted by tf2onnx, the way
  :mod:`modelport.convert.tensorflow` converts any SavedModel.

Keras's own ``model.export(format="onnx")`` and ``tf2onnx.convert.from_function`` are not used:
both turn an adapted ``Normalization`` layer's mean and variance into graph inputs. (tf2onnx's
``from_keras`` gets that right but fails on Keras 3 ``Sequential`` models, KeyError on the output
name, with tf2onnx 1.17.)
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import struct
import subprocess
import sys
import tempfile
import threading
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from modelport import errors
from modelport.bundle import npz
from modelport.convert._keras_graph import rename_safely
from modelport.errors import ConversionError, InputError

BACKENDS = ("torch", "tensorflow")
_HEADER = "__header__"
_PREDICT_BATCH = 1024


def backend_here() -> str | None:
    """The Keras backend of this process: Keras's own if imported, else what ``KERAS_BACKEND`` asks for.

    None when Keras is not imported and nothing is asked for (Keras would read its config file).
    """
    keras = sys.modules.get("keras")
    if keras is not None:
        try:
            return str(keras.backend.backend())
        except Exception:  # a half-imported or foreign module called keras
            return None
    return os.environ.get("KERAS_BACKEND") or None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keras, TensorFlow, tf2onnx and torch's exporter warn and log about their internals; none of it is for users."""
    names = ("tensorflow", "tf2onnx", "absl", "torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "keras")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# ---------------------------------------------------------------------- in this process
def load_file(path: str | os.PathLike[str], *, trust_code: bool, modules: Sequence[str] = ()) -> Any:
    """Load a checked ``.keras`` archive with this process's Keras: never compiled, and safe mode
    (no Lambda bytecode) unless trusted; a trusted file's custom-object modules are imported first,
    so that their classes register with Keras."""
    if trust_code:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception as exc:
                raise ConversionError(
                    f"the custom objects' module {module!r} cannot be imported here: {type(exc).__name__}: {exc}",
                    hint="install it, or put it on PYTHONPATH, in the environment that packs the model",
                ) from exc
    with quiet():
        import keras

        try:
            return keras.saving.load_model(str(path), compile=False, safe_mode=not trust_code)
        except Exception as exc:
            raise ConversionError(
                f"Keras {keras.__version__} ({keras.backend.backend()} backend) cannot load the model: "
                f"{type(exc).__name__}: {_first_line(exc)}",
                hint="custom layers must be importable here and registered with "
                "@keras.saving.register_keras_serializable" if trust_code else None,
            ) from exc


class LocalEngine:
    """A live ``keras.Model`` in this process, with whatever backend this process's Keras has."""

    def __init__(self, model: Any) -> None:
        self.model = model
        import keras

        self.backend = str(keras.backend.backend())
        self.keras_version = str(keras.__version__)

    def describe(self) -> dict[str, Any]:
        model = self.model
        try:
            params = int(model.count_params())
        except ValueError as exc:
            raise ConversionError(
                f"the Keras model {model.name!r} is not built yet, so it has no weights to convert.",
                hint="fit it, or call it once on data (model(x)), before packing",
            ) from exc
        structure, inputs = _input_specs(model)
        return {
            "backend": self.backend,
            "keras_version": self.keras_version,
            "estimator": type(model).__name__,
            "name": str(model.name),
            "params": params,
            "structure": structure,
            "inputs": inputs,
            "outputs": _output_specs(model),
            "versions": _versions(self.backend),
        }

    def predict(self, arrays: Mapping[str, np.ndarray], structure: str) -> list[np.ndarray]:
        x = _call_structure(arrays, structure)
        n = len(next(iter(arrays.values())))
        with quiet():
            try:
                out = self.model.predict(x, verbose=0, batch_size=max(1, min(n, _PREDICT_BATCH)))
            except Exception as exc:
                raise InputError(
                    f"the Keras model failed on the input: {type(exc).__name__}: {_first_line(exc)}",
                    hint="pass data shaped like the sample the model was packed with",
                ) from exc
        return [np.asarray(o) for o in _flatten(out, self._output_names())]

    def _output_names(self) -> list[str] | None:
        specs = _output_specs(self.model)
        return [s["name"] for s in specs] if specs else None

    def export(
        self, example: Mapping[str, np.ndarray], structure: str, n_outputs: int, opset: int | None
    ) -> tuple[bytes, list[str]]:
        if self.backend == "torch":
            return _export_torch(self.model, example, structure, n_outputs, opset)
        if self.backend == "tensorflow":
            return _export_tensorflow(self.model, example, structure, n_outputs, opset)
        raise ConversionError(f"no ONNX export from the Keras {self.backend!r} backend in this process.")

    def close(self) -> None:
        pass


def _versions(backend: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = {"torch": ("torch", "onnxscript"), "tensorflow": ("tensorflow", "tf2onnx")}.get(backend, (backend,))
    out = {"keras": version("keras")}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _input_specs(model: Any) -> tuple[str | None, list[dict[str, Any]] | None]:
    """How the model is called (single / list / dict) and its inputs; (None, None) when it does not say."""
    try:
        tensors = list(model.inputs)
    except (AttributeError, ValueError, TypeError):
        return None, None
    if not tensors:
        return None, None
    try:
        struct_ = model.input
    except (AttributeError, ValueError):
        struct_ = tensors[0] if len(tensors) == 1 else tensors
    if isinstance(struct_, Mapping):
        items = [(str(k), v) for k, v in struct_.items()]
        structure = "dict"
    elif isinstance(struct_, (list, tuple)):
        items = [(str(t.name), t) for t in struct_]
        structure = "list"
    else:
        items = [(str(struct_.name), struct_)]
        structure = "single"
    specs = []
    for name, t in items:
        shape = [None, *[None if d is None else int(d) for d in tuple(t.shape)[1:]]]
        specs.append({"name": name, "dtype": str(t.dtype), "shape": shape})
    return structure, specs


def _output_specs(model: Any) -> list[dict[str, Any]] | None:
    """Name, shape and the activation of the layer making each output; None when the model does not say."""
    try:
        outputs = list(model.outputs)
    except (AttributeError, ValueError, TypeError):
        return None
    if not outputs:
        return None
    names: list[str] | None = None
    try:
        given = list(model.output_names)
        names = [str(n) for n in given] if len(given) == len(outputs) else None
    except (AttributeError, TypeError):
        names = None
    layers = _producers(model, outputs)
    if names is None:
        names = [layer.name if layer is not None else f"output_{i}" for i, layer in enumerate(layers)]
    if len(set(names)) != len(names):
        names = [f"{n}_{i}" for i, n in enumerate(names)]
    specs = []
    for name, t, layer in zip(names, outputs, layers):
        shape = [None, *[None if d is None else int(d) for d in tuple(t.shape)[1:]]]
        specs.append({"name": name, "shape": shape, "dtype": str(t.dtype), "activation": _activation(layer)})
    return specs


def _producers(model: Any, outputs: list[Any]) -> list[Any]:
    """The layer whose output each output tensor is (None where that cannot be told)."""
    found: list[Any] = [None] * len(outputs)
    for layer in reversed(list(getattr(model, "layers", []))):
        try:
            produced = layer.output
        except (AttributeError, ValueError, RuntimeError):  # a layer used more than once
            continue
        flat = produced if isinstance(produced, (list, tuple)) else [produced]
        for i, t in enumerate(outputs):
            if found[i] is None and any(p is t for p in flat):
                found[i] = layer
    return found


def _activation(layer: Any) -> str | None:
    if layer is None:
        return None
    if type(layer).__name__ == "Softmax":
        return "softmax"
    fn = getattr(layer, "activation", None)
    if fn is None:
        return "linear" if type(layer).__name__ in ("Dense", "EinsumDense", "Conv1D", "Conv2D") else None
    if isinstance(fn, str):
        return fn
    return str(getattr(fn, "__name__", type(fn).__name__))


def _call_structure(arrays: Mapping[str, np.ndarray], structure: str) -> Any:
    values = list(arrays.values())
    if structure == "dict":
        return dict(arrays)
    if structure == "list":
        return values
    return values[0]


def _flatten(out: Any, names: Sequence[str] | None) -> list[Any]:
    if isinstance(out, Mapping):
        keys = [n for n in names if n in out] if names and set(names) <= set(out) else list(out)
        return [out[k] for k in keys]
    if isinstance(out, (list, tuple)):
        return list(out)
    return [out]


def _first_line(exc: BaseException) -> str:
    """The first line of an error; Keras's that end in a colon ("... Example error message for
    object <Dense ...>:") go on with the reason on the next one, which is kept too."""
    lines = [t.strip() for t in str(exc).strip().splitlines() if t.strip()]
    if not lines:
        return type(exc).__name__
    return f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def _export_torch(
    model: Any, example: Mapping[str, np.ndarray], structure: str, n_outputs: int, opset: int | None
) -> tuple[bytes, list[str]]:
    import torch

    names = list(example)
    output_names = _output_names_of(model)

    class KerasCall(torch.nn.Module):
        """The Keras model called the way Keras calls it, in inference mode, outputs as a flat tuple."""

        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, *args: Any) -> tuple[Any, ...]:
            x = _call_structure(dict(zip(names, args)), structure)
            return tuple(_flatten(self.net(x, training=False), output_names))

    wrapper = KerasCall(model).eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in names)
    batch = torch.export.Dim("batch")
    free = _free_dimensions(model, example)

    def export(dims: dict[str, list[int]]) -> Any:
        dynamic = (tuple({0: batch, **{i: torch.export.Dim(f"{_dim_name(n)}_{i}") for i in dims.get(n, [])}}
                         for n in names),)
        return torch.onnx.export(
            wrapper,
            args,
            dynamo=True,
            verbose=False,
            input_names=[f"mp_in_{i}" for i in range(len(names))],
            output_names=[f"mp_out_{j}" for j in range(n_outputs)],
            opset_version=opset,
            dynamic_shapes=dynamic,
            external_data=False,
            optimize=True,
        )

    notes = ["exported under the Keras PyTorch backend with torch.onnx.export(dynamo=True)"]
    with quiet():
        try:
            try:
                program = export(free)
            except Exception:
                if not free:
                    raise
                # the model's free sizes (a sequence length) cannot stay free through torch.export: the
                # sample's sizes are kept, and the caller decides whether another route does better
                program = export({})
        except Exception as exc:
            raise ConversionError(
                f"torch.onnx.export could not export the Keras model (PyTorch backend): {type(exc).__name__}: "
                f"{_first_line(exc)}"
            ) from exc
    if program is None:
        raise ConversionError("torch.onnx.export returned no ONNX program.")
    return program.model_proto.SerializeToString(), notes


def _free_dimensions(model: Any, example: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    """Per input, the dimensions after the batch that the model leaves free (None in its Input)."""
    _, specs = _input_specs(model)
    out: dict[str, list[int]] = {}
    for spec in specs or []:
        arr = example.get(spec["name"])
        if arr is None:
            continue
        # torch.export specialises sizes 0 and 1: those stay fixed
        free = [i for i, d in enumerate(spec["shape"]) if i > 0 and d is None and i < arr.ndim and arr.shape[i] > 1]
        if free:
            out[spec["name"]] = free
    return out


def _dim_name(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name) or "input"


def _output_names_of(model: Any) -> list[str] | None:
    specs = _output_specs(model)
    return [s["name"] for s in specs] if specs else None


def _export_tensorflow(
    model: Any, example: Mapping[str, np.ndarray], structure: str, n_outputs: int, opset: int | None
) -> tuple[bytes, list[str]]:
    import tensorflow as tf

    from modelport.convert.tensorflow import saved_model_to_onnx

    declared = {d["name"]: d["shape"] for d in (_input_specs(model)[1] or [])}
    specs = [tf.TensorSpec(declared.get(n) or [None, *a.shape[1:]], tf.as_dtype(a.dtype), name=n)
             for n, a in example.items()]
    signature: Any
    if structure == "dict":
        signature = [dict(zip(example, specs))]
    elif structure == "list":
        signature = [specs]
    else:
        signature = specs
    with tempfile.TemporaryDirectory(prefix="modelport-keras-") as tmp, quiet():
        path = Path(tmp) / "saved_model"
        try:
            model.export(str(path), format="tf_saved_model", verbose=False, input_signature=signature)
        except Exception as exc:
            raise ConversionError(
                f"Keras could not export the model as a TensorFlow SavedModel: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc
        onx, inputs, outputs = saved_model_to_onnx(path, signature="serving_default", opset=opset)

    # the serving signature names inputs like the model; outputs are output_0 .. in call order
    mapping = {}
    for i, name in enumerate(example):
        source = name if name in inputs else (inputs[i] if len(inputs) == len(example) else None)
        if source is None:
            raise ConversionError(f"the SavedModel Keras wrote has inputs {inputs}; expected {list(example)}.")
        mapping[source] = f"mp_in_{i}"
    ordered = sorted(outputs, key=lambda o: int(o.rsplit("_", 1)[-1]) if o.rsplit("_", 1)[-1].isdigit() else 0)
    if len(ordered) != n_outputs:
        raise ConversionError(f"the SavedModel Keras wrote has {len(ordered)} outputs; the model has {n_outputs}.")
    mapping.update({o: f"mp_out_{j}" for j, o in enumerate(ordered)})
    rename_safely(onx, mapping)
    return onx.SerializeToString(), [
        "exported under the Keras TensorFlow backend as a SavedModel and converted by tf2onnx"
    ]


# ---------------------------------------------------------------------- in a worker process
def write_message(fh: IO[bytes], header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> None:
    payload = dict(arrays or {})
    payload[_HEADER] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    blob = npz.dumps(payload)
    fh.write(struct.pack(">Q", len(blob)))
    fh.write(blob)
    fh.flush()


def read_message(fh: IO[bytes], *, origin: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    head = fh.read(8)
    if len(head) < 8:
        return None
    (size,) = struct.unpack(">Q", head)
    blob = fh.read(size)
    if len(blob) != size:
        return None
    arrays = npz.loads(blob, origin=origin)
    header = json.loads(arrays.pop(_HEADER).tobytes().decode())
    return header, arrays


class _Worker:
    """One child process per backend, shared by every model loaded under that backend; it stops
    when the last of them is closed."""

    _shared: dict[str, _Worker] = {}
    _shared_lock = threading.Lock()

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.users = 0
        env = dict(os.environ)
        env["KERAS_BACKEND"] = backend
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # the child finds what this process finds (modelport itself, and trusted custom layers' modules)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [*sys.path, env.get("PYTHONPATH", "")] if p)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker; closed by _stop)
        self._lock = threading.Lock()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "modelport.convert._keras_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                env=env,
            )
        except OSError as exc:
            raise ConversionError(f"cannot start a Python worker for the Keras {backend} backend: {exc}") from exc
        self._finalizer = weakref.finalize(self, _stop, self._proc, self._log)

    @classmethod
    def acquire(cls, backend: str) -> _Worker:
        with cls._shared_lock:
            worker = cls._shared.get(backend)
            if worker is None or not worker.alive:
                worker = cls._shared[backend] = cls(backend)
            worker.users += 1
            return worker

    def release(self) -> None:
        with self._shared_lock:
            self.users -= 1
            if self.users > 0:
                return
            if self._shared.get(self.backend) is self:
                del self._shared[self.backend]
        with contextlib.suppress(Exception), self._lock:
            assert self._proc.stdin is not None
            write_message(self._proc.stdin, {"op": "close"})
        self._finalizer()

    @property
    def alive(self) -> bool:
        return self._finalizer.alive and self._proc.poll() is None

    def ask(
        self, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        with self._lock:
            if not self.alive:
                raise ConversionError(f"the Keras {self.backend} worker process has stopped.{self._tail()}")
            assert self._proc.stdin is not None and self._proc.stdout is not None
            try:
                write_message(self._proc.stdin, header, arrays)
                reply = read_message(self._proc.stdout, origin=f"<keras {self.backend} worker>")
            except OSError:  # a broken pipe: the child is gone
                reply = None
        if reply is None:
            tail = self._tail()
            self._finalizer()
            raise ConversionError(
                f"the Keras {self.backend} worker process ended while answering {header.get('op')!r}.{tail}",
                hint="it may have run out of memory; the lines above are its last words",
            )
        answer, out = reply
        if "error" in answer:
            err = answer["error"]
            cls = getattr(errors, str(err.get("type")), None)
            if not (isinstance(cls, type) and issubclass(cls, errors.ModelportError)):
                cls = ConversionError
            raise cls(str(err.get("message")), hint=err.get("hint"))
        return answer, out

    def _tail(self, lines: int = 8) -> str:
        try:
            self._log.seek(0)
            text = self._log.read().decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        kept = [t for t in text if t.strip()][-lines:]
        return ("\n  " + "\n  ".join(kept)) if kept else ""


class WorkerEngine:
    """A ``.keras`` file loaded in a child process under ``backend`` (see the module docstring)."""

    def __init__(self, path: Path, *, backend: str, trust_code: bool, modules: Sequence[str] = ()) -> None:
        if backend not in BACKENDS:
            raise ConversionError(f"no worker for the Keras backend {backend!r}; known: {', '.join(BACKENDS)}.")
        self.backend = backend
        worker = _Worker.acquire(backend)
        try:
            answer, _ = worker.ask(
                {"op": "load", "path": str(path), "trust_code": bool(trust_code), "modules": list(modules)}
            )
        except BaseException:
            worker.release()
            raise
        self._worker = worker
        self._handle = int(answer["handle"])
        self._description = answer["description"]
        self._finalizer = weakref.finalize(self, _unload, worker, self._handle)

    def describe(self) -> dict[str, Any]:
        return dict(self._description)

    def predict(self, arrays: Mapping[str, np.ndarray], structure: str) -> list[np.ndarray]:
        keys = list(arrays)
        header, out = self._worker.ask(
            {"op": "predict", "handle": self._handle, "structure": structure, "names": keys},
            {f"in_{i}": np.asarray(arrays[k]) for i, k in enumerate(keys)},
        )
        return [out[f"out_{j}"] for j in range(int(header["outputs"]))]

    def export(
        self, example: Mapping[str, np.ndarray], structure: str, n_outputs: int, opset: int | None
    ) -> tuple[bytes, list[str]]:
        keys = list(example)
        header, out = self._worker.ask(
            {"op": "export", "handle": self._handle, "structure": structure, "names": keys, "outputs": n_outputs,
             "opset": opset},
            {f"in_{i}": np.asarray(example[k]) for i, k in enumerate(keys)},
        )
        return out["onnx"].tobytes(), list(header.get("notes", []))

    def close(self) -> None:
        self._finalizer()


def _unload(worker: _Worker, handle: int) -> None:
    with contextlib.suppress(Exception):
        if worker.alive:
            worker.ask({"op": "unload", "handle": handle})
    worker.release()


def _stop(proc: subprocess.Popen[bytes], log: Any) -> None:
    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with contextlib.suppress(Exception):
        log.close()
