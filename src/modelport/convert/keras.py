"""Keras 3 models (in memory, or ``.keras`` files) -> ONNX, by the route that reproduces them.

Two export routes are known to be right, and are tried in order until one matches the model on
the sample (parity on one row, the sample, and a larger batch of fresh values):

* **PyTorch**: the model under the Keras ``torch`` backend, wrapped in a small ``nn.Module`` and
  exported with ``torch.onnx.export(..., dynamo=True)``. Needs no TensorFlow.
* **TensorFlow**: the model under the Keras ``tensorflow`` backend, exported as a SavedModel and
  converted by tf2onnx (:mod:`modelport.convert.tensorflow`).

A ``.keras`` file tries PyTorch first, then TensorFlow. A model in memory tries its own backend
first (no copy, and its own ``predict`` is the reference), then the other through a copy saved
to a temporary ``.keras`` file. Keras fixes its backend when it is first imported, so a backend
this process does not have runs in a worker process (:mod:`._keras_engine`); modelport never
sets ``KERAS_BACKEND`` in its caller's process. Keras's own ``model.export(format="onnx")`` and
``tf2onnx.convert.from_function`` are never used: they turn an adapted ``Normalization`` layer's
statistics into graph inputs.

A ``.keras`` file is read like an untrusted bundle (entry names, links, sizes; see
:mod:`._keras_safety`) and loads in Keras's safe mode, never compiled; Lambda layers and custom
objects are refused, with the layer named, unless ``trust_code=True`` (``--trust-code``).

Options (``modelport.pack(model, x, options={...})``):

* ``task``: ``"auto"`` (default: a softmax or one-column sigmoid output is a classifier, another
  single float output a regressor, several outputs stay tensors), ``"classification"``,
  ``"regression"`` or ``"tensor"``;
* ``classes``: class labels, in score order (default ``0 .. C-1``);
* ``scores``: whether the classifier's output holds ``"probabilities"`` (default after a softmax or
  sigmoid) or ``"logits"`` (default otherwise);
* ``output_names``: names for the model's outputs when they stay tensors (default: Keras's);
* ``columns``: column names for a single 2-D input (default: the DataFrame's, or ``f0 ..``);
  ``tabular=False`` keeps such an input a plain tensor;
* ``backend``: ``"auto"`` (default), ``"torch"`` or ``"tensorflow"``: try only that route;
* ``opset``: the ONNX opset to export (default: the exporter's).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bundle.archive import write_mpk_bytes
from modelport.convert._keras_engine import BACKENDS, LocalEngine, WorkerEngine, backend_here, quiet
from modelport.convert._keras_io import (
    Head,
    Inputs,
    NetworkConverter,
    Packed,
    RouteMismatch,
    Tensor,
    check_parity,
    finish,
)
from modelport.convert._keras_safety import KerasArchive, read_archive, refuse_untrusted
from modelport.convert.base import Converted
from modelport.errors import ConversionError, InputError, MissingDependencyError, UnsupportedModelError

_OPTIONS = frozenset({"task", "classes", "scores", "output_names", "columns", "tabular", "backend", "opset"})
_EXAMPLE_ROWS = 16
#: what each route needs installed: (import name, distribution)
_NEEDS = {
    "torch": (("keras", "keras"), ("torch", "torch"), ("onnxscript", "onnxscript")),
    "tensorflow": (("keras", "keras"), ("tensorflow", "tensorflow"), ("tf2onnx", "tf2onnx")),
}
_EXTRA = {"torch": "keras", "tensorflow": "tensorflow"}


class KerasFile:
    """A ``.keras`` file, read and checked (nothing in it has run), that loads under any backend.

    ``KerasFile.read(path)`` refuses Lambda layers and custom objects unless ``trust_code=True``.
    The model is loaded when first needed: in this process when its Keras already has the backend
    asked for, else in a worker process (closed with :meth:`close`, or when this object goes).
    """

    def __init__(self, archive: KerasArchive, *, trust_code: bool = False) -> None:
        if not trust_code:
            refuse_untrusted(archive)
        self.archive = archive
        self.trust_code = trust_code
        self._dirs: list[Path] = []
        self._engines: dict[str, Any] = {}
        self._finalizer = weakref.finalize(self, _cleanup, self._engines, self._dirs)

    @classmethod
    def read(cls, path: str | os.PathLike[str], *, trust_code: bool = False) -> KerasFile:
        return cls(read_archive(Path(path)), trust_code=trust_code)

    @property
    def origin(self) -> str:
        return self.archive.origin

    @property
    def keras_version(self) -> str:
        return self.archive.keras_version

    def __repr__(self) -> str:
        return f"KerasFile({self.origin!r}, keras {self.keras_version})"

    def path(self) -> Path:
        """The checked archive, rewritten to a private temporary file for Keras to load."""
        if not self._dirs:
            self._dirs.append(Path(tempfile.mkdtemp(prefix="modelport-keras-")))
            (self._dirs[0] / "model.keras").write_bytes(write_mpk_bytes(self.archive.files))
        return self._dirs[0] / "model.keras"

    def engine(self, backend: str) -> Any:
        """The model loaded under ``backend`` (``torch`` or ``tensorflow``), here or in a worker."""
        if backend not in self._engines:
            _require_route(backend)
            if backend_here() == backend:
                model = _load_here(self.path(), self.trust_code, self.archive.custom_modules)
                self._engines[backend] = LocalEngine(model)
            else:
                self._engines[backend] = WorkerEngine(
                    self.path(), backend=backend, trust_code=self.trust_code, modules=self.archive.custom_modules
                )
        return self._engines[backend]

    def close(self) -> None:
        """Stop the worker processes and remove the temporary copy."""
        self._finalizer()


def _cleanup(engines: dict[str, Any], dirs: list[Path]) -> None:
    for engine in list(engines.values()):
        try:
            engine.close()
        except Exception:  # a worker that is already gone
            pass
    engines.clear()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    dirs.clear()


def _load_here(path: Path, trust_code: bool, modules: list[str]) -> Any:
    from modelport.convert._keras_engine import load_file

    return load_file(path, trust_code=trust_code, modules=modules)


def _require_route(backend: str) -> None:
    missing = [dist for mod, dist in _NEEDS[backend] if importlib.util.find_spec(mod) is None]
    if missing:
        raise MissingDependencyError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} needed to export Keras models through "
            f"the {backend} backend but {'is' if len(missing) == 1 else 'are'} not installed.",
            hint=f"run: pip install 'modelport[{_EXTRA[backend]}]'",
        )


class KerasConverter(NetworkConverter):
    name = "keras"
    framework = "keras"
    modules = ("keras", "modelport.convert.keras")

    # ------------------------------------------------------------------ conversion
    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted:
        opts = _options(options)
        if isinstance(model, KerasFile):
            routes = [(b, _file_route(model, b)) for b in _order(None, opts["backend"])]
        else:
            _check_model(model)
            here = LocalEngine(model)
            routes = [(b, _memory_route(model, here, b)) for b in _order(here.backend, opts["backend"])]
        failures: list[str] = []
        hints: list[str] = []
        missing: list[MissingDependencyError] = []
        #: a graph that fixed a dimension the model leaves free: used only if no route keeps it free
        narrower: tuple[Converted, Packed, list[str]] | None = None
        for backend, make in routes:
            try:
                engine, reference = make()
            except MissingDependencyError as exc:
                missing.append(exc)
                failures.append(f"{backend}: {exc.message}")
                continue
            except ConversionError as exc:
                failures.append(f"{backend}: {exc.message}")
                if exc.hint and exc.hint not in hints:
                    hints.append(exc.hint)
                continue
            try:
                converted, packed = self._route(model, backend, engine, reference, sample, opts)
            except (RouteMismatch, MissingDependencyError) as exc:
                failures.append(f"{backend}: {exc.message}")
                continue
            except ConversionError as exc:
                if isinstance(exc, UnsupportedModelError):
                    raise
                failures.append(f"{backend}: {exc.message}")
                continue
            fixed = _fixed_dimensions(converted, packed.inputs)
            if fixed:
                failures.append(f"{backend}: the graph fixes {fixed}")
                if narrower is None:
                    narrower = (converted, packed, [f"the graph fixes {fixed}: other values are refused."])
                continue
            converted.notes.extend(f"not exported through {f}" for f in failures)
            self.remember(model, packed)
            return converted
        if narrower is not None:
            converted, packed, notes = narrower
            converted.notes.extend(notes)
            self.remember(model, packed)
            return converted
        if missing and len(missing) == len(routes):
            raise MissingDependencyError(
                "no Keras export route is installed: " + "; ".join(failures),
                hint="run: pip install 'modelport[keras]' (PyTorch backend, no TensorFlow needed)",
            )
        raise ConversionError(
            f"no export route reproduces the Keras model: {'; '.join(failures)}.",
            hint="; ".join(hints) if hints else "every layer must be exportable by torch.export (PyTorch backend) "
            "or by tf2onnx (TensorFlow backend); the message says where each route stopped",
        )

    def _route(
        self, model: Any, backend: str, engine: Any, reference: Any, sample: Any, opts: dict[str, Any]
    ) -> tuple[Converted, Packed]:
        desc = engine.describe()
        specs = [Tensor.from_dict(d) for d in desc["inputs"]] if desc.get("inputs") else None
        inputs = Inputs.plan(specs, desc.get("structure"), sample, columns=opts["columns"], tabular=opts["tabular"],
                             where="the Keras model")
        arrays = inputs.arrays(sample)
        n = len(next(iter(arrays.values())))
        if n == 0:
            raise InputError("the sample has no rows; pack needs at least one example input.")
        outputs = _outputs(desc, engine, inputs, arrays, opts["output_names"])
        head = Head.plan(outputs, task=opts["task"], classes=opts["classes"], scores=opts["scores"])
        example = {k: v[:_EXAMPLE_ROWS] for k, v in arrays.items()}
        if n == 1:  # torch.export specialises a batch of one; two rows keep it dynamic
            example = {k: np.concatenate([v, v]) for k, v in example.items()}
        onnx_bytes, export_notes = engine.export(example, inputs.structure, len(outputs), opts["opset"])
        onx = finish(onnx_bytes, inputs, outputs, head)
        worst = check_parity(onx, inputs, head, reference, arrays, f"the {backend} backend")
        versions = desc.get("versions") or {}
        source = {
            "framework": "keras",
            "framework_version": str(desc.get("keras_version")),
            "estimator": str(desc.get("estimator")),
            "converter": "torch.onnx.export(dynamo=True)" if backend == "torch" else "tf2onnx (SavedModel)",
            "converter_version": ", ".join(f"{k} {v}" for k, v in versions.items()),
            "backend": backend,
            # what prepare() needs to ask the model the same question in another session
            "call": {**inputs.to_dict(), **head.to_dict(), "backend": backend,
                     "outputs_raw": [o.to_dict() for o in outputs]},
        }
        notes = [*head.notes, *export_notes,
                 f"checked against Keras ({reference.backend} backend) on batches of 1, {min(n, 64)} and "
                 f"{min(n, 64) * 2 + 3} rows before packing (max abs error {worst:.3g})."]
        columns = inputs.columns
        converted = Converted(
            onnx_model=onx,
            task=head.task,
            columns=columns,
            classes=head.classes,
            source=source,
            # a network has no notion of a missing value: NaN in gives NaN out, never an answer
            nullable={c.name: False for c in columns} if columns is not None else None,
            notes=notes,
        )
        return converted, Packed(inputs, outputs, head, reference)

    def prepare(self, model: Any, bundle: Any) -> None:
        """Learn from ``bundle`` how ``model`` was packed (inputs, head, backend), so that
        :meth:`reference` works in a session that did not pack it (``modelport.verify``)."""
        if self.remembered(model) is not None:
            return
        call = (bundle.manifest.get("source") or {}).get("call")
        if not isinstance(call, Mapping) or "inputs" not in call:
            raise ConversionError(f"{bundle.origin}: the manifest does not record how the Keras model was called.",
                                  hint="pack the model again")
        inputs = Inputs.restore(call, bundle.signature.columns)
        outputs = [Tensor.from_dict(d) for d in call.get("outputs_raw") or []]
        head = Head.restore(call, bundle.classes)
        if isinstance(model, KerasFile):
            engine = model.engine(str(call.get("backend", "torch")))
        else:
            _check_model(model)
            engine = LocalEngine(model)
        self.remember(model, Packed(inputs, outputs, head, engine))


# ---------------------------------------------------------------------- routes
def _order(native: str | None, wanted: str) -> list[str]:
    if wanted != "auto":
        return [wanted]
    if native in BACKENDS:
        return [native, *[b for b in BACKENDS if b != native]]
    return list(BACKENDS)  # PyTorch first: it needs no TensorFlow


def _file_route(kf: KerasFile, backend: str) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        engine = kf.engine(backend)
        return engine, engine

    return make


def _memory_route(model: Any, here: LocalEngine, backend: str) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        if backend == here.backend:
            _require_route(backend)
            return here, here
        _require_route(backend)
        # another backend: a copy of the model through a temporary .keras file, in a worker
        tmp = Path(tempfile.mkdtemp(prefix="modelport-keras-"))
        try:
            path = tmp / "model.keras"
            with quiet():
                try:
                    model.save(str(path))
                except Exception as exc:
                    raise ConversionError(f"saving a copy for the {backend} backend failed: {type(exc).__name__}: "
                                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
            # the caller's own model: its custom objects are the caller's code
            kf = KerasFile.read(path, trust_code=True)
            engine = kf.engine(backend)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _keep_alive[id(engine)] = kf
        weakref.finalize(engine, _keep_alive.pop, id(engine), None)
        return engine, here

    return make


# a worker engine made for an in-memory model keeps its KerasFile (and its temporary copy) alive
_keep_alive: dict[int, KerasFile] = {}


def _fixed_dimensions(converted: Converted, inputs: Inputs) -> str | None:
    """Which free dimensions of the model's inputs (a sequence length, an image size) the exported
    graph has fixed at the sample's sizes, in words; None when it keeps them all free."""
    graph = {vi.name: vi for vi in converted.onnx_model.graph.input}
    fixed = []
    for spec in inputs.specs:
        vi = graph.get(spec.name)
        if vi is None:
            continue
        dims = vi.type.tensor_type.shape.dim
        for i, (want, got) in enumerate(zip(spec.shape, dims)):
            if i > 0 and want is None and got.HasField("dim_value"):
                fixed.append(f"dimension {i} of input {spec.name!r} at {got.dim_value}")
    return ", ".join(fixed) if fixed else None


