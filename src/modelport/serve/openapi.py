"""The OpenAPI 3.1 document of the REST API (``/openapi.json``) and a readable page of it (``/docs``).

Written by hand from the Open Inference Protocol REST specification plus modelport's records and
repository endpoints, so that it says exactly what the router does (the fuzz test in
tests/serve checks that no request generated from it gets a 5xx).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from modelport import __version__

if TYPE_CHECKING:
    from modelport.serve.dataplane import DataPlane

_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
              "FP16", "FP32", "FP64", "BYTES"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _json(_ref("Error"), "error: what was wrong and what to do")


def document(dataplane: DataPlane | None = None) -> dict[str, Any]:
    """The OpenAPI document; model names served now are listed as examples."""
    names = dataplane.repository.names() if dataplane is not None else []
    model = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "model name" + (f" (served now: {', '.join(names)})" if names else "")}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "model version"}
    if names:
        model["example"] = names[0]

    def model_ops(prefix: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        common = {404: _ERR}
        return {
            prefix: {"get": {
                "summary": "Model metadata (inputs, outputs, versions, platform onnx_onnxv1)",
                "tags": ["models"], "parameters": params,
                "responses": {"200": _json(_ref("ModelMetadata"), "model metadata"), **_codes(common)},
            }},
            prefix + "/ready": {"get": {
                "summary": "Model readiness", "tags": ["health"], "parameters": params,
                "responses": {"200": _json(_ref("Ready"), "ready"), "503": _json(_ref("Ready"), "not ready"),
                              **_codes(common)},
            }},
            prefix + "/infer": {"post": {
                "summary": "Inference (Open Inference Protocol). Binary tensor data: send the JSON header "
                           "length in Inference-Header-Content-Length and the raw tensors after it.",
                "tags": ["inference"], "parameters": [*params, {
                    "name": "Inference-Header-Content-Length", "in": "header", "required": False,
                    "schema": {"type": "integer", "minimum": 0},
                    "description": "length of the JSON header when binary tensor data follows it"}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("InferenceRequest")},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {"200": _json(_ref("InferenceResponse"), "the output tensors"),
                              **_codes({400: _ERR, 404: _ERR, 413: _ERR, 503: _ERR, 504: _ERR})},
            }},
            prefix + "/records": {"post": {
                "summary": "Score records (objects of column values); returns labels and class probabilities",
                "tags": ["inference"], "parameters": params,
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RecordsRequest")}}},
                "responses": {"200": _json(_ref("RecordsResponse"), "one prediction per record"),
                              **_codes({400: _ERR, 404: _ERR, 413: _ERR, 503: _ERR, 504: _ERR})},
            }},
        }

    paths: dict[str, Any] = {
        "/v2/health/live": {"get": {"summary": "Liveness", "tags": ["health"], "security": [],
                                    "responses": {"200": _json(_ref("Live"), "live")}}},
        "/v2/health/ready": {"get": {"summary": "Readiness (all models loaded, not draining)", "tags": ["health"],
                                     "security": [],
                                     "responses": {"200": _json(_ref("Ready"), "ready"),
                                                   "503": _json(_ref("Ready"), "not ready")}}},
        "/v2": {"get": {"summary": "Server metadata and extensions", "tags": ["health"],
                        "responses": {"200": _json(_ref("ServerMetadata"), "server metadata")}}},
        **model_ops("/v2/models/{model}", [model]),
        **model_ops("/v2/models/{model}/versions/{version}", [model, version]),
        "/v2/repository/index": {"post": {
            "summary": "Repository index: every known model version and its state", "tags": ["repository"],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"ready": {"type": "boolean"}}}}}},
            "responses": {"200": _json({"type": "array", "items": _ref("IndexEntry")}, "index"),
                          **_codes({400: _ERR})},
        }},
        "/v2/repository/models/{model}/load": {"post": {
            "summary": "Load or reload a model from the server's sources", "tags": ["repository"],
            "parameters": [model],
            "responses": {"200": _json({"type": "object"}, "loaded"), **_codes({404: _ERR, 422: _ERR})},
        }},
        "/v2/repository/models/{model}/unload": {"post": {
            "summary": "Unload a model (in-flight requests finish)", "tags": ["repository"], "parameters": [model],
            "responses": {"200": _json({"type": "object"}, "unloaded"), **_codes({404: _ERR})},
        }},
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["health"],
                             "responses": {"200": {"description": "metrics",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }
    param_value = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
    parameters = {"type": "object", "additionalProperties": param_value}
    tensor_meta = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"type": "string"}, "datatype": {"type": "string", "enum": _DATATYPES},
        "shape": {"type": "array", "items": {"type": "integer"}}}}
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"}, "hint": {"type": "string"}}},
        "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
        "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}, "name": {"type": "string"}}},
        "ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}}}},
        "TensorMetadata": tensor_meta,
        "ModelMetadata": {"type": "object", "required": ["name", "platform", "inputs", "outputs"], "properties": {
            "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"}, "inputs": {"type": "array", "items": _ref("TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("TensorMetadata")}, "parameters": parameters}},
        "Parameters": parameters,
        "RequestInput": {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": _DATATYPES},
            "parameters": parameters,
            "data": {"description": "tensor elements, flat or nested, row-major",
                     "oneOf": [{"type": "array"}, {"type": "number"}, {"type": "string"}, {"type": "boolean"}]}}},
        "RequestOutput": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": parameters}},
        "InferenceRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"}, "parameters": parameters,
            "inputs": {"type": "array", "items": _ref("RequestInput"), "minItems": 1},
            "outputs": {"type": "array", "items": _ref("RequestOutput")}}},
        "ResponseOutput": {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
            "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string"}, "parameters": parameters, "data": {"type": "array"}}},
        "InferenceResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "parameters": parameters, "outputs": {"type": "array", "items": _ref("ResponseOutput")}}},
        "RecordsRequest": {"type": "object", "required": ["records"], "properties": {
            "records": {"type": "array", "minItems": 1, "items": {"type": "object"}}}},
        "RecordsResponse": {"type": "object", "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "predictions": {"type": "array", "items": {"type": "object"}}}},
        "IndexEntry": {"type": "object", "properties": {
            "name": {"type": "string"}, "version": {"type": "string"}, "state": {"type": "string"},
            "reason": {"type": "string"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelport inference server", "version": __version__,
                 "description": "Open Inference Protocol (KServe V2) REST API, records endpoint and model "
                                "repository extension. Errors are {\"error\": ..., \"hint\": ...}."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
    }


def _codes(codes: dict[int, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in codes.items()}


def docs_html(doc: dict[str, Any]) -> str:
    """A self-contained page listing every operation (no external scripts: servers may be offline)."""
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = ", ".join(op.get("responses", {}))
            rows.append(
                f"<tr><td><b>{method.upper()}</b></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op.get('summary', ''))}</td><td>{codes}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>modelport API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:4px 10px;border-bottom:1px solid #ddd}"
        "code{font-size:1.05em}</style></head><body>"
        f"<h1>{html.escape(doc['info']['title'])} {html.escape(doc['info']['version'])}</h1>"
        f"<p>{html.escape(doc['info']['description'])}</p>"
        "<p>The machine-readable OpenAPI document is at <a href='/openapi.json'>/openapi.json</a> "
        "(load it into Swagger UI, Redoc or schemathesis).</p>"
        "<table><tr><th>method</th><th>path</th><th>what</th><th>statuses</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
