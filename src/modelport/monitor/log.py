"""The prediction log: each scored row (sampled) as Parquet under a directory or any fsspec URL.

    >>> log = PredictionLog("predictions/", sample=0.2)
    >>> churn = log.model(bundle, name="churn", version="3")        # once per model version
    >>> churn.write("req-1", rows=1, feeds=feeds, outputs=result, latency=0.0012)   # never blocks
    >>> log.close()                                                  # flushes what is left

Serve, score and stream all write through this API (one format, read by ``drift``, ``perf``,
``replay`` and the dashboard through :mod:`modelport.monitor.read`).

**What a row holds**: ``id`` (the row's id: the request id for a one-row request, ``<request
id>:<i>`` for row ``i`` of a larger one), ``request_id``, ``ts`` (UTC, when it was answered),
``model``, ``version``, ``digest``, ``source`` (serve / score / stream), ``role`` (``answer``,
or ``shadow`` for a model scored on a copy of the traffic), ``arm`` (a routing arm, or null),
``latency_ms`` (of the whole request), ``sample_rate``; then ``in.<column>`` for every input
column (:mod:`modelport.monitor.columns`: what the model saw, in the bundle's column terms) and
``out.<name>`` for every output column (``label``, ``proba_<class>``, ``prediction``, ...).

**Layout**::

    predictions/model=<name>/version=<version>/date=<YYYY-MM-DD>/part-<start>-<writer>-<n>.parquet
    predictions/_labels/date=<YYYY-MM-DD>/labels-<start>-<writer>-<n>.parquet   (feedback)
    predictions/_writers/<writer>.json                                          (each writer's state)

Partition values are percent-encoded. A file is written under a hidden temporary name
(``.part-...tmp``) and appears under its final name only when complete (renamed; on object
stores, uploaded when closed), so readers never see half a file.

**Rotation and what a kill loses**: a writer keeps one open file per model version and closes it
after ``rotate_seconds`` or ``max_file_bytes``, whichever comes first (and on :meth:`close`).
The rows of the open files are the *unflushed* rows: a process killed without a chance to close
(SIGKILL, power loss) loses them, and nothing else. The writer's state file
(``_writers/<writer>.json``, rewritten every second and at each rotation) documents how many rows
it accepted, wrote to complete files, dropped, and holds unflushed, and since when its oldest open
file has been open (``unflushed_since``). A graceful stop (SIGTERM) closes every file: nothing is lost.

**Never blocking scoring**: :meth:`ModelLog.write` only appends a reference to the request's
feeds and outputs to a queue (no copy, no conversion: a few microseconds on the event loop); a
background thread decodes, converts to Arrow and writes. When that thread falls behind and more
than ``max_pending_rows`` rows wait, new rows are dropped and counted (``dropped`` in the state
file and ``modelport_log_dropped_rows_total``), never queued without bound.

**Sampling** is by request id (a hash, not a coin flip), so that every model scoring the same
request (an answer and its shadows) logs it or skips it alike, and every worker agrees.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from modelport._deps import require
from modelport.errors import InputError
from modelport.monitor import columns as colmod

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle

log = logging.getLogger("modelport.monitor")

LOG_FORMAT = 1
LABELS_DIR = "_labels"
WRITERS_DIR = "_writers"
META = ("id", "request_id", "ts", "model", "version", "digest", "source", "role", "arm", "latency_ms", "sample_rate")
ROLES = ("answer", "shadow", "replay")
MAX_ID_LENGTH = 256


# ============================================================================ storage
class Storage:
    """Where log files go: a local directory (atomic renames, fsync at rotation) or an fsspec URL."""

    def __init__(self, url: str | os.PathLike[str]) -> None:
        text = os.fspath(url)
        if not text:
            raise InputError("the prediction log location must be a directory or a URL; got an empty string.")
        self.url = text
        self.local: Path | None = None
        self.fs: Any = None
        if "://" not in text or text.startswith("file://"):
            self.local = Path(text[7:] if text.startswith("file://") else text).expanduser()
            if self.local.exists() and not self.local.is_dir():
                raise InputError(f"the prediction log {self.local} exists and is not a directory.",
                                 hint="give a directory (it is created if missing) or an fsspec URL")
            self.root = str(self.local)
        else:
            fsspec = require("fsspec", purpose="a prediction log at a URL")
            try:
                self.fs, self.root = fsspec.core.url_to_fs(text)
            except (ImportError, ValueError) as exc:
                raise InputError(f"cannot open the prediction log {text!r}: {exc}.",
                                 hint="install the fsspec implementation of that URL scheme (e.g. s3fs)") from exc
            self.root = self.root.rstrip("/")

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts]) if self.local is None else str(Path(self.root, *parts))

    def makedirs(self, path: str) -> None:
        if self.local is not None:
            Path(path).mkdir(parents=True, exist_ok=True)
        else:
            with contextlib.suppress(Exception):
                self.fs.makedirs(path, exist_ok=True)

    def open_write(self, final: str) -> tuple[Any, str]:
        """A binary file to write ``final`` through, and the temporary path (the final path on object stores)."""
        if self.local is not None:
            p = Path(final)
            tmp = p.with_name(f".{p.name}.tmp")
            p.parent.mkdir(parents=True, exist_ok=True)
            return open(tmp, "wb"), str(tmp)
        parent = final.rsplit("/", 1)[0]
        self.makedirs(parent)
        return self.fs.open(final, "wb"), final

    def commit(self, tmp: str, final: str) -> None:
        """Make a written file visible under its final name (local: fsync, rename, fsync the directory)."""
        if self.local is not None and tmp != final:
            from modelport._fs import fsync_path

            fsync_path(tmp)
            os.replace(tmp, final)
            fsync_path(os.path.dirname(final))

    def discard(self, tmp: str) -> None:
        if self.local is not None:
            Path(tmp).unlink(missing_ok=True)

    def write_bytes(self, final: str, data: bytes) -> None:
        """Write a small file whole (state files): atomically replaced."""
        if self.local is not None:
            p = Path(final)
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, p)
        else:
            self.makedirs(final.rsplit("/", 1)[0])
            self.fs.pipe(final, data)

    def read_bytes(self, path: str) -> bytes:
        if self.local is not None:
            return Path(path).read_bytes()
        return bytes(self.fs.cat_file(path))

    def listdir(self, path: str) -> list[str]:
        """Names (not paths) in ``path``; [] when it does not exist."""
        if self.local is not None:
            try:
                return sorted(p.name for p in Path(path).iterdir())
            except (FileNotFoundError, NotADirectoryError):
                return []
        try:
            return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in self.fs.ls(path, detail=False))
        except (FileNotFoundError, OSError):
            return []

    def open_read(self, path: str) -> Any:
        return open(path, "rb") if self.local is not None else self.fs.open(path, "rb")

    def filesystem(self) -> Any:
        """A pyarrow-usable filesystem for reading (None for local paths)."""
        return None if self.local is not None else self.fs


def partition(key: str, value: str) -> str:
    """``key=value`` with the value percent-encoded (no ``/``, no leading dot, never ``.`` or ``..``)."""
    text = quote(str(value), safe="")
    if text.startswith("."):
        text = "%2E" + text[1:]
    return f"{key}={text}"


def check_id(value: Any, *, what: str = "the request id") -> str:
    """A request / row id as the log stores it: a string of 1 to 256 printable ASCII characters."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string; got {type(value).__name__}.")
    if not value or len(value) > MAX_ID_LENGTH or not value.isascii() or not value.isprintable():
        shown = value[:40] + ("..." if len(value) > 40 else "")
        raise InputError(
            f"{what} must be 1 to {MAX_ID_LENGTH} printable ASCII characters; got {shown!r} ({len(value)} characters).",
            hint="use an id such as a UUID, or leave it out and the server makes one",
        )
    return value


