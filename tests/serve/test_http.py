"""The REST server end to end over real HTTP (uvicorn on loopback, httpx as the client)."""

from __future__ import annotations

import json
import struct

import httpx
import numpy as np
import pytest

import modelport as mp
from modelport.serve import ServeConfig

from .conftest import thread_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(bundles):
    with thread_server(ServeConfig(sources=[str(bundles.repo)], max_rows=5000, max_body_bytes=2_000_000)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def iris1(bundles):
    return mp.load(bundles.iris_v1)


@pytest.fixture(scope="module")
def iris2(bundles):
    return mp.load(bundles.iris_v2)


def fresh_iris(n: int = 7, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(4, 8, n), rng.uniform(2, 4.5, n), rng.uniform(1, 7, n), rng.uniform(0.1, 2.5, n)])


def v2(name: str, arr: np.ndarray, datatype: str = "FP32") -> dict:
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": arr.ravel().tolist()}


def outputs_of(resp: httpx.Response) -> dict[str, np.ndarray]:
    assert resp.status_code == 200, resp.text
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in resp.json()["outputs"]}


# ----------------------------------------------------------------------------- health and metadata
def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2").json()
    assert meta["name"] == "modelport"
    assert {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])


def test_model_metadata_from_signature(client):
    meta = client.get("/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["platform"] == "onnx_onnxv1"
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert meta["parameters"]["version"] == "2"  # the default is the highest version
    churn = client.get("/v2/models/churn/versions/1").json()
    assert [(i["name"], i["datatype"]) for i in churn["inputs"]] == [("age", "INT64"), ("plan", "BYTES"), ("spend", "FP64")]
    assert client.get("/v2/models/iris/versions/1/ready").json() == {"name": "iris", "ready": True}


# ----------------------------------------------------------------------------- inference
def test_infer_matches_bundle_predict_on_fresh_data(client, iris1, iris2):
    X = fresh_iris()
    for version, bundle in (("1", iris1), ("2", iris2)):
        resp = client.post(f"/v2/models/iris/versions/{version}/infer", json={"id": "req-7", "inputs": [v2("X", X)]})
        out = outputs_of(resp)
        assert resp.json()["id"] == "req-7" and resp.json()["model_version"] == version
        want = bundle.predict(X.astype(np.float32))
        np.testing.assert_array_equal(out["label"], want["label"])
        np.testing.assert_allclose(out["probabilities"], want["probabilities"], rtol=1e-6)
    # no version: the default (highest) one
    out = outputs_of(client.post("/v2/models/iris/infer", json={"inputs": [v2("X", X)]}))
    np.testing.assert_allclose(out["probabilities"], iris2.predict(X.astype(np.float32))["probabilities"], rtol=1e-6)


def test_nested_data_requested_outputs_and_parameters(client, iris2):
    X = fresh_iris(3)
    body = {
        "inputs": [{"name": "X", "shape": [3, 4], "datatype": "FP64", "data": X.tolist()}],
        "outputs": [{"name": "probabilities"}],
        "parameters": {"trace": True, "note": "x"},
    }
    resp = client.post("/v2/models/iris/infer", json=body)
    assert [o["name"] for o in resp.json()["outputs"]] == ["probabilities"]
    np.testing.assert_allclose(outputs_of(resp)["probabilities"], iris2.predict(X)["probabilities"], rtol=1e-6)


def test_column_form_equals_matrix_form(client, iris2):
    X = fresh_iris(5)
    cols = [{"name": f"f{j}", "shape": [5], "datatype": "FP64", "data": X[:, j].tolist()} for j in range(4)]
    by_col = outputs_of(client.post("/v2/models/iris/infer", json={"inputs": cols}))
    by_mat = outputs_of(client.post("/v2/models/iris/infer", json={"inputs": [v2("X", X)]}))
    np.testing.assert_array_equal(by_col["label"], by_mat["label"])
    np.testing.assert_allclose(by_col["probabilities"], by_mat["probabilities"], rtol=1e-6)


def test_string_columns_as_bytes(client, bundles):
    churn = mp.load(bundles.churn)
    rows = {"age": [25, 61, 40], "plan": ["pro", "max", "basic"], "spend": [61.0, 40.5, 55.0]}
    body = {"inputs": [
        {"name": "age", "shape": [3], "datatype": "INT64", "data": rows["age"]},
        {"name": "plan", "shape": [3, 1], "datatype": "BYTES", "data": rows["plan"]},
        {"name": "spend", "shape": [3], "datatype": "FP64", "data": rows["spend"]},
    ]}
    out = outputs_of(client.post("/v2/models/churn/infer", json=body))
    want = churn.predict(rows)
    np.testing.assert_array_equal(out["label"], want["label"])
    np.testing.assert_allclose(out["probabilities"], want["probabilities"], rtol=1e-9)


def test_binary_extension_request_and_response(client, iris2):
    X = fresh_iris(9).astype(np.float32)
    raw = X.tobytes()
    head = json.dumps({
        "inputs": [{"name": "X", "shape": [9, 4], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}, {"name": "probabilities"}],
    }).encode()
    resp = client.post("/v2/models/iris/infer", content=head + raw,
                       headers={"Inference-Header-Content-Length": str(len(head))})
    assert resp.status_code == 200, resp.text
    n = int(resp.headers["inference-header-content-length"])
    meta = json.loads(resp.content[:n])
    label_meta, proba_meta = meta["outputs"]
    assert label_meta["parameters"]["binary_data_size"] == 9 * 8 and "data" not in label_meta
    labels = np.frombuffer(resp.content[n:n + 72], dtype="<i8")
    want = iris2.predict(X)
    np.testing.assert_array_equal(labels, want["label"])
    np.testing.assert_allclose(np.asarray(proba_meta["data"]).reshape(9, 3), want["probabilities"], rtol=1e-6)
    assert len(resp.content) == n + 72


def test_binary_bytes_tensor(client, bundles):
    churn = mp.load(bundles.churn)
    plans = [b"basic", b"max"]
    raw_plan = b"".join(struct.pack("<I", len(p)) + p for p in plans)
    raw_age = np.array([30, 50], dtype="<i8").tobytes()
    head = json.dumps({"inputs": [
        {"name": "age", "shape": [2, 1], "datatype": "INT64", "parameters": {"binary_data_size": len(raw_age)}},
        {"name": "plan", "shape": [2, 1], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw_plan)}},
        {"name": "spend", "shape": [2, 1], "datatype": "FP64", "data": [48.0, 52.0]},
    ], "parameters": {"binary_data_output": False}}).encode()
    resp = client.post("/v2/models/churn/infer", content=head + raw_age + raw_plan,
                       headers={"inference-header-content-length": str(len(head))})
    out = outputs_of(resp)
    want = churn.predict({"age": [30, 50], "plan": ["basic", "max"], "spend": [48.0, 52.0]})
    np.testing.assert_array_equal(out["label"], want["label"])


