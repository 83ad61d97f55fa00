"""Hostile requests, REST and gRPC, against a real server in a subprocess: each crafted request
gets a 4xx / INVALID_ARGUMENT with a message, within a time bound, and the server's memory stays
bounded (its peak resident set, /proc/PID/status VmHWM, grows by less than ``MEMORY_BOUND_MB``
over the whole table) and it keeps serving afterwards.

The cases are classes of lies a client can tell: declared shapes the data does not back (huge,
overflowing int64, negative, too many dimensions, counts that do not match), values that do not
fit their datatype (out-of-range integers, finite floats beyond FP16/FP32, NaN/inf literals),
malformed JSON (deep nesting, invalid UTF-8), binary-extension headers and sizes that lie,
and sheer numbers (many inputs, megabyte-long names). gRPC messages are built with tritonclient's
copy of the protocol (our generated modules cannot share a process with it) and sent as bytes.
"""

from __future__ import annotations

import gzip
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from .conftest import process_server, rss_kb

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:tritonclient.*"),
]

grpc = pytest.importorskip("grpc")
pb = pytest.importorskip("tritonclient.grpc.service_pb2")

SECONDS_PER_REQUEST = 2.0
# the server's peak memory may grow this much over the whole table (a legitimate 4 MB request
# costs a few tens of MB as parsed JSON; the old BYTES decoder spent 2.4 GB on 120 bytes)
MEMORY_BOUND_MB = 150
MAX_BODY = 4 << 20
MAX_ERROR_BYTES = 16 << 10

IRIS = "/v2/models/iris/infer"
CHURN = "/v2/models/churn/infer"
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    args = [str(bundles.iris_v1), str(bundles.churn), str(bundles.lin), "--max-body-size", str(MAX_BODY),
            "--max-rows", "100000"]
    with process_server(args, tmp) as proc:
        with httpx.Client(base_url=proc.http) as c:  # warm: sessions, allocator pools, the JSON path
            for _ in range(20):
                assert c.post(IRIS, json={"inputs": [tensor("X", [1, 4], "FP32", ROW)]}).status_code == 200
        yield proc


def tensor(name: str, shape, datatype, data=None, **parameters) -> dict:
    t = {"name": name, "shape": shape, "datatype": datatype}
    if data is not None:
        t["data"] = data
    if parameters:
        t["parameters"] = parameters
    return t


def doc(*inputs: dict, **extra) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def binary(head: dict, raw: bytes, header_length: str | None = None) -> tuple[bytes, dict[str, str]]:
    h = json.dumps(head).encode()
    return h + raw, {"inference-header-content-length": header_length or str(len(h))}


def nested(depth: int) -> bytes:
    return b'{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ' + b"[" * depth + b"1" + \
        b"]" * depth + b"}]}"


@dataclass
class Case:
    name: str
    path: str
    body: bytes
    headers: dict[str, str]
    status: int  # expected status
    needle: str  # expected in the error message


def case(name: str, body: bytes, needle: str, *, path: str = IRIS, headers: dict | None = None, status: int = 400) -> Case:
    return Case(name, path, body, headers or {}, status, needle)


def _bin(name: str, head: dict, raw: bytes, needle: str, header_length: str | None = None, **kw) -> Case:
    body, headers = binary(head, raw, header_length)
    return case(name, body, needle, headers=headers, **kw)


BYTES_HEAD = {"inputs": [tensor("age", [1], "INT64", [30]), tensor("spend", [1], "FP64", [50.0]),
                         tensor("plan", [300_000_000], "BYTES", binary_data_size=120)]}
LONG = "x" * 1_000_000

