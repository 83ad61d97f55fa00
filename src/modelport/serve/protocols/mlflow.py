"""MLflow's scoring protocol (what ``mlflow models serve`` answers) on the data plane.

    POST /invocations            application/json: {"dataframe_split": {"columns": [...], "data": [[...]]}},
                                 {"dataframe_records": [{...}]}, {"instances": [...]}, {"inputs": ...}
                                 (optionally "params"); text/csv: a header line, then rows
    GET  /ping, /health          200 when ready
    GET  /version                the server's version
    POST /{model}/invocations    the same for one of several served models (also /{model}/ping)

With one model served (as ``mlflow models serve`` has), ``/invocations`` scores it; with several,
each has its own prefix. The answer is ``{"predictions": [...]}``, one object per row with the
columns of ``Bundle.predict_frame`` (``label`` and ``proba_<class>``, or ``prediction``), exactly
what the bundle exported with ``modelport export --target mlflow`` answers under ``mlflow models
serve``. ``params`` are accepted and not used, as that export does. Errors are MLflow's
``{"error_code": ..., "message": ...}`` with the V2 messages and statuses.
"""

from __future__ import annotations

import asyncio
import csv
import io
from typing import TYPE_CHECKING, Any

import orjson

from modelport import __version__
from modelport.errors import InputError, ModelNotFoundError, ModelportError
from modelport.serve import http
from modelport.serve.protocols import _tensors

if TYPE_CHECKING:
    from modelport.serve.dataplane import DataPlane, Scored
    from modelport.serve.model import ServedModel

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_EXAMPLE = ('e.g. {"dataframe_split": {"columns": ["age", "plan"], "data": [[42, "pro"]]}} or '
            '{"dataframe_records": [{"age": 42, "plan": "pro"}]}')
