"""Times and windows as users write them: ``24h``, ``7d``, ``90m``, ``2026-01-05``, ``2026-01-05T10:00``."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from modelport.errors import InputError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
#: window names ``--by`` accepts, as seconds
WINDOWS = {"minute": 60.0, "hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0}


def parse_duration(text: str | float, *, what: str = "the duration") -> float:
    """Seconds in ``30s``, ``90m``, ``24h``, ``7d``, ``2w`` (or a plain number of seconds)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text <= 0:
            raise InputError(f"{what} must be positive; got {text!r}.")
        return float(text)
    m = _DURATION.fullmatch(str(text))
    if m is None:
        try:
            value = float(str(text))
        except ValueError:
            raise InputError(f"{what} must look like 30s, 90m, 24h, 7d or 2w; got {str(text)[:40]!r}.",
                             hint="a number and one of the units s, m, h, d, w") from None
        if value <= 0:
            raise InputError(f"{what} must be positive; got {text!r}.")
        return value
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if value <= 0:
        raise InputError(f"{what} must be positive; got {text!r}.")
    return value


def parse_window(text: str | float) -> float:
    """``--by`` / ``window``: ``hour``, ``day``, ``week``, ``minute`` or a duration such as ``6h``."""
    if isinstance(text, str) and text.strip().lower() in WINDOWS:
        return WINDOWS[text.strip().lower()]
    return parse_duration(text, what="the window")


def parse_time(text: str | float | None, *, now: float | None = None, what: str = "the time") -> float | None:
    """Seconds since the epoch for ``24h`` (that long ago), an ISO date or time (UTC unless it
    says otherwise), ``now``, or a number of seconds since the epoch. None stays None."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    s = str(text).strip()
    now = time.time() if now is None else now
    if s.lower() == "now":
        return now
    if _DURATION.fullmatch(s):
        return now - parse_duration(s, what=what)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{what} must be a duration back from now (24h, 7d) or an ISO date/time (2026-01-05, "
            f"2026-01-05T10:00:00Z); got {s[:40]!r}."
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def iso(ts: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC with seconds (``2026-01-05T10:00:00Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
