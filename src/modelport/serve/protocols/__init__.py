"""The protocols other servers' clients speak, on the same port and data plane as V2.

* :mod:`~modelport.serve.protocols.tfserving`: TF Serving's REST API and KServe's V1 protocol
  (``/v1/models/{m}:predict``, status, metadata, ``:classify``, ``:regress``);
* :mod:`~modelport.serve.protocols.mlflow`: MLflow's scoring protocol (``/invocations``, ``/ping``,
  ``/health``, ``/version``).

Each decodes its wire format into records or V2 tensors and calls the data plane, so routing,
batching, timeouts, limits, metrics and the runtime's input rules are the same as V2's. The V2
router hands over only the paths it does not know (:func:`dispatch`), so V2 requests never pay
for them. The routing endpoints (:mod:`modelport.serve.routing_http`) are reached the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelport.serve.dataplane import DataPlane
    from modelport.serve.http import Receive, Scope, Send


async def dispatch(dp: DataPlane, scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer ``scope`` if one of the other protocols (or the routing endpoints) has its path."""
    from modelport.serve import routing_http
    from modelport.serve.protocols import mlflow, tfserving

    path = scope["path"]
    if path.startswith("/v2/"):
        return await routing_http.handle(dp, scope, receive, send)
    if path == "/" or path.startswith("/v1/"):
        return await tfserving.handle(dp, scope, receive, send)
    return await mlflow.handle(dp, scope, receive, send)
