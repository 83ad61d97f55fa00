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
    ExportError,
    FormatVersionError,
    InputError,
    IntegrityError,
    MissingDependencyError,
    ModelNotFoundError,
    ModelportError,
    RegistryError,
    ServingError,
    SignatureError,
    StreamError,
    UnsupportedModelError,
    VerificationError,
)

if _TYPE_CHECKING:
    import os as _os
    from collections.abc import Iterable as _Iterable

    from modelport.bundle.core import Bundle
    from modelport.signing import SignaturePolicy, SignatureReport
    from modelport.verification import CheckReport, ParityReport, Tolerance

__all__ = [
    "Bundle",
    "BundleError",
    "CheckReport",
    "CodegenError",
    "ConversionError",
    "ExportError",
    "FormatVersionError",
    "InputError",
    "IntegrityError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelportError",
    "ParityReport",
    "RegistryError",
    "ServingError",
    "SignatureError",
    "SignaturePolicy",
    "SignatureReport",
    "StreamError",
    "Tolerance",
    "UnsupportedModelError",
    "VerificationError",
    "__version__",
    "check",
    "load",
    "pack",
    "sign",
    "verify",
    "verify_signature",
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


def sign(
    bundle: Bundle | str | _os.PathLike[str],
    *,
    key: str | _os.PathLike[str],
    certificate: str | _os.PathLike[str] | None = None,
    certificate_chain: _Iterable[str | _os.PathLike[str]] = (),
    password: str | bytes | None = None,
    output: str | _os.PathLike[str] | None = None,
) -> Bundle:
    """Sign ``bundle`` with an EC key (and optionally its certificate chain); see :func:`modelport.signing.sign`."""
    from modelport.signing import sign as _sign

    return _sign(bundle, key=key, certificate=certificate, certificate_chain=certificate_chain, password=password,
                 output=output)


def verify_signature(
    bundle: Bundle | str | _os.PathLike[str],
    *,
    public_keys: _Iterable[str | _os.PathLike[str] | bytes] = (),
    cas: _Iterable[str | _os.PathLike[str] | bytes] = (),
    certificates: _Iterable[str | _os.PathLike[str] | bytes] = (),
    policy: SignaturePolicy | None = None,
) -> SignatureReport:
    """Who signed ``bundle`` and what the signature covers, or SignatureError; see
    :func:`modelport.signing.verify_signature`."""
    from modelport.signing import verify_signature as _verify_signature

    return _verify_signature(bundle, public_keys=public_keys, cas=cas, certificates=certificates, policy=policy)


def __getattr__(name: str) -> _Any:
    # numpy, onnx and onnxruntime load on first use, so `import modelport` stays cheap
    if name == "Bundle":
        from modelport.bundle.core import Bundle

        return Bundle
    if name in ("SignaturePolicy", "SignatureReport"):
        import importlib

        return getattr(importlib.import_module("modelport.signing"), name)
    if name in ("ParityReport", "Tolerance", "CheckReport"):
        import importlib

        return getattr(importlib.import_module("modelport.verification"), name)
    raise AttributeError(f"module 'modelport' has no attribute {name!r}")