class IdMaker:
    """Request ids for requests that bring none: unique across processes and restarts, cheap."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:12]
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n:x}"


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request id falls in a sample of ``rate`` (deterministic: the same id always does or never)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return zlib.crc32(request_id.encode("utf-8", "replace")) < rate * 4294967296.0


# ============================================================================ the log
@dataclass
class LogStats:
    """A writer's counts: rows accepted, written to complete files, dropped (the writer was
    behind), and unflushed (queued or in open files); files completed."""

    accepted: int = 0
    written: int = 0
    dropped: int = 0
    files: int = 0
    labels: int = 0
    errors: int = 0
    unflushed_since: float | None = None

    @property
    def unflushed(self) -> int:
        return self.accepted - self.written - self.dropped

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "written": self.written, "dropped": self.dropped,
                "unflushed": self.unflushed, "files": self.files, "labels": self.labels, "errors": self.errors,
                "unflushed_since": self.unflushed_since}


@dataclass(eq=False)
class _Entry:
    target: ModelLog
    request_id: str
    rows: int
    feeds: Mapping[str, np.ndarray] | None
    data: Any
    outputs: Mapping[str, np.ndarray] | None
    latency: float | None
    ts: float
    raw: Any
    role: str
    arm: str | None
    ids: Sequence[str] | None
    request_ids: Sequence[str] | None = None


@dataclass(eq=False)
class _Open:
    """One open Parquet file of a model version."""

    final: str
    tmp: str
    handle: Any
    writer: Any
    opened: float
    rows: int = 0
    bytes: int = 0
    buffered: list[Any] = field(default_factory=list)
    buffered_rows: int = 0
    buffered_bytes: int = 0  # Arrow bytes of ``buffered``, kept as batches come (not summed every tick)


#: called in the writer thread for every batch decoded: (model log, input columns, output columns, meta
#: columns: ``id``, ``request_id``, ``ts`` (epoch seconds, an array), ``latency_ms``, ``role``, ``arm``)
Listener = Callable[["ModelLog", dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]], None]


class PredictionLog:
    """A prediction log writer (one per process). Thread-safe; :meth:`ModelLog.write` never blocks.

    ``url``: a directory (created if missing) or an fsspec URL. ``sample``: the share of requests
    logged (0 to 1, by request id). ``rotate_seconds`` / ``max_file_bytes``: when an open file is
    closed (see the module docstring: its rows are the ones a kill loses). ``max_pending_rows``:
    rows that may wait for the writer thread before new ones are dropped (and counted).
    """

    def __init__(
        self,
        url: str | os.PathLike[str],
        *,
        sample: float = 1.0,
        rotate_seconds: float = 300.0,
        max_file_bytes: int = 64 << 20,
        max_pending_rows: int = 200_000,
        row_group_rows: int = 65_536,
        source: str = "serve",
        tick: float = 0.2,
    ) -> None:
        if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0.0 <= float(sample) <= 1.0:
            raise InputError(f"the log sample rate must be a number from 0 to 1; got {sample!r}.",
                             hint="--log-sample 0.2 logs one request in five")
        for name, value in (("rotate_seconds", rotate_seconds), ("max_file_bytes", max_file_bytes),
                            ("max_pending_rows", max_pending_rows), ("row_group_rows", row_group_rows)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InputError(f"{name} must be a positive number; got {value!r}.")
        self.pa = require("pyarrow", purpose="the prediction log")
        self.pq = require("pyarrow.parquet", purpose="the prediction log")
        self.storage = Storage(url)
        self.url = self.storage.url
        self.sample = float(sample)
        self.rotate_seconds = float(rotate_seconds)
        self.max_file_bytes = int(max_file_bytes)
        self.max_pending_rows = int(max_pending_rows)
        self.row_group_rows = int(row_group_rows)
        self.source = source
        self.tick = tick
        self.writer_id = f"{_host()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started = time.time()
        self.stats = LogStats()
        self.listeners: list[Listener] = []
        self._queue: deque[_Entry] = deque()
        self._labels: deque[tuple[str, Any, float | None, float, str | None, str]] = deque()
        self._pending = 0  # rows queued, not yet taken by the writer thread
        self._models: dict[tuple[str, str, str, str], ModelLog] = {}
        self._open: dict[tuple[str, ...], _Open] = {}
        self._seq = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._flush_request: threading.Event | None = None
        self._last_state = 0.0
        self._labels_open: _Open | None = None
        self.storage.makedirs(self.storage.root)
        self._thread = threading.Thread(target=self._run, name="modelport-log-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API
    def model(self, bundle: Bundle, *, name: str | None = None, version: str | None = None,
              digest: str | None = None, source: str | None = None) -> ModelLog:
        """The writer for one model version (cached: call it once per version, or per request)."""
        name = name or bundle.name
        version = str(version if version is not None else (bundle.version or "1"))
        digest = digest or bundle.digest
        src = source or self.source
        key = (name, version, digest, src)
        m = self._models.get(key)
        if m is None:
            with self._lock:
                m = self._models.get(key)
                if m is None:
                    m = self._models[key] = ModelLog(self, bundle, name, version, digest, src)
        return m

    def wants(self, request_id: str) -> bool:
        """Whether rows of this request are logged (the sample)."""
        return sampled(request_id, self.sample)

    def write_labels(self, records: Sequence[tuple[str, Any, float | None]], *, model: str | None = None,
                     source: str = "feedback") -> int:
        """Queue feedback labels ``(id, label, ts or None)`` for ``_labels/`` (never blocks)."""
        now = time.time()
        n = 0
        for rid, label, ts in records:
            if len(self._labels) >= self.max_pending_rows:
                self.stats.dropped += 1
                continue
            self._labels.append((rid, label, ts, now, model, source))
            n += 1
        self._wake.set()
        return n

    def wait_room(self, rows: int, timeout: float = 300.0) -> None:
        """Block until ``rows`` more fit in the queue (batch scoring: wait rather than drop)."""
        deadline = time.monotonic() + timeout
        while self._pending and self._pending + rows > self.max_pending_rows and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything queued and close the open files now (they become readable); False when
        the writer did not get there within ``timeout`` (or the log is closed)."""
        if self._closed:
            return False
        done = threading.Event()
        self._flush_request = done
        self._wake.set()
        if not done.wait(timeout):
            log.warning("the prediction log did not flush within %g s", timeout)
            return False
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, close every file and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("the prediction log writer did not finish within %g s; %d row(s) unflushed",
                      timeout, self.stats.unflushed)

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ the queue (any thread)
    def _submit(self, entry: _Entry) -> bool:
        rows = entry.rows
        if self._closed:
            self.stats.dropped += rows
            self.stats.accepted += rows
            return False
        self.stats.accepted += rows
        if self._pending + rows > self.max_pending_rows:
            self.stats.dropped += rows
            return False
        self._pending += rows
        self._queue.append(entry)
        if self._pending >= self.row_group_rows:
            self._wake.set()
        return True

    # ------------------------------------------------------------------ the writer thread
    def _run(self) -> None:
        while True:
            self._wake.wait(self.tick)
            self._wake.clear()
            stopping = self._stop.is_set()
            try:
                self._drain()
                flush = self._flush_request
                if flush is not None or stopping:
                    self._drain()
                    self._rotate(force=True)
                    self._flush_request = None
                    if flush is not None:
                        flush.set()
                else:
                    self._rotate(force=False)
                self._write_state(force=stopping or flush is not None)
            except Exception:  # the writer must never die: count it and go on
                self.stats.errors += 1
                log.exception("the prediction log writer failed; it goes on with the next rows")
            if stopping:
                self._write_state(force=True)
                return

    def _drain(self) -> None:
        entries: list[_Entry] = []
        q = self._queue
        while q:
            entries.append(q.popleft())
        if entries:
            self._pending -= sum(e.rows for e in entries)
            groups: dict[ModelLog, list[_Entry]] = {}
            for e in entries:
                groups.setdefault(e.target, []).append(e)
            for target, items in groups.items():
                try:
                    self._append(target, items)
                except Exception:
                    n = sum(e.rows for e in items)
                    self.stats.dropped += n
                    self.stats.errors += 1
                    log.exception("could not log %d row(s) of %s version %s", n, target.name, target.version)
        if self._labels:
            self._append_labels()

    def _append(self, target: ModelLog, items: list[_Entry]) -> None:
        pa = self.pa
        inputs, outs, meta = target.decode(items)
        n = len(meta["id"])
        if n == 0:
            return
        for listener in self.listeners:
            try:
                listener(target, inputs, outs, meta)
            except Exception:
                log.exception("a prediction log listener failed")
        arrays = [
            pa.array(meta["id"], pa.string()),
            pa.array(meta["request_id"], pa.string()),
            pa.array((meta["ts"] * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
            pa.array([target.name] * n, pa.string()),
            pa.array([target.version] * n, pa.string()),
            pa.array([target.digest] * n, pa.string()),
            pa.array([target.source] * n, pa.string()),
            pa.array(meta["role"], pa.string()),
            pa.array(meta["arm"], pa.string()),
            pa.array(meta["latency_ms"], pa.float64()),
            pa.array(np.full(n, self.sample), pa.float64()),
        ]
        for c, field_name in zip(target.inputs, target.schema.field_names_in):
            arrays.append(_arrow(pa, inputs[c.name], target.schema.types[field_name]))
        for name in target.schema.outputs:
            arrays.append(_arrow(pa, outs[name], target.schema.types[OUTPUT_PREFIX + name]) if name in outs
                          else pa.nulls(n, target.schema.types[OUTPUT_PREFIX + name]))
        batch = pa.RecordBatch.from_arrays(arrays, schema=target.schema.arrow)
        key = ("p", target.name, target.version, target.digest, target.source)
        now = time.time()
        f = self._open.get(key)
        if f is None:
            f = self._open[key] = self._open_file(target, now)
        f.buffered.append(batch)
        f.buffered_rows += n
        f.buffered_bytes += batch.nbytes
        if f.buffered_rows >= self.row_group_rows:
            self._write_buffered(f)

    def _open_file(self, target: ModelLog, now: float) -> _Open:
        self._seq += 1
        day = datetime.fromtimestamp(now, tz=timezone.utc)
        name = f"part-{day.strftime('%Y%m%dT%H%M%S')}-{self.writer_id}-{self._seq:06d}.parquet"
        directory = self.storage.join(partition("model", target.name), partition("version", target.version),
                                      partition("date", day.strftime("%Y-%m-%d")))
        final = directory + ("/" if self.storage.local is None else os.sep) + name
        handle, tmp = self.storage.open_write(final)
        counter = _CountingFile(handle)
        meta = {b"modelport.log": json.dumps({"format": LOG_FORMAT, "model": target.name, "version": target.version,
                                               "digest": target.digest, "source": target.source,
                                               "task": target.task, "classes": target.classes}).encode()}
        schema = target.schema.arrow.with_metadata(meta)
        writer = self.pq.ParquetWriter(counter, schema, compression="zstd")
        if self.stats.unflushed_since is None:
            self.stats.unflushed_since = now
        return _Open(final, tmp, counter, writer, now)

    def _write_buffered(self, f: _Open) -> None:
        if not f.buffered:
            return
        table = self.pa.Table.from_batches(f.buffered)
        f.writer.write_table(table, row_group_size=max(self.row_group_rows, table.num_rows))
        f.rows += table.num_rows
        f.buffered = []
        f.buffered_rows = 0
        f.buffered_bytes = 0

    def _rotate(self, *, force: bool) -> None:
        now = time.time()
        closed = False
        for key, f in list(self._open.items()):
            if not force and now - f.opened < self.rotate_seconds and f.handle.written + _estimate(f) < self.max_file_bytes:
                continue
            del self._open[key]
            closed = True
            rows = f.rows + f.buffered_rows
            try:
                self._write_buffered(f)
                f.writer.close()
                f.handle.close()
                self.storage.commit(f.tmp, f.final)
            except Exception:
                self.stats.dropped += rows
                self.stats.errors += 1
                log.exception("could not complete the log file %s; its %d row(s) are lost", f.final, rows)
                with contextlib.suppress(Exception):
                    f.handle.close()
                self.storage.discard(f.tmp)
                continue
            self.stats.written += rows
            self.stats.files += 1
        self.stats.unflushed_since = min((f.opened for f in self._open.values()), default=None)
        if (force and self._labels_open is not None) or (self._labels_open is not None and now - self._labels_open.opened >= self.rotate_seconds):
            self._close_labels()
        if force or closed:  # at each rotation; otherwise _run rewrites it once a second
            self._write_state(force=True)

    # ------------------------------------------------------------------ labels
    def _append_labels(self) -> None:
        pa = self.pa
        items = []
        while self._labels:
            items.append(self._labels.popleft())
        if not items:
            return
        ids = [i[0] for i in items]
        labels = [None if i[1] is None else (i[1] if isinstance(i[1], str) else json.dumps(i[1])) for i in items]
        values = [_as_float(i[1]) for i in items]
        batch = pa.RecordBatch.from_arrays(
            [pa.array(ids, pa.string()), pa.array(labels, pa.string()), pa.array(values, pa.float64()),
             pa.array([int((i[2] if i[2] is not None else i[3]) * 1e6) for i in items], pa.timestamp("us", tz="UTC")),
             pa.array([int(i[3] * 1e6) for i in items], pa.timestamp("us", tz="UTC")),
             pa.array([i[4] for i in items], pa.string()), pa.array([i[5] for i in items], pa.string())],
            schema=label_schema(pa),
        )
        if self._labels_open is None:
            self._seq += 1
            now = time.time()
            day = datetime.fromtimestamp(now, tz=timezone.utc)
            directory = self.storage.join(LABELS_DIR, partition("date", day.strftime("%Y-%m-%d")))
            final = directory + ("/" if self.storage.local is None else os.sep) + \
                f"labels-{day.strftime('%Y%m%dT%H%M%S')}-{self.writer_id}-{self._seq:06d}.parquet"
            handle, tmp = self.storage.open_write(final)
            counter = _CountingFile(handle)
            self._labels_open = _Open(final, tmp, counter, self.pq.ParquetWriter(counter, label_schema(pa),
                                                                                  compression="zstd"), now)
        self._labels_open.buffered.append(batch)
        self._labels_open.buffered_rows += batch.num_rows
        self.stats.labels += batch.num_rows

    def _close_labels(self) -> None:
        f = self._labels_open
        self._labels_open = None
        if f is None:
            return
        try:
            self._write_buffered(f)
            f.writer.close()
            f.handle.close()
            self.storage.commit(f.tmp, f.final)
        except Exception:
            self.stats.errors += 1
            log.exception("could not complete the labels file %s", f.final)
            self.storage.discard(f.tmp)

    # ------------------------------------------------------------------ state
    def _write_state(self, *, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_state < 1.0:
            return
        self._last_state = now
        doc = {"format": LOG_FORMAT, "writer": self.writer_id, "pid": os.getpid(), "host": _host(),
               "source": self.source, "started": self.started, "updated": now, "sample": self.sample,
               "rotate_seconds": self.rotate_seconds, "max_file_bytes": self.max_file_bytes,
               "stopped": self._stop.is_set() and not self._open and self._labels_open is None,
               **self.stats.to_dict()}
        try:
            self.storage.write_bytes(self.storage.join(WRITERS_DIR, f"{self.writer_id}.json"),
                                     json.dumps(doc, indent=1).encode())
        except Exception:
            self.stats.errors += 1
            log.exception("could not write the prediction log's state file")


OUTPUT_PREFIX = colmod.OUT
INPUT_PREFIX = colmod.IN


def label_schema(pa: Any) -> Any:
    return pa.schema([("id", pa.string()), ("label", pa.string()), ("value", pa.float64()),
                      ("ts", pa.timestamp("us", tz="UTC")), ("received", pa.timestamp("us", tz="UTC")),
                      ("model", pa.string()), ("source", pa.string())])


@dataclass
class _Schema:
    arrow: Any
    types: dict[str, Any]
    field_names_in: list[str]
    outputs: list[str]


class ModelLog:
    """The log of one model version (from :meth:`PredictionLog.model`)."""

    def __init__(self, owner: PredictionLog, bundle: Bundle, name: str, version: str, digest: str, source: str) -> None:
        self.owner = owner
        self.bundle = bundle
        self.name = name
        self.version = version
        self.digest = digest
        self.source = source
        self.task = bundle.task
        self.classes = bundle.classes
        self.signature = bundle.signature
        self.inputs = colmod.plan(self.signature)
        self.schema = _schema_for(owner.pa, bundle, self.inputs)
        self._builder: Any = None

    def wants(self, request_id: str) -> bool:
        return self.owner.wants(request_id)

    def write(self, request_id: str, rows: int, *, feeds: Mapping[str, np.ndarray] | None = None,
              data: Any = None, outputs: Mapping[str, np.ndarray], latency: float | None = None,
              ts: float | None = None, raw: Any = None, role: str = "answer", arm: str | None = None,
              ids: Sequence[str] | None = None, request_ids: Sequence[str] | None = None) -> bool:
        """Log ``rows`` scored rows of one request (call it only for sampled requests: :meth:`wants`).

        Give the graph ``feeds`` the model ran on (serve: what ``prepare`` built), or the input
        ``data`` as ``bundle.predict`` takes it (a list of records, a dict of columns, a DataFrame:
        decoded in the writer thread). ``outputs``: the model's results for exactly these rows.
        ``raw``: the request's own data (records or a column mapping) where category values may
        have been outside the categories. ``latency``: seconds for the whole request. ``ids``: one
        id per row (default: ``request_id`` for one row, ``request_id:i`` otherwise);
        ``request_ids``: one request id per row, where the rows come from several requests (the
        stream consumer logs a batch of messages at once; default: ``request_id`` for every row).
        Returns False when the rows were dropped (the writer is behind, or the log is closed).
        """
        if feeds is None and data is None:
            raise InputError("ModelLog.write needs the feeds or the input data of the rows it logs.")
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}; got {role!r}.")
        if request_ids is not None and len(request_ids) != int(rows):
            raise InputError(f"ModelLog.write got {len(request_ids)} request ids for {rows} rows; give one per row.")
        return self.owner._submit(_Entry(self, request_id, int(rows), feeds, data, outputs, latency,
                                         time.time() if ts is None else ts, raw, role, arm, ids, request_ids))

    # ------------------------------------------------------------------ writer thread
    def decode(self, items: list[_Entry]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
        """Input and output columns and the meta columns of a group of entries (writer thread)."""
        feeds_parts: list[Mapping[str, np.ndarray]] = []
        outs_parts: list[Mapping[str, np.ndarray]] = []
        raws: list[Any] = []
        keep: list[_Entry] = []
        for e in items:
            feeds = e.feeds
            if feeds is None:
                if self._builder is None:
                    from modelport.runtime.coerce import FeedBuilder

                    self._builder = FeedBuilder(self.signature)
                built = self._builder.build(e.data)
                feeds = built.feeds
                raw = e.raw if e.raw is not None else _raw_of(e.data)
            else:
                raw = e.raw
            n = _rows_of(feeds)
            if n != e.rows or e.outputs is None or not _rows_match(e.outputs, n):
                self.owner.stats.dropped += e.rows
                log.warning("log entry of %s version %s dropped: %d rows announced, %d in the feeds", self.name,
                            self.version, e.rows, n)
                continue
            feeds_parts.append(feeds)
            outs_parts.append(e.outputs)
            raws.append(raw)
            keep.append(e)
        if not keep:
            return {}, {}, {"id": [], "ts": np.zeros(0)}
        if len(keep) == 1:
            feeds_all: Mapping[str, np.ndarray] = feeds_parts[0]
            outs_all: Mapping[str, np.ndarray] = outs_parts[0]
        else:
            feeds_all = {k: np.concatenate([p[k] for p in feeds_parts]) for k in feeds_parts[0]}
            names = [k for k in outs_parts[0] if all(k in p for p in outs_parts)]
            outs_all = {k: np.concatenate([p[k] for p in outs_parts]) for k in names}
        raw_all = _concat_raw(raws, [e.rows for e in keep])
        inputs = colmod.from_feeds(self.signature, feeds_all, raw=raw_all, columns=self.inputs)
        outs = colmod.outputs(outs_all, self.classes)
        ids: list[str] = []
        rids: list[str] = []
        roles: list[str] = []
        arms: list[str | None] = []
        counts = [e.rows for e in keep]
        if all(c == 1 for c in counts) and all(e.ids is None and e.request_ids is None for e in keep):
            # the server's common case, one row per request: no per-row loop
            ids = [e.request_id for e in keep]
            rids = ids
            roles = [e.role for e in keep]
            arms = [e.arm for e in keep]
        else:
            for e in keep:
                if e.ids is not None and len(e.ids) == e.rows:
                    ids.extend(str(i) for i in e.ids)
                elif e.rows == 1:
                    ids.append(e.request_id)
                else:
                    ids.extend(f"{e.request_id}:{i}" for i in range(e.rows))
                if e.request_ids is not None:
                    rids.extend(str(i) for i in e.request_ids)
                else:
                    rids.extend([e.request_id] * e.rows)
                roles.extend([e.role] * e.rows)
                arms.extend([e.arm] * e.rows)
        reps = np.asarray(counts, dtype=np.int64)
        ts = np.repeat(np.fromiter((e.ts for e in keep), dtype=np.float64, count=len(keep)), reps)
        lat = np.repeat(np.fromiter((np.nan if e.latency is None else e.latency * 1000.0 for e in keep),
                                    dtype=np.float64, count=len(keep)), reps)
        meta = {"id": ids, "request_id": rids, "ts": ts, "latency_ms": lat, "role": roles, "arm": arms}
        return inputs, outs, meta


def _schema_for(pa: Any, bundle: Bundle, inputs: list[colmod.LoggedColumn]) -> _Schema:
    fields = [("id", pa.string()), ("request_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")),
              ("model", pa.string()), ("version", pa.string()), ("digest", pa.string()), ("source", pa.string()),
              ("role", pa.string()), ("arm", pa.string()), ("latency_ms", pa.float64()),
              ("sample_rate", pa.float64())]
    types: dict[str, Any] = {}
    names_in: list[str] = []
    sig = bundle.signature
    for c in inputs:
        name = INPUT_PREFIX + c.name
        if c.kind == "list":
            spec = sig.input(c.input)
            item = pa.string() if spec.dtype == "str" else pa.from_numpy_dtype(np.dtype(_np_name(spec.dtype)))
            t = pa.list_(item, c.width) if c.width > 0 else pa.list_(item)
        else:
            t = {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_(), "str": pa.string()}[c.kind]
        types[name] = t
        names_in.append(name)
        fields.append((name, t))
    outputs: list[str] = []
    for out_name, dtype in _output_layout(bundle):
        name = OUTPUT_PREFIX + out_name
        t = pa.string() if dtype.kind in "OUS" else pa.from_numpy_dtype(dtype)
        types[name] = t
        outputs.append(out_name)
        fields.append((name, t))
    return _Schema(pa.schema(fields), types, names_in, outputs)


def _output_layout(bundle: Bundle) -> list[tuple[str, np.dtype[Any]]]:
    from modelport.runtime.coerce import numpy_dtype

    empty: dict[str, np.ndarray] = {}
    ref = bundle.reference_outputs
    for spec in bundle.signature.outputs:
        if spec.name in ref:
            empty[spec.name] = ref[spec.name][:0]
        else:
            shape = tuple(0 if i == 0 else (d or 1) for i, d in enumerate(spec.shape)) or (0,)
            empty[spec.name] = np.empty(shape, dtype=numpy_dtype(spec.dtype))
    return [(k, v.dtype) for k, v in colmod.outputs(empty, bundle.classes).items()]


def _np_name(dtype: str) -> str:
    return "float32" if dtype == "float16" else dtype


def _arrow(pa: Any, values: Any, t: Any) -> Any:
    if isinstance(values, np.ndarray) and values.ndim == 2:
        flat = values.reshape(-1)
        if pa.types.is_string(t.value_type):
            flat = flat.astype(object)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, t.value_type), values.shape[1])
    if pa.types.is_string(t) and isinstance(values, np.ndarray) and values.dtype != object:
        values = values.astype(object)
    if pa.types.is_floating(t) and isinstance(values, np.ndarray):
        return pa.array(values.astype(np.float64, copy=False), t, from_pandas=False)
    return pa.array(values, t)


