"""Fuzz the REST API from its own OpenAPI document (schemathesis): no generated request may get a
5xx, and the server keeps answering afterwards. Bounded: a few hundred examples in all."""

from __future__ import annotations

import httpx
import pytest

from modelport.serve import ServeConfig
from modelport.serve.openapi import document

from .conftest import thread_server

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

pytestmark = pytest.mark.integration

def _bounded(doc: dict) -> dict:
    """The served document with small array bounds, so that generating examples stays fast."""
    schemas = doc["components"]["schemas"]
    schemas["RequestInput"]["properties"]["shape"]["maxItems"] = 3
    schemas["RequestInput"]["properties"]["data"] = {
        "type": "array", "maxItems": 12, "items": {"type": ["number", "string", "boolean", "null"]}}
    schemas["InferenceRequest"]["properties"]["inputs"]["maxItems"] = 4
    schemas["InferenceRequest"]["properties"]["outputs"]["maxItems"] = 3
    schemas["RecordsRequest"]["properties"]["records"]["maxItems"] = 4
    schemas["Parameters"]["maxProperties"] = 3
    return doc


schema = schemathesis.openapi.from_dict(_bounded(document()))


@pytest.fixture(scope="module")
def fuzz_server(bundles):
    # a server with a model named "model", so that generated paths also reach real inference code
    with thread_server(ServeConfig(sources=[f"model={bundles.iris_v1}", str(bundles.churn)], max_rows=10_000)) as url:
        yield url


CALLS: list[int] = []


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, fuzz_server):
    params = case.path_parameters or {}
    if "model" in params and len(CALLS) % 4:
        # most cases name a served model, so that bodies reach decoding, validation and scoring
        params["model"] = "churn" if case.path.endswith("/unload") else "model"
        if "version" in params and len(CALLS) % 3:
            params["version"] = "1"
    CALLS.append(1)
    response = case.call(base_url=fuzz_server, timeout=30)
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:500])


def test_server_still_serves_after_fuzzing(fuzz_server):
    assert httpx.get(fuzz_server + "/v2/health/ready").status_code == 200
    body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}
    assert httpx.post(fuzz_server + "/v2/models/model/infer", json=body).status_code == 200
    assert len(CALLS) >= 200
