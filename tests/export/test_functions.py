"""The serverless handlers, invoked in-process with each platform's own request shapes: AWS events
as the platforms document them, Cloud Functions through the Functions Framework's Flask app, and
Azure through the azure-functions library's HttpRequest and the app's registered function."""

from __future__ import annotations

import base64
import gzip
import json

import numpy as np
import pytest

import modelport as mp
from modelport.errors import InputError
from modelport.export import export

from .conftest import CHURN_ROWS, alb_event, http_v2_event, import_file, rest_v1_event


@pytest.fixture(scope="module")
def artifacts(bundles, tmp_path_factory):
    root = tmp_path_factory.mktemp("functions")
    out = {}
    for target in ("lambda", "gcf", "azure"):
        out[target] = export(bundles.churn, target, root / target, deps="none").path
    out["lambda-iris"] = export(bundles.iris, "lambda", root / "lambda-iris", deps="none").path
    return out


@pytest.fixture(scope="module")
def churn_lambda(artifacts):
    return import_file(artifacts["lambda"] / "function" / "lambda_function.py", "lambda_function_churn").handler


@pytest.fixture(scope="module")
def iris_lambda(artifacts):
    return import_file(artifacts["lambda-iris"] / "function" / "lambda_function.py", "lambda_function_iris").handler


def expected_records(bundle_path, rows):
    b = mp.load(bundle_path)
    r = b.predict(rows)
    names = [str(c) for c in b.classes]
    return [{"label": r["label"][i].item(), "probabilities": dict(zip(names, r["probabilities"][i].tolist()))}
            for i in range(len(rows))]


def same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["label"] == w["label"]
        assert g["probabilities"].keys() == w["probabilities"].keys()
        np.testing.assert_allclose(list(g["probabilities"].values()), list(w["probabilities"].values()), rtol=1e-12)


def churn_v2_body():
    return json.dumps({"id": "r1", "inputs": [
        {"name": "age", "datatype": "INT64", "shape": [2], "data": [r["age"] for r in CHURN_ROWS]},
        {"name": "plan", "datatype": "BYTES", "shape": [2], "data": [r["plan"] for r in CHURN_ROWS]},
        {"name": "spend", "datatype": "FP64", "shape": [2], "data": [r["spend"] for r in CHURN_ROWS]},
    ]}).encode()


EVENTS = {
    "rest-v1": lambda m, p, b=None, **kw: rest_v1_event(m, p, b, **kw),
    "http-api-v2": lambda m, p, b=None, **kw: http_v2_event(m, p, b, **kw),
    "http-api-v2-stage": lambda m, p, b=None, **kw: http_v2_event(m, p, b, stage="prod", **kw),
    "function-url": lambda m, p, b=None, **kw: http_v2_event(m, p, b, function_url=True, **kw),
    "alb": lambda m, p, b=None, **kw: alb_event(m, p, b),
}


def body_of(response):
    raw = response["body"]
    data = base64.b64decode(raw) if response["isBase64Encoded"] else raw.encode()
    return data


def headers_of(response):
    if "headers" in response:
        return response["headers"]
    return {k: ", ".join(v) for k, v in response["multiValueHeaders"].items()}


# ============================================================================ AWS Lambda
@pytest.mark.parametrize("shape", list(EVENTS))
def test_lambda_records_and_v2_in_every_event_shape(shape, churn_lambda, bundles):
    make = EVENTS[shape]
    want = expected_records(bundles.churn, CHURN_ROWS)
    for path in ("/v2/models/churn/records", "/"):
        out = churn_lambda(make("POST", path, json.dumps({"records": CHURN_ROWS}).encode()), None)
        assert out["statusCode"] == 200, out
        assert headers_of(out)["content-type"].startswith("application/json")
        doc = json.loads(body_of(out))
        assert doc["model_name"] == "churn"
        same(doc["predictions"], want)
    out = churn_lambda(make("POST", "/v2/models/churn/infer", churn_v2_body()), None)
    assert out["statusCode"] == 200, out
    doc = json.loads(body_of(out))
    assert doc["id"] == "r1"
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert outputs["label"]["data"] == [w["label"] for w in want]
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (2, 2)),
                               [list(w["probabilities"].values()) for w in want], rtol=1e-12)
    if shape == "alb":
        assert out["statusDescription"] == "200 OK"
    if shape == "rest-v1":
        assert out["multiValueHeaders"]["content-type"] == [out["headers"]["content-type"]]


