"""TF Serving's REST API (and KServe's V1 protocol, the same family) on the data plane.

    GET  /v1/models/{m}[/versions/{v} | /labels/{l}]             model status (+ KServe V1 "ready")
    GET  /v1/models/{m}[/versions/{v} | /labels/{l}]/metadata    the signature, as a SignatureDef
    POST /v1/models/{m}[/versions/{v} | /labels/{l}]:predict     {"instances": [...]} or {"inputs": ...}
    POST /v1/models/{m}[...]:classify                            {"examples": [{...}], "context": {...}}
    POST /v1/models/{m}[...]:regress                             same, for regressors
    GET  /v1/models                                              KServe V1: the served names
    GET  /                                                       KServe V1 liveness: {"status": "alive"}

A version label (``/labels/canary``) is a routing arm of the model, else the alias of a registry
source (``models:/churn@canary``). ``signature_name`` may be left out or be ``serving_default``.
Errors are ``{"error": "..."}`` as in TF Serving, with the V2 messages; the data plane, routing
and the runtime's input rules are V2's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from modelport.errors import InputError, ModelNotFoundError
from modelport.serve import http
from modelport.serve.protocols import _tensors

if TYPE_CHECKING:
    from modelport.serve.dataplane import DataPlane, Scored
    from modelport.serve.model import ServedModel

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_TF_DTYPES = {
    "float32": "DT_FLOAT", "float64": "DT_DOUBLE", "float16": "DT_HALF", "int8": "DT_INT8", "int16": "DT_INT16",
    "int32": "DT_INT32", "int64": "DT_INT64", "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32",
    "uint64": "DT_UINT64", "bool": "DT_BOOL", "str": "DT_STRING",
}
SIGNATURE = "serving_default"
VERBS = ("predict", "classify", "regress")


async def handle(dp: DataPlane, scope: http.Scope, receive: http.Receive, send: http.Send) -> bool:
    """Answer a TF Serving / KServe V1 path; False when ``scope`` is not one."""
    path, method = scope["path"], scope["method"]
    if path == "/":
        scope["modelport.route"] = "/"
        if not await _method(method, "GET", send):
            await http.send_response(send, 200, b'{"status":"alive"}')
        return True
    parts = path.strip("/").split("/")
    if parts[:2] != ["v1", "models"]:
        return False
    if len(parts) == 2:
        scope["modelport.route"] = "/v1/models"
        if not await _method(method, "GET", send):
            await http.send_response(send, 200, orjson.dumps({"models": dp.repository.names()}))
        return True
    name, verb = parts[2], None
    rest = parts[3:]
    last = rest[-1] if rest else name
    if ":" in last:
        last, _, verb = last.partition(":")
        if rest:
            rest[-1] = last
        else:
            name = last
    scope["modelport.model"] = name
    version: str | None = None
    label: str | None = None
    if len(rest) >= 2 and rest[0] in ("versions", "labels") and rest[1]:
        version, label = (rest[1], None) if rest[0] == "versions" else (None, rest[1])
        rest = rest[2:]
    if verb is not None:
        if rest or verb not in VERBS:
            await _unknown(scope, send, verb)
            return True
        scope["modelport.route"] = "/v1/models/{model}:" + verb
        if not await _method(method, "POST", send):
            await _infer(dp, scope, receive, send, name, _resolve(dp, name, version, label), verb)
        return True
    if rest == ["metadata"]:
        scope["modelport.route"] = "/v1/models/{model}/metadata"
        if not await _method(method, "GET", send):
            model = dp.model(name, _resolve(dp, name, version, label))
            await http.send_response(send, 200, orjson.dumps(metadata(model)))
        return True
    if not rest:
        scope["modelport.route"] = "/v1/models/{model}"
        if not await _method(method, "GET", send):
            await _status(dp, send, name, _resolve(dp, name, version, label))
        return True
    await _unknown(scope, send, None)
    return True


# ----------------------------------------------------------------------------- status and metadata
async def _status(dp: DataPlane, send: http.Send, name: str, version: str | None) -> None:
    if version is not None:
        dp.model(name, version)  # 404 for what is not served
        versions = [version]
    else:
        dp.model(name)
        versions = dp.repository.versions(name)
    ready = dp.model_ready(name, version)
    doc = {
        "name": name,
        "ready": ready,  # KServe V1
        "model_version_status": [
            {"version": v, "state": "AVAILABLE" if ready else "UNLOADING",
             "status": {"error_code": "OK", "error_message": ""}} for v in versions
        ],
    }
    await http.send_response(send, 200 if ready else 503, orjson.dumps(doc))


def metadata(model: ServedModel) -> dict[str, Any]:
    """TF Serving's GetModelMetadata answer: the bundle's signature as a ``serving_default``
    SignatureDef (and the V2 column table beside it)."""

    def info(t: Any) -> dict[str, Any]:
        return {"dtype": _TF_DTYPES.get(t.dtype, "DT_INVALID"), "name": t.name,
                "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in t.shape],
                                 "unknown_rank": False}}

    sig = model.signature
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": model.version},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: {
            "inputs": {t.name: info(t) for t in sig.inputs},
            "outputs": {t.name: info(t) for t in sig.outputs},
            "method_name": "tensorflow/serving/" + ("classify" if model.bundle.task == "classification" else "predict"),
        }}}},
        "modelport": {"task": model.bundle.task, "classes": model.bundle.classes, "digest": model.digest,
                      "columns": [{"name": c.name, "dtype": c.dtype} for c in sig.columns or ()]},
    }


def _resolve(dp: DataPlane, name: str, version: str | None, label: str | None) -> str | None:
    """The version a label names: a routing arm of the model, else a registry source's alias."""
    if label is None:
        return version
    found = dp.router.arm_version(name, label)
    if found is not None:
        return found
    labels: list[str] = []
    for src in dp.repository.sources:
        if src.uri is None or "@" not in src.uri:
            continue
        got = dp.repository.provided(src.spec)
        if got is None or got[0] != name:
            continue
        alias = src.uri.rpartition("@")[2]
        if alias == label:
            return got[1]
        labels.append(alias)
    live = dp.router.routes.get(name)
    labels += [a.name for a in live.arms] if live is not None else []
    dp.model(name)  # an unknown model is a 404 about the model
    raise ModelNotFoundError(
        f"model {name!r} has no version label {label!r}; its labels: {', '.join(sorted(set(labels))) or 'none'}.",
        hint="labels are the arms of the model's route and the aliases of its registry sources",
    )


