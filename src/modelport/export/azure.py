"""``--target azure``: an Azure Functions app (Python v2 programming model) serving one bundle.

``function_app.py`` registers one HTTP trigger on every route (``{*path}``, with the ``/api``
route prefix turned off in ``host.json``) and hands each ``azure.functions.HttpRequest`` to the
handler, which answers an ``azure.functions.HttpResponse``. The trigger's auth level is
``FUNCTION`` (a function key in ``x-functions-key`` or ``?code=``).

By default (``--deps none``) a remote build installs ``requirements.txt`` at deploy time; with
``--deps env`` / ``--deps pip`` the dependencies are vendored into
``.python_packages/lib/site-packages``, where a deployment without a build expects them.

Limits: 1 GB of storage for the app's files on the Consumption plan
(https://learn.microsoft.com/azure/azure-functions/functions-scale#service-limits), 210 MB per
request. Python 3.10 and 3.11 run on Debian 11 (glibc 2.31), 3.12 and 3.13 on Debian 12 (2.36).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelport.export._artifact import MiB, SizeLimit
from modelport.export._function import FunctionServer, Request, server_for

PLATFORM = "Azure Functions"
MAX_BODY = 100 * MiB
SITE_DIR = ".python_packages/lib/site-packages"


# ============================================================================ at run time
def handler_for(source: str | os.PathLike[str]) -> Callable[[Any], Any]:
    """The HTTP handler of the bundle at ``source``, loaded now (once per worker)."""
    server = server_for(source, platform=PLATFORM, max_body_bytes=MAX_BODY)

    def handle(req: Any) -> Any:
        return handle_request(server, req)

    return handle


def handle_request(server: FunctionServer, req: Any) -> Any:
    """Answer an ``azure.functions.HttpRequest`` with an ``azure.functions.HttpResponse``."""
    import azure.functions as func

    url = urlsplit(str(req.url))
    response = server.handle(Request(
        method=str(req.method),
        path=url.path or "/",
        headers=[(str(k), str(v)) for k, v in req.headers.items()],
        body=req.get_body() or b"",
        query=url.query.encode(),
    ))
    return func.HttpResponse(body=response.body, status_code=response.status, headers=response.header_dict())


# ============================================================================ the export
_RUNTIMES = {
    (3, 10): ((2, 31), "Python 3.10 (Linux, Debian 11)"),
    (3, 11): ((2, 31), "Python 3.11 (Linux, Debian 11)"),
    (3, 12): ((2, 36), "Python 3.12 (Linux, Debian 12)"),
    (3, 13): ((2, 36), "Python 3.13 (Linux, Debian 12)"),
}
LIMITS = (SizeLimit("unzipped", 1 << 30, "1 GB of app storage (Consumption plan)"),)

_ENTRY = '''"""Azure Functions app (Python v2 programming model), written by `modelport export --target azure`.

The bundle is loaded here, once per worker; each request only scores.
"""

import os

import azure.functions as func

from modelport.export.azure import handler_for

_handle = handler_for(os.path.join(os.path.dirname(os.path.abspath(__file__)), {model!r}))

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="{{*path}}", methods=["GET", "HEAD", "POST"])
def serve(req: func.HttpRequest) -> func.HttpResponse:
    return _handle(req)
'''

_HOST = """{
  "version": "2.0",
  "extensions": {"http": {"routePrefix": ""}},
  "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"},
  "logging": {"logLevel": {"default": "Information"}}
}
"""

_PROBE = '''
_fn = entry.app.get_functions()[0].get_user_function()  # how the Functions worker finds it

def call(method, path, body):
    req = entry.func.HttpRequest(method=method, url="https://probe.azurewebsites.net" + path,
                                 headers={"content-type": "application/json"}, params={}, body=body)
    out = _fn(req)
    return [out.status_code, out.get_body().decode()]
'''


def _deploy(name: str, zip_name: str, python: str) -> str:
    return f"""# Deploying {name} to Azure Functions

```bash
az functionapp create --name APP --resource-group GROUP --storage-account STORAGE \\
  --consumption-plan-location REGION --runtime python --runtime-version {python} --functions-version 4 --os-type linux
cd function && func azure functionapp publish APP --python          # remote build from requirements.txt
# or, with dependencies vendored (--deps env / pip):
az functionapp deployment source config-zip --name APP --resource-group GROUP --src {zip_name}
```

Routes have no `/api` prefix: `POST /v2/models/{name}/infer` (V2), `POST /v2/models/{name}/records`,
`POST /` (either body), `GET /v2/health/ready`, `GET /v2/models/{name}`; each needs a function key
(`x-functions-key` header or `?code=`). App settings: MODELPORT_THREADS (default 1), MODELPORT_MAX_ROWS,
MODELPORT_SERVE_TOKENS (bearer tokens on top of the key).
"""


def _files(model_rel: str, name: str) -> dict[str, str]:
    return {"function_app.py": _ENTRY.format(model=model_rel), "host.json": _HOST}


def platform() -> Any:
    from modelport.export._serverless import FunctionPlatform

    return FunctionPlatform(
        target="azure", platform=PLATFORM, runtimes=_RUNTIMES, limits=LIMITS, entry_module="function_app",
        max_body_bytes=MAX_BODY, site_dir=SITE_DIR, default_deps="none",
        platform_requirements=("azure-functions>=1.17,<2",), platform_roots=("azure-functions",),
        files=_files, deploy_notes=_deploy, probe=_PROBE,
        deps_none_note="--deps none: the remote build installs from requirements.txt at deploy time",
    )


def export(bundle: Any, output: str | Path, **options: Any) -> Any:
    """Write an Azure Functions app directory (and zip) for ``bundle`` to ``output``."""
    from modelport.export._serverless import export_function

    return export_function(platform(), bundle, output, **options)
