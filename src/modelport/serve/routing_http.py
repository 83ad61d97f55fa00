"""The routing endpoints of the REST transport (the repository API's routing part, and feedback).

    GET    /v2/repository/routes                 every route: arms, versions, live weights, numbers
    GET    /v2/repository/models/{m}/route        one route
    POST   /v2/repository/models/{m}/route        set it: the body is the route's table as JSON
                                                  ({"production": {"model": ..., "weight": 90}, ...})
    DELETE /v2/repository/models/{m}/route        remove it (the model's default version answers again)
    POST   /v2/models/{m}/feedback                {"records": [{"id": "...", "label": ...}]}: labels for
                                                  answers, by the id in their x-request-id header
                                                  (:func:`feedback`; the V2 router hands it over)

A route that does not load (a bad table, an unknown alias, a shadow with another signature) is a
4xx and changes nothing; one that loads replaces the old route at once, and requests that
already chose an arm finish on it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from modelport.errors import InputError, ServingError
from modelport.serve import http
from modelport.serve.codec import show
from modelport.serve.routing_spec import parse_route

if TYPE_CHECKING:
    from modelport.serve.dataplane import DataPlane


async def handle(dp: DataPlane, scope: http.Scope, receive: http.Receive, send: http.Send) -> bool:
    path, method = scope["path"], scope["method"]
    parts = path.strip("/").split("/")
    if parts == ["v2", "repository", "routes"]:
        scope["modelport.route"] = "/v2/repository/routes"
        if await _method(method, ("GET",), send):
            return True
        await http.send_response(send, 200, orjson.dumps(dp.router.describe()))
        return True
    if len(parts) == 5 and parts[:3] == ["v2", "repository", "models"] and parts[4] == "route":
        name = parts[3]
        scope["modelport.route"] = "/v2/repository/models/{model}/route"
        scope["modelport.model"] = name
        if await _method(method, ("GET", "POST", "DELETE"), send):
            return True
        if method in ("GET", "HEAD"):
            await http.send_response(send, 200, orjson.dumps(dp.router.describe(name)[0]))
        elif method == "DELETE":
            await http.read_body(scope, receive, dp.deadline())
            await dp.router.remove_route(name)
            await http.send_response(send, 200, b"{}")
        else:
            body = await http.read_body(scope, receive, dp.deadline())
            table = http.parse_json(body)
            spec = parse_route(name, table, origin=f"route {show(name)}")
            try:
                await dp.router.set_route(spec)
            except ServingError as exc:  # a source that cannot be served: the client's to fix
                raise InputError(exc.message, hint=exc.hint) from None
            await http.send_response(send, 200, orjson.dumps(dp.router.describe(name)[0]))
        return True
    return False


async def feedback(dp: DataPlane, scope: http.Scope, receive: http.Receive, send: http.Send, name: str,
                   version: str | None) -> None:
    """``POST /v2/models/{name}/feedback``: labels go to the prediction log (``--log``: monitoring's
    join, :func:`modelport.serve.monitoring.feedback`) and to the in-process tallies of the model's
    route (realised metrics per arm, bandits, the stop rule). Every record is checked before any is
    stored. The answer is monitoring's counts, with routing's under ``"routing"`` when both took them.
    """
    dp.model(name, version)  # 404 for what is not served
    body = await http.read_body(scope, receive, dp.deadline())
    doc = http.parse_json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise InputError('feedback must be an object with a list under "records", e.g. '
                         '{"records": [{"id": "<x-request-id of the answer>", "label": 1}]}.')
    routed = dp.router.feedback is not None and name in dp.router.routes and version is None
    if dp.monitor is None and not routed:
        from modelport.serve.monitoring import feedback as log_feedback

        log_feedback(dp, name, version, [])  # says that this server keeps no prediction log
    logged: list[tuple[str, Any, float | None]] | None = None
    if dp.monitor is not None:
        from modelport.serve.monitoring import parse_feedback

        # a record that carries only a reward (routing's) is no label for the log
        labelled = [r for r in doc["records"] if not (isinstance(r, dict) and "reward" in r and "label" not in r)]
        logged = await asyncio.to_thread(parse_feedback, {"records": labelled})
    routing: dict[str, int] | None = None
    if routed:
        assert dp.router.feedback is not None
        routing = await asyncio.to_thread(dp.router.feedback.feedback, name, doc["records"])
    if logged is None:
        await http.send_response(send, 200, orjson.dumps(routing))
        return
    from modelport.serve.monitoring import feedback as log_feedback

    result = await asyncio.to_thread(log_feedback, dp, name, version, logged)
    answer: dict[str, Any] = {"model_name": name, **result}
    if routing is not None:
        answer["routing"] = routing
    await http.send_response(send, 200, orjson.dumps(answer))


async def _method(method: str, allowed: tuple[str, ...], send: http.Send) -> bool:
    if method in allowed or (method == "HEAD" and "GET" in allowed):
        return False
    await http.send_response(send, 405, http.error_body(f"method {method} is not allowed here; use {' or '.join(allowed)}."),
                             headers=[(b"allow", ", ".join(allowed).encode())])
    return True
