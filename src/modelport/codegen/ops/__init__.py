"""The operator table: (domain, op_type) -> emitter. One module per operator family registers here.

An emitter takes the lowering context, the ONNX node and its input values, and returns its
output values (:class:`modelport.codegen.ir.Val`). Registering an operator twice raises, so a
family module cannot silently shadow another.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import onnx

from modelport.codegen.ir import Emitter
from modelport.errors import CodegenError

_FAMILIES = ("trees", "linear", "svm", "preprocessing", "nn", "elementwise")
_TABLE: dict[tuple[str, str], Emitter] = {}
_loaded = False


def register(domain: str, *op_types: str) -> Callable[[Emitter], Emitter]:
    """Decorator: register an emitter for ``op_types`` of ``domain`` ("" is the default ONNX domain)."""

    def wrap(fn: Emitter) -> Emitter:
        for op in op_types:
            key = (domain, op)
            if key in _TABLE:
                raise CodegenError(f"operator {domain or 'ai.onnx'}.{op} has two code emitters.")
            _TABLE[key] = fn
        return fn

    return wrap


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for fam in _FAMILIES:
            importlib.import_module(f"modelport.codegen.ops.{fam}")


def supported() -> list[str]:
    """Every operator that can be compiled, as ``domain.op``."""
    _load()
    return sorted(f"{d or 'ai.onnx'}.{o}" for d, o in _TABLE)


def emitter_for(node: onnx.NodeProto) -> Emitter:
    _load()
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    fn = _TABLE.get((domain, node.op_type))
    if fn is None:
        raise CodegenError(
            f"operator {node.domain or 'ai.onnx'}.{node.op_type} (node {node.name or '(unnamed)'!r}) "
            "cannot be compiled to standalone code.",
            hint=f"supported operators: {', '.join(o.split('.')[-1] for o in supported())}",
        )
    return fn
