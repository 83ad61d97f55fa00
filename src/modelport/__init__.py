"""modelport: trained models as open, verifiable data.

    >>> import modelport as mp
    >>> bundle = mp.pack(model, X_sample, name="churn")
    >>> bundle.save("churn.mpk")
    >>> b = mp.load("churn.mpk")
    >>> b.predict(X)

Importing modelport loads only its error classes; numpy, onnx and onnxruntime load on first use,
and a training library only when a model of its framework is converted.
"""

from __future__ import annotations as _annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

__version__ = "0.1.0"

from modelport.errors import (
    BundleError,
    CodegenError,
    ConversionError,
    FormatVersionError,
    InputError,
    IntegrityError,
    MissingDependencyError,
    ModelNotFoundError,
    ModelportError,
    RegistryError,
    ServingError,
    StreamError,
    UnsupportedModelError,
    VerificationError,
)

if _TYPE_CHECKING:
    from modelport.bundle.core import Bundle
    from modelport.verification import CheckReport, ParityReport, Tolerance

__all__ = [
    "Bundle",
    "BundleError",
    "CheckReport",
    "CodegenError",
    "ConversionError",
    "FormatVersionError",
    "InputError",
    "IntegrityError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelportError",
    "ParityReport",
    "RegistryError",
    "ServingError",
    "StreamError",
    "Tolerance",
    "UnsupportedModelError",
    "VerificationError",
    "__version__",
    "check",
    "load",
    "pack",
    "verify",
]


def pack(model: _Any, sample: _Any, **kwargs: _Any) -> Bundle:
    """Convert ``model`` into a verified bundle. See :func:`modelport._pack.pack`."""
    from modelport._pack import pack as _pack

    return _pack(model, sample, **kwargs)


def load(uri: _Any, **kwargs: _Any) -> Bundle:
    """Load a bundle from a directory, an ``.mpk`` file or a registry URI (``models:/name@alias``)."""
    from modelport._uri import load as _load

    return _load(uri, **kwargs)


def verify(bundle: Bundle, model: _Any, data: _Any, **kwargs: _Any) -> ParityReport:
    """Parity report of ``bundle`` against the original ``model`` on ``data``."""
    from modelport.verification import verify as _verify

    return _verify(bundle, model, data, **kwargs)


def check(bundle: Bundle, **kwargs: _Any) -> CheckReport:
    """Re-run the bundle's reference data on this machine and compare with the recorded answers."""
    from modelport.verification import check as _check

    return _check(bundle, **kwargs)


def __getattr__(name: str) -> _Any:
    # numpy, onnx and onnxruntime load on first use, so `import modelport` stays cheap
    if name == "Bundle":
        from modelport.bundle.core import Bundle

        return Bundle
    if name in ("ParityReport", "Tolerance", "CheckReport"):
        import importlib

        return getattr(importlib.import_module("modelport.verification"), name)
    raise AttributeError(f"module 'modelport' has no attribute {name!r}")
