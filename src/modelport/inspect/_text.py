"""Text from bundles, manifests, graphs and registries, made safe to print on a terminal.

A bundle's name, description, tags, metric names, column and tensor names, file names and graph
names are written by whoever made the bundle. Printed as they are, an escape sequence in any of
them can clear the screen, move the cursor or retitle the window and then print a fake
``verdict: PASS``; rich markup in them (``[bold green]PASS[/]``) would be interpreted, or crash
the renderer. This module is the one place that neutralises such text, used by every renderer
(``inspect``, ``verify``, ``diff``, the registry commands and error messages):

- :func:`clean` replaces control characters (C0, DEL, C1: ESC, CSI, BEL, CR, backspace ...),
  Unicode line and paragraph separators and bidirectional / invisible formatting characters with
  visible escapes (``\\x1b``, ``\\u202e``), so what was hidden is shown instead of obeyed;
- :func:`clean_data` does so for every string (keys too) of a report before it is rendered;
- :func:`console` is a rich Console that never interprets markup or emoji codes in text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# C0 controls but tab and newline, DEL and C1 (U+0080-U+009F, where U+009B is an 8-bit CSI); the Arabic
# letter mark, zero-width and directional marks, line/paragraph separators, bidi embeddings, overrides and
# isolates, word joiner and invisible operators, the byte-order mark, interlinear annotation characters
_CONTROL = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb"
_UNSAFE_MULTILINE = re.compile(f"[{_CONTROL}]")
_UNSAFE_LINE = re.compile(f"[{_CONTROL}\t\n]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x0A:
        return "\\n"
    if code == 0x09:
        return "\\t"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: Any, *, multiline: bool = False) -> str:
    """``text`` as a string with every terminal control shown as an escape (``\\x1b``, ``\\u202e``).

    Newlines and tabs are escaped too unless ``multiline`` (for text that is laid out in lines of its own,
    such as a printed graph).
    """
    s = text if isinstance(text, str) else str(text)
    return (_UNSAFE_MULTILINE if multiline else _UNSAFE_LINE).sub(_escape, s)


def clean_data(obj: Any) -> Any:
    """A copy of ``obj`` with every string in it (dict keys included) passed through :func:`clean`."""
    if isinstance(obj, str):
        return clean(obj)
    if isinstance(obj, Mapping):
        return {clean_data(k): clean_data(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean_data(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(clean_data(v) for v in obj)
    return obj


def clean_error(exc: BaseException) -> str:
    """An error's text for a terminal: its message and hint cleaned, the line between them kept."""
    from modelport.errors import ModelportError

    if isinstance(exc, ModelportError):
        text = clean(exc.message)
        return text if exc.hint is None else f"{text}\n  hint: {clean(exc.hint)}"
    return clean(str(exc))


def clean_json(text: str) -> str:
    """JSON text (as ``json.dumps(..., ensure_ascii=False)`` writes it) with the characters that JSON leaves
    raw but a terminal obeys (C1 controls, bidirectional and invisible formatting) written as ``\\uXXXX``
    escapes: the same JSON value, safe to print."""
    return re.sub(f"[{_CONTROL}]", lambda m: f"\\u{ord(m.group()):04x}", text)


def console(**kwargs: Any) -> Console:
    """A rich Console that prints text literally: no markup, no emoji codes, no highlighting."""
    from rich.console import Console

    kwargs.setdefault("highlight", False)
    return Console(markup=False, emoji=False, **kwargs)


__all__ = ["clean", "clean_data", "clean_error", "clean_json", "console"]
