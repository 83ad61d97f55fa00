"""``--target lambda``: an AWS Lambda function (zip deployment package) serving one bundle.

The handler answers every HTTP event shape Lambda delivers: API Gateway REST APIs (payload format
1.0), HTTP APIs (payload format 2.0), Lambda function URLs (2.0 as well) and Application Load
Balancer targets; a direct invocation (``aws lambda invoke``) whose event is itself a records or
V2 inference body gets the response document back, or a modelport error (Lambda reports it as a
function error with its type). Bodies marked ``isBase64Encoded`` are decoded; responses that are
not JSON (the V2 binary tensor extension) are base64-encoded, as API Gateway expects, and REST
APIs need ``application/octet-stream`` among their binary media types to pass those through.

Limits (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): 250 MB
unzipped for the function and its layers (hard), 50 MB zipped for a direct upload (above it,
upload through S3), 6 MB per synchronous request. python3.9 to 3.11 run on Amazon Linux 2
(glibc 2.26), python3.12 and later on Amazon Linux 2023 (glibc 2.34): wheels built for a newer
glibc (numpy and onnxruntime have dropped manylinux2014) are refused for --deps env.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from modelport.errors import InputError
from modelport.export._artifact import MiB, SizeLimit
from modelport.export._function import FunctionServer, Request, Response, bad_request, error_for, server_for

PLATFORM = "AWS Lambda"
MAX_BODY = 6 * MiB
_AL2 = (2, 26)
_AL2023 = (2, 34)


# ============================================================================ at run time, in Lambda
def handler_for(source: str | os.PathLike[str]) -> Callable[[Any, Any], Any]:
    """The Lambda handler of the bundle at ``source``, loaded now (once per execution environment)."""
    server = server_for(source, platform=PLATFORM, max_body_bytes=MAX_BODY)

    def handler(event: Any, context: Any = None) -> Any:
        return handle_event(server, event)

    return handler


def handle_event(server: FunctionServer, event: Any) -> Any:
    """Answer one Lambda event (an HTTP event of any of Lambda's shapes, or a direct invocation)."""
    if not isinstance(event, dict):
        raise InputError(f"the Lambda event must be a JSON object; got {type(event).__name__}.")
    if "httpMethod" in event or "rawPath" in event or "routeKey" in event:
        return _http(server, event)
    if "records" in event or "inputs" in event:
        return _direct(server, event)
    raise InputError(
        "the Lambda event is neither an HTTP request (API Gateway, a function URL, a load balancer) nor an "
        'inference body ({"records": [...]} or a V2 request with "inputs").',
        hint=f'invoke it with a body such as {{"records": [{{...}}]}}; model {server.model_name!r}',
    )


def _http(server: FunctionServer, event: dict[str, Any]) -> dict[str, Any]:
    v2 = event.get("version") == "2.0"
    ctx = event.get("requestContext") or {}
    elb = isinstance(ctx, dict) and "elb" in ctx
    multi = "multiValueHeaders" in event and event.get("multiValueHeaders") is not None
    try:
        if v2:
            method = str(((ctx.get("http") or {}).get("method")) or "GET")
            path = str(event.get("rawPath") or "/")
            stage = ctx.get("stage")
            if isinstance(stage, str) and stage and stage != "$default" and (
                    path == f"/{stage}" or path.startswith(f"/{stage}/")):
                path = path[len(stage) + 1:] or "/"
            query = str(event.get("rawQueryString") or "").encode()
            headers = [(str(k), str(v)) for k, v in (event.get("headers") or {}).items()]
            if event.get("cookies"):
                headers.append(("cookie", "; ".join(map(str, event["cookies"]))))
        else:
            method = str(event.get("httpMethod") or "GET")
            path = str(event.get("path") or "/")
            if multi:
                headers = [(str(k), str(v)) for k, vs in event["multiValueHeaders"].items() for v in (vs or ())]
            else:
                headers = [(str(k), str(v)) for k, v in (event.get("headers") or {}).items()]
            mq = event.get("multiValueQueryStringParameters")
            q = event.get("queryStringParameters")
            query = (urlencode([(k, v) for k, vs in mq.items() for v in (vs or ())]) if mq
                     else urlencode(q) if q else "").encode()
        body = _body(event)
    except (AttributeError, TypeError) as exc:
        response = bad_request(f"the Lambda HTTP event is malformed ({exc}).")
    except _BadBody as exc:
        response = bad_request(str(exc))
    else:
        response = server.handle(Request(method, path, headers, body, query))
    return _answer(response, v2=v2, elb=elb, multi=multi)


class _BadBody(ValueError):
    pass


def _body(event: dict[str, Any]) -> bytes:
    raw = event.get("body")
    if raw is None:
        return b""
    if not isinstance(raw, str):
        raise _BadBody(f"the event's body must be a string; got {type(raw).__name__}.")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _BadBody(f"the event says isBase64Encoded but its body is not base64 ({exc}).") from None
    return raw.encode("utf-8")


def _answer(response: Response, *, v2: bool, elb: bool, multi: bool) -> dict[str, Any]:
    text = response.is_text
    out: dict[str, Any] = {
        "statusCode": response.status,
        "body": response.body.decode("utf-8") if text else base64.b64encode(response.body).decode("ascii"),
        "isBase64Encoded": not text,
    }
    if elb:
        from http import HTTPStatus

        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""
        out["statusDescription"] = f"{response.status} {phrase}".strip()
    grouped: dict[str, list[str]] = {}
    for k, v in response.headers:
        grouped.setdefault(k, []).append(v)
    if elb and multi:  # a target group with multi-value headers on answers in that form only
        out["multiValueHeaders"] = grouped
    else:
        out["headers"] = response.header_dict()
        if not v2 and not elb:  # REST APIs take both; multi-value keeps repeated headers apart
            out["multiValueHeaders"] = grouped
    return out


def _direct(server: FunctionServer, event: dict[str, Any]) -> Any:
    import orjson

    action = "records" if "records" in event else "infer"
    body = orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
    response = server.handle(Request("POST", f"/v2/models/{server.model_name}/{action}",
                                     [("content-type", "application/json")], body))
    if not response.is_text:  # binary_data_output asked for: not expressible as a JSON result
        raise InputError("a direct invocation returns JSON; do not ask for binary outputs (binary_data_output).")
    doc = orjson.loads(response.body)
    if response.status >= 400:
        raise error_for(response.status, doc)
    return doc


# ============================================================================ the export
_RUNTIMES = {
    (3, 9): (_AL2, "python3.9 (Amazon Linux 2)"),
    (3, 10): (_AL2, "python3.10 (Amazon Linux 2)"),
    (3, 11): (_AL2, "python3.11 (Amazon Linux 2)"),
    (3, 12): (_AL2023, "python3.12 (Amazon Linux 2023)"),
    (3, 13): (_AL2023, "python3.13 (Amazon Linux 2023)"),
    (3, 14): (_AL2023, "python3.14 (Amazon Linux 2023)"),
}
LIMITS = (
    SizeLimit("unzipped", 250 * MiB, "250 MB unzipped (the function code and all its layers)"),
    SizeLimit("zipped", 50 * MiB, "50 MB zipped for a direct upload (larger packages are uploaded through S3)",
              hard=False),
)

_ENTRY = '''"""AWS Lambda entry point (handler: lambda_function.handler), written by `modelport export --target lambda`.

The bundle is loaded here, once per execution environment; each invocation only scores.
"""

import os

from modelport.export.aws_lambda import handler_for

handler = handler_for(os.path.join(os.path.dirname(os.path.abspath(__file__)), {model!r}))
'''

_PROBE = '''
def call(method, path, body):
    event = {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
             "headers": {"content-type": "application/json"},
             "requestContext": {"http": {"method": method, "path": path}, "stage": "$default"},
             "body": body.decode(), "isBase64Encoded": False}
    out = entry.handler(event, None)
    return [out["statusCode"], out["body"]]
'''


def _deploy(name: str, zip_name: str, python: str) -> str:
    return f"""# Deploying {name} to AWS Lambda

```bash
aws lambda create-function --function-name {name} --runtime python{python} \\
  --handler lambda_function.handler --memory-size 1024 --timeout 30 \\
  --role arn:aws:iam::ACCOUNT:role/ROLE --zip-file fileb://{zip_name}
aws lambda create-function-url-config --function-name {name} --auth-type AWS_IAM
```

Over 50 MB, upload the zip to S3 and pass `--code S3Bucket=...,S3Key={zip_name}` instead of `--zip-file`.
The function answers `POST /v2/models/{name}/infer` (V2), `POST /v2/models/{name}/records`, `POST /`
(either body), `GET /v2/health/ready` and `GET /v2/models/{name}` through a function URL, an HTTP API
or a REST API (`{{proxy+}}` resource; add `application/octet-stream` to its binary media types for the
binary tensor extension). `aws lambda invoke --payload '{{"records": [...]}}'` returns the predictions.
Environment: MODELPORT_THREADS (default 1), MODELPORT_MAX_ROWS, MODELPORT_SERVE_TOKENS (bearer tokens).
"""


def _files(model_rel: str, name: str) -> dict[str, str]:
    return {"lambda_function.py": _ENTRY.format(model=model_rel)}


def platform() -> Any:
    from modelport.export._serverless import FunctionPlatform

    return FunctionPlatform(
        target="lambda", platform=PLATFORM, runtimes=_RUNTIMES, limits=LIMITS, entry_module="lambda_function",
        max_body_bytes=MAX_BODY, default_deps="env", files=_files, deploy_notes=_deploy, probe=_PROBE,
        deps_none_note="--deps none: attach a Lambda layer (python/ directory) that provides",
    )


def export(bundle: Any, output: str | Path, **options: Any) -> Any:
    """Write a Lambda deployment package for ``bundle`` to ``output`` (see :func:`modelport.export.export`)."""
    from modelport.export._serverless import export_function

    return export_function(platform(), bundle, output, **options)
