"""Serving errors: the few ways a server refuses a request that the core tree does not name.

They extend the one tree in :mod:`modelport.errors` (so the CLI and library callers catch them as
usual); the mapping to HTTP statuses and gRPC codes lives in :mod:`modelport.serve.http` and
:mod:`modelport.serve.grpc`, never here.

    InputError
    └── PayloadTooLargeError     body or row count above the configured limit (HTTP 413)
    ServingError
    ├── OverloadedError          the model's queue is full: request shed (HTTP 503, Retry-After)
    ├── DeadlineExceededError    not answered within the request timeout (HTTP 504, DEADLINE_EXCEEDED)
    ├── UnauthorizedError        missing or wrong bearer token (HTTP 401)
    └── NotReadyError            the server is starting or draining (HTTP 503)
"""

from __future__ import annotations

from modelport.errors import InputError, ServingError


class PayloadTooLargeError(InputError):
    """The request is larger than the server accepts (bytes or rows)."""


class OverloadedError(ServingError):
    """The server sheds this request instead of queueing it without bound."""


class DeadlineExceededError(ServingError):
    """The request was not answered within its timeout (``--request-timeout`` or a gRPC deadline);
    its ONNX Runtime call, if one was running for it alone, is stopped."""


class UnauthorizedError(ServingError):
    """The request carries no valid bearer token."""


class NotReadyError(ServingError):
    """The server is not ready (still loading, or draining before exit)."""
