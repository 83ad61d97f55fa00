"""JSON lines: stdin / a file as the source, stdout / a file as the sink, for local pipelines and demos.

    -                  stdin (as a source), stdout (as a sink)
    PATH.jsonl         a file (also ``.ndjson``, ``.json``); a sink appends to it, like a log
    file:///PATH       the same
    stderr             (as a sink) standard error: the default dead-letter destination here

One message per line; empty lines are skipped. A message's id is its line number (1-based). A
file source ends at the end of the file, and the consumer stops once everything is written.
There is nothing to acknowledge and nothing to redeliver: a crash loses the lines in flight, so a
restart reads the file from the start.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

import orjson

from modelport.errors import InputError, StreamError
from modelport.stream.base import Message, OutMessage, Sink, Source, SourceOptions, StreamURL
from modelport.stream.messages import ARROW_CONTENT_TYPE

_END = object()
_QUEUE_LINES = 10_000


def _path(url: StreamURL) -> str:
    if url.scheme == "file":
        return (url.netloc + url.path) if url.netloc not in ("", "localhost") else url.path
    if url.scheme == "jsonl":
        return url.path if url.netloc == "" else url.netloc + url.path
    return url.path


class JsonLinesSource(Source):
    shared = False

    def __init__(self, url: StreamURL, options: SourceOptions) -> None:
        url.check_unused("source")
        path = _path(url)
        if path in ("-", "stdin"):
            self.stream: IO[bytes] = sys.stdin.buffer
            self.name = "stdin"
            self._own = False
        else:
            try:
                self.stream = open(path, "rb")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise InputError(f"cannot read the source file {path}: {exc.strerror or exc}.") from None
            self.name = path
            self._own = True
        self.key_prefix = os.path.basename(self.name)
        self._lines: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_LINES)
        self._thread = threading.Thread(target=self._pump, name="modelport-jsonl-reader", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        # a thread, so that read() can wait with a timeout on a pipe or a terminal
        number = 0
        try:
            for line in self.stream:
                number += 1
                body = line.strip()
                if body:
                    self._lines.put((number, body))
        except (OSError, ValueError) as exc:
            self._lines.put(StreamError(f"reading {self.name} failed: {exc}"))
        self._lines.put(_END)

    def read(self, max_messages: int, timeout: float) -> list[Message]:
        if self.exhausted:
            return []
        out: list[Message] = []
        try:
            item = self._lines.get(timeout=timeout) if timeout > 0 else self._lines.get_nowait()
        except queue.Empty:
            return out
        while True:
            if item is _END:
                self.exhausted = True
                break
            if isinstance(item, StreamError):
                self.exhausted = True
                raise item
            number, body = item
            out.append(Message(str(number), body))
            if len(out) >= max_messages:
                break
            try:
                item = self._lines.get_nowait()
            except queue.Empty:
                break
        return out

    def ack(self, messages: Sequence[Message]) -> None:
        pass

    def delivery(self, sinks: Sequence[Sink]) -> str:
        return "at-most-once for lines in flight at a crash (a file has no acknowledgements): re-run from the start"

    def dead_letter_sink(self) -> Sink:
        return JsonLinesSink(sys.stderr.buffer, "stderr", dead_letters=True)

    def close(self) -> None:
        if self._own:
            with contextlib.suppress(OSError):
                self.stream.close()


class JsonLinesSink(Sink):
    """One JSON document per line; dead letters as objects with the original payload as text."""

    binary = False

    def __init__(self, stream: IO[bytes], name: str, *, own: bool = False, dead_letters: bool = False) -> None:
        self.stream = stream
        self.name = name
        self._own = own
        self.dead_letters = dead_letters
        self._lock = threading.Lock()

    def write(self, messages: Sequence[OutMessage]) -> None:
        lines = []
        for m in messages:
            if self.dead_letters or m.meta.get("reason"):
                doc = {**m.meta, "payload": m.payload.decode("utf-8", "replace")}
                lines.append(orjson.dumps(doc))
            elif m.meta.get("content_type") == ARROW_CONTENT_TYPE:
                raise StreamError(f"{self.name} cannot hold an Arrow message (a JSON-lines sink writes text).")
            else:
                lines.append(m.payload)
        data = b"\n".join(lines) + b"\n"
        try:
            with self._lock:
                self.stream.write(data)
                self.stream.flush()
        except (OSError, ValueError) as exc:
            raise StreamError(f"writing to {self.name} failed: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()
            if self._own:
                self.stream.close()


def open_source(url: StreamURL, options: SourceOptions) -> Source:
    return JsonLinesSource(url, options)


def open_sink(url: StreamURL, role: str) -> Sink:
    url.check_unused(role)
    path = _path(url)
    dead = role == "dead-letter"
    if path in ("-", "stdout"):
        return JsonLinesSink(sys.stdout.buffer, "stdout", dead_letters=dead)
    if path == "stderr":
        return JsonLinesSink(sys.stderr.buffer, "stderr", dead_letters=dead)
    try:
        stream = open(path, "ab")  # noqa: SIM115 - closed in close()
    except OSError as exc:
        raise InputError(f"cannot write the {role} file {path}: {exc.strerror or exc}.") from None
    return JsonLinesSink(stream, path, own=True, dead_letters=dead)
