"""Interoperability: the real ``tritonclient`` package over HTTP and gRPC against ``modelport
serve`` in a subprocess, compared with ``bundle.predict``; gRPC errors and auth; SIGTERM drain."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import numpy as np
import pytest

import modelport as mp

from .conftest import process_server

pytestmark = [
    pytest.mark.integration,
    # tritonclient's own modules trip these on import / use (not ours to fix)
    pytest.mark.filterwarnings("ignore::DeprecationWarning:tritonclient.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:geventhttpclient.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gevent.*"),
]

tc_http = pytest.importorskip("tritonclient.http")
tc_grpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def served(bundles, tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("interop")
    (tmp / "tokens").write_text("s3cret\n")
    with process_server([str(bundles.repo)], tmp) as proc:
        yield proc


def fresh(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(4, 8, n), rng.uniform(2, 4.5, n), rng.uniform(1, 7, n),
                            rng.uniform(0.1, 2.5, n)]).astype(np.float32)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http_matches_bundle(served, bundles, binary):
    client = tc_http.InferenceServerClient(served.http.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris", "1")
    meta = client.get_model_metadata("iris", "1")
    assert meta["platform"] == "onnx_onnxv1" and meta["inputs"][0]["shape"] == [-1, 4]
    for version, path in (("1", bundles.iris_v1), ("2", bundles.iris_v2)):
        X = fresh(23, int(version))
        inp = tc_http.InferInput("X", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=binary)
        outs = [tc_http.InferRequestedOutput(n, binary_data=binary) for n in ("probabilities", "label")]
        result = client.infer("iris", [inp], model_version=version, outputs=outs, request_id=f"r{version}")
        want = mp.load(path).predict(X)
        np.testing.assert_array_equal(result.as_numpy("label"), want["label"])
        np.testing.assert_allclose(result.as_numpy("probabilities"), want["probabilities"], rtol=1e-6)
        assert result.get_response()["id"] == f"r{version}"


def test_tritonclient_http_bytes_inputs(served, bundles):
    client = tc_http.InferenceServerClient(served.http.removeprefix("http://"))
    data = {"age": np.array([[22], [70]], dtype=np.int64), "plan": np.array([[b"max"], [b"basic"]], dtype=object),
            "spend": np.array([[30.0], [70.0]])}
    inputs = []
    for name, arr in data.items():
        i = tc_http.InferInput(name, list(arr.shape), {"int64": "INT64", "object": "BYTES", "float64": "FP64"}[str(arr.dtype)])
        i.set_data_from_numpy(arr)
        inputs.append(i)
    result = client.infer("churn", inputs)
    want = mp.load(bundles.churn).predict({"age": [22, 70], "plan": ["max", "basic"], "spend": [30.0, 70.0]})
    np.testing.assert_array_equal(result.as_numpy("label"), want["label"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), want["probabilities"], rtol=1e-9)


def test_tritonclient_string_labels(served, bundles):
    X = fresh(6, 9)
    want = mp.load(bundles.tiers).predict(X)["label"].tolist()
    hc = tc_http.InferenceServerClient(served.http.removeprefix("http://"))
    i = tc_http.InferInput("X", list(X.shape), "FP32")
    i.set_data_from_numpy(X)
    assert [v.decode() for v in hc.infer("tiers", [i]).as_numpy("label")] == want
    gc = tc_grpc.InferenceServerClient(served.grpc)
    g = tc_grpc.InferInput("X", list(X.shape), "FP32")
    g.set_data_from_numpy(X)
    assert [v.decode() for v in gc.infer("tiers", [g]).as_numpy("label")] == want


def test_tritonclient_http_repository_extension(served):
    client = tc_http.InferenceServerClient(served.http.removeprefix("http://"))
    names = {(m["name"], m["version"]) for m in client.get_model_repository_index()}
    assert {("iris", "1"), ("iris", "2"), ("churn", "1"), ("lin", "1")} <= names
    client.unload_model("lin")
    assert not client.is_model_ready("lin")
    client.load_model("lin")
    assert client.is_model_ready("lin")


def test_tritonclient_grpc_matches_bundle(served, bundles):
    client = tc_grpc.InferenceServerClient(served.grpc)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    meta = client.get_model_metadata("iris", as_json=True)
    assert meta["platform"] == "onnx_onnxv1" and meta["versions"] == ["1", "2"]
    assert client.get_server_metadata(as_json=True)["name"] == "modelport"
    X = fresh(31, 5)
    inp = tc_grpc.InferInput("X", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)  # tritonclient sends raw_input_contents
    result = client.infer("iris", [inp], model_version="1", request_id="g1",
                          outputs=[tc_grpc.InferRequestedOutput("probabilities")])
    want = mp.load(bundles.iris_v1).predict(X)
    np.testing.assert_allclose(result.as_numpy("probabilities"), want["probabilities"], rtol=1e-6)
    assert result.as_numpy("label") is None  # not requested
    assert result.get_response().id == "g1"
    # string columns through gRPC raw contents
    inputs = []
    for name, arr, dt in (("age", np.array([[40]], dtype=np.int64), "INT64"),
                          ("plan", np.array([[b"pro"]], dtype=object), "BYTES"),
                          ("spend", np.array([[52.5]]), "FP64")):
        i = tc_grpc.InferInput(name, [1, 1], dt)
        i.set_data_from_numpy(arr)
        inputs.append(i)
    result = client.infer("churn", inputs)
    want = mp.load(bundles.churn).predict({"age": [40], "plan": ["pro"], "spend": [52.5]})
    np.testing.assert_allclose(result.as_numpy("probabilities"), want["probabilities"], rtol=1e-9)


def test_grpc_errors_are_status_codes_and_server_keeps_serving(served):
    client = tc_grpc.InferenceServerClient(served.grpc)
    bad = tc_grpc.InferInput("X", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("iris", [bad])
    assert "INVALID_ARGUMENT" in str(err.value.status()) and "X FP32 [N, 4]" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        client.infer("ghost", [bad])
    assert "NOT_FOUND" in str(err.value.status()) and "iris (versions 1, 2)" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("iris", model_version="7")
    assert "NOT_FOUND" in str(err.value.status())
    good = tc_grpc.InferInput("X", [1, 4], "FP32")
    good.set_data_from_numpy(fresh(1, 0))
    assert client.infer("iris", [good]).as_numpy("label").shape == (1,)


GRPC_TYPED_CLIENT = """
import sys, grpc
from modelport.serve.proto import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pbg
stub = pbg.GRPCInferenceServiceStub(grpc.insecure_channel(sys.argv[1]))
req = pb.ModelInferRequest(model_name="iris", model_version="1", id="typed")
t = req.inputs.add(name="X", datatype="FP64", shape=[2, 4])
t.contents.fp64_contents.extend([5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3])
req.parameters["trace"].bool_param = True
resp = stub.ModelInfer(req)
assert not resp.raw_output_contents, "typed request, typed answer"
out = {o.name: o for o in resp.outputs}
import json
print(resp.id, json.dumps(list(out["label"].contents.int64_contents), separators=(",", ":")), json.dumps(list(out["probabilities"].contents.fp32_contents), separators=(",", ":")))
bad = pb.ModelInferRequest(model_name="iris")
bad.inputs.add(name="X", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1.0, 2.0])
try:
    stub.ModelInfer(bad)
