"""``--consumers N``: N consumer processes in one group, watched by this one.

Each child is a full consumer (its own reader and scorer threads, its own ONNX Runtime
session, its own name in the group). The parent restarts a child that dies (the group takes
over its unacknowledged messages), forwards SIGTERM / SIGINT so that every child finishes and
acknowledges its batches, and serves ``/metrics`` for all of them: the children write their
numbers to a shared directory (serving's multi-worker scheme) and the parent adds them up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from modelport.errors import InputError, ModelportError, StreamError
from modelport.serve.metrics import METRICS_DIR_ENV
from modelport.stream.base import SCHEMES, StreamURL
from modelport.stream.consumer import StreamConfig, StreamStats, run_config
from modelport.stream.metrics import MetricsServer, StreamMetrics

log = logging.getLogger("modelport.stream")

_FAST_FAILURE = 10.0  # a child that dies sooner than this after starting failed to start
_MAX_FAST_FAILURES = 3


_CHILD_ENV = "MODELPORT_STREAM_CHILD"


def child_main() -> None:
    """Entry point of a child process: its config and log options come as JSON in the environment."""
    from modelport.stream import logs

    spec = json.loads(os.environ.pop(_CHILD_ENV))
    logs.configure(**spec["log"])
    try:
        # a supervisor killed with SIGKILL cannot stop its children: they notice and stop themselves
        stats = run_config(StreamConfig(**spec["config"]), own_process=True, parent=spec["parent"])
    except ModelportError as exc:
        log.error("%s", exc)
        raise SystemExit(exc.exit_code) from None
    raise SystemExit(0 if stats.drained else 1)


class Supervisor:
    """Runs ``consumers`` copies of one consumer; the same start / stop / wait / stats as StreamConsumer."""

    def __init__(self, config: StreamConfig, consumers: int, *, log_options: dict[str, str] | None = None) -> None:
        config.check()
        if consumers < 1:
            raise InputError(f"consumers must be at least 1; got {consumers}.")
        if not isinstance(config.model, str):
            raise InputError("several consumer processes need the model as a path or URI, not a Bundle object.")
        if not all(isinstance(u, (str, type(None))) for u in (config.source, config.sink, config.dead_letter)):
            raise InputError("several consumer processes need the source, sink and dead letters as URLs.")
        if config.log is not None and not isinstance(config.log, (str, os.PathLike)):
            raise InputError("several consumer processes need the prediction log as a directory or URL, "
                             "not a PredictionLog object.", hint="pass log='predictions/'; each process writes its own files")
        if isinstance(config.log, os.PathLike):
            config = dataclasses.replace(config, log=os.fspath(config.log))
        assert isinstance(config.source, str)
        scheme = StreamURL.parse(config.source).scheme
        if SCHEMES.get(scheme) == "modelport.stream.jsonl":
            raise InputError("a JSON-lines source cannot be shared by several consumers; use --consumers 1.")
        self.config = config
        self.consumers = consumers
        self.log_options = log_options or {"level": "info", "fmt": "json"}
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._procs: list[Any] = [None] * consumers
        self._started_at = [0.0] * consumers
        self._fast_failures = 0
        self._failure: StreamError | None = None
        self._server: MetricsServer | None = None
        self._dir: Path | None = None
        self._began = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> Supervisor:
        self._dir = Path(tempfile.mkdtemp(prefix="modelport-stream-metrics-"))
        os.environ[METRICS_DIR_ENV] = str(self._dir)  # inherited by the children
        self.metrics = StreamMetrics()  # renders the children's snapshots
        if self.config.metrics_port is not None:
            self._server = MetricsServer(self.metrics, self.config.metrics_port, self.config.metrics_host)
        self._began = time.monotonic()
        for i in range(self.consumers):
            self._spawn(i)
        self._thread = threading.Thread(target=self._watch, name="modelport-stream-supervisor", daemon=True)
        self._thread.start()
        return self

    def _spawn(self, i: int) -> None:
        # a fresh interpreter running child_main, not multiprocessing: a caller's script without an
        # ``if __name__ == "__main__"`` guard (or ``python -m modelport``) must not be run again
        child = dataclasses.replace(
            self.config, metrics_port=None, report_lag=(i == 0),
            name=f"{self.config.name}-{i}" if self.config.name else None,
        )
        spec = {"config": dataclasses.asdict(child), "log": self.log_options, "parent": os.getpid()}
        env = {**os.environ, _CHILD_ENV: json.dumps(spec)}
        code = "from modelport.stream.supervisor import child_main; child_main()"
        p = subprocess.Popen([sys.executable, "-c", code], env=env)
        self._procs[i] = p
        self._started_at[i] = time.monotonic()
        log.info("started consumer process %d (pid %d)", i, p.pid)

    def _watch(self) -> None:
        try:
            while not self._stopping.is_set():
                for i, p in enumerate(self._procs):
                    if p is None or p.poll() is None:
                        continue
                    code = p.returncode
                    ran = time.monotonic() - self._started_at[i]
                    if self._stopping.is_set():
                        break
                    if ran < _FAST_FAILURE and code != 0:
                        self._fast_failures += 1
                        if self._fast_failures >= _MAX_FAST_FAILURES:
                            self._failure = StreamError(
                                f"consumer process {i} exited with code {code} {ran:.1f} s after it started, "
                                f"{self._fast_failures} times; giving up.",
                                hint="its log above says why (a broker it cannot reach, a model it cannot load)",
                            )
                            self._stopping.set()
                            break
                    else:
                        self._fast_failures = 0
                    log.warning("consumer process %d (pid %d) exited with code %s; starting another", i, p.pid, code)
                    self._spawn(i)
                self._stopping.wait(0.5)
        finally:
            self._terminate()
            self._done.set()

    def _terminate(self) -> None:
        for p in self._procs:
            if p is not None and p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.drain_timeout + 10
        for p in self._procs:
            if p is not None:
                try:
                    p.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("consumer process pid %d did not stop in time; killing it", p.pid)
                    p.kill()
                    p.wait()

    def stop(self, timeout: float | None = None) -> StreamStats:
        self._stopping.set()
        self._done.wait(timeout)
        stats = self.stats
        if self._server is not None:
            self._server.close()
        if self._dir is not None:
            os.environ.pop(METRICS_DIR_ENV, None)
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._failure is not None:
            raise self._failure
        stats.drained = all(p is None or p.returncode == 0 for p in self._procs)
        return stats

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def stats(self) -> StreamStats:
        totals: dict[str, float] = {}
        dead: dict[str, int] = {}
        versions: list[str] = []
        if self._dir is not None:
            for path in self._dir.glob("*.json"):
                with contextlib.suppress(OSError, ValueError):
                    snap = json.loads(path.read_text())
                    for name in ("modelport_stream_messages_in", "modelport_stream_messages_out",
                                 "modelport_stream_messages_redelivered", "modelport_stream_taken_over",
                                 "modelport_stream_errors"):
                        totals[name] = totals.get(name, 0.0) + sum(v for _, v in snap.get(name, []))
                    for labels, v in snap.get("modelport_stream_dead_letters", []):
                        dead[labels[0]] = dead.get(labels[0], 0) + int(v)
                    for labels, _ in snap.get("modelport_stream_model", []):
                        if labels[1] not in versions:
                            versions.append(labels[1])
        return StreamStats(
            messages_in=int(totals.get("modelport_stream_messages_in", 0)),
            messages_out=int(totals.get("modelport_stream_messages_out", 0)),
            dead_letters={k: v for k, v in dead.items() if v},
            redelivered=int(totals.get("modelport_stream_messages_redelivered", 0)),
            taken_over=int(totals.get("modelport_stream_taken_over", 0)),
            errors=int(totals.get("modelport_stream_errors", 0)),
            model_versions=versions,
            elapsed=time.monotonic() - self._began if self._began else 0.0,
        )

    def request_stop(self) -> None:
        self._stopping.set()


def supervise(config: StreamConfig, consumers: int, *, log_options: dict[str, str] | None = None) -> StreamStats:
    """Run ``consumers`` processes until SIGTERM / SIGINT (or until they cannot start)."""
    sup = Supervisor(config, consumers, log_options=log_options).start()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        def handler(signum: int, frame: Any) -> None:
            log.info("received %s: stopping the consumer processes", signal.Signals(signum).name)
            sup.request_stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    try:
        while not sup.wait(0.5):
            pass
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
    return sup.stop()
