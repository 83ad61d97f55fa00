"""What a stream message may hold, and what the consumer writes back.

An input message is one of
  * a JSON object: one record, the records endpoint's shape for one row (``{"age": 42, ...}``);
  * a JSON batch of records: ``{"records": [{...}, ...]}`` (the records endpoint's body) or ``[{...}, ...]``;
  * Arrow IPC (stream format) for bulk: a table whose columns are the model's columns.

Its output is one message: for a record, the input's ``id``, the kept fields, the prediction
(``label`` and ``probabilities`` for classifiers, ``prediction`` for regressors, the names used
everywhere else), ``model_name``, ``model_version``, ``model_digest`` and ``timestamp``; for a
batch the same around a ``predictions`` list; for Arrow an Arrow table (kept columns + the
columns ``score`` writes) with those fields in its schema metadata.

A dead letter keeps the original payload unchanged and carries the reason, the error text, the
input's id and how often it was delivered as fields (Redis) or headers (NATS).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from modelport.errors import InputError

ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"
JSON_CONTENT_TYPE = "application/json"
#: the first bytes of an Arrow IPC stream (continuation marker) and of an Arrow IPC file
_ARROW_MAGIC = (b"\xff\xff\xff\xff", b"ARROW1")

#: dead-letter reasons (a label of the dead-letter counter)
TOO_LARGE = "too_large"
MALFORMED = "malformed"
INPUT = "input"
MAX_DELIVERIES = "max_deliveries"
ERROR = "error"
REASONS = (TOO_LARGE, MALFORMED, INPUT, MAX_DELIVERIES, ERROR)

#: fields every output carries besides the prediction (kept fields may not reuse them)
ENVELOPE = ("id", "model_name", "model_version", "model_digest", "timestamp")

_MAX_ERROR_CHARS = 2000


class MalformedMessage(InputError):
    """The message is not a JSON record, a JSON batch of records or an Arrow table at all."""


def now_iso(ts: float | None = None) -> str:
    """UTC, millisecond precision, ``Z`` suffix."""
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_arrow(payload: bytes, headers: Mapping[str, str] | None) -> bool:
    if headers:
        ctype = headers.get("Content-Type") or headers.get("content_type") or headers.get("content-type")
        if ctype:
            return ctype.split(";")[0].strip() == ARROW_CONTENT_TYPE
    return payload[:6] == _ARROW_MAGIC[1] or payload[:4] == _ARROW_MAGIC[0]


def records_of(doc: Any, column_set: frozenset[str]) -> tuple[list[dict[str, Any]], bool]:
    """The records of a decoded JSON message, and whether it was a single record."""
    if isinstance(doc, dict):
        inner = doc.get("records")
        if len(doc) == 1 and isinstance(inner, list) and "records" not in column_set:
            records = inner
        else:
            return [doc], True
    elif isinstance(doc, list):
        records = doc
    else:
        raise MalformedMessage(
            f"a message must be a JSON object (one record) or a batch of records; got a JSON {_json_kind(doc)}.",
            hint='send {"column": value, ...} or {"records": [{...}, ...]}',
        )
    if not records:
        raise MalformedMessage("the message's batch of records is empty; send at least one record.")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise MalformedMessage(f"record {i} of the message is a JSON {_json_kind(rec)}, not an object of column values.")
    return records, False


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "array"
    return "object"


def read_arrow(payload: bytes) -> Any:
    """The table of an Arrow IPC message (stream or file format)."""
    from modelport._deps import require

    pa = require("pyarrow", purpose="Arrow stream messages")
    ipc = require("pyarrow.ipc", purpose="Arrow stream messages")
    try:
        if payload[:6] == _ARROW_MAGIC[1]:
            return ipc.open_file(pa.py_buffer(payload)).read_all()
        return ipc.open_stream(pa.py_buffer(payload)).read_all()
    except (pa.ArrowInvalid, pa.ArrowException, OSError, ValueError) as exc:
        raise MalformedMessage(f"the message is not a readable Arrow IPC stream: {exc}") from None


def write_arrow(table: Any, metadata: Mapping[str, str]) -> bytes:
    from modelport._deps import require

    pa = require("pyarrow", purpose="Arrow stream messages")
    ipc = require("pyarrow.ipc", purpose="Arrow stream messages")
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **dict(metadata)})
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


class Predictions:
    """Prediction columns of scored rows -> one JSON-ready dict per row, with the usual names:
    ``label`` + ``probabilities`` {class: p} for classifiers, every other column by its name."""

    def __init__(self, classes: Sequence[Any] | None, prefix: str = "") -> None:
        self.prefix = prefix
        self.classes = list(classes) if classes is not None else None
        self.class_keys = [str(c) for c in self.classes] if self.classes is not None else []
        self.proba = [f"proba_{c}" for c in self.classes] if self.classes is not None else []

    def names(self, columns: Sequence[str]) -> list[str]:
        """The top-level output names a row gets, for clash checks."""
        p = self.prefix
        if self.proba and all(c in columns for c in self.proba):
            rest = [c for c in columns if c not in self.proba]
            return [p + c for c in rest] + [p + "probabilities"]
        return [p + c for c in columns]

    def rows(self, preds: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
        p = self.prefix
        names = list(preds)
        if not names:
            return []
        if self.proba and all(c in preds for c in self.proba):
            rest = [c for c in names if c not in self.proba]
            probs = np.column_stack([preds[c] for c in self.proba]).tolist()
            keys = self.class_keys
            pk = p + "probabilities"
            if rest == ["label"]:  # a classifier's usual pair, in one comprehension
                lk = p + "label"
                return [{lk: lab, pk: dict(zip(keys, pr))} for lab, pr in zip(_values(preds["label"]), probs)]
            rest_values = [_values(preds[c]) for c in rest]
            out = []
            for i, pr in enumerate(probs):
                row = {p + c: vals[i] for c, vals in zip(rest, rest_values)}
                row[pk] = dict(zip(keys, pr))
                out.append(row)
            return out
        values = [_values(preds[c]) for c in names]
        keys = [p + c for c in names]
        return [dict(zip(keys, vals)) for vals in zip(*values)]


def _values(arr: np.ndarray) -> list[Any]:
    """JSON-ready Python values (text labels a graph gives as bytes become str)."""
    values = arr.tolist()
    if arr.dtype.kind in "OS":
        return [_plain(v) for v in values]
    return values


def _plain(v: Any) -> Any:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def dead_letter_meta(
    *, reason: str, error: str, message_id: str, deliveries: int, source: str, model: Any | None
) -> dict[str, str]:
    """The fields (Redis) / headers (NATS) of a dead letter; the payload stays the original."""
    meta = {
        "reason": reason,
        "error": _clip(error),
        "id": message_id,
        "deliveries": str(deliveries),
        "source": source,
        "timestamp": now_iso(),
    }
    if model is not None:
        meta["model_name"] = model.name
        meta["model_version"] = model.version
        meta["model_digest"] = model.digest
    return meta


def _clip(text: str) -> str:
    # one line: NATS headers cannot hold line breaks, and a log reader wants one line per error
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_ERROR_CHARS else flat[: _MAX_ERROR_CHARS - 3] + "..."