def _check_model(model: Any) -> None:
    import keras

    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(
            f"modelport converts keras.Model objects (Sequential, functional, subclassed); got {type(model).__name__}.",
            hint="wrap a layer in keras.Sequential([...]) or keras.Model(inputs, outputs)",
        )


def _outputs(
    desc: Mapping[str, Any], engine: Any, inputs: Inputs, arrays: Mapping[str, np.ndarray], names: list[str] | None
) -> list[Tensor]:
    if desc.get("outputs"):
        outputs = [Tensor.from_dict(d) for d in desc["outputs"]]
    else:  # a subclassed model: its outputs are what it returns
        got = engine.predict({k: v[:2] for k, v in arrays.items()}, inputs.structure)
        outputs = [Tensor(f"output_{j}", str(o.dtype), (None, *o.shape[1:])) for j, o in enumerate(got)]
    taken = set(inputs.names)
    if names is not None:
        if len(names) != len(outputs) or len(set(names)) != len(names):
            raise ConversionError(f"output_names needs {len(outputs)} distinct names; got {names!r}.")
        outputs = [Tensor(n, o.dtype, o.shape, o.activation) for n, o in zip(names, outputs)]
    clash = [o.name for o in outputs if o.name in taken]
    if clash:
        outputs = [Tensor(f"{o.name}_out" if o.name in taken else o.name, o.dtype, o.shape, o.activation)
                   for o in outputs]
    return outputs


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ConversionError(
            f"unknown Keras converter option(s): {', '.join(unknown)}; known: {', '.join(sorted(_OPTIONS))}."
        )
    backend = options.get("backend", "auto")
    if backend not in ("auto", *BACKENDS):
        raise ConversionError(f"option backend must be 'auto', 'torch' or 'tensorflow'; got {backend!r}.")
    for key in ("output_names", "columns"):
        v = options.get(key)
        if v is not None and (isinstance(v, str) or not all(isinstance(x, str) and x for x in v)):
            raise ConversionError(f"option {key} must be a list of non-empty strings; got {v!r}.")
    opset = options.get("opset")
    if opset is not None and (not isinstance(opset, int) or isinstance(opset, bool)):
        raise ConversionError(f"option opset must be an integer; got {opset!r}.")
    return {
        "task": options.get("task", "auto"),
        "classes": options.get("classes"),
        "scores": options.get("scores"),
        "output_names": list(options["output_names"]) if options.get("output_names") else None,
        "columns": list(options["columns"]) if options.get("columns") else None,
        "tabular": options.get("tabular"),
        "backend": backend,
        "opset": opset,
    }
