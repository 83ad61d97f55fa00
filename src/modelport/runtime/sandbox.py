"""The one factory of ONNX Runtime sessions: every session modelport creates (serving, scoring,
verification, and the converters' own load checks) comes from :func:`create_session`.

A graph reaches ONNX Runtime only after ``bundle.graph.check`` refused external data and
non-standard operators; the session is built so that it could not misbehave even if that check
missed something (defence in depth):

- **No file is reachable as external data.** A session built from bytes resolves a tensor's
  external ``location`` against the process's working directory. Every session here resolves it
  against a private, empty directory instead (``session.model_external_initializers_file_folder_path``;
  ONNX Runtime also refuses absolute locations and locations that leave that directory), so no
  location names a file that exists. ONNX Runtime refuses in-memory addresses
  (``*/_ORT_MEM_ADDR_/*``) in a model on its own.
- **Only the ONNX format is parsed** (``session.load_model_format = ONNX``): bytes that happen to be
  an ORT-format flatbuffer are refused, not handed to a second parser.
- **No local function can be replaced by a kernel.** A model-local function in a domain ONNX Runtime
  has kernels for, or named like one of its contrib kernels, is refused here too.
- Callers cannot switch these entries off through ``session_config``.
"""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from modelport.errors import InputError, IntegrityError, ModelportError

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

EXTERNAL_DATA_FOLDER = "session.model_external_initializers_file_folder_path"
LOAD_FORMAT = "session.load_model_format"
#: session entries set by this module that no caller may override
PINNED = frozenset({EXTERNAL_DATA_FOLDER, LOAD_FORMAT, "session.use_ort_model_bytes_directly",
                    "session.use_ort_model_bytes_for_initializers"})

_LOCK = threading.Lock()
_EMPTY_DIR: str | None = None
_KERNELS: tuple[frozenset[str], frozenset[str]] | None = None


def empty_directory() -> str:
    """A private (0700), empty directory of this process: where external data would be looked for."""
    global _EMPTY_DIR
    with _LOCK:
        if _EMPTY_DIR is None or not os.path.isdir(_EMPTY_DIR):
            try:
                path = tempfile.mkdtemp(prefix="modelport-no-external-data-")
            except OSError:
                # no writable temporary directory: a path that cannot exist serves as well (ONNX Runtime
                # then finds no file there either)
                path = os.path.join(os.sep, "proc", "self", "modelport-no-external-data")
            else:
                creator = os.getpid()
                atexit.register(_remove, path, creator)
            _EMPTY_DIR = path
        return _EMPTY_DIR


def _remove(path: str, creator: int) -> None:
    if os.getpid() == creator:  # a forked child must not remove its parent's directory
        try:
            os.rmdir(path)
        except OSError:
            pass


def session_options(*, intra_op_threads: int | None = None, inter_op_threads: int | None = None,
                    session_config: Mapping[str, str] | None = None) -> ort.SessionOptions:
    """SessionOptions with modelport's pinned safety entries, after the caller's own entries."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    if inter_op_threads is not None:
        options.inter_op_num_threads = inter_op_threads
    for key, value in (session_config or {}).items():
        if key in PINNED:
            raise InputError(
                f"the ONNX Runtime session entry {key!r} is set by modelport (it keeps bundles from reading "
                "the host's files) and cannot be overridden.",
                hint=f"leave {key!r} out of session_config",
            )
        options.add_session_config_entry(key, value)
    options.add_session_config_entry(EXTERNAL_DATA_FOLDER, empty_directory())
    options.add_session_config_entry(LOAD_FORMAT, "ONNX")
    return options


def check_functions(model: onnx.ModelProto, *, origin: str) -> None:
    """Refuse model-local functions that ONNX Runtime could replace by a kernel of its own: in a domain
    reserved for runtimes (``bundle.graph.reserved_domain``) or one this ONNX Runtime has operators in,
    or named like one of its contrib operators."""
    if not len(model.functions):
        return
    from modelport.bundle.graph import reserved_domain

    domains, contrib = _kernels()
    for f in model.functions:
        if reserved_domain(f.domain) or f.domain in domains or f.name in contrib:
            raise IntegrityError(
                f"{origin}: model-local function {f.name!r} (domain {f.domain!r}) has the domain or the name of an "
                "ONNX Runtime kernel, which may run instead of the function's body.",
                hint="rename the function and put it in a domain of its own, e.g. 'com.example.functions'",
            )


def _kernels() -> tuple[frozenset[str], frozenset[str]]:
    """(domains ONNX Runtime has operators in, names of its contrib operators)."""
    global _KERNELS
    if _KERNELS is None:
        from onnxruntime.capi import onnxruntime_pybind11_state as capi

        schemas = capi.get_all_operator_schema()
        domains = frozenset({s.domain for s in schemas} | {"", "ai.onnx", "ai.onnx.ml"})
        contrib = frozenset(s.name for s in schemas if s.domain not in ("", "ai.onnx", "ai.onnx.ml"))
        _KERNELS = (domains, contrib)
    return _KERNELS


def create_session(
    model_bytes: bytes,
    *,
    origin: str,
    model: onnx.ModelProto | None = None,
    providers: list[str] | None = None,
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
    session_config: Mapping[str, str] | None = None,
    error: type[ModelportError] = ModelportError,
    hint: str | None = "the bundle may need a newer onnxruntime: pip install -U onnxruntime",
) -> ort.InferenceSession:
    """An ONNX Runtime session for ``model_bytes`` that cannot read the host's files.

    ``model``: the parsed graph, when the caller has it, for the local-function check. ONNX Runtime's
    own errors become ``error`` (ModelportError by default; converters pass ConversionError).
    """
    import onnxruntime as ort

    if model is not None:
        check_functions(model, origin=origin)
    options = session_options(intra_op_threads=intra_op_threads, inter_op_threads=inter_op_threads,
                              session_config=session_config)
    try:
        return ort.InferenceSession(model_bytes, options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise error(f"{origin}: ONNX Runtime {ort.__version__} cannot load this graph: {_first_line(exc)}",
                    hint=hint) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["PINNED", "check_functions", "create_session", "empty_directory", "session_options"]