def _rows_match(outputs: Mapping[str, np.ndarray], n: int) -> bool:
    return all(not v.ndim or v.shape[0] == n for v in outputs.values())


def _rows_of(feeds: Mapping[str, np.ndarray]) -> int:
    for v in feeds.values():
        return int(v.shape[0]) if v.ndim else 1
    return 0


def _raw_of(data: Any) -> Any:
    if isinstance(data, list):
        return data
    if isinstance(data, Mapping):
        return data
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        return {str(c): data[c].to_numpy(dtype=object) for c in data.columns}
    return None


def _concat_raw(raws: list[Any], rows: list[int]) -> Any:
    """One raw source aligned with the concatenated rows (or None when no part has one)."""
    if all(r is None for r in raws):
        return None
    if len(raws) == 1:
        return raws[0]
    return _Concat(raws, rows)


class _Concat(dict):
    """Several requests' raw data seen as one mapping of column -> values (indexable by row)."""

    def __init__(self, parts: list[Any], rows: list[int]) -> None:
        super().__init__()
        self.parts = parts
        self.starts = np.cumsum([0, *rows])

    def get(self, name: str, default: Any = None) -> Any:
        return _Column(self, name)


class _Column:
    def __init__(self, owner: _Concat, name: str) -> None:
        self.owner = owner
        self.name = name

    def __getitem__(self, i: int) -> Any:
        o = self.owner
        j = int(np.searchsorted(o.starts, i, side="right")) - 1
        return colmod._raw_value(o.parts[j], self.name, i - int(o.starts[j]))


