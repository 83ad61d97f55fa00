"""Fixtures for the export tests: real bundles, exported artifacts, and the platforms' event shapes.

The events are shaped as the platforms document them:

* API Gateway REST API, payload format 1.0:
  https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
* HTTP API, payload format 2.0, and Lambda function URLs (the same format, routeKey ``$default``):
  https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
  https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html
* Application Load Balancer targets: https://docs.aws.amazon.com/elasticloadbalancing/latest/application/lambda-functions.html
"""

from __future__ import annotations

import base64
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelport as mp


@dataclass
class Bundles:
    churn: Path  # tabular classifier: int, string and float columns (one [N,1] input each)
    iris: Path  # classifier over one float matrix X [N, 4]
    lin: Path  # regressor


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, iris) -> Bundles:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    root = tmp_path_factory.mktemp("export-bundles")
    rng = np.random.default_rng(3)
    df = pd.DataFrame({
        "age": rng.integers(18, 80, 300),
        "plan": rng.choice(["basic", "pro", "max"], 300),
        "spend": rng.normal(50, 10, 300),
    })
    churned = ((df.spend > 50) ^ (df.plan == "max")).astype(int)
    churn = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan"]), remainder="passthrough"),
        LogisticRegression(max_iter=500),
    ).fit(df, churned)
    X, y = iris
    forest = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X, y)
    Xr = rng.normal(size=(200, 3))
    lin = LinearRegression().fit(Xr, Xr @ np.array([1.5, -2.0, 0.5]) + 0.25)
    b = Bundles(churn=root / "churn.mpk", iris=root / "iris.mpk", lin=root / "lin.mpk")
    mp.pack(churn, df, name="churn", version="1").save(b.churn)
    mp.pack(forest, X, name="iris", version="1").save(b.iris)
    mp.pack(lin, Xr, name="lin", version="1").save(b.lin)
    return b


CHURN_ROWS = [{"age": 40, "plan": "pro", "spend": 55.0}, {"age": 71, "plan": "max", "spend": 38.5}]


def import_file(path: Path, name: str) -> Any:
    """Import a generated entry module (lambda_function.py, main.py, function_app.py) from its file."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- AWS event shapes
def rest_v1_event(method: str, path: str, body: bytes | None = None, *, headers: dict[str, str] | None = None,
                  base64_body: bool = False, stage: str = "prod") -> dict[str, Any]:
    """An API Gateway REST API proxy event (payload format 1.0)."""
    hdrs = {"Accept": "*/*", "Content-Type": "application/json", "Host": "abc123.execute-api.us-east-1.amazonaws.com",
            "User-Agent": "curl/8.5.0", "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Port": "443",
            "X-Forwarded-Proto": "https", **(headers or {})}
    return {
        "version": "1.0",
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123", "extendedRequestId": "Xyz=", "httpMethod": method,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0", "accessKey": None, "accountId": None,
                         "caller": None, "cognitoAuthenticationProvider": None, "cognitoAuthenticationType": None,
                         "cognitoIdentityId": None, "cognitoIdentityPoolId": None, "principalOrgId": None,
                         "user": None, "userArn": None},
            "path": f"/{stage}{path}", "protocol": "HTTP/1.1", "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "requestTime": "09/Apr/2015:12:34:56 +0000", "requestTimeEpoch": 1428582896000,
            "resourceId": "123456", "resourcePath": "/{proxy+}", "stage": stage,
        },
        "body": None if body is None else (base64.b64encode(body).decode() if base64_body else body.decode()),
        "isBase64Encoded": base64_body,
    }


def http_v2_event(method: str, path: str, body: bytes | None = None, *, headers: dict[str, str] | None = None,
                  base64_body: bool = False, stage: str = "$default", function_url: bool = False) -> dict[str, Any]:
    """An HTTP API event (payload format 2.0); with ``function_url`` as a Lambda function URL sends it."""
    domain = ("abcdefg.lambda-url.us-east-1.on.aws" if function_url
              else "abc123.execute-api.us-east-1.amazonaws.com")
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    hdrs = {"accept": "*/*", "content-type": "application/json", "host": domain, "user-agent": "curl/8.5.0",
            "x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https", **(headers or {})}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": "",
        "cookies": ["session=abc"],
        "headers": hdrs,
        "requestContext": {
            "accountId": "anonymous" if function_url else "123456789012", "apiId": "abcdefg",
            "domainName": domain, "domainPrefix": "abcdefg",
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "curl/8.5.0"},
            "requestId": "id", "routeKey": "$default", "stage": stage, "time": "12/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390,
        },
        "body": None if body is None else (base64.b64encode(body).decode() if base64_body else body.decode()),
        "isBase64Encoded": base64_body,
    }


def alb_event(method: str, path: str, body: bytes | None = None) -> dict[str, Any]:
    """An Application Load Balancer target event (multi-value headers off)."""
    return {
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
                                                     "targetgroup/lambda-target/abcdef"}},
        "httpMethod": method,
        "path": path,
        "queryStringParameters": {},
        "headers": {"content-type": "application/json", "host": "lambda-alb-123578498.us-east-1.elb.amazonaws.com"},
        "body": "" if body is None else body.decode(),
        "isBase64Encoded": False,
    }
