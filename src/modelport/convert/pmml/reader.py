"""Reading a PMML file safely: bytes -> a tree of :class:`Element` (tag, attributes, children,
text, line), on the standard library's expat parser with every dangerous feature refused.

A PMML file may come from anyone (a vendor's tool, a colleague, a download), so the reader holds
it to the standard of ``docs/security.md``:

* **no entities and no DTD**: a ``<!DOCTYPE`` with an internal subset, any entity declaration
  (the billion-laughs bomb is entity expansion), any external entity or parameter entity reference
  is refused before a single entity is expanded; PMML needs none of them;
* **bounded**: at most :data:`MAX_BYTES` of XML, :data:`MAX_DEPTH` levels of nesting,
  :data:`MAX_ELEMENTS` elements, :data:`MAX_ATTRIBUTES` attributes on one element and
  :data:`MAX_TEXT` characters of text in one element; parsing is linear in the input (expat
  streams; nothing is re-read), so time is bounded by the size bound;
* **clear errors**: malformed XML, a limit crossed or a forbidden construct is a
  :class:`~modelport.errors.ConversionError` that names the line.

The tree keeps the line of every element so that later stages can say *where* an unsupported
element or a bad attribute is. Namespaces are dropped from tags (PMML 3.x and 4.x use one
namespace per version; the version is read from the root's ``version`` attribute).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from modelport.errors import ConversionError

#: the largest PMML document read (bytes); large forests are tens of MB
MAX_BYTES = 512 * 1024 * 1024
#: nesting depth; PMML trees nest one element per tree level (a leaf-wise tree can be deep)
MAX_DEPTH = 20_000
#: elements in one document
MAX_ELEMENTS = 20_000_000
MAX_ATTRIBUTES = 256
MAX_TEXT = 64 * 1024 * 1024


@dataclass(eq=False, slots=True)  # slots: a large forest is millions of elements
class Element:
    """One XML element: local tag name, attributes, child elements, text and source line."""

    tag: str
    attrs: dict[str, str]
    line: int
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def __repr__(self) -> str:
        return f"<{self.tag} line {self.line}>"

    def find(self, tag: str) -> Element | None:
        for c in self.children:
            if c.tag == tag:
                return c
        return None

    def findall(self, tag: str) -> list[Element]:
        return [c for c in self.children if c.tag == tag]

    def iter(self) -> Iterator[Element]:
        stack = [self]
        while stack:
            e = stack.pop()
            yield e
            stack.extend(reversed(e.children))


class _Refused(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def parse_bytes(data: bytes, *, origin: str = "the PMML document", max_bytes: int = MAX_BYTES) -> Element:
    """Parse ``data`` into an :class:`Element` tree, refusing DTDs, entities and oversized input."""
    if len(data) > max_bytes:
        raise ConversionError(
            f"{origin}: the PMML document is {len(data):,} bytes; modelport reads at most {max_bytes:,}.",
        )
    if not data.strip():
        raise ConversionError(f"{origin}: the PMML document is empty.")
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Element] = []
    texts: list[list[str]] = []
    text_sizes: list[int] = []
    root: list[Element] = []
    count = [0]

    def line() -> int:
        return int(parser.CurrentLineNumber)

    def start(name: str, attrs: dict[str, str]) -> None:
        count[0] += 1
        if count[0] > MAX_ELEMENTS:
            raise _Refused(f"more than {MAX_ELEMENTS:,} elements", line())
        if len(stack) >= MAX_DEPTH:
            raise _Refused(f"elements nested deeper than {MAX_DEPTH:,} levels", line())
        if len(attrs) > MAX_ATTRIBUTES:
            raise _Refused(f"an element with {len(attrs)} attributes (at most {MAX_ATTRIBUTES})", line())
        tag = name.rsplit("}", 1)[-1]
        el = Element(tag, {k.rsplit("}", 1)[-1]: v for k, v in attrs.items()}, line())
        if stack:
            stack[-1].children.append(el)
        elif root:
            raise _Refused("a second root element", line())
        else:
            root.append(el)
        stack.append(el)
        texts.append([])
        text_sizes.append(0)

    def end(name: str) -> None:
        el = stack.pop()
        parts = texts.pop()
        text_sizes.pop()
        el.text = "".join(parts)

    def chars(data_: str) -> None:
        if not stack:
            return
        text_sizes[-1] += len(data_)
        if text_sizes[-1] > MAX_TEXT:
            raise _Refused(f"an element with more than {MAX_TEXT:,} characters of text", line())
        texts[-1].append(data_)

    def doctype(name: str, sysid: str | None, pubid: str | None, has_internal_subset: int) -> None:
        raise _Refused("a DOCTYPE declaration (PMML needs no DTD; DTDs carry entity bombs and external "
                       "entities, so modelport refuses them)", line())

    def entity(*args: object) -> None:
        raise _Refused("an entity declaration (entity expansion is how XML bombs work)", line())

    def external(*args: object) -> int:
        raise _Refused("a reference to an external entity (it would read another file or URL)", line())

    def unparsed(*args: object) -> None:
        raise _Refused("an unparsed entity declaration", line())

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = unparsed
    parser.ExternalEntityRefHandler = external
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except _Refused as exc:
        raise ConversionError(f"{origin}, line {exc.line}: refused {exc.message}.") from None
    except expat.ExpatError as exc:
        raise ConversionError(
            f"{origin}, line {exc.lineno}: not well-formed XML ({expat.ErrorString(exc.code)}).",
            hint="the file is truncated or is not a PMML document",
        ) from None
    except (LookupError, ValueError) as exc:  # an XML declaration naming an encoding Python does not know
        raise ConversionError(
            f"{origin}: cannot decode the PMML document ({exc}).",
            hint='write it as UTF-8 (<?xml version="1.0" encoding="UTF-8"?>)',
        ) from None
    except RecursionError:  # pragma: no cover - expat is iterative; kept for safety
        raise ConversionError(f"{origin}: the document is nested too deeply.") from None
    if not root:
        raise ConversionError(f"{origin}: the document has no root element.")
    return root[0]


def read(source: str | os.PathLike[str] | bytes, *, origin: str | None = None) -> Element:
    """The element tree of a PMML file (a path) or of PMML bytes / text."""
    if isinstance(source, bytes):
        return parse_bytes(source, origin=origin or "the PMML document")
    if isinstance(source, str) and source.lstrip().startswith("<"):
        return parse_bytes(source.encode("utf-8"), origin=origin or "the PMML document")
    p = Path(source)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ConversionError(f"{p}: cannot read the PMML file ({exc.strerror or exc}).") from exc
    if size > MAX_BYTES:
        raise ConversionError(f"{p}: the PMML file is {size:,} bytes; modelport reads at most {MAX_BYTES:,}.")
    return parse_bytes(p.read_bytes(), origin=origin or str(p))