REST_CASES = [
    # declared shapes the data does not back
    case("huge BYTES shape, JSON", doc(tensor("plan", [10**9], "BYTES", ["a"])), "needs 1000000000 elements",
         path=CHURN),
    _bin("huge BYTES shape, 120 bytes of binary data", BYTES_HEAD, struct.pack("<I", 1) * 30, "need at least",
         path=CHURN),
    _bin("huge FP32 shape, 16 bytes", {"inputs": [tensor("X", [2**40, 4], "FP32", binary_data_size=16)]},
         b"\0" * 16, "bytes expected"),
    case("shape product overflows int64", doc(tensor("X", [2**62, 2**62], "FP32", [])), "int64"),
    case("shape product overflows with a zero", doc(tensor("X", [0, 2**62, 2**62], "FP32", [])), "int64"),
    case("shape beyond uint64 (a float in JSON)", doc(tensor("X", [2**70, 4], "FP32", [])), "non-negative integers"),
    case("negative dimension", doc(tensor("X", [-1, 4], "FP32", ROW)), "non-negative integers"),
    case("boolean dimension", doc(tensor("X", [True, 4], "FP32", ROW)), "non-negative integers"),
    case("fractional dimension", doc(tensor("X", [1.5, 4], "FP32", ROW)), "non-negative integers"),
    case("shape is an object", doc(tensor("X", {"a": 1}, "FP32", ROW)), "non-negative integers"),
    case("shape of 100 dimensions", doc(tensor("X", [1] * 100, "FP32", [1])), "at most 32"),
    case("element count mismatch", doc(tensor("X", [2, 4], "FP32", [*ROW, 1, 2, 3])), "needs 8 elements"),
    case("ragged nested data", doc(tensor("X", [2, 4], "FP32", [ROW, ROW[:3]])), "FP32"),
    # values that do not fit their datatype
    case("INT8 out of range", doc(tensor("X", [1, 4], "INT8", [1000, 1, 1, 1])), "INT8 holds integers from -128"),
    case("UINT8 negative", doc(tensor("X", [1, 4], "UINT8", [-1, 1, 1, 1])), "UINT8 holds integers"),
    case("INT16 out of range", doc(tensor("X", [1, 4], "INT16", [40000, 1, 1, 1])), "INT16 holds integers"),
    case("INT64 beyond int64", doc(tensor("X", [1, 4], "INT64", [2**63, 1, 1, 1])), "INT64 holds integers"),
    case("UINT64 negative", doc(tensor("X", [1, 4], "UINT64", [-1, 1, 1, 1])), "UINT64 holds integers"),
    case("integer beyond uint64", doc(tensor("X", [1, 4], "INT64", [10**30, 1, 1, 1])), "INT64 holds integers"),
    case("fraction for an integer datatype", doc(tensor("X", [1, 4], "INT32", [1.5, 1, 1, 1])), "whole numbers"),
    case("null for an integer datatype", doc(tensor("X", [1, 4], "INT64", [None, 1, 1, 1])), "must be integers"),
    case("strings for an integer datatype", doc(tensor("X", [1, 4], "INT32", ["1", "2", "3", "4"])), "must be integers"),
    case("FP32 beyond its range", doc(tensor("X", [1, 4], "FP32", [1e39, 1, 1, 1])), "FP32 holds finite numbers"),
    case("FP16 beyond its range", doc(tensor("X", [1, 4], "FP16", [70000, 1, 1, 1])), "FP16 holds finite numbers"),
    case("number beyond FP64 (1e400)", b'{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP64", '
         b'"data": [1e400, 1, 1, 1]}]}', "not valid JSON"),
    case("NaN literal", b'{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", '
         b'"data": [NaN, 1, 1, 1]}]}', "not valid JSON"),
    case("Infinity literal", b'{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", '
         b'"data": [Infinity, 1, 1, 1]}]}', "not valid JSON"),
    case("NaN string where the model refuses NaN", doc(tensor("X", [1, 5], "FP64", ["NaN", 1, 1, 1, 1])), "NaN",
         path="/v2/models/lin/infer"),
    case("BOOL holding 7", doc(tensor("X", [1, 4], "BOOL", [7, 1, 1, 1])), "BOOL"),
    case("text for FP32", doc(tensor("X", [1, 4], "FP32", ["a", "b", "c", "d"])), "FP32"),
    case("objects for BYTES", doc(tensor("plan", [1], "BYTES", [{"a": 1}])), "must be strings", path=CHURN),
    case("unknown datatype", doc(tensor("X", [1, 4], "FP99", ROW)), "unknown datatype"),
    case("datatype is a number", doc(tensor("X", [1, 4], 5, ROW)), "unknown datatype"),
    case("BYTES for a float input", doc(tensor("X", [1, 4], "BYTES", ["a"] * 4)), "must be numeric"),
    # malformed JSON
    case("JSON nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    case("data nested 1,000 deep", nested(1000), "FP32"),
    case("data nested 100 deep", nested(100), "FP32"),
    case("invalid UTF-8", b'{"inputs": [{"name": "\xff\xfe", "shape": [1], "datatype": "FP32", "data": [1]}]}',
         "not valid JSON"),
    case("a JSON array, not an object", b"[1, 2, 3]", "JSON object"),
    case("a bare string", b'"inputs"', "JSON object"),
    case("inputs is an object", b'{"inputs": {"X": 1}}', "non-empty"),
    case("id is a number", doc(tensor("X", [1, 4], "FP32", ROW), id=7), '"id" must be a string'),
    case("nested parameters", doc(tensor("X", [1, 4], "FP32", ROW), parameters={"a": {"b": 1}}), "parameter 'a'"),
    case("gzip bomb", gzip.compress(b" " * (3 * MAX_BODY)), "larger than this server accepts",
         headers={"content-encoding": "gzip"}, status=413),
    # binary extension lies
    _bin("header length beyond the body", {"inputs": [tensor("X", [1, 4], "FP32", binary_data_size=16)]},
         b"\0" * 16, "Inference-Header-Content-Length", header_length="999999"),
    _bin("negative header length", {"inputs": [tensor("X", [1, 4], "FP32", binary_data_size=16)]}, b"\0" * 16,
         "Inference-Header-Content-Length", header_length="-5"),
    _bin("header length not a number", {"inputs": [tensor("X", [1, 4], "FP32", binary_data_size=16)]}, b"\0" * 16,
         "Inference-Header-Content-Length", header_length="sixteen"),
    _bin("header length of 5,000 digits", {"inputs": [tensor("X", [1, 4], "FP32", binary_data_size=16)]},
         b"\0" * 16, "Inference-Header-Content-Length", header_length="9" * 5000),
    _bin("binary_data_size beyond the body", {"inputs": [tensor("X", [1, 4], "FP32", binary_data_size=10**12)]},
         b"\0" * 16, "does not fit"),
    _bin("binary_data_size negative", {"inputs": [tensor("X", [1, 4], "FP32", binary_data_size=-16)]}, b"\0" * 16,
         "does not fit"),
    _bin("binary_data_size a string", {"inputs": [tensor("X", [1, 4], "FP32", binary_data_size="16")]}, b"\0" * 16,
         "does not fit"),
    _bin("binary_data_size smaller than the shape", {"inputs": [tensor("X", [1, 4], "FP32", binary_data_size=8)]},
         b"\0" * 16, "bytes expected"),
    _bin("binary bytes nobody claims", {"inputs": [tensor("X", [1, 4], "FP32", binary_data_size=16)]}, b"\0" * 24,
         "no input claims"),
    _bin("BYTES element longer than the data", {"inputs": [tensor("age", [1], "INT64", [30]),
                                                           tensor("spend", [1], "FP64", [50.0]),
                                                           tensor("plan", [1], "BYTES", binary_data_size=8)]},
         struct.pack("<I", 2**32 - 1) + b"abcd", "past the end", path=CHURN),
    _bin("both data and binary_data_size", {"inputs": [tensor("X", [1, 4], "FP32", ROW, binary_data_size=16)]},
         b"\0" * 16, "both data and"),
    _bin("invalid UTF-8 in BYTES binary data", {"inputs": [tensor("age", [1], "INT64", [30]),
                                                           tensor("spend", [1], "FP64", [50.0]),
                                                           tensor("plan", [1], "BYTES", binary_data_size=6)]},
         struct.pack("<I", 2) + b"\xff\xfe", "UTF-8", path=CHURN),
    # sheer numbers
    case("20,000 inputs", doc(*(tensor(f"in{i}", [1], "FP32", [1.0]) for i in range(20_000))), "inputs"),
    case("a megabyte-long input name", doc(tensor(LONG, [1, 4], "FP32", ROW)), "characters"),
    case("a megabyte-long datatype", doc(tensor("X", [1, 4], LONG, ROW)), "unknown datatype"),
    case("column inputs disagreeing on rows", doc(tensor("age", [3], "INT64", [1, 2, 3]),
                                                  tensor("plan", [2], "BYTES", ["a", "b"]),
                                                  tensor("spend", [3], "FP64", [1.0, 2.0, 3.0])), "rows", path=CHURN),
    case("records is not a list", b'{"records": {"f0": 1}}', "records", path="/v2/models/iris/records"),
    case("records of numbers", b'{"records": [1, 2, 3]}', "record", path="/v2/models/iris/records"),
]


def test_the_hostile_rest_table_covers_every_class():
    assert len(REST_CASES) >= 60
    assert len({c.name for c in REST_CASES}) == len(REST_CASES)


@pytest.mark.parametrize("c", REST_CASES, ids=lambda c: c.name)
def test_hostile_rest_request(server, c: Case):
    with httpx.Client(base_url=server.http, timeout=30) as client:
        t = time.perf_counter()
        r = client.post(c.path, content=c.body, headers={"content-type": "application/json", **c.headers})
        took = time.perf_counter() - t
    assert r.status_code == c.status, (r.status_code, r.text[:500])
    assert len(r.content) < MAX_ERROR_BYTES, len(r.content)
    message = r.json()["error"]
    assert c.needle in message, message[:500]
    assert took < SECONDS_PER_REQUEST, took


# ----------------------------------------------------------------------------- gRPC
def grpc_request(*inputs: pb.ModelInferRequest.InferInputTensor, raw: list[bytes] | None = None,
                 model: str = "iris") -> bytes:
    req = pb.ModelInferRequest(model_name=model)
    req.inputs.extend(inputs)
    if raw is not None:
        req.raw_input_contents.extend(raw)
    return req.SerializeToString()


def grpc_tensor(name: str, shape: list[int], datatype: str, **contents) -> pb.ModelInferRequest.InferInputTensor:
    t = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(t.contents, field).extend(values)
    return t


def _with_bad_utf8(message: bytes, good: bytes) -> bytes:
    """``message`` with the string ``good`` (same length) replaced by invalid UTF-8."""
    assert good in message
    return message.replace(good, b"\xff" * len(good), 1)


def _churn(plan: pb.ModelInferRequest.InferInputTensor, raw: bool = False) -> list[pb.ModelInferRequest.InferInputTensor]:
    if raw:  # the values come in raw_input_contents
        return [grpc_tensor("age", [1], "INT64"), grpc_tensor("spend", [1], "FP64"), plan]
    return [grpc_tensor("age", [1], "INT64", int64_contents=[30]), grpc_tensor("spend", [1], "FP64", fp64_contents=[50.0]),
            plan]


GRPC_CASES: list[tuple[str, Callable[[], bytes], str]] = [
    ("shape product overflows int64", lambda: grpc_request(grpc_tensor("X", [2**62, 2**62], "FP32")), "int64"),
    ("shape product wraps to zero in int64", lambda: grpc_request(grpc_tensor("X", [2**32, 2**32], "FP32")), "int64"),
    ("negative dimension", lambda: grpc_request(grpc_tensor("X", [-1, 4], "FP32", fp32_contents=ROW)),
     "non-negative integers"),
    ("shape of 50 dimensions", lambda: grpc_request(grpc_tensor("X", [1] * 50, "FP32", fp32_contents=[1.0])),
     "at most 32"),
    ("huge BYTES shape, 120 raw bytes", lambda: grpc_request(
        *_churn(grpc_tensor("plan", [300_000_000], "BYTES"), raw=True),
        raw=[struct.pack("<q", 30), struct.pack("<d", 50.0), struct.pack("<I", 1) * 30], model="churn"), "need at least"),
    ("huge BYTES shape, typed contents", lambda: grpc_request(
        *_churn(grpc_tensor("plan", [300_000_000], "BYTES", bytes_contents=[b"pro"])), model="churn"),
     "needs 300000000 elements"),
    ("INT8 1000 in int_contents", lambda: grpc_request(grpc_tensor("X", [1, 4], "INT8", int_contents=[1000, 1, 1, 1])),
     "INT8 holds integers from -128"),
    ("INT16 40000 in int_contents", lambda: grpc_request(grpc_tensor("X", [1, 4], "INT16", int_contents=[40000, 1, 1, 1])),
     "INT16 holds integers"),
    ("UINT8 256 in uint_contents", lambda: grpc_request(grpc_tensor("X", [1, 4], "UINT8", uint_contents=[256, 1, 1, 1])),
     "UINT8 holds integers"),
    ("UINT16 70000 in uint_contents",
     lambda: grpc_request(grpc_tensor("X", [1, 4], "UINT16", uint_contents=[70000, 1, 1, 1])), "UINT16 holds integers"),
    ("element count mismatch", lambda: grpc_request(grpc_tensor("X", [2, 4], "FP32", fp32_contents=ROW)),
     "needs 8 elements"),
    ("values in another datatype's field", lambda: grpc_request(grpc_tensor("X", [1, 4], "FP32", int_contents=[1] * 4)),
     "contents.fp32_contents"),
    ("FP16 in typed contents", lambda: grpc_request(grpc_tensor("X", [1, 4], "FP16")), "raw_input_contents"),
    ("unknown datatype", lambda: grpc_request(grpc_tensor("X", [1, 4], "FP99")), "unknown datatype"),
    ("raw contents for fewer inputs", lambda: grpc_request(grpc_tensor("X", [1, 4], "FP32"), raw=[b"", b""]),
     "raw_input_contents has 2 entries"),
    ("raw and typed contents mixed", lambda: grpc_request(grpc_tensor("X", [1, 4], "FP32", fp32_contents=ROW),
                                                          raw=[np.zeros(4, "<f4").tobytes()]), "one way"),
    ("raw size mismatch", lambda: grpc_request(grpc_tensor("X", [1, 4], "FP32"), raw=[b"\0" * 15]), "bytes expected"),
    ("raw BYTES element past the end", lambda: grpc_request(
        *_churn(grpc_tensor("plan", [1], "BYTES"), raw=True),
        raw=[struct.pack("<q", 30), struct.pack("<d", 50.0), struct.pack("<I", 2**31) + b"ab"], model="churn"),
     "past the end"),
    ("invalid UTF-8 in the model name",
     lambda: _with_bad_utf8(grpc_request(grpc_tensor("X", [1, 4], "FP32", fp32_contents=ROW)), b"iris"), "not a valid"),
    ("invalid UTF-8 in an input name", lambda: _with_bad_utf8(
        grpc_request(grpc_tensor("Xq7", [1, 4], "FP32", fp32_contents=ROW)), b"Xq7"), "not a valid"),
    ("bytes that are not protobuf", lambda: b"\xff\xff\xff\xff\x0f garbage", "not a valid"),
    ("no inputs", lambda: grpc_request(), "no inputs"),
    ("20,000 inputs", lambda: grpc_request(*(grpc_tensor(f"in{i}", [1], "FP32", fp32_contents=[1.0])
                                             for i in range(20_000))), "inputs"),
    ("a megabyte-long input name", lambda: grpc_request(grpc_tensor(LONG, [1, 4], "FP32", fp32_contents=ROW)),
     "characters"),
]


def test_hostile_grpc_requests(server):
    channel = grpc.insecure_channel(server.grpc, options=[("grpc.max_receive_message_length", -1)])
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    failures = []
    for name, make, needle in GRPC_CASES:
        t = time.perf_counter()
        try:
            infer(make(), timeout=30)
            failures.append((name, "answered OK"))
            continue
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        took = time.perf_counter() - t
        if code != grpc.StatusCode.INVALID_ARGUMENT or needle not in details or len(details) > MAX_ERROR_BYTES \
                or took > SECONDS_PER_REQUEST:
            failures.append((name, code, details[:300], round(took, 3)))
    channel.close()
    assert not failures, failures


def test_the_server_kept_its_memory_and_keeps_serving(server):
    """Runs after the tables (pytest keeps file order): the peak resident set grew by less than
    MEMORY_BOUND_MB over all of them, and both transports still answer."""
    peak_mb = rss_kb(server.proc.pid, "VmHWM") / 1024
    start_mb = _START.get("hwm_mb")
    assert start_mb is not None, "the memory baseline was not taken"
    assert peak_mb - start_mb < MEMORY_BOUND_MB, (start_mb, peak_mb)
    r = httpx.post(server.http + IRIS, json={"inputs": [tensor("X", [1, 4], "FP32", ROW)]})
    assert r.status_code == 200
    channel = grpc.insecure_channel(server.grpc)
    reply = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(
        grpc_request(grpc_tensor("X", [1, 4], "FP32", fp32_contents=ROW)), timeout=30)
    resp = pb.ModelInferResponse.FromString(reply)
    assert [o.name for o in resp.outputs] == ["label", "probabilities"]
    channel.close()


_START: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _memory_baseline(server):
    _START["hwm_mb"] = rss_kb(server.proc.pid, "VmHWM") / 1024


# typed values: (datatype, values, gRPC contents field); every one is judged alike by both transports
TYPED = [
    ("INT8", [1, -128, 127, 5], "int_contents"),
    ("INT8", [1000, 1, 1, 1], "int_contents"),
    ("INT16", [-32769, 1, 1, 1], "int_contents"),
    ("INT32", [2**31 - 1, 1, 1, 1], "int_contents"),
    ("UINT8", [255, 0, 1, 2], "uint_contents"),
    ("UINT8", [256, 0, 1, 2], "uint_contents"),
    ("UINT16", [65536, 0, 1, 2], "uint_contents"),
    ("UINT32", [2**32 - 1, 0, 1, 2], "uint_contents"),
    ("INT64", [-(2**63), 0, 1, 2], "int64_contents"),
    ("UINT64", [2**64 - 1, 0, 1, 2], "uint64_contents"),
    ("BOOL", [True, False, True, True], "bool_contents"),
    ("FP32", [5.1, 3.5, float("nan"), 0.2], "fp32_contents"),
    ("FP64", [5.1, 3.5, float("inf"), 0.2], "fp64_contents"),
]


def _json_value(v):
    if isinstance(v, float) and v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    return v


@pytest.mark.parametrize(("datatype", "values", "field"), TYPED, ids=lambda v: str(v)[:24])
def test_rest_and_grpc_judge_typed_values_alike(server, datatype, values, field):
    rest = httpx.post(server.http + IRIS, timeout=30, json={"inputs": [
        tensor("X", [1, 4], datatype, [_json_value(v) for v in values])]})
    channel = grpc.insecure_channel(server.grpc)
    try:
        reply = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(
            grpc_request(grpc_tensor("X", [1, 4], datatype, **{field: values})), timeout=30)
        outputs = pb.ModelInferResponse.FromString(reply).outputs
        grpc_result = ("OK", next(list(o.contents.fp32_contents) for o in outputs if o.name == "probabilities"))
    except grpc.RpcError as exc:
        grpc_result = (exc.code().name, exc.details())
    finally:
        channel.close()
    if rest.status_code == 200:
        assert grpc_result[0] == "OK", grpc_result
        probs = next(o for o in rest.json()["outputs"] if o["name"] == "probabilities")["data"]
        np.testing.assert_allclose(grpc_result[1], probs, rtol=1e-6)
    else:
        assert rest.status_code == 400, rest.text
        assert grpc_result[0] == "INVALID_ARGUMENT", grpc_result
        rule = rest.json()["error"].split(";")[0].split(": ", 1)[1]  # e.g. "INT8 holds integers from -128 to 127"
        assert rule in grpc_result[1], (rule, grpc_result[1])
    # out-of-range values are refused by both, whatever the model would have made of them
    lo_hi = {"INT8": (-128, 127), "INT16": (-32768, 32767), "UINT8": (0, 255), "UINT16": (0, 65535)}.get(datatype)
    if lo_hi is not None and not all(lo_hi[0] <= v <= lo_hi[1] for v in values):
        assert rest.status_code == 400