def test_records_endpoint(client, iris2, bundles):
    X = fresh_iris(2)
    records = [{f"f{j}": float(X[i, j]) for j in range(4)} for i in range(2)]
    resp = client.post("/v2/models/iris/records", json={"records": records})
    assert resp.status_code == 200, resp.text
    preds = resp.json()["predictions"]
    want = iris2.predict(X)
    assert [p["label"] for p in preds] == want["label"].tolist()
    assert set(preds[0]["probabilities"]) == {"0", "1", "2"}
    np.testing.assert_allclose([list(p["probabilities"].values()) for p in preds], want["probabilities"], rtol=1e-6)
    lin = mp.load(bundles.lin)
    rec = {f"f{j}": 0.5 * j for j in range(5)}
    resp = client.post("/v2/models/lin/records", json={"records": [rec]})
    assert resp.json()["predictions"][0]["prediction"] == pytest.approx(float(lin.predict([rec])["prediction"][0]))


def test_empty_batch_is_fine(client):
    out = outputs_of(client.post("/v2/models/iris/infer", json={"inputs": [{"name": "X", "shape": [0, 4], "datatype": "FP32", "data": []}]}))
    assert out["probabilities"].shape == (0, 3)


# ----------------------------------------------------------------------------- errors
def _error(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    return resp.json()["error"]


def test_unknown_model_or_version_is_404_listing_what_is_served(client):
    msg = _error(client.post("/v2/models/nope/infer", json={"inputs": []}), 404)
    assert "nope" in msg and "iris (versions 1, 2)" in msg and "churn" in msg
    msg = _error(client.get("/v2/models/iris/versions/9"), 404)
    assert "no version '9'" in msg and "1, 2" in msg
    _error(client.get("/v2/models/iris/versions/9/ready"), 404)
    _error(client.get("/v2/nowhere"), 404)


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ([{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}], "input 'X' must have shape [N, 4] (columns f0, f1, f2, f3); got shape [1, 3]"),
        ([{"name": "X", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}], "column 'f0' must be numeric (float64)"),
        ([{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}], "needs 4 elements"),
        ([{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ["a", 1, 2, 3]}], "FP32"),
        ([{"name": "X", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}], "unknown datatype"),
        ([{"name": "Y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "missing input(s): X"),
        ([{"name": "f0", "shape": [1], "datatype": "FP32", "data": [1]}], "missing column(s): f1, f2, f3"),
        ([{"name": "X", "shape": [1, -4], "datatype": "FP32", "data": [1]}], "shape must be a list of non-negative"),
    ],
)
def test_bad_inputs_are_400_naming_input_and_signature(client, inputs, needle):
    msg = _error(client.post("/v2/models/iris/infer", json={"inputs": inputs}), 400)
    assert needle in msg
    assert "X FP32 [N, 4]" in msg or "datatype" in msg or "elements" in msg or "shape must" in msg


@pytest.mark.parametrize("missing", ["NaN", None])
def test_nan_where_not_allowed_is_400(client, missing):
    # JSON has no NaN: clients send "NaN" or null (missing); binary data may hold real NaNs
    body = {"inputs": [{"name": "X", "shape": [2, 5], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 1, missing, 3, 4, 5]}]}
    msg = _error(client.post("/v2/models/lin/infer", json=body), 400)
    assert "NaN" in msg and "row(s) 1" in msg and "f1" in msg
    raw = np.array([[1, np.nan, 3, 4, 5]], dtype="<f8").tobytes()
    head = json.dumps({"inputs": [{"name": "X", "shape": [1, 5], "datatype": "FP64",
                                   "parameters": {"binary_data_size": len(raw)}}]}).encode()
    msg = _error(client.post("/v2/models/lin/infer", content=head + raw,
                             headers={"inference-header-content-length": str(len(head))}), 400)
    assert "row(s) 0" in msg and "X FP64 [N, 5]" in msg


def test_other_client_mistakes_are_4xx(client):
    assert _error(client.post("/v2/models/iris/infer", content=b"{not json"), 400).startswith("the body is not valid JSON")
    assert "non-empty" in _error(client.post("/v2/models/iris/infer", json={"inputs": []}), 400)
    assert "unknown output" in _error(client.post("/v2/models/iris/infer", json={
        "inputs": [v2("X", fresh_iris(1))], "outputs": [{"name": "logits"}]}), 400)
    assert "id" in _error(client.post("/v2/models/iris/infer", json={"id": 5, "inputs": [v2("X", fresh_iris(1))]}), 400)
    assert "binary_data_size" in _error(client.post("/v2/models/iris/infer", json={
        "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}), 400)
    head = b'{"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}'
    assert "does not fit" in _error(client.post("/v2/models/iris/infer", content=head + b"\0" * 8,
                                                headers={"inference-header-content-length": str(len(head))}), 400)
    assert "Inference-Header-Content-Length" in _error(client.post(
        "/v2/models/iris/infer", content=head, headers={"inference-header-content-length": "9999"}), 400)
    assert client.get("/v2/models/iris/infer").status_code == 405
    assert "records" in _error(client.post("/v2/models/iris/records", json={"rows": []}), 400)
    assert "f0" in _error(client.post("/v2/models/iris/records", json={"records": [{"a": 1}]}), 400)
    # the server is still serving
    assert client.post("/v2/models/iris/infer", json={"inputs": [v2("X", fresh_iris(1))]}).status_code == 200


def test_limits_413(client):
    big = np.zeros((6000, 4), dtype=np.float32)
    raw = big.tobytes()
    head = json.dumps({"inputs": [{"name": "X", "shape": [6000, 4], "datatype": "FP32",
                                   "parameters": {"binary_data_size": len(raw)}}]}).encode()
    msg = _error(client.post("/v2/models/iris/infer", content=head + raw,
                             headers={"inference-header-content-length": str(len(head))}), 413)
    assert "6000 rows" in msg and "5000" in msg
    huge = b'{"inputs": [' + b" " * 2_100_000 + b"]}"
    assert "larger than this server accepts" in _error(client.post("/v2/models/iris/infer", content=huge), 413)

    def chunks():  # no Content-Length: counted while reading
        for _ in range(30):
            yield b" " * 100_000

    assert client.post("/v2/models/iris/infer", content=chunks()).status_code == 413
    assert client.get("/v2/health/live").status_code == 200


# ----------------------------------------------------------------------------- repository, metrics, docs
def test_repository_index_unload_load(client):
    index = client.post("/v2/repository/index").json()
    assert {"name": "iris", "version": "1", "state": "READY", "reason": ""} in index
    assert client.post("/v2/repository/models/lin/unload").status_code == 200
    assert client.post("/v2/models/lin/infer", json={"inputs": [v2("X", np.zeros((1, 5)))]}).status_code == 404
    assert client.get("/v2/models/lin/ready").status_code == 404
    entry = next(e for e in client.post("/v2/repository/index", json={}).json() if e["name"] == "lin")
    assert entry["state"] == "UNAVAILABLE"
    assert all(e["state"] == "READY" for e in client.post("/v2/repository/index", json={"ready": True}).json())
    assert client.post("/v2/repository/models/lin/load").status_code == 200
    assert client.post("/v2/models/lin/infer", json={"inputs": [v2("X", np.zeros((1, 5)), "FP64")]}).status_code == 200
    assert client.post("/v2/repository/models/ghost/load").status_code == 404
    assert client.post("/v2/repository/models/ghost/unload").status_code == 404


def scrape(text: str) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics(client):
    before = scrape(client.get("/metrics").text)
    client.post("/v2/models/iris/versions/1/infer", json={"inputs": [v2("X", fresh_iris(3))]})
    client.post("/v2/models/iris/versions/1/infer", json={"inputs": [v2("X", np.zeros((1, 2)))]})
    after = scrape(client.get("/metrics").text)
    iris = {"model": "iris", "version": "1"}

    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        assert key in after, key
        return after[key] - before.get(key, 0.0)

    assert delta("modelport_infer_requests_total", **iris, protocol="rest") == 2
    assert delta("modelport_infer_success_total", **iris, protocol="rest") == 1
    assert delta("modelport_infer_failure_total", **iris, protocol="rest", reason="bad_input") == 1
    assert delta("modelport_infer_seconds_count", **iris) == 1
    assert delta("modelport_batch_rows_sum", **iris) == 3
    for name in ("modelport_queue_seconds_count", "modelport_compute_seconds_count", "modelport_batch_requests_count"):
        assert delta(name, **iris) == 1
    assert after[("modelport_inflight_requests", frozenset({"model": "iris"}.items()))] == 0
    assert after[("modelport_model_loaded", frozenset(iris.items()))] == 1
    assert delta("modelport_http_requests_total", method="POST", route="/v2/models/{model}/infer", status="400") == 1


def test_openapi_and_docs(client):
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v2/models/{model}/infer" in doc["paths"] and "/v2/repository/index" in doc["paths"]
    page = client.get("/docs")
    assert page.headers["content-type"].startswith("text/html") and "/v2/models/{model}/records" in page.text


def test_cors_is_off_by_default(client):
    resp = client.options("/v2/models/iris/infer", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in resp.headers


# ----------------------------------------------------------------------------- auth, CORS, versions, timeouts
def test_bearer_auth(bundles, monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_TOKENS", "alpha, beta")
    token_file = tmp_path / "tokens"
    token_file.write_text("# comment\ngamma\n")
    config = ServeConfig(sources=[str(bundles.iris_v1)], token_env="TEST_TOKENS", token_file=str(token_file))
    with thread_server(config) as url, httpx.Client(base_url=url) as c:
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/health/ready").status_code == 200
        r = c.get("/v2/models/iris")
        assert r.status_code == 401 and "no bearer token" in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/v2/models/iris", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Basic alpha"}).status_code == 401
        for token in ("alpha", "beta", "gamma"):
            assert c.get("/v2/models/iris", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_auth_without_tokens_refuses_to_start(bundles, monkeypatch):
    monkeypatch.delenv("NO_SUCH_TOKENS", raising=False)
    with pytest.raises(mp.ServingError, match="NO_SUCH_TOKENS"):
        ServeConfig(sources=[str(bundles.iris_v1)], token_env="NO_SUCH_TOKENS").tokens()


def test_cors_when_configured(bundles):
    config = ServeConfig(sources=[str(bundles.iris_v1)], cors_origins=["https://app.example"])
    with thread_server(config) as url, httpx.Client(base_url=url) as c:
        r = c.options("/v2/models/iris/infer", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.get("/v2/health/live", headers={"Origin": "https://other.example"})
        assert "access-control-allow-origin" not in r.headers


def test_version_policy_and_default_version(bundles):
    with thread_server(ServeConfig(sources=[str(bundles.repo)], version_policy="latest:1")) as url:
        meta = httpx.get(url + "/v2/models/iris").json()
        assert meta["versions"] == ["2"]
        assert httpx.get(url + "/v2/models/iris/versions/1").status_code == 404
    cfg = ServeConfig(sources=[str(bundles.repo)], version_policy="specific:1", default_versions={"iris": "1"})
    with thread_server(cfg) as url:
        assert httpx.get(url + "/v2/models/iris").json()["parameters"]["version"] == "1"
    cfg = ServeConfig(sources=[str(bundles.repo)], default_versions={"iris": "1"})
    with thread_server(cfg) as url:
        r = httpx.post(url + "/v2/models/iris/infer", json={"inputs": [v2("X", fresh_iris(1))]})
        assert r.json()["model_version"] == "1"


def test_name_override_and_conflicts(bundles, tmp_path):
    with thread_server(ServeConfig(sources=[f"flowers={bundles.iris_v1}"])) as url:
        assert httpx.get(url + "/v2/models/flowers").json()["versions"] == ["1"]
    with pytest.raises(mp.ServingError, match="two bundles claim model 'iris' version 1"):
        from modelport.serve.server import Server

        Server(ServeConfig(sources=[str(bundles.iris_v1), str(bundles.repo)])).load()
    with pytest.raises(mp.ServingError, match="does not exist"):
        Server(ServeConfig(sources=[str(tmp_path / "missing.mpk")]))


def test_compressed_request_body(client, iris2):
    import gzip
    import zlib

    X = fresh_iris(4)
    raw = json.dumps({"inputs": [v2("X", X)]}).encode()
    want = iris2.predict(X.astype(np.float32))["label"]
    for encoding, body in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw))):
        r = client.post("/v2/models/iris/infer", content=body, headers={"content-encoding": encoding})
        np.testing.assert_array_equal(outputs_of(r)["label"], want)
    assert "not valid gzip" in _error(client.post("/v2/models/iris/infer", content=b"junk",
                                                  headers={"content-encoding": "gzip"}), 400)
    assert "not supported" in _error(client.post("/v2/models/iris/infer", content=raw,
                                                 headers={"content-encoding": "br"}), 400)
    bomb = gzip.compress(b" " * 3_000_000)  # inflates past --max-body-size
    assert _error(client.post("/v2/models/iris/infer", content=bomb, headers={"content-encoding": "gzip"}), 413)


def test_broken_bundle_on_repository_load_is_not_a_5xx(bundles, tmp_path):
    import shutil

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copyfile(bundles.lin, repo / "lin.mpk")
    with thread_server(ServeConfig(sources=[str(repo)])) as url:
        data = (repo / "lin.mpk").read_bytes()
        (repo / "lin.mpk").write_bytes(data[: len(data) // 2])  # truncated on disk
        r = httpx.post(url + "/v2/repository/models/lin/load")
        assert 400 <= r.status_code < 500, r.text
        assert "lin.mpk" in r.json()["error"]
        # the client learns which bundle, not where the server keeps it
        assert str(tmp_path) not in r.text and str(tmp_path.resolve()) not in r.text, r.text
        # the loaded version keeps serving
        body = {"inputs": [{"name": "X", "shape": [1, 5], "datatype": "FP64", "data": [0, 0, 0, 0, 0]}]}
        assert httpx.post(url + "/v2/models/lin/infer", json=body).status_code == 200


def test_metadata_does_not_show_server_paths(client, bundles):
    for path in ("/v2/models/iris/versions/1", "/v2/models/churn", "/v2/models/lin"):
        meta = client.get(path)
        assert meta.status_code == 200
        assert str(bundles.repo) not in meta.text and str(bundles.repo.resolve()) not in meta.text, meta.text
    params = client.get("/v2/models/iris/versions/1").json()["parameters"]
    assert params["source"] == "iris/1.mpk"  # relative to the source directory it was found in
    assert client.get("/v2/models/churn").json()["parameters"]["source"] == "churn.mpk"


def test_string_labels_are_bytes(client, bundles):
    tiers = mp.load(bundles.tiers)
    X = fresh_iris(5)
    meta = client.get("/v2/models/tiers").json()
    assert {"name": "label", "datatype": "BYTES", "shape": [-1]} in meta["outputs"]
    resp = client.post("/v2/models/tiers/infer", json={"inputs": [v2("X", X)]})
    label = next(o for o in resp.json()["outputs"] if o["name"] == "label")
    assert label["datatype"] == "BYTES" and label["data"] == tiers.predict(X.astype(np.float32))["label"].tolist()
    # binary: 4-byte length prefixed elements
    resp = client.post("/v2/models/tiers/infer", json={
        "inputs": [v2("X", X)], "outputs": [{"name": "label", "parameters": {"binary_data": True}}]})
    n = int(resp.headers["inference-header-content-length"])
    from modelport.serve.codec import from_raw

    got = from_raw("label", "BYTES", [5], resp.content[n:])
    assert [g.decode() for g in got] == tiers.predict(X.astype(np.float32))["label"].tolist()
    preds = client.post("/v2/models/tiers/records", json={"records": [{f"f{j}": float(X[0, j]) for j in range(4)}]}).json()
    assert preds["predictions"][0]["label"] in {"gold", "silver", "bronze"}
    assert set(preds["predictions"][0]["probabilities"]) == set(tiers.classes)
