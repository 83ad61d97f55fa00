"""The one exception tree of modelport.

    ModelportError
    ├── MissingDependencyError       an optional extra is not installed (names the pip line)
    ├── ConversionError              a model could not be turned into a bundle
    │   └── UnsupportedModelError    no converter knows this model type (or it is unfitted)
    ├── BundleError                  a bundle on disk is unusable
    │   ├── IntegrityError           digest mismatch, unsafe path, zip bomb, bad ONNX graph
    │   │   └── SignatureError       manifest.sig malformed, untrusted, for other files, or missing when required
    │   └── FormatVersionError       written by a newer modelport
    ├── VerificationError            the bundle does not reproduce the original within tolerance
    ├── InputError                   data given to predict/score does not fit the signature
    ├── RegistryError                the model registry refused an operation
    │   └── ModelNotFoundError       unknown model, version or alias
    ├── ServingError                 the server could not do what was asked
    ├── CodegenError                 a bundle cannot be compiled to the requested target
    ├── StreamError                  a message broker (Redis, NATS, a file) refused or failed a stream
    ├── ExportError                  a bundle cannot be exported to a deployment target (too large, ...)
    └── MonitorError                 a monitoring action failed (a webhook did not answer, a tag was refused)

Third-party exceptions (onnxruntime, torch, database drivers ...) are translated where they
enter modelport with ``raise ... from exc``. Every error carries ``exit_code`` so that the CLI
maps the tree to process exit codes in one place. HTTP status mapping lives in ``serve/``.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "CodegenError",
    "ConversionError",
    "ExportError",
    "FormatVersionError",
    "InputError",
    "IntegrityError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelportError",
    "MonitorError",
    "RegistryError",
    "ServingError",
    "SignatureError",
    "StreamError",
    "UnsupportedModelError",
    "VerificationError",
]


class ModelportError(Exception):
    """Base class of every error modelport raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class MissingDependencyError(ModelportError, ImportError):
    exit_code = 3


class ConversionError(ModelportError):
    exit_code = 4


class UnsupportedModelError(ConversionError):
    pass


class BundleError(ModelportError):
    exit_code = 5


class IntegrityError(BundleError):
    pass


class SignatureError(IntegrityError):
    """A bundle's signature (``manifest.sig``) is malformed, made by a signer nobody trusts, does
    not cover the bundle's files as they are, or is missing where a policy requires one."""


class FormatVersionError(BundleError):
    pass


class VerificationError(ModelportError):
    exit_code = 6


class InputError(ModelportError, ValueError):
    exit_code = 2


class RegistryError(ModelportError):
    exit_code = 7


class ModelNotFoundError(RegistryError, LookupError):
    pass


class ServingError(ModelportError):
    exit_code = 8


class CodegenError(ModelportError):
    exit_code = 9


class StreamError(ModelportError):
    exit_code = 10


class ExportError(ModelportError):
    """A deployment artifact cannot be made: the bundle does not fit the platform's limits, its
    dependencies do not fit the platform's runtime, or an image build failed."""

    exit_code = 12


class MonitorError(ModelportError):
    """A monitoring policy's action could not be carried out (a webhook failed, a registry tag was
    refused); the rule itself was evaluated."""

    exit_code = 13
