"""A slow or runaway model cannot stall the server: models never run on the event loop (health
probes and other models stay fast while one is busy), ``--request-timeout`` answers 504 /
DEADLINE_EXCEEDED at the timeout and stops the ONNX Runtime call, a gRPC client's own deadline
stops it too, one model's excess requests queue or are shed with 503 + Retry-After, and SIGTERM
ends the process within the drain timeout even with a call stuck in an endless Loop.

The runaway model is ``spin`` (conftest): an ONNX Loop that runs max(X) times, so X = 1e18
never ends on its own. Real servers in subprocesses (``modelport serve``), HTTP and gRPC.
"""

from __future__ import annotations

import json
import signal
import struct
import threading
import time

import httpx
import numpy as np
import pytest

from .conftest import process_server, spin_body

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:tritonclient.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:geventhttpclient.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gevent.*"),
]

tc_grpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

TIMEOUT = 2.0
ENDLESS = 1e18
IRIS_ROW = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}


@pytest.fixture(scope="module")
def server(bundles, spin_bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("overload")
    # --max-batch-size 1: every request is its own call, so "one runs, four wait" is exact
    args = [str(spin_bundle), str(bundles.iris_v1), "--request-timeout", str(TIMEOUT),
            "--max-queue", "4", "--max-batch-size", "1"]
    with process_server(args, tmp) as proc:
        yield proc


def _post(url: str, body: dict, timeout: float = 30) -> tuple[httpx.Response, float]:
    t = time.perf_counter()
    r = httpx.post(url, json=body, timeout=timeout)
    return r, time.perf_counter() - t


def _in_thread(fn, *args) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn(*args)
        except Exception as exc:  # reported by the test
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _spin_is_free(server) -> None:
    """The spin model answers a one-iteration request at once: no call of it is stuck."""
    r, took = _post(server.http + "/v2/models/spin/infer", spin_body(1))
    assert r.status_code == 200, r.text
    assert took < 1.0, took


def test_a_runaway_request_gets_504_at_the_timeout_and_its_call_is_stopped(server):
    r, took = _post(server.http + "/v2/models/spin/infer", spin_body(ENDLESS))
    assert r.status_code == 504, r.text
    assert "timed out" in r.json()["error"]
    assert TIMEOUT - 0.1 < took < TIMEOUT + 1.5, took
    # spin has one scoring slot (--max-concurrency 1): it is free again only if the call was stopped
    _spin_is_free(server)


def test_health_probes_and_other_models_stay_fast_while_a_model_is_stuck(server):
    stuck, out = _in_thread(_post, server.http + "/v2/models/spin/infer", spin_body(ENDLESS))
    time.sleep(0.3)  # the call is running now
    worst_probe = worst_infer = 0.0
    with httpx.Client(base_url=server.http, timeout=10) as c:
        for _ in range(10):
            for path in ("/v2/health/live", "/v2/health/ready"):
                t = time.perf_counter()
                assert c.get(path).status_code == 200
                worst_probe = max(worst_probe, time.perf_counter() - t)
            t = time.perf_counter()
            assert c.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200
            worst_infer = max(worst_infer, time.perf_counter() - t)
            time.sleep(0.05)
    assert stuck.is_alive()  # all of the above happened while the runaway call ran
    stuck.join(10)
    assert out["value"][0].status_code == 504
    assert worst_probe < 0.5, worst_probe
    assert worst_infer < 0.5, worst_infer


def test_a_large_request_is_decoded_and_answered_off_the_event_loop(bundles, tmp_path):
    """Decoding work that runs in Python (here a million length-prefixed text elements in the
    binary extension: seconds of it) happens in a worker thread, so probes keep being answered.
    (Work inside one C call, such as orjson parsing a JSON body, holds the interpreter lock
    wherever it runs: docs/serving.md gives the figure.)"""
    rows = 1_000_000
    ages = np.full(rows, 40, dtype="<i8").tobytes()
    plans = (struct.pack("<I", 3) + b"pro") * rows
    spends = np.full(rows, 52.5, dtype="<f8").tobytes()
    head = json.dumps({"inputs": [
        {"name": "age", "shape": [rows], "datatype": "INT64", "parameters": {"binary_data_size": len(ages)}},
        {"name": "plan", "shape": [rows], "datatype": "BYTES", "parameters": {"binary_data_size": len(plans)}},
        {"name": "spend", "shape": [rows], "datatype": "FP64", "parameters": {"binary_data_size": len(spends)}},
    ], "outputs": [{"name": "label", "parameters": {"binary_data": True}}]}).encode()
    body = head + ages + plans + spends
    with process_server([str(bundles.churn), "--max-rows", "0"], tmp_path) as proc:

        def big() -> httpx.Response:
            return httpx.post(proc.http + "/v2/models/churn/infer", content=body, timeout=120,
                              headers={"inference-header-content-length": str(len(head))})

        started = time.perf_counter()
        call, out = _in_thread(big)
        worst = 0.0
        with httpx.Client(base_url=proc.http, timeout=30) as c:
            while call.is_alive():
                t = time.perf_counter()
                assert c.get("/v2/health/live").status_code == 200
                worst = max(worst, time.perf_counter() - t)
                time.sleep(0.02)
        took = time.perf_counter() - started
    assert out["value"].status_code == 200, out["value"].text[:300]
    # decoding on the event loop would hold a probe for the whole decode (seconds); off it, a probe
    # waits at most a few thread switches: well under a third of the call, however loaded the machine
    assert worst < max(0.5, took / 3), (worst, took)


def test_a_saturated_model_queues_then_sheds_with_retry_after_and_the_others_answer(server):
    # 1 call runs, --max-queue 4 wait, the rest are shed at once
    threads = [_in_thread(_post, server.http + "/v2/models/spin/infer", spin_body(ENDLESS)) for _ in range(8)]
    time.sleep(0.5)
    r, took = _post(server.http + "/v2/models/iris/infer", IRIS_ROW)
    still_running = sum(t.is_alive() for t, _ in threads)
    # answered while the saturated model's calls still ran (they end at the timeout), not after them
    assert r.status_code == 200 and still_running and took < TIMEOUT, (r.status_code, still_running, took)
    for t, _ in threads:
        t.join(15)
    responses = [out["value"][0] for _, out in threads]
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(503) >= 3 and set(statuses) <= {503, 504}, statuses
    shed = next(r for r in responses if r.status_code == 503)
    assert shed.headers["retry-after"] == "1" and "queue is full" in shed.json()["error"]
    _spin_is_free(server)


def test_a_body_that_arrives_too_slowly_gets_504(server):
    def slow_upload():
        yield b'{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",'
        time.sleep(TIMEOUT + 1.5)
        yield b' "data": [5.1, 3.5, 1.4, 0.2]}]}'

    t = time.perf_counter()
    try:
        r = httpx.post(server.http + "/v2/models/iris/infer", content=slow_upload(), timeout=30,
                       headers={"content-type": "application/json"})
        status = r.status_code
        assert status == 504 and "body was still arriving" in r.json()["error"], r.text
    except httpx.HTTPError:  # the server answered and closed while the client was still sending: fine
        status = 504
    assert status == 504
    assert time.perf_counter() - t < TIMEOUT + 3.0


def test_grpc_timeout_is_deadline_exceeded_and_the_client_deadline_stops_the_call(server):
    client = tc_grpc.InferenceServerClient(server.grpc)
    x = tc_grpc.InferInput("X", [1, 1], "FP32")
    x.set_data_from_numpy(np.array([[ENDLESS]], dtype=np.float32))
    t = time.perf_counter()
    with pytest.raises(InferenceServerException) as err:
        client.infer("spin", [x])  # no client deadline: the server's --request-timeout answers
    assert "DEADLINE_EXCEEDED" in str(err.value.status()) and "timed out" in err.value.message()
    assert time.perf_counter() - t < TIMEOUT + 1.5
    _spin_is_free(server)
    # a client deadline shorter than the server's: the call stops when the client gives up
    with pytest.raises(InferenceServerException) as err:
        client.infer("spin", [x], client_timeout=0.5)
    assert "DEADLINE" in str(err.value.status()) or "Deadline" in err.value.message()
    time.sleep(0.2)
    _spin_is_free(server)  # well before the server's own 2 s timeout would have freed the slot


def test_sigterm_ends_the_process_even_with_calls_stuck_in_an_endless_loop(spin_bundle, tmp_path):
    drain = 2.0
    args = [str(spin_bundle), "--request-timeout", "0", "--drain-timeout", str(drain)]
    with process_server(args, tmp_path) as proc:
        http_call, http_out = _in_thread(_post, proc.http + "/v2/models/spin/infer", spin_body(ENDLESS))

        def grpc_call() -> str:
            x = tc_grpc.InferInput("X", [1, 1], "FP32")
            x.set_data_from_numpy(np.array([[ENDLESS]], dtype=np.float32))
            try:
                tc_grpc.InferenceServerClient(proc.grpc).infer("spin", [x])
            except InferenceServerException as exc:
                return str(exc.status())
            return "OK"

        rpc, rpc_out = _in_thread(grpc_call)
        time.sleep(0.5)
        assert http_call.is_alive() and rpc.is_alive()  # both stuck, no timeout to save them
        t = time.perf_counter()
        proc.proc.send_signal(signal.SIGTERM)
        code = proc.proc.wait(drain + 5)
        took = time.perf_counter() - t
        http_call.join(5)
        rpc.join(5)
    assert code in (0, -signal.SIGTERM), proc.output()
    assert took < drain + 3.0, took
    # the stuck requests were answered (503: shut down before it was answered), not left hanging
    if "value" in http_out:
        assert http_out["value"][0].status_code == 503, http_out["value"][0].text
    assert rpc_out.get("value") in ("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED"), rpc_out