class _CountingFile(io.RawIOBase):
    """A write-only file that counts the bytes written (rotation by size)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n = self.inner.write(b)
        n = len(b) if n is None else n
        self.written += n
        return n

    def flush(self) -> None:
        if not getattr(self.inner, "closed", False):
            self.inner.flush()

    def close(self) -> None:
        # pyarrow's writer closes the file it was given; object stores upload on close
        if not self.closed and not getattr(self.inner, "closed", False):
            self.inner.flush()
            self.inner.close()
        super().close()


def _estimate(f: _Open) -> int:
    """Bytes the buffered rows will add (compressed Parquet: about a quarter of Arrow's size)."""
    return f.buffered_bytes // 4


def _as_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


_HOST: str | None = None


def _host() -> str:
    global _HOST
    if _HOST is None:
        name = socket.gethostname() or "host"
        _HOST = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40] or "host"
    return _HOST


# ============================================================================ batch scoring
class ScoredChunks:
    """``modelport score --log``: the scored rows of each chunk into a prediction log (source ``score``).

    ``spec``: ``{"url", "sample", "rotate_seconds", "id_column", "run_id"}`` (plain data, so that
    worker processes can build their own). Row ids are the values of ``id_column`` when given
    (so that labels keyed by the user's own ids join), else ``<run id>:<row>`` with the input's
    0-based row number. Unlike the server, batch scoring waits for the writer rather than
    dropping rows."""

    def __init__(self, spec: Mapping[str, Any], bundle: Bundle) -> None:
        self.spec = dict(spec)
        self.log = PredictionLog(spec["url"], sample=float(spec.get("sample", 1.0)),
                                 rotate_seconds=float(spec.get("rotate_seconds", 300.0)), source="score")
        self.model = self.log.model(bundle)
        self.id_column = spec.get("id_column")
        self.run_id = str(spec.get("run_id") or uuid.uuid4().hex[:12])
        self.raw = bundle.runtime.builder.has_categories

    def write(self, batch: Any, prepared: Any, preds: Mapping[str, np.ndarray], scored: np.ndarray, prefix: str) -> None:
        rows = np.flatnonzero(scored)
        if rows.size == 0:
            return
        ok_idx = np.flatnonzero(~prepared.bad) if prepared.bad.size else np.arange(prepared.n_rows)
        ran = scored[ok_idx]
        feeds = {k: v[ran] if not ran.all() else v for k, v in prepared.feeds.items()}
        if self.id_column is not None:
            given = batch.column(self.id_column).take(rows).to_pylist()
            ids = [str(v) if v is not None else f"{self.run_id}:{prepared.first_row + int(r)}" for v, r in zip(given, rows)]
        else:
            ids = [f"{self.run_id}:{prepared.first_row + int(r)}" for r in rows.tolist()]
        outputs = {k[len(prefix):]: v for k, v in preds.items()}
        keep = None
        if self.log.sample < 1.0:
            keep = np.array([self.log.wants(i) for i in ids], dtype=bool)
            if not keep.any():
                return
            feeds = {k: v[keep] for k, v in feeds.items()}
            outputs = {k: v[keep] for k, v in outputs.items()}
            ids = [i for i, k in zip(ids, keep) if k]
            rows = rows[keep]
        raw = None
        if self.raw:
            raw = {c: np.asarray(batch.column(c).take(rows).to_pylist(), dtype=object)
                   for c in self.model.signature.column_names}
        self.log.wait_room(len(ids))
        self.model.write(self.run_id, len(ids), feeds=feeds, outputs=outputs, raw=raw, ids=ids)

    def close(self) -> LogStats:
        self.log.close()
        return self.log.stats


