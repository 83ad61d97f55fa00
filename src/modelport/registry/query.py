"""The search language of ``modelport search --where``: parsed by hand, never evaluated.

    metrics.auc > 0.9 and tags.team = 'risk' and name = 'churn*'

A query is conditions joined by ``and``. A condition is ``FIELD OP VALUE``:

- ``metrics.KEY`` with ``<  <=  >  >=  =  ==  !=`` and a number;
- ``tags.KEY`` with ``=  ==  !=`` and a string (quoted, or a bare word);
- ``name`` with ``=  ==  !=`` and a string, where ``*`` and ``?`` are wildcards;
- ``version`` with a comparison and a whole number; ``task`` and ``digest`` with ``=`` / ``!=``.

Back ends turn the parsed conditions into their own query language (SQL for ``sql.py``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from modelport.errors import InputError

NUMERIC_OPS = ("<", "<=", ">", ">=", "=", "!=")
#: versions are stored as 32-bit integers (schema.py): a larger literal cannot even be bound to a query
MAX_VERSION = 2**31 - 1
EQUALITY_OPS = ("=", "!=")

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<op><=|>=|==|!=|<|>|=)
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z0-9_.*?:-]))
  | (?P<word>[A-Za-z0-9_*?][A-Za-z0-9_.*?:-]*)
    """,
    re.VERBOSE,
)

HELP = (
    "conditions joined by 'and', e.g. \"metrics.auc > 0.9 and tags.team = 'risk'\"; fields: metrics.KEY "
    "(compare with a number), tags.KEY (= or != a string), name (= or != a name, * and ? are wildcards), "
    "version, task, digest"
)


@dataclass(frozen=True)
class Condition:
    """One ``FIELD OP VALUE`` test. ``field`` is metrics/tags/name/version/task/digest."""

    field: str
    key: str | None
    op: str
    value: float | int | str


def parse_where(text: str) -> list[Condition]:
    """Parse a ``--where`` query into conditions (all of which must hold)."""
    tokens = _tokenize(text)
    conditions: list[Condition] = []
    i = 0
    while True:
        if i + 3 > len(tokens):
            raise _error(text, "a condition is incomplete (expected FIELD OP VALUE)")
        (fk, fv), (ok, ov), (vk, vv) = tokens[i : i + 3]
        if fk != "word":
            raise _error(text, f"expected a field name, got {fv!r}")
        if ok != "op":
            raise _error(text, f"expected an operator after {fv!r}, got {ov!r}")
        conditions.append(_condition(text, fv, "=" if ov == "==" else ov, vk, vv))
        i += 3
        if i == len(tokens):
            return conditions
        kind, word = tokens[i]
        if kind != "word" or word.lower() != "and":
            raise _error(text, f"expected 'and' between conditions, got {word!r} (only 'and' is supported)")
        i += 1


def glob_to_like(pattern: str) -> str:
    """``churn*`` -> ``churn%`` for SQL LIKE (with ``\\`` as the escape character)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _tokenize(text: str) -> list[tuple[str, str]]:
    if not isinstance(text, str) or not text.strip():
        raise InputError("the search query is empty.", hint=HELP)
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _error(text, f"unexpected character {text[pos]!r} at position {pos}")
        kind = m.lastgroup or ""
        if kind != "space":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _condition(text: str, field: str, op: str, kind: str, raw: str) -> Condition:
    head, dot, key = field.partition(".")
    head = head.lower()
    if head in ("metrics", "tags"):
        if not dot or not key or not re.fullmatch(r"[A-Za-z0-9_.:-]+", key):
            raise _error(text, f"{field!r} needs a key, e.g. {head}.auc")
    elif dot or head not in ("name", "version", "task", "digest"):
        raise _error(text, f"unknown field {field!r}")
    if kind == "op":
        raise _error(text, f"expected a value after {field} {op}, got {raw!r}")
    value: float | int | str = raw[1:-1] if kind == "str" else raw
    if head == "metrics" or head == "version":
        if op not in NUMERIC_OPS:
            raise _error(text, f"{op!r} cannot compare {field}")
        if kind != "num":
            raise _error(text, f"{field} compares with a number, got {raw!r}")
        number = float(raw)
        if not math.isfinite(number):
            raise _error(text, f"{raw!r} is not a finite number")
        if head == "version":
            if number != int(number):
                raise _error(text, f"version compares with a whole number, got {raw!r}")
            # an integer literal exactly (a float would round 2**63 - 1 up); a 1e3 literal as its value
            whole = int(raw) if re.fullmatch(r"[-+]?\d{1,30}", raw) else int(number)
            if not -MAX_VERSION - 1 <= whole <= MAX_VERSION:
                raise _error(text, f"version compares with a whole number of at most {MAX_VERSION}, got {raw!r}")
            return Condition("version", None, op, whole)
        return Condition("metrics", key, op, number)
    if op not in EQUALITY_OPS:
        raise _error(text, f"{field} can only be tested with = or !=, got {op!r}")
    return Condition(head, key or None, op, str(value))


def _error(text: str, what: str) -> InputError:
    return InputError(f"cannot parse the search query {text!r}: {what}.", hint=HELP)
