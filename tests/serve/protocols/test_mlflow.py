"""MLflow's scoring protocol through a real server: MLflow's own scoring client
(``mlflow.pyfunc.scoring_server.client.ScoringServerClient``, what ``mlflow models predict`` and
the local deployment target use) and the ``requests`` / curl bodies of MLflow's documentation
(dataframe_split, dataframe_records, instances, inputs, CSV), one model or a name prefix."""

from __future__ import annotations

from urllib.parse import urlparse

import httpx
import numpy as np
import pandas as pd
import pytest
import requests

import modelport as mp
from modelport import __version__
from modelport.serve import ServeConfig

from ..conftest import thread_server

pytestmark = pytest.mark.integration

CHURN = pd.DataFrame({"age": [42, 23, 61], "plan": ["pro", "max", "basic"], "spend": [55.0, 61.5, 30.25]})


@pytest.fixture(scope="module")
def one(bundles):
    with thread_server(ServeConfig(sources=[str(bundles.churn)])) as url:
        yield url


@pytest.fixture(scope="module")
def several(bundles):
    with thread_server(ServeConfig(sources=[str(bundles.churn), str(bundles.iris_v1), str(bundles.tiers)])) as url:
        yield url


def expected(bundles) -> pd.DataFrame:
    return mp.load(bundles.churn).predict_frame(CHURN)


# importing MLflow's pyfunc warns about its own type hints; not ours to fix
@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning")
def test_mlflows_own_scoring_client(one, bundles):
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    u = urlparse(one)
    client = ScoringServerClient(u.hostname, u.port)
    client.wait_server_ready(timeout=10)
    assert client.get_version() == __version__
    got = client.invoke(CHURN).get_predictions()  # a DataFrame goes as dataframe_split
    want = expected(bundles)
    assert list(got.columns) == list(want.columns)
    assert got["label"].tolist() == want["label"].tolist()
    np.testing.assert_allclose(got[["proba_0", "proba_1"]].to_numpy(), want[["proba_0", "proba_1"]].to_numpy(), rtol=1e-6)
    params = client.invoke(CHURN, params={"threshold": 0.5}).get_predictions()  # params are taken, not used
    assert params["label"].tolist() == want["label"].tolist()


def test_the_documented_request_bodies(one, bundles):
    want = expected(bundles)
    url = one + "/invocations"
    bodies = [
        {"dataframe_split": CHURN.to_dict(orient="split")},
        {"dataframe_split": {"columns": list(CHURN.columns), "data": CHURN.values.tolist()}},
        {"dataframe_records": CHURN.to_dict(orient="records")},
        {"inputs": {c: CHURN[c].tolist() for c in CHURN.columns}},
        {"instances": CHURN.to_dict(orient="records")},
    ]
    for body in bodies:
        r = requests.post(url, json=body, timeout=30)
        assert r.status_code == 200, (body, r.text)
        preds = r.json()["predictions"]
        assert [p["label"] for p in preds] == want["label"].tolist(), body
        np.testing.assert_allclose([p["proba_1"] for p in preds], want["proba_1"], rtol=1e-6)
    csv = CHURN.to_csv(index=False)
    r = requests.post(url, data=csv, headers={"Content-Type": "text/csv"}, timeout=30)
    assert r.status_code == 200, r.text
    assert [p["label"] for p in r.json()["predictions"]] == want["label"].tolist()
    assert r.headers["x-model-version"] == "1"
    for path in ("/ping", "/health"):
        assert requests.get(one + path, timeout=10).status_code == 200


def test_tensor_inputs_and_a_name_prefix(several, bundles):
    iris = mp.load(bundles.iris_v1)
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    want = iris.predict_frame(x)
    for body in ({"instances": x.tolist()}, {"inputs": x.tolist()}, {"inputs": {"X": x.tolist()}},
                 {"dataframe_split": {"data": x.tolist()}}):
        r = requests.post(several + "/iris/invocations", json=body, timeout=30)
        assert r.status_code == 200, (body, r.text)
        assert [p["label"] for p in r.json()["predictions"]] == want["label"].tolist()
    tiers = requests.post(several + "/tiers/invocations", json={"instances": x.tolist()}, timeout=30).json()
    assert [p["label"] for p in tiers["predictions"]] == mp.load(bundles.tiers).predict_frame(x)["label"].tolist()
    churn = requests.post(several + "/churn/invocations", json={"dataframe_records": CHURN.to_dict("records")}, timeout=30)
    assert churn.status_code == 200
    assert requests.get(several + "/iris/ping", timeout=10).status_code == 200
    # several models: the bare path is ambiguous, and says what to post to instead
    r = requests.post(several + "/invocations", json={"instances": x.tolist()}, timeout=30)
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "serves 3 models" in r.json()["message"] and "/{model}/invocations" in r.json()["hint"]
    assert requests.post(several + "/ghost/invocations", json={"instances": x.tolist()}, timeout=30).status_code == 404


@pytest.mark.parametrize("body,ctype,status,needle", [
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"[1, 2]", "application/json", 400, "must be a JSON object"),
    (b"{}", "application/json", 400, "it has none of them"),
    (b'{"dataframe_records": [], "instances": []}', "application/json", 400, "several: dataframe_records, instances"),
    (b'{"dataframe_rows": []}', "application/json", 400, "unknown key(s) 'dataframe_rows'"),
    (b'{"dataframe_records": {"age": 1}}', "application/json", 400, "must be a list of objects"),
    (b'{"dataframe_split": {"columns": ["age"], "data": [[1, 2]]}}', "application/json", 400, "row 0 has 2 values"),
    (b'{"dataframe_split": {"columns": ["age", "age"], "data": [[1, 2]]}}', "application/json", 400, "twice"),
    (b'{"dataframe_split": {"cols": []}}', "application/json", 400, "unknown key(s) 'cols'"),
    (b'{"dataframe_records": [{"age": 1, "plan": "pro"}]}', "application/json", 400, "spend"),
    (b'{"dataframe_records": [{"age": "old", "plan": "pro", "spend": 1}]}', "application/json", 400, "age"),
    (b'{"dataframe_records": [{"age": 1, "plan": "pro", "spend": 1}], "params": 3}', "application/json", 400,
     "params must be an object"),
    (b"age,plan\n1,pro,3\n", "text/csv", 400, "CSV line 2 has 3 fields"),
    (b"", "text/csv", 400, "CSV body is empty"),
    (b"\xff\xfe", "text/csv", 400, "not UTF-8"),
    (b"age=1", "application/x-www-form-urlencoded", 415, "application/json and text/csv"),
])
def test_malformed_bodies_are_4xx_in_mlflows_error_format(one, body, ctype, status, needle):
    r = httpx.post(one + "/invocations", content=body, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    doc = r.json()
    assert doc["error_code"] in ("BAD_REQUEST", "RESOURCE_DOES_NOT_EXIST") and needle in doc["message"], doc
    assert httpx.post(one + "/invocations", json={"dataframe_records": CHURN.to_dict("records")}).status_code == 200


def test_wrong_methods(one):
    assert httpx.get(one + "/invocations").status_code == 405
    assert httpx.post(one + "/ping").status_code == 405