# ----------------------------------------------------------------------------- inference
async def _infer(dp: DataPlane, scope: http.Scope, receive: http.Receive, send: http.Send, name: str,
                 version: str | None, verb: str) -> None:
    deadline = dp.deadline()
    model = dp.model(name, version)  # an unknown model is a 404 whatever the body holds
    body = await http.read_body(scope, receive, deadline)
    big = len(body) >= http.OFFLOAD_BYTES
    doc = await asyncio.to_thread(http.parse_json, body) if big else http.parse_json(body)
    if big:
        decoded, columnar = await asyncio.to_thread(decode, model, doc, verb)
    else:
        decoded, columnar = decode(model, doc, verb)
    headers = http.request_header(scope)
    if decoded.records is not None:
        s = await dp.score_records(name, version, decoded.records, "tfserving", deadline=deadline, offload=big,
                                   headers=headers)
    else:
        assert decoded.inputs is not None
        s = await dp.score_inputs(name, version, decoded.inputs, "tfserving", deadline=deadline, offload=big,
                                  headers=headers)
    if big:
        payload = await asyncio.to_thread(encode, s, verb, columnar)
    else:
        payload = encode(s, verb, columnar)
    await http.send_response(send, 200, payload, headers=http.answered_by(s.model.version, s.arm, s.request_id))


def decode(model: ServedModel, doc: Any, verb: str) -> tuple[_tensors.Decoded, bool]:
    """The rows of a :predict / :classify / :regress body; and whether the answer is columnar."""
    try:
        return _decode(model, doc, verb)
    except InputError as exc:
        if "expects" in exc.message:
            raise
        raise InputError(f"{exc.message} {model.expected(records=True)}", hint=exc.hint) from None