_CODES = {400: "BAD_REQUEST", 404: "RESOURCE_DOES_NOT_EXIST", 405: "BAD_REQUEST", 413: "BAD_REQUEST",
          415: "BAD_REQUEST", 503: "TEMPORARILY_UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


async def handle(dp: DataPlane, scope: http.Scope, receive: http.Receive, send: http.Send) -> bool:
    """Answer an MLflow scoring path; False when ``scope`` is not one."""
    path = scope["path"]
    parts = path.strip("/").split("/")
    if len(parts) == 1:
        name, action = None, parts[0]
    elif len(parts) == 2 and parts[0] not in ("v1", "v2"):
        name, action = parts[0], parts[1]
    else:
        return False
    if action not in ("invocations", "ping", "health", "version"):
        return False
    scope["modelport.route"] = ("/{model}/" if name else "/") + action
    try:
        if action == "invocations":
            if not await _method(scope, send, "POST"):
                await _invocations(dp, scope, receive, send, name)
        elif action == "version":
            if not await _method(scope, send, "GET"):
                await http.send_response(send, 200, __version__.encode(), b"text/plain; charset=utf-8")
        elif not await _method(scope, send, "GET"):
            ready = dp.ready() and (name is None or dp.model_ready(name))
            await http.send_response(send, 200 if ready else 503, b"\n" if ready else b"not ready\n",
                                     b"text/plain; charset=utf-8")
    except ModelportError as exc:
        if scope.get("modelport.started"):
            raise
        status = http.status_of(exc)
        if status >= 500 and status not in (503, 504):
            raise  # the server's own trouble: logged and answered by ErrorMapping
        await _error(dp, send, status, exc.message, exc.hint)
    return True


async def _invocations(dp: DataPlane, scope: http.Scope, receive: http.Receive, send: http.Send,
                       name: str | None) -> None:
    deadline = dp.deadline()
    if name is None:
        names = dp.repository.names()
        if len(names) != 1:
            raise ModelNotFoundError(
                f"this server serves {len(names)} models ({', '.join(names) or 'none'}); /invocations needs "
                "exactly one.", hint="post to /{model}/invocations, e.g. /" + (names[0] if names else "churn") + "/invocations",
            )
        name = names[0]
    model = dp.model(name)
    ctype = (http.header(scope, b"content-type") or b"application/json").decode("latin-1").split(";")[0].strip().lower()
    if ctype not in ("application/json", "text/csv"):
        await _error(dp, send, 415, f"this server takes application/json and text/csv bodies; got Content-Type "
                     f"{ctype[:60]!r}.", f"send Content-Type: application/json with {_EXAMPLE}")
        return
    body = await http.read_body(scope, receive, deadline)
    big = len(body) >= http.OFFLOAD_BYTES
    if big:
        decoded = await asyncio.to_thread(decode, model, body, ctype)
    else:
        decoded = decode(model, body, ctype)
    headers = http.request_header(scope)
    if decoded.records is not None:
        s = await dp.score_records(name, None, decoded.records, "mlflow", deadline=deadline, offload=big,
                                   headers=headers)
    else:
        assert decoded.inputs is not None
        s = await dp.score_inputs(name, None, decoded.inputs, "mlflow", deadline=deadline, offload=big,
                                  headers=headers)
    payload = await asyncio.to_thread(encode, s) if big else encode(s)
    await http.send_response(send, 200, payload, headers=http.answered_by(s.model.version, s.arm, s.request_id))


def decode(model: ServedModel, body: bytes, ctype: str) -> _tensors.Decoded:
    """The rows of an /invocations body (JSON in one of MLflow's four forms, or CSV)."""
    try:
        if ctype == "text/csv":
            return _tensors.Decoded(records=_csv(body))
        return _json(model, http.parse_json(body))
    except InputError as exc:
        if "expects" in exc.message:
            raise
        raise InputError(f"{exc.message} {model.expected(records=True)}", hint=exc.hint) from None


def _json(model: ServedModel, doc: Any) -> _tensors.Decoded:
    if not isinstance(doc, dict):
        raise InputError(f"the body must be a JSON object with one of {', '.join(FORMATS)}; got "
                         f"{type(doc).__name__}; {_EXAMPLE}.")
    given = [k for k in FORMATS if k in doc]
    unknown = sorted(set(doc) - {*FORMATS, "params"})
    if len(given) != 1 or unknown:
        what = (f"unknown key(s) {', '.join(repr(k[:40]) for k in unknown)}" if unknown else
                "none of them" if not given else "several: " + ", ".join(given))
        raise InputError(f"the body must hold exactly one of {', '.join(FORMATS)} (and optionally params); "
                         f"it has {what}; {_EXAMPLE}.")
    params = doc.get("params")
    if params is not None and not isinstance(params, dict):
        raise InputError(f"params must be an object; got {type(params).__name__}.")
    key = given[0]
    value = doc[key]
    if key == "dataframe_records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise InputError(f"dataframe_records must be a list of objects (column -> value), one per row; {_EXAMPLE}.")
        return _tensors.Decoded(records=value)
    if key == "dataframe_split":
        return _tensors.Decoded(records=_split(model, value))
    if key == "instances":
        return _tensors.instances(model, value)
    return _tensors.columns(model, value)


def _split(model: ServedModel, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        raise InputError(f"dataframe_split must be an object with \"columns\" and \"data\" (pandas' split "
                         f"orientation); got {type(value).__name__}; {_EXAMPLE}.")
    unknown = sorted(set(value) - {"columns", "data", "index"})
    if unknown:
        raise InputError(f"dataframe_split has unknown key(s) {', '.join(repr(k[:40]) for k in unknown)}; it takes "
                         "columns, data and index.")
    data = value.get("data")
    if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
        raise InputError(f"dataframe_split.data must be a list of rows, each a list of values; {_EXAMPLE}.")
    columns = value.get("columns")
    if columns is None:  # no names: the values are the model's columns in order, as MLflow maps them
        columns = model.signature.column_names or [t.name for t in model.signature.inputs]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InputError("dataframe_split.columns must be a list of column names (strings).")
    if len(set(columns)) != len(columns):
        raise InputError("dataframe_split.columns names a column twice.")
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise InputError(f"dataframe_split.index must be a list with one entry per row ({len(data)}).")
    width = len(columns)
    for i, row in enumerate(data):
        if len(row) != width:
            raise InputError(f"dataframe_split.data row {i} has {len(row)} values; there are {width} columns "
                             f"({', '.join(c[:40] for c in columns[:20])}).")
    return [dict(zip(columns, row)) for row in data]


def _csv(body: bytes) -> list[dict[str, Any]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"the CSV body is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise InputError(f"the CSV body cannot be read: {exc}.") from None
    rows = [r for r in rows if r]
    if not rows:
        raise InputError("the CSV body is empty; it needs a header line with the column names, then the rows.")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise InputError("the CSV header names a column twice.")
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InputError(f"CSV line {i} has {len(row)} fields; the header has {len(header)}.")
        # an empty field is a missing value, as pandas reads it
        out.append({h: (v if v != "" else None) for h, v in zip(header, row)})
    return out


def encode(s: Scored) -> bytes:
    from modelport.runtime.session import output_columns

    cols = output_columns({k: s.result[k] for k in s.model.output_names if k in s.result}, s.model.bundle.classes)
    values = {k: _plain(v.tolist()) for k, v in cols.items()}
    preds = [{k: v[i] for k, v in values.items()} for i in range(s.rows)]
    return orjson.dumps({"predictions": preds}, option=_NUMPY)


def _plain(values: list[Any]) -> list[Any]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]


async def _error(dp: DataPlane, send: http.Send, status: int, message: str, hint: str | None) -> None:
    doc: dict[str, Any] = {"error_code": _CODES.get(status, "INTERNAL_ERROR"), "message": dp.public_text(message)}
    if hint:
        doc["hint"] = dp.public_text(hint)
    extra = [(b"retry-after", b"1")] if status == 503 else []
    await http.send_response(send, status, orjson.dumps(doc), headers=extra)


async def _method(scope: http.Scope, send: http.Send, want: str) -> bool:
    method = scope["method"]
    if method == want or (want == "GET" and method == "HEAD"):
        return False
    await http.send_response(
        send, 405, orjson.dumps({"error_code": "BAD_REQUEST", "message": f"method {method} is not allowed here; use {want}."}),
        headers=[(b"allow", want.encode())],
    )
    return True
