"""``--target gcf``: a Google Cloud Functions (Cloud Run functions) HTTP function serving one bundle.

The Functions Framework calls the entry point (``predict``) with a Flask request for every path
of the function's URL; the handler reads only the request's method, path, query string, headers
and body, and returns ``(body, status, headers)``, so modelport imports no web framework itself.

The source directory holds ``main.py``, the bundle, modelport and ``requirements.txt``. By
default (``--deps none``) Cloud Build installs the pinned dependencies at deploy time; with
``--deps env`` or ``--deps pip`` they are vendored into the source directory instead.

Limits (https://cloud.google.com/functions/quotas): 100 MB compressed for sources and 500 MB
uncompressed for sources plus modules; 32 MB per HTTP request (2nd gen). Python 3.10 to 3.13 run
on Ubuntu 22.04 (glibc 2.35).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.export._artifact import MiB, SizeLimit
from modelport.export._function import FunctionServer, Request, server_for

PLATFORM = "Google Cloud Functions"
MAX_BODY = 32 * MiB
_UBUNTU_2204 = (2, 35)


# ============================================================================ at run time
def handler_for(source: str | os.PathLike[str]) -> Callable[[Any], tuple[bytes, int, list[tuple[str, str]]]]:
    """The HTTP function of the bundle at ``source``, loaded now (once per instance)."""
    server = server_for(source, platform=PLATFORM, max_body_bytes=MAX_BODY)

    def predict(request: Any) -> tuple[bytes, int, list[tuple[str, str]]]:
        return handle_request(server, request)

    return predict


def handle_request(server: FunctionServer, request: Any) -> tuple[bytes, int, list[tuple[str, str]]]:
    """Answer a Flask(-like) request: ``method``, ``path``, ``query_string``, ``headers``, ``get_data()``."""
    query = request.query_string
    response = server.handle(Request(
        method=str(request.method),
        path=str(request.path),
        headers=[(str(k), str(v)) for k, v in request.headers.items()],
        body=request.get_data(cache=False) or b"",
        query=query if isinstance(query, bytes) else str(query or "").encode(),
    ))
    return response.body, response.status, response.headers


# ============================================================================ the export
_RUNTIMES = {
    (3, 10): (_UBUNTU_2204, "python310 (Ubuntu 22.04)"),
    (3, 11): (_UBUNTU_2204, "python311 (Ubuntu 22.04)"),
    (3, 12): (_UBUNTU_2204, "python312 (Ubuntu 22.04)"),
    (3, 13): (_UBUNTU_2204, "python313 (Ubuntu 22.04)"),
}
LIMITS = (
    SizeLimit("unzipped", 500 * MiB, "500 MB uncompressed (sources plus modules)"),
    SizeLimit("zipped", 100 * MiB, "100 MB compressed (sources)"),
)

_ENTRY = '''"""Google Cloud Functions entry point (--entry-point predict), written by `modelport export --target gcf`.

The bundle is loaded here, once per instance; each request only scores.
"""

import os

from modelport.export.gcf import handler_for

predict = handler_for(os.path.join(os.path.dirname(os.path.abspath(__file__)), {model!r}))
'''

# the check in a clean interpreter has no Flask: a stand-in with the attributes the handler reads
_PROBE = '''
class _Headers(dict):
    pass

class _Request:
    def __init__(self, method, path, body):
        self.method, self.path, self.query_string, self._body = method, path, b"", body
        self.headers = _Headers({"Content-Type": "application/json"})
    def get_data(self, cache=True):
        return self._body

def call(method, path, body):
    out, status, headers = entry.predict(_Request(method, path, body))
    return [status, out.decode()]
'''


def _deploy(name: str, zip_name: str, python: str) -> str:
    runtime = "python" + python.replace(".", "")
    return f"""# Deploying {name} to Google Cloud Functions

```bash
gcloud functions deploy {name} --gen2 --runtime {runtime} --region REGION \\
  --source function --entry-point predict --trigger-http --memory 1Gi
```

(or upload {zip_name} to a bucket and pass `--source gs://BUCKET/{zip_name}`). The function answers
`POST /v2/models/{name}/infer` (V2), `POST /v2/models/{name}/records`, `POST /` (either body),
`GET /v2/health/ready` and `GET /v2/models/{name}` under its URL.
Environment: MODELPORT_THREADS (default 1), MODELPORT_MAX_ROWS, MODELPORT_SERVE_TOKENS (bearer tokens).
"""


def _files(model_rel: str, name: str) -> dict[str, str]:
    return {"main.py": _ENTRY.format(model=model_rel)}


def platform() -> Any:
    from modelport.export._serverless import FunctionPlatform

    return FunctionPlatform(
        target="gcf", platform=PLATFORM, runtimes=_RUNTIMES, limits=LIMITS, entry_module="main",
        max_body_bytes=MAX_BODY, default_deps="none", platform_requirements=("functions-framework>=3,<4",),
        files=_files, deploy_notes=_deploy, probe=_PROBE,
        deps_none_note="--deps none: Cloud Build installs from requirements.txt at deploy time",
    )


def export(bundle: Any, output: str | Path, **options: Any) -> Any:
    """Write a Cloud Functions source directory (and zip) for ``bundle`` to ``output``."""
    from modelport.export._serverless import export_function

    return export_function(platform(), bundle, output, **options)