@pytest.mark.parametrize("shape", list(EVENTS))
def test_lambda_health_metadata_and_errors(shape, churn_lambda):
    make = EVENTS[shape]
    out = churn_lambda(make("GET", "/v2/health/ready"), None)
    assert (out["statusCode"], json.loads(body_of(out))) == (200, {"ready": True})
    meta = json.loads(body_of(churn_lambda(make("GET", "/v2/models/churn"), None)))
    assert meta["name"] == "churn" and {i["name"] for i in meta["inputs"]} == {"age", "plan", "spend"}
    bad = churn_lambda(make("POST", "/v2/models/churn/records", json.dumps({"records": [{"age": 3}]}).encode()), None)
    assert bad["statusCode"] == 400
    err = json.loads(body_of(bad))
    assert "missing column(s): plan, spend" in err["error"] and "expects" in err["error"]
    garbage = churn_lambda(make("POST", "/v2/models/churn/infer", b"{not json"), None)
    assert garbage["statusCode"] == 400 and "not valid JSON" in json.loads(body_of(garbage))["error"]
    assert churn_lambda(make("POST", "/v2/models/fraud/infer", churn_v2_body()), None)["statusCode"] == 404
    assert churn_lambda(make("GET", "/v2/models/churn/infer"), None)["statusCode"] == 405
    metrics = churn_lambda(make("GET", "/metrics"), None)
    assert metrics["statusCode"] == 404 and "not served by a function" in json.loads(body_of(metrics))["error"]
    unload = churn_lambda(make("POST", "/v2/repository/models/churn/unload", b"{}"), None)
    assert unload["statusCode"] == 404
    # the refused unload left the model in place
    assert churn_lambda(make("GET", "/v2/models/churn/ready"), None)["statusCode"] == 200


def test_lambda_binary_tensors_and_compressed_bodies(iris_lambda, bundles):
    X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    want = mp.load(bundles.iris).predict(X)
    head = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 4],
                                   "parameters": {"binary_data_size": X.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    body = head + X.tobytes()
    for make in (rest_v1_event, http_v2_event):
        out = iris_lambda(make("POST", "/v2/models/iris/infer", body, base64_body=True,
                               headers={"Inference-Header-Content-Length": str(len(head)),
                                        "Content-Type": "application/octet-stream"}), None)
        assert out["statusCode"] == 200, out
        assert out["isBase64Encoded"] is True  # binary outputs travel base64-encoded, as API Gateway expects
        raw = base64.b64decode(out["body"])
        n = int(headers_of(out)["inference-header-content-length"])
        doc = json.loads(raw[:n])
        blobs = raw[n:]
        sizes = {o["name"]: o["parameters"]["binary_data_size"] for o in doc["outputs"]}
        labels = np.frombuffer(blobs[:sizes["label"]], dtype="<i8")
        probs = np.frombuffer(blobs[sizes["label"]:], dtype="<f4").reshape(2, 3)
        np.testing.assert_array_equal(labels, want["label"])
        np.testing.assert_array_equal(probs, want["probabilities"])
    gz = gzip.compress(json.dumps({"records": [dict(zip(["f0", "f1", "f2", "f3"], map(float, X[0])))]}).encode())
    out = iris_lambda(http_v2_event("POST", "/v2/models/iris/records", gz, base64_body=True,
                                    headers={"content-encoding": "gzip"}), None)
    assert out["statusCode"] == 200 and json.loads(out["body"])["predictions"][0]["label"] == int(want["label"][0])
    bad = http_v2_event("POST", "/v2/models/iris/records", b"x")
    bad["isBase64Encoded"], bad["body"] = True, "%%% not base64"
    out = iris_lambda(bad, None)
    assert out["statusCode"] == 400 and "not base64" in json.loads(out["body"])["error"]
    # a body declared larger than the header's length: the server's own check, through Lambda
    out = iris_lambda(http_v2_event("POST", "/v2/models/iris/infer", head, base64_body=True,
                                    headers={"inference-header-content-length": "99999"}), None)
    assert out["statusCode"] == 400


def test_lambda_direct_invocation(churn_lambda, bundles):
    doc = churn_lambda({"records": CHURN_ROWS}, None)
    same(doc["predictions"], expected_records(bundles.churn, CHURN_ROWS))
    v2 = churn_lambda(json.loads(churn_v2_body()), None)
    assert [o["name"] for o in v2["outputs"]] == ["label", "probabilities"]
    with pytest.raises(InputError, match=r"'age'"):
        churn_lambda({"records": [{"age": 1.5, "plan": "pro", "spend": 3.0}]}, None)
    with pytest.raises(InputError, match="neither an HTTP request"):
        churn_lambda({"hello": "world"}, None)
    with pytest.raises(InputError, match="JSON object"):
        churn_lambda(["records"], None)


def test_lambda_loads_the_bundle_once_per_container(artifacts, churn_lambda, monkeypatch):
    from modelport.bundle.core import Bundle
    from modelport.export import aws_lambda

    reads = []
    original = Bundle.read.__func__

    def counting(cls, *args, **kwargs):
        reads.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Bundle, "read", classmethod(counting))
    for _ in range(20):
        assert churn_lambda(http_v2_event("POST", "/", json.dumps({"records": CHURN_ROWS[:1]}).encode()),
                            None)["statusCode"] == 200
    # a second import of the entry module (Lambda re-runs nothing, but a handler built again) reuses it
    again = aws_lambda.handler_for(artifacts["lambda"] / "function" / "model" / "churn.mpk")
    assert again(http_v2_event("GET", "/v2/health/ready"), None)["statusCode"] == 200
    assert reads == []


