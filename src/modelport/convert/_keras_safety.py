"""Reading a ``.keras`` file without trusting it: the zip, its layout, and what its config would run.

A ``.keras`` file is a zip of ``metadata.json``, ``config.json`` (the model's architecture as
nested ``{"module", "class_name", "config", "registered_name"}`` objects), the weights
(``model.weights.h5`` or ``.npz``) and ``assets/``. It is read with the same entry-name, link and
size rules as a bundle (:func:`modelport.bundle.archive.read_mpk_bytes`), and only the layout Keras
writes is accepted. Before Keras sees the config, every object in it is checked: only Keras's own
classes and functions load by default. Anything that would run or import code chosen by the
file's author (a ``Lambda`` layer's Python bytecode, a custom layer, a custom function) or read a
file outside the archive (``TFSMLayer``, a lookup layer with a vocabulary path) is refused with
the layer named, unless the caller trusts the file (``trust_code=True``, ``--trust-code``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.bundle.archive import read_mpk_bytes
from modelport.errors import ConversionError, IntegrityError

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = ("model.weights.h5", "model.weights.npz")
ASSETS = "assets/"
#: serialized values, not classes: tensors, arrays, slices
_DATA_CLASSES = frozenset(
    {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__slice__", "__ellipsis__"}
)
#: built-in layers that read a path named in the config (outside the archive)
_PATH_LAYERS = frozenset({"TFSMLayer"})
_VOCABULARY_LAYERS = frozenset({"StringLookup", "IntegerLookup", "TextVectorization"})
_TRUST_HINT = (
    "if you trust the file and its author, pass --trust-code (trust_code=True); custom classes must then be "
    "importable here (their module on the Python path)"
)


@dataclass(frozen=True)
class Finding:
    """One thing in a config that Keras would not load safely."""

    layer: str | None
    what: str
    #: the Python module a custom object comes from, where the config names one
    module: str | None = None

    def describe(self) -> str:
        where = f"layer {self.layer!r}" if self.layer else "the model"
        return f"{where}: {self.what}"


@dataclass
class KerasArchive:
    """The checked entries of a ``.keras`` file and what its config holds."""

    origin: str
    files: dict[str, bytes]
    config: dict[str, Any]
    metadata: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)

    @property
    def keras_version(self) -> str:
        return str(self.metadata.get("keras_version", "unknown"))

    @property
    def custom_modules(self) -> list[str]:
        """Modules the trusted custom objects come from (imported before loading, so they register)."""
        return sorted({f.module for f in self.findings if f.module})


def read_archive(path: Path) -> KerasArchive:
    """Read and check a ``.keras`` file (see the module docstring); nothing in it is run."""
    origin = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"{origin}: cannot read the .keras file ({exc.strerror or exc}).") from exc
    try:
        files = read_mpk_bytes(data, origin=origin, check_table=False)  # no manifest: the layout is checked below
    except IntegrityError as exc:
        raise ConversionError(
            f"refusing the .keras file: {exc.message}",
            hint="a .keras file is the zip keras.Model.save('model.keras') writes; save the model again",
        ) from exc
    unexpected = [n for n in files if n not in (CONFIG, METADATA, *WEIGHTS) and not n.startswith(ASSETS)]
    if unexpected:
        raise ConversionError(
            f"{origin}: entry {unexpected[0]!r} is not part of a Keras model archive "
            f"(which holds {CONFIG}, {METADATA}, model.weights.h5 or .npz and {ASSETS}).",
            hint="save the model again with keras.Model.save('model.keras')",
        )
    if CONFIG not in files:
        raise ConversionError(f"{origin}: a zip without {CONFIG}; not a Keras 3 .keras file.",
                              hint="save the model with keras.Model.save('model.keras')")
    config = _json(files[CONFIG], origin, CONFIG)
    metadata = _json(files[METADATA], origin, METADATA) if METADATA in files else {}
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ConversionError(f"{origin}: {CONFIG} does not describe a Keras model (no class_name).")
    if not any(w in files for w in WEIGHTS):
        raise ConversionError(f"{origin}: the archive holds no weights (model.weights.h5); save the model again.")
    archive = KerasArchive(origin, files, config, metadata if isinstance(metadata, dict) else {})
    try:
        archive.findings = list(_findings(config))
    except RecursionError as exc:
        raise ConversionError(f"{origin}: {CONFIG} nests deeper than any Keras model does; refusing it.") from exc
    return archive


def refuse_untrusted(archive: KerasArchive) -> None:
    """Raise naming the first layer that would run or import code (or read outside the archive)."""
    if not archive.findings:
        return
    first = archive.findings[0]
    more = len(archive.findings) - 1
    also = f" (and {more} more: {'; '.join(f.describe() for f in archive.findings[1:4])})" if more else ""
    raise ConversionError(
        f"{archive.origin}: {first.describe()}{also}. Loading it would run code chosen by whoever wrote the file, "
        "so modelport does not load it by default.",
        hint=_TRUST_HINT,
    )


def _json(blob: bytes, origin: str, name: str) -> Any:
    try:
        return json.loads(blob)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{origin}: {name} in the archive is not valid JSON ({exc}).") from exc
    except RecursionError as exc:
        raise ConversionError(f"{origin}: {name} in the archive nests too deeply to be a Keras model.") from exc


def _is_keras(module: Any) -> bool:
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def _findings(config: Any) -> Iterator[Finding]:
    # compile_config (optimizer, loss, metrics) is never loaded: models load with compile=False
    yield from _walk(config, None, skip=("compile_config",))


def _walk(obj: Any, layer: str | None, *, skip: tuple[str, ...] = ()) -> Iterator[Finding]:
    if isinstance(obj, list):
        for item in obj:
            yield from _walk(item, layer)
        return
    if not isinstance(obj, dict):
        return
    cls = obj.get("class_name")
    if isinstance(cls, str):
        if cls in _DATA_CLASSES:
            return
        inner = obj.get("config")
        module = obj.get("module")
        registered = obj.get("registered_name")
        name = inner.get("name") if isinstance(inner, dict) and isinstance(inner.get("name"), str) else None
        if cls == "__lambda__":
            yield Finding(layer, "a Python lambda (bytecode) that Keras would run")
            return
        if cls == "function":
            fn = inner if isinstance(inner, str) else repr(inner)
            builtin = (module == "builtins" or _is_keras(module)) and registered in (None, "function", fn)
            if not builtin:
                yield Finding(layer, f"custom function {registered or fn!r}", _module(module))
            return
        if cls == "__typespec__":
            yield Finding(layer, f"a TensorFlow type spec {obj.get('spec_name')!r}", _module(module))
            return
        here = name if name is not None else layer
        if not (_is_keras(module) and registered in (None, cls)):
            shown = f"{registered!r}" if registered and registered != cls else f"{cls!r}"
            yield Finding(here, f"custom {'layer' if name else 'object'} {shown} (class {cls}, "
                                f"module {module!r})", _module(module))
            return
        if cls == "Lambda":
            code = "Python bytecode" if "__lambda__" in json.dumps(inner) else "a Python function"
            yield Finding(here, f"a Lambda layer (its function is {code}, which Keras would run)")
            return
        if cls in _PATH_LAYERS:
            yield Finding(here, f"{cls} loads a model from a path outside the archive")
        elif cls in _VOCABULARY_LAYERS and isinstance(inner, dict) and isinstance(inner.get("vocabulary"), str):
            yield Finding(here, f"{cls} reads its vocabulary from the path {inner['vocabulary']!r}")
        layer = here
        obj = {k: v for k, v in obj.items() if k not in ("module", "class_name", "registered_name")}
    for key, value in obj.items():
        if key in skip:
            continue
        yield from _walk(value, layer)


def _module(module: Any) -> str | None:
    """A custom object's module, where it names an importable one (not Keras, builtins or __main__)."""
    if not isinstance(module, str) or not module or module in ("builtins", "__main__") or _is_keras(module):
        return None
    return module
