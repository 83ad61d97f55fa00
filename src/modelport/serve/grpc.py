"""The gRPC transport: ``inference.GRPCInferenceService`` (KServe V2) on grpc.aio.

It shares the event loop, data plane and batchers with the REST server. Tensors come either as
typed ``contents`` or as ``raw_input_contents``; a response uses ``raw_output_contents`` when the
request used raw inputs (as tritonclient does) and typed ``contents`` otherwise. The mapping of
the error tree to gRPC status codes lives here.

The generated modules are imported lazily: they register the ``inference`` protobuf package,
which collides with other copies of the same protocol (tritonclient's) in one process.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport._deps import require
from modelport.errors import BundleError, InputError, ModelNotFoundError, ModelportError, ServingError
from modelport.serve import codec
from modelport.serve.codec import InferInput, InferRequest, RequestedOutput
from modelport.serve.errors import (
    DeadlineExceededError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    UnauthorizedError,
)

if TYPE_CHECKING:
    from modelport.serve.dataplane import DataPlane

log = logging.getLogger("modelport.serve")

_CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
SERVICE = "inference.GRPCInferenceService"
OPEN_METHODS = frozenset({f"/{SERVICE}/ServerLive", f"/{SERVICE}/ServerReady"})


def status_code(exc: BaseException) -> Any:
    """The gRPC status code of an error."""
    grpc = require("grpc", purpose="the gRPC server")
    if isinstance(exc, PayloadTooLargeError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, ModelNotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, InputError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, UnauthorizedError):
        return grpc.StatusCode.UNAUTHENTICATED
    if isinstance(exc, DeadlineExceededError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(exc, (OverloadedError, NotReadyError)):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, BundleError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL


def _param_value(p: Any) -> Any:
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def _params(m: Any) -> dict[str, Any]:
    return {k: _param_value(v) for k, v in m.items()}


def decode_request(request: Any) -> InferRequest:
    """An InferRequest from a ``ModelInferRequest`` message.

    Shapes are checked before anything of that shape is allocated (negative dimensions, a product
    beyond int64, an element count other than the one received), and typed integer contents are
    range-checked by the same rule as REST JSON (:func:`codec.check_integers`): INT8 1000 is
    refused, never wrapped to -24.
    """
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InputError(
            f"raw_input_contents has {len(raw)} entries but the request has {len(request.inputs)} inputs; "
            "give one entry per input, in order."
        )
    inputs = []
    for i, t in enumerate(request.inputs):
        shape = codec.parse_shape(t.name, list(t.shape))
        if t.datatype not in codec.V2_TO_NUMPY:
            raise InputError(codec.bad_datatype(t.name, t.datatype))
        given = [f.name for f, _ in t.contents.ListFields()] if t.HasField("contents") else []
        if raw:
            if given:
                raise InputError(
                    f"input {codec.show(t.name)} has contents.{given[0]} but the request sends raw_input_contents; "
                    "send every input one way: typed contents or raw_input_contents."
                )
            data = codec.from_raw(t.name, t.datatype, shape, raw[i])
        else:
            data = _typed(t, shape, given)
        inputs.append(InferInput(t.name, t.datatype, shape, data, _params(t.parameters)))
    if not inputs:
        raise InputError("the request has no inputs.")
    outputs = [RequestedOutput(o.name, _params(o.parameters)) for o in request.outputs] or None
    return InferRequest(
        request.model_name, request.model_version or None, inputs, outputs, request.id or None,
        _params(request.parameters),
    )


# the numpy type that holds a typed-contents field's values exactly, before the range check narrows them
_WIDE = {"int_contents": np.int64, "int64_contents": np.int64, "uint_contents": np.uint64, "uint64_contents": np.uint64}


def _typed(t: Any, shape: tuple[int, ...], given: list[str]) -> np.ndarray:
    field = _CONTENTS.get(t.datatype)
    if field is None:
        raise InputError(f"input {codec.show(t.name)}: {t.datatype} can only be sent in raw_input_contents.")
    other = [g for g in given if g != field]
    if other:
        raise InputError(
            f"input {codec.show(t.name)}: datatype {t.datatype} takes its values from contents.{field}, "
            f"but the request fills contents.{other[0]}."
        )
    values = getattr(t.contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InputError(
            f"input {codec.show(t.name)}: shape {list(shape)} needs {count} elements but contents.{field} holds {len(values)}."
        )
    if t.datatype == "BYTES":
        data = np.empty(count, dtype=object)
        data[:] = list(values)
    elif field in _WIDE:
        data = codec.check_integers(t.name, t.datatype, np.asarray(values, dtype=_WIDE[field]))
    else:
        data = np.asarray(values, dtype=codec.V2_TO_NUMPY[t.datatype])
    return data.reshape(shape)


def encode_response(resp: Any, use_raw: bool) -> Any:
    """A ``ModelInferResponse`` for an InferResponse: raw outputs for raw requests, else typed contents."""
    from modelport.serve.proto import grpc_predict_v2_pb2 as pb

    out = pb.ModelInferResponse(model_name=resp.model_name, model_version=resp.model_version, id=resp.id or "")
    for o in resp.outputs:
        t = out.outputs.add(name=o.name, datatype=o.datatype, shape=list(o.shape))
        if use_raw or o.datatype not in _CONTENTS:
            out.raw_output_contents.append(codec.to_raw(o.data, o.datatype))
        elif o.datatype == "BYTES":
            t.contents.bytes_contents.extend(
                v if isinstance(v, bytes) else str(v).encode() for v in o.data.ravel().tolist()
            )
        else:
            getattr(t.contents, _CONTENTS[o.datatype]).extend(o.data.ravel().tolist())
    return out


# requests at least this large are parsed, decoded and encoded in a worker thread, so that the
# event loop keeps answering other requests and probes meanwhile
OFFLOAD_BYTES = 256 << 10


def add_service(server: Any, dataplane: DataPlane) -> None:
    """Register the V2 service on a grpc.aio server.

    The handlers take the request's bytes and parse them themselves: a message protobuf cannot
    parse (invalid UTF-8 in a string field, a truncated field) is the client's mistake and gets
    INVALID_ARGUMENT, where grpc's own deserializer would answer INTERNAL.
    """
    from modelport.serve.proto import grpc_predict_v2_pb2 as pb

    grpc = require("grpc", purpose="the gRPC server")
    dp = dataplane

    def parse(message_type: Any, data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except Exception as exc:  # google.protobuf.message.DecodeError, and upb's own variants
            raise InputError(
                f"the request is not a valid {message_type.DESCRIPTOR.full_name} message ({_first_line(exc)})."
            ) from None

    async def guarded(context: Any, fn: Any) -> Any:
        try:
            return await fn()
        except ModelportError as exc:
            code = status_code(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.error("gRPC request failed: %s", exc)
            message, hint = dp.public_text(exc.message), dp.public_text(exc.hint)
            await context.abort(code, message if not hint else f"{message} (hint: {hint})")
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            log.exception("unexpected error in a gRPC request")
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error; see the server log.")

    def tensor_meta(items: list[dict[str, Any]]) -> list[Any]:
        return [pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                for t in items]

    async def server_live(data: bytes, context: Any) -> Any:
        async def run() -> Any:
            parse(pb.ServerLiveRequest, data)
            return pb.ServerLiveResponse(live=dp.live())
        return await guarded(context, run)

    async def server_ready(data: bytes, context: Any) -> Any:
        async def run() -> Any:
            parse(pb.ServerReadyRequest, data)
            return pb.ServerReadyResponse(ready=dp.ready())
        return await guarded(context, run)

    async def model_ready(data: bytes, context: Any) -> Any:
        async def run() -> Any:
            request = parse(pb.ModelReadyRequest, data)
            return pb.ModelReadyResponse(ready=dp.model_ready(request.name, request.version or None))
        return await guarded(context, run)

    async def server_metadata(data: bytes, context: Any) -> Any:
        async def run() -> Any:
            parse(pb.ServerMetadataRequest, data)
            meta = dp.server_metadata()
            return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])
        return await guarded(context, run)

    async def model_metadata(data: bytes, context: Any) -> Any:
        async def run() -> Any:
            request = parse(pb.ModelMetadataRequest, data)
            meta = dp.model_metadata(request.name, request.version or None)
            return pb.ModelMetadataResponse(
                name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                inputs=tensor_meta(meta["inputs"]), outputs=tensor_meta(meta["outputs"]),
                properties={k: str(v) for k, v in meta["parameters"].items()},
            )
        return await guarded(context, run)

    def decode(data: bytes) -> tuple[Any, InferRequest]:
        request = parse(pb.ModelInferRequest, data)
        try:
            return request, decode_request(request)
        except InputError as exc:
            model = dp.model(request.model_name, request.model_version or None)
            raise InputError(f"{exc.message} {model.expected()}", hint=exc.hint) from None

    async def model_infer(data: bytes, context: Any) -> Any:
        async def run() -> Any:
            deadline = dp.deadline(context.time_remaining())
            big = len(data) >= OFFLOAD_BYTES
            request, req = await asyncio.to_thread(decode, data) if big else decode(data)
            resp = await dp.infer(req, "grpc", deadline=deadline, offload=big)
            if dp.monitor is not None and resp.id:  # the id the prediction log keeps, also as metadata
                context.set_trailing_metadata((("x-request-id", resp.id),))
            use_raw = bool(request.raw_input_contents)
            if big:
                return await asyncio.to_thread(lambda: encode_response(resp, use_raw).SerializeToString())
            return encode_response(resp, use_raw).SerializeToString()
        return await guarded(context, run)

    def handler(fn: Any, response: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=None, response_serializer=response.SerializeToString if response else None
        )

    handlers = {
        "ServerLive": handler(server_live, pb.ServerLiveResponse),
        "ServerReady": handler(server_ready, pb.ServerReadyResponse),
        "ModelReady": handler(model_ready, pb.ModelReadyResponse),
        "ServerMetadata": handler(server_metadata, pb.ServerMetadataResponse),
        "ModelMetadata": handler(model_metadata, pb.ModelMetadataResponse),
        "ModelInfer": handler(model_infer, None),  # serialized by the handler (in a thread when large)
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if hasattr(server, "add_registered_method_handlers"):  # grpcio >= 1.63: the faster lookup
        server.add_registered_method_handlers(SERVICE, handlers)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def make_auth_interceptor(tokens: Sequence[str]) -> Any:
    """A grpc.aio interceptor that requires ``authorization: Bearer <token>`` (health stays open)."""
    grpc = require("grpc", purpose="the gRPC server")
    wanted = [t.encode() for t in tokens]

    async def deny(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unauthorized: send 'authorization: Bearer <token>'.")

    denied = grpc.unary_unary_rpc_method_handler(deny)

    class BearerAuth(grpc.aio.ServerInterceptor):  # type: ignore[name-defined]
        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            if details.method in OPEN_METHODS:
                return await continuation(details)
            for key, value in details.invocation_metadata or ():
                if key == "authorization":
                    scheme, _, token = (value if isinstance(value, str) else value.decode()).partition(" ")
                    if scheme.lower() == "bearer" and any(hmac.compare_digest(token.strip().encode(), t) for t in wanted):
                        return await continuation(details)
            return denied

    return BearerAuth()


async def start(
    dataplane: DataPlane,
    *,
    host: str,
    port: int,
    tokens: Sequence[str] = (),
    max_message_bytes: int = 64 << 20,
    tls: tuple[bytes, bytes, bytes | None] | None = None,
) -> Any:
    """Start a grpc.aio server on the running loop; returns it (stop with ``await server.stop(grace)``)."""
    grpc = require("grpc", purpose="the gRPC server")
    interceptors = [make_auth_interceptor(tokens)] if tokens else []
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 1),  # several worker processes share the port
        ],
    )
    add_service(server, dataplane)
    if dataplane.monitor is not None:  # --log: labels come back through modelport.monitor.v1.FeedbackService
        from modelport.serve.monitoring import add_grpc_service

        add_grpc_service(server, dataplane)
    address = f"{host}:{port}"
    try:
        if tls is not None:
            key, cert, ca = tls
            creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
            bound = server.add_secure_port(address, creds)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:  # grpcio raises RuntimeError("Failed to bind ...") instead of returning 0
        bound = 0
    if bound == 0:
        raise ServingError(f"cannot listen for gRPC on {address}.", hint="pick a free port with --grpc-port")
    await server.start()
    server.bound_port = bound
    return server