# ============================================================================ Google Cloud Functions
@pytest.fixture(scope="module")
def gcf_client(artifacts):
    import functions_framework

    app = functions_framework.create_app(target="predict", source=str(artifacts["gcf"] / "function" / "main.py"))
    return app.test_client()


def test_gcf_through_the_functions_framework(gcf_client, bundles, artifacts):
    want = expected_records(bundles.churn, CHURN_ROWS)
    for path in ("/v2/models/churn/records", "/"):
        r = gcf_client.post(path, json={"records": CHURN_ROWS})
        assert r.status_code == 200, r.data
        assert r.headers["content-type"].startswith("application/json")
        same(r.get_json()["predictions"], want)
    r = gcf_client.post("/v2/models/churn/infer", data=churn_v2_body(), content_type="application/json")
    assert r.status_code == 200 and r.get_json()["id"] == "r1"
    assert gcf_client.get("/v2/health/ready").get_json() == {"ready": True}
    assert gcf_client.get("/v2/models/churn").get_json()["name"] == "churn"
    bad = gcf_client.post("/v2/models/churn/records", json={"records": [{"age": 3, "plan": "pro"}]})
    assert bad.status_code == 400 and "missing column(s): spend" in bad.get_json()["error"]
    assert gcf_client.post("/v2/models/nope/records", json={"records": CHURN_ROWS}).status_code == 404
    assert gcf_client.get("/metrics").status_code == 404
    gz = gzip.compress(json.dumps({"records": CHURN_ROWS}).encode())
    r = gcf_client.post("/v2/models/churn/records", data=gz,
                        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200
    same(r.get_json()["predictions"], want)
    requirements = (artifacts["gcf"] / "function" / "requirements.txt").read_text().splitlines()
    assert requirements[0].startswith("functions-framework") and any(r.startswith("onnxruntime==") for r in requirements)


# ============================================================================ Azure Functions
@pytest.fixture(scope="module")
def azure_app(artifacts):
    return import_file(artifacts["azure"] / "function" / "function_app.py", "function_app_churn")


def test_azure_function_registration(azure_app, artifacts):
    import azure.functions as func

    (fn,) = azure_app.app.get_functions()
    trigger = fn.get_bindings_dict()["bindings"][0]
    assert trigger["type"] == "httpTrigger" and trigger["route"] == "{*path}"
    assert trigger["authLevel"] == func.AuthLevel.FUNCTION
    assert {str(m.value) for m in trigger["methods"]} == {"GET", "HEAD", "POST"}
    host = json.loads((artifacts["azure"] / "function" / "host.json").read_text())
    assert host["version"] == "2.0" and host["extensions"]["http"]["routePrefix"] == ""
    azure_app.user_function = fn.get_user_function()


def _azure(app, method, path, body=b"", headers=None):
    import azure.functions as func

    fn = getattr(app, "user_function", None) or app.app.get_functions()[0].get_user_function()
    app.user_function = fn
    req = func.HttpRequest(method=method, url=f"https://churn-app.azurewebsites.net{path}",
                           headers={"content-type": "application/json", "x-functions-key": "k", **(headers or {})},
                           params={"code": "k"} if "?" in path else {}, route_params={"path": path.lstrip("/")},
                           body=body)
    return fn(req)


def test_azure_requests(azure_app, bundles):
    import azure.functions as func

    want = expected_records(bundles.churn, CHURN_ROWS)
    for path in ("/v2/models/churn/records", "/", "/api/v2/models/churn/records"):
        r = _azure(azure_app, "POST", path, json.dumps({"records": CHURN_ROWS}).encode())
        assert isinstance(r, func.HttpResponse) and r.status_code == 200, r.get_body()
        assert r.headers["content-type"].startswith("application/json")
        same(json.loads(r.get_body())["predictions"], want)
    r = _azure(azure_app, "POST", "/v2/models/churn/infer?code=k", churn_v2_body())
    assert r.status_code == 200 and json.loads(r.get_body())["id"] == "r1"
    assert json.loads(_azure(azure_app, "GET", "/v2/health/ready").get_body()) == {"ready": True}
    bad = _azure(azure_app, "POST", "/v2/models/churn/records", b'{"records": [{"age": "old"}]}')
    assert bad.status_code == 400
    assert _azure(azure_app, "GET", "/v2/models/churn/infer").status_code == 405


def test_lambda_headers_outside_latin1_are_not_an_error(churn_lambda):
    """API Gateway hands over header values as decoded text; one that is not latin-1 is not a crash."""
    out = churn_lambda(http_v2_event("POST", "/", json.dumps({"records": CHURN_ROWS}).encode(),
                                     headers={"x-note": "caf\u00e9 \u2615", "user-agent": "\u00fcber/1"}), None)
    assert out["statusCode"] == 200