except grpc.RpcError as e:
    print(e.code().name, e.details())
"""


def test_grpc_typed_contents(served, bundles, tmp_path):
    """A KServe client sending typed ``contents`` (not raw bytes) gets typed contents back.

    Runs in its own interpreter: our generated protobuf modules and tritonclient's register the
    same ``inference`` package and cannot share a process.
    """
    import subprocess
    import sys

    script = tmp_path / "typed.py"
    script.write_text(GRPC_TYPED_CLIENT)
    out = subprocess.run([sys.executable, str(script), served.grpc], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()
    rid, labels, probs = first.split(" ")
    want = mp.load(bundles.iris_v1).predict(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]))
    assert rid == "typed" and json.loads(labels) == want["label"].tolist()
    np.testing.assert_allclose(json.loads(probs), want["probabilities"].ravel(), rtol=1e-6)
    assert second.startswith("INVALID_ARGUMENT") and "needs 4 elements" in second


def test_auth_over_http_and_grpc(bundles, tmp_path):
    (tmp_path / "tokens").write_text("s3cret\n")
    with process_server([str(bundles.iris_v1), "--auth-token-file", str(tmp_path / "tokens")], tmp_path) as proc:
        client = tc_grpc.InferenceServerClient(proc.grpc)
        assert client.is_server_live()  # health stays open
        with pytest.raises(InferenceServerException) as err:
            client.get_model_metadata("iris")
        assert "UNAUTHENTICATED" in str(err.value.status())
        assert client.get_model_metadata("iris", headers={"authorization": "Bearer s3cret"}).name == "iris"
        hc = tc_http.InferenceServerClient(proc.http.removeprefix("http://"))
        with pytest.raises(InferenceServerException):
            hc.get_model_metadata("iris")
        assert hc.get_model_metadata("iris", headers={"Authorization": "Bearer s3cret"})["name"] == "iris"


def test_sigterm_drains_in_flight_requests(bundles, tmp_path):
    """A request that started before SIGTERM is served to the end, even one whose body is still
    uploading; then the server exits. The upload's second half is sent only after the signal, so
    the request is certainly in flight when it arrives."""
    rows = 300_000
    X = np.resize(fresh(100, 3), (rows, 4))
    raw = X.tobytes()
    head = json.dumps({"inputs": [{"name": "X", "shape": [rows, 4], "datatype": "FP32",
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "outputs": [{"name": "label", "parameters": {"binary_data": True}}]}).encode()
    body = head + raw
    half = len(body) // 2
    with process_server([str(bundles.iris_v1), "--max-rows", "0", "--max-body-size", "none"], tmp_path) as proc:
        result: dict[str, object] = {}
        first_half_sent = threading.Event()
        signalled_event = threading.Event()

        def upload():
            yield body[:half]
            first_half_sent.set()
            signalled_event.wait(30)
            yield body[half:]

        def call() -> None:
            try:
                r = httpx.post(proc.http + "/v2/models/iris/infer", content=upload(), timeout=60,
                               headers={"inference-header-content-length": str(len(head)),
                                        "content-length": str(len(body))})
                result["status"] = r.status_code
                n = int(r.headers["inference-header-content-length"])
                result["labels"] = np.frombuffer(r.content[n:], dtype="<i8")
                result["done"] = time.time()
            except Exception as exc:  # reported below
                result["error"] = exc

        t = threading.Thread(target=call)
        t0 = time.time()
        t.start()
        assert first_half_sent.wait(20)
        time.sleep(1.0)  # the server has parsed the headers and started the request by now
        signalled = time.time()
        proc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # uvicorn is draining (listener closed) before the rest of the body arrives
        signalled_event.set()
        t.join(60)
        code = proc.proc.wait(30)
        assert "error" not in result, (result, proc.output())
        assert result["status"] == 200, proc.output()
        assert len(result["labels"]) == rows  # type: ignore[arg-type]
        assert result["done"] > signalled  # type: ignore[operator]
        # uvicorn re-raises the signal once drained: the conventional "terminated by SIGTERM" status
        assert code in (0, -signal.SIGTERM), proc.output()
        assert time.time() - t0 < 40
        with pytest.raises(httpx.HTTPError):
            httpx.get(proc.http + "/v2/health/live", timeout=2)
