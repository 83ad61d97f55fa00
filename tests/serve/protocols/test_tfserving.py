"""TF Serving's REST API and KServe's V1 protocol through a real server, with the request bodies
of TF Serving's REST API documentation (row "instances", columnar "inputs", :classify / :regress
with "examples" and "context", model status and metadata) and of KServe's V1 protocol."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

import modelport as mp
from modelport.serve import ServeConfig

from ..conftest import thread_server

pytestmark = pytest.mark.integration

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.4, 1.3]]
CHURN = [{"age": 42, "plan": "pro", "spend": 55.0}, {"age": 23, "plan": "max", "spend": 61.5}]


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory):
    route = tmp_path_factory.mktemp("tfs") / "routing.toml"
    route.write_text(f'[iris]\nproduction = {{ model = "{bundles.iris_v1}", weight = 100 }}\n'
                     f'canary = {{ model = "{bundles.iris_v2}", weight = 0 }}\n')
    config = ServeConfig(sources=[str(bundles.churn), str(bundles.lin), str(bundles.tiers)], routing=[str(route)])
    with thread_server(config) as url:
        yield url


def test_predict_row_and_columnar_forms(server, bundles):
    iris, churn = mp.load(bundles.iris_v1), mp.load(bundles.churn)
    # row format: a list of instances, each a list of the model's input values (a [N, 4] tensor)
    r = httpx.post(f"{server}/v1/models/iris:predict", json={"signature_name": "serving_default", "instances": ROWS})
    assert r.status_code == 200, r.text
    want = iris.predict(np.array(ROWS, dtype=np.float32))
    preds = r.json()["predictions"]
    assert [p["label"] for p in preds] == want["label"].tolist()
    np.testing.assert_allclose([p["probabilities"] for p in preds], want["probabilities"], rtol=1e-6)
    assert r.headers["x-model-version"] == "1" and r.headers["x-model-arm"] == "production"
    # row format with named features, as in the docs' {"instances": [{"tag": "foo", "signal": [...]}, ...]}
    r = httpx.post(f"{server}/v1/models/churn:predict", json={"instances": CHURN})
    assert r.status_code == 200, r.text
    import pandas as pd

    expected = churn.predict(pd.DataFrame(CHURN))
    assert [p["label"] for p in r.json()["predictions"]] == expected["label"].tolist()
    # columnar format: "inputs" maps each input to its values; the answer is "outputs"
    cols = {k: [row[k] for row in CHURN] for k in CHURN[0]}
    r = httpx.post(f"{server}/v1/models/churn:predict", json={"inputs": cols})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"]
    assert out["label"] == expected["label"].tolist()
    np.testing.assert_allclose(out["probabilities"], expected["probabilities"], rtol=1e-6)
    r = httpx.post(f"{server}/v1/models/iris:predict", json={"inputs": {"X": ROWS}})
    assert r.status_code == 200 and r.json()["outputs"]["label"] == want["label"].tolist()
    # one output for a regressor: "predictions" is the list of values
    x = np.random.default_rng(0).normal(size=(3, 5))
    r = httpx.post(f"{server}/v1/models/lin:predict", json={"instances": x.tolist()})
    np.testing.assert_allclose(np.ravel(r.json()["predictions"]), mp.load(bundles.lin).predict(x)["prediction"].ravel(),
                               rtol=1e-6)


def test_versions_and_labels(server, bundles):
    v2 = mp.load(bundles.iris_v2).predict(np.array(ROWS, dtype=np.float32))
    for path in ("/v1/models/iris/versions/2:predict", "/v1/models/iris/labels/canary:predict"):
        r = httpx.post(server + path, json={"instances": ROWS})
        assert r.status_code == 200 and r.headers["x-model-version"] == "2", (path, r.text)
        np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]], v2["probabilities"], rtol=1e-6)
    r = httpx.post(f"{server}/v1/models/iris/labels/nightly:predict", json={"instances": ROWS})
    assert r.status_code == 404 and "no version label 'nightly'; its labels: canary, production" in r.json()["error"]
    r = httpx.post(f"{server}/v1/models/iris/versions/9:predict", json={"instances": ROWS})
    assert r.status_code == 404 and "error" in r.json()


def test_classify_and_regress(server, bundles):
    churn = mp.load(bundles.churn)
    # the docs' form: features shared by every example go in "context"
    body = {"signature_name": "serving_default", "context": {"plan": "pro"},
            "examples": [{"age": 42, "spend": 55.0}, {"age": 23, "spend": 20.0}]}
    r = httpx.post(f"{server}/v1/models/churn:classify", json=body)
    assert r.status_code == 200, r.text
    import pandas as pd

    want = churn.predict(pd.DataFrame([{"plan": "pro", **e} for e in body["examples"]]))["probabilities"]
    result = r.json()["result"]
    assert [[c for c, _ in row] for row in result] == [["0", "1"]] * 2
    np.testing.assert_allclose([[p for _, p in row] for row in result], want, rtol=1e-6)
    x = np.random.default_rng(1).normal(size=(2, 5))
    examples = [{f"f{j}": float(v) for j, v in enumerate(row)} for row in x]
    r = httpx.post(f"{server}/v1/models/lin:regress", json={"examples": examples})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["result"], mp.load(bundles.lin).predict(x)["prediction"].ravel(), rtol=1e-6)
    wrong = httpx.post(f"{server}/v1/models/lin:classify", json={"examples": examples})
    assert wrong.status_code == 400 and ":classify needs a classifier" in wrong.json()["error"]


def test_status_metadata_and_kserve_v1(server):
    r = httpx.get(f"{server}/v1/models/iris")
    assert r.status_code == 200
    doc = r.json()
    assert doc["ready"] is True and doc["name"] == "iris"  # KServe V1
    assert [s["version"] for s in doc["model_version_status"]] == ["1", "2"]
    assert {s["state"] for s in doc["model_version_status"]} == {"AVAILABLE"}
    assert httpx.get(f"{server}/v1/models/iris/versions/2").json()["model_version_status"][0]["version"] == "2"
    assert httpx.get(f"{server}/v1/models/iris/labels/production").json()["model_version_status"][0]["version"] == "1"
    meta = httpx.get(f"{server}/v1/models/churn/metadata").json()
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert meta["model_spec"]["name"] == "churn"
    assert set(sig["outputs"]) == {"label", "probabilities"} and sig["inputs"]
    assert all(v["dtype"].startswith("DT_") for v in sig["inputs"].values())
    assert httpx.get(server + "/").json() == {"status": "alive"}
    assert sorted(httpx.get(f"{server}/v1/models").json()["models"]) == ["churn", "iris", "lin", "tiers"]
    # KServe V1's predict is TF Serving's
    r = httpx.post(f"{server}/v1/models/tiers:predict", json={"instances": ROWS[:1]})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] in ("gold", "silver", "bronze")


@pytest.mark.parametrize("path,body,status,needle", [
    ("/v1/models/iris:predict", b"{not json", 400, "not valid JSON"),
    ("/v1/models/iris:predict", b"[1, 2]", 400, "must be a JSON object"),
    ("/v1/models/iris:predict", {"instances": ROWS, "inputs": {"X": ROWS}}, 400, "this one has both"),
    ("/v1/models/iris:predict", {"rows": ROWS}, 400, "unknown key(s) 'rows'"),
    ("/v1/models/iris:predict", {}, 400, "this one has neither"),
    ("/v1/models/iris:predict", {"instances": [[1.0, 2.0]]}, 400, "expects"),
    ("/v1/models/iris:predict", {"instances": [["a", "b", "c", "d"]]}, 400, ""),
    ("/v1/models/iris:predict", {"instances": "x"}, 400, ""),
    ("/v1/models/iris:predict", {"signature_name": "other", "instances": ROWS}, 400, "is not served"),
    ("/v1/models/churn:predict", {"instances": [{"age": 42, "plan": "pro"}]}, 400, "spend"),
    ("/v1/models/churn:predict", {"inputs": {"age": [1, 2], "plan": ["pro"], "spend": [1.0, 2.0]}}, 400, ""),
    ("/v1/models/churn:classify", {"examples": "x"}, 400, "must be a list of objects"),
    ("/v1/models/churn:classify", {"examples": [{}], "context": 3}, 400, '"context" must be an object'),
    ("/v1/models/churn:classify", {"instances": CHURN}, 400, 'has "examples"'),
    ("/v1/models/ghost:predict", {"instances": ROWS}, 404, "ghost"),
    ("/v1/models/iris:explain", {"instances": ROWS}, 404, ":explain"),
    ("/v1/models/iris:frobnicate", {"instances": ROWS}, 404, "answers :predict, :classify and :regress"),
])
def test_malformed_bodies_are_4xx_with_a_message(server, path, body, status, needle):
    kw = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(server + path, **kw)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert needle in error and len(error) < 2000
    assert Path(server).name not in error
    assert httpx.post(f"{server}/v1/models/iris:predict", json={"instances": ROWS}).status_code == 200  # still serving


def test_wrong_methods(server):
    assert httpx.get(f"{server}/v1/models/iris:predict").status_code == 405
    assert httpx.post(f"{server}/v1/models/iris").status_code == 405
    assert httpx.post(f"{server}/v1/models/iris/metadata").status_code == 405
    assert httpx.get(f"{server}/v1/models/iris/nowhere").status_code == 404