# ============================================================================ stream consumers
class ScoredMessages:
    """``modelport stream --log``: the scored rows of each batch of messages into a prediction log
    (source ``stream``), with the serve's ids: a message with one record is logged under the
    message id, record ``i`` of a larger message under ``<message id>:<i>``; ``request_id`` is the
    message id. Sampling is by message id, as the server samples by request id. ``log`` is a URL
    (this object owns the writer and closes it) or a :class:`PredictionLog` of the caller's (left open).
    Like the server, it never blocks: when the writer is behind, rows are dropped and counted."""

    def __init__(self, log: str | os.PathLike[str] | PredictionLog, *, sample: float = 1.0,
                 rotate_seconds: float = 300.0) -> None:
        if isinstance(log, PredictionLog):
            self.log, self._owned = log, False
        else:
            self.log = PredictionLog(log, sample=sample, rotate_seconds=rotate_seconds, source="stream")
            self._owned = True

    def write(self, bundle: Bundle, name: str, version: str, digest: str, messages: Sequence[tuple[str, int, int]],
              prepared: Any, preds: Mapping[str, np.ndarray], scored: np.ndarray, cols: Mapping[str, Any],
              has_categories: bool, latency: float) -> None:
        """Log the rows of ``messages`` (``(message id, first row, rows)``, every row scored) of one
        scored batch: ``prepared`` / ``preds`` / ``scored`` as :class:`~modelport.batch.score.ChunkScorer`
        made them from the input columns ``cols``; ``latency``: seconds the batch took to score."""
        wanted = [(mid, start, count) for mid, start, count in messages if count and self.log.wants(mid)]
        if not wanted:
            return
        rows = np.concatenate([np.arange(start, start + count) for _, start, count in wanted])
        ids: list[str] = []
        rids: list[str] = []
        for mid, _, count in wanted:
            ids.extend([mid] if count == 1 else [f"{mid}:{i}" for i in range(count)])
            rids.extend([mid] * count)
        rank = np.cumsum(scored) - 1  # the position of an input row among the scored rows
        positions = rank[rows]
        ok_idx = np.flatnonzero(~prepared.bad) if prepared.bad.size else np.arange(prepared.n_rows)
        ran = scored[ok_idx]  # the prepared (checked) rows that ran: the feeds of the scored rows
        feeds = {k: (v[ran] if not ran.all() else v)[positions] for k, v in prepared.feeds.items()}
        outputs = {k: v[positions] for k, v in preds.items()}
        raw = None
        if has_categories:
            raw = {c: np.asarray(_pick(values, rows), dtype=object) for c, values in cols.items()}
        target = self.log.model(bundle, name=name, version=version, digest=digest, source="stream")
        target.write(rids[0], len(ids), feeds=feeds, outputs=outputs, latency=latency, raw=raw, ids=ids,
                     request_ids=rids)

    def close(self) -> LogStats:
        if self._owned:
            self.log.close()
        return self.log.stats


def _pick(values: Any, rows: np.ndarray) -> list[Any]:
    """``values[rows]`` as Python objects, for a list of values or an Arrow column."""
    if hasattr(values, "take") and hasattr(values, "to_pylist"):
        return list(values.take(rows).to_pylist())
    return [values[int(r)] for r in rows.tolist()]