def _decode(model: ServedModel, doc: Any, verb: str) -> tuple[_tensors.Decoded, bool]:
    if not isinstance(doc, dict):
        raise InputError(f'the body must be a JSON object; got {type(doc).__name__}. {_FORMS[verb]}')
    signature = doc.get("signature_name")
    if signature is not None and signature != SIGNATURE:
        raise InputError(f"signature_name {str(signature)[:80]!r} is not served; this model has one signature, "
                         f"{SIGNATURE!r}.", hint="leave signature_name out, or send \"serving_default\"")
    if verb == "predict":
        unknown = sorted(set(doc) - {"signature_name", "instances", "inputs"})
        if unknown or ("instances" in doc) == ("inputs" in doc):
            what = f"unknown key(s) {', '.join(map(repr, unknown))}" if unknown else (
                "both" if "instances" in doc else "neither")
            raise InputError(f'a :predict body has "instances" (rows) or "inputs" (columns); this one has {what}. '
                             f"{_FORMS[verb]}")
        if "instances" in doc:
            return _tensors.instances(model, doc["instances"]), False
        return _tensors.columns(model, doc["inputs"]), True
    unknown = sorted(set(doc) - {"signature_name", "examples", "context"})
    if unknown or "examples" not in doc:
        what = f"unknown key(s) {', '.join(map(repr, unknown))}" if unknown else 'no "examples"'
        raise InputError(f"a :{verb} body has \"examples\" (and optionally \"context\"); this one has {what}. {_FORMS[verb]}")
    task = model.bundle.task
    if verb == "classify" and (task != "classification" or "probabilities" not in model.output_datatypes):
        raise InputError(f"model {model.name!r} is a {task} model; :classify needs a classifier.",
                         hint="use :predict (or :regress for a regressor)")
    if verb == "regress" and (task != "regression" or "prediction" not in model.output_datatypes):
        raise InputError(f"model {model.name!r} is a {task} model; :regress needs a regressor.",
                         hint="use :predict (or :classify for a classifier)")
    examples, context = doc["examples"], doc.get("context")
    if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
        raise InputError(f'"examples" must be a list of objects (feature name -> value). {_FORMS[verb]}')
    if context is not None:
        if not isinstance(context, dict):
            raise InputError('"context" must be an object of features shared by every example.')
        examples = [{**context, **e} for e in examples]
    return _tensors.instances(model, examples, '"examples"'), False


def encode(s: Scored, verb: str, columnar: bool) -> bytes:
    result, rows = s.result, s.rows
    if verb == "classify":
        classes = [str(c) for c in s.model.bundle.classes or ()]
        probs = result["probabilities"].tolist()
        return orjson.dumps({"result": [[[c, p] for c, p in zip(classes, row)] for row in probs]})
    if verb == "regress":
        pred = result["prediction"]
        return orjson.dumps({"result": (pred.reshape(rows) if pred.ndim == 2 and pred.shape[1] == 1 else pred).tolist()})
    names = s.wanted
    values = {n: _plain(result[n]) for n in names}
    if columnar:
        doc: Any = {"outputs": values[names[0]] if len(names) == 1 else values}
    elif len(names) == 1:
        doc = {"predictions": values[names[0]]}
    else:
        doc = {"predictions": [{n: values[n][i] for n in names} for i in range(rows)]}
    return orjson.dumps(doc, option=_NUMPY)


def _plain(arr: Any) -> Any:
    values = arr.tolist()
    if arr.dtype == object:
        return _decode_bytes(values)
    return values


def _decode_bytes(values: Any) -> Any:
    if isinstance(values, list):
        return [_decode_bytes(v) for v in values]
    return values.decode("utf-8", "replace") if isinstance(values, bytes) else values


_FORMS = {
    "predict": 'e.g. {"instances": [[5.1, 3.5, 1.4, 0.2]]}, {"instances": [{"age": 42, "plan": "pro"}]} or '
               '{"inputs": {"age": [42], "plan": ["pro"]}}.',
    "classify": 'e.g. {"examples": [{"age": 42, "plan": "pro"}], "context": {"region": "eu"}}.',
    "regress": 'e.g. {"examples": [{"x1": 0.5, "x2": 1.0}]}.',
}


async def _method(method: str, want: str, send: http.Send) -> bool:
    if method == want or (want == "GET" and method == "HEAD"):
        return False
    await http.send_response(send, 405, http.error_body(f"method {method} is not allowed here; use {want}."),
                             headers=[(b"allow", want.encode())])
    return True


async def _unknown(scope: http.Scope, send: http.Send, verb: str | None) -> None:
    scope.setdefault("modelport.route", "other")
    if verb is not None and verb not in VERBS:
        text = (f"TF Serving has no :{verb[:40]} here; this server answers :predict, :classify and :regress."
                if verb != "explain" else "explanations (:explain) are not served by modelport.")
    else:
        text = f"no endpoint at {scope['path'][:200]}."
    await http.send_response(send, 404, http.error_body(text, "see docs/serving.md (Other protocols)"))
