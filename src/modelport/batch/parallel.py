"""``--workers N``: the parent process and N - 1 worker processes score chunks side by side.

Worker processes are plain ``python -m modelport.batch.worker`` children that talk to the parent
over their standard input and output (:mod:`modelport.batch.worker` has the message format).
Unlike ``multiprocessing`` they never re-import the caller's ``__main__`` module, so a script
that calls ``score_file(workers=2)`` needs no ``if __name__ == "__main__":`` guard, and a
worker that cannot start or dies is an error the parent reports, never a hang. Nothing is
pickled: the bundle travels once as ``.mpk`` bytes, chunks as Arrow IPC bytes, the rest as JSON.

The parent scores chunks itself from the first moment, while the workers start (a fresh Python
process needs most of a second to import pyarrow and ONNX Runtime, which on a short job is the
difference between scaling and not). For CSV and JSON lines the parent streams the input (they
can only be read in order) and sends each chunk to a worker. Parquet is read by whoever scores
it: the parent hands out ranges of consecutive chunks, large at first and smaller towards the
end (guided self-scheduling), so each range is read in one pass and all processes finish close
together. Each process commits its chunks to the work directory itself; the parent assembles
them in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from modelport._deps import require
from modelport.batch.worker import ChunkWorker, read_message, write_message
from modelport.errors import InputError, ModelportError

Result = tuple[int, int, int, int]  # chunk index, rows in, rows out, rejects
Chunk = tuple[int, int, Any]  # chunk index, first row, record batch
Range = tuple[int, int]  # chunks start .. stop - 1 of a Parquet input, read by the scorer
Task = Chunk | Range


class Ranges:
    """Hands out runs of consecutive chunk numbers from ``todo``: about 1 / (2 * scorers) of what
    is left each time, so that early ranges are long (few restarts inside row groups) and the last
    ones single chunks (no scorer waits long for another at the end)."""

    def __init__(self, todo: list[int], scorers: int) -> None:
        self.todo = sorted(todo)
        self.pos = 0
        self.scorers = scorers

    def __iter__(self) -> Iterator[Range]:
        return self

    def __next__(self) -> Range:
        left = len(self.todo) - self.pos
        if left <= 0:
            raise StopIteration
        want = max(1, left // (2 * self.scorers))
        start = self.todo[self.pos]
        n = 1
        while n < want and self.todo[self.pos + n] == start + n:  # stop at a chunk done before
            n += 1
        self.pos += n
        return start, start + n


def _ipc(batch: Any) -> bytes:
    pa = require("pyarrow")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue().to_pybytes()


class WorkerProcess:
    """One ``python -m modelport.batch.worker`` child: started at once, given one task at a time."""

    def __init__(self, number: int, init: dict[str, Any], bundle_bytes: bytes, schema_ipc: bytes,
                 log_dir: Path) -> None:
        import modelport
        from modelport.batch.memory import child_env

        self.number = number
        self.log_path = log_dir / f"worker-{number}.log"  # its stderr, quoted if it dies
        env = child_env(dict(os.environ))
        # the child imports this very modelport, wherever it was imported from here
        root = str(Path(modelport.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "modelport.batch.worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._out: IO[bytes] = self.proc.stdin
        self._in: IO[bytes] = self.proc.stdout
        # sent by the first run() (from its own thread): the pipe takes it only once the child
        # has imported everything, and that wait must not hold up the caller
        self._init: tuple[dict[str, Any], bytes] | None = ({"op": "init", **init}, bundle_bytes + schema_ipc)

    def _send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        try:
            write_message(self._out, header, payload)
        except (BrokenPipeError, OSError) as exc:
            raise self._died() from exc

    def _receive(self) -> dict[str, Any]:
        try:
            header, _ = read_message(self._in)
        except (EOFError, OSError, ValueError) as exc:
            raise self._died() from exc
        if header.get("op") == "error":
            cls = InputError if header.get("type") == "InputError" else ModelportError
            raise cls(header.get("message", "a worker process failed"), hint=header.get("hint"))
        return header

    def run(self, task: Task) -> Iterator[Result]:
        """Send one task; yield each chunk's result as the worker reports it."""
        if self._init is not None:
            self._send(*self._init)
            self._init = None
            self._receive()  # "ready", or the error that kept the worker from starting
        if len(task) == 2:
            start, stop = task
            self._send({"op": "range", "start": start, "stop": stop})
        else:
            index, first_row, batch = task
            self._send({"op": "score", "index": index, "first_row": first_row}, _ipc(batch))
        while (reply := self._receive())["op"] == "done":
            i, n_in, n_out, n_rej = reply["result"]
            yield int(i), int(n_in), int(n_out), int(n_rej)

    def _died(self) -> ModelportError:
        code = self.proc.poll()
        if code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.proc.wait(timeout=5)
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            tail = []
        return ModelportError(
            f"batch worker process {self.number} stopped unexpectedly (exit code {code})"
            + (": " + " | ".join(tail) if tail else "."),
            hint="see the message above; a process killed by the system may have run out of memory "
            "(use fewer --workers or smaller --chunk-rows)",
        )

    def close(self, *, kill: bool = False) -> None:
        with contextlib.suppress(OSError):
            self._out.close()
        if kill and self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self._in.close()


def run_workers(
    *,
    workers: int,
    bundle_bytes: bytes,
    schema: Any,
    keep: list[str],
    on_error: str,
    prefix: str,
    threads: int | None,
    workdir: Path,
    chunks: Iterator[Chunk] | None = None,
    parquet: tuple[list[str], list[str], int, list[int]] | None = None,
    on_done: Callable[[int, int, int, int], None],
    log: dict[str, Any] | None = None,
) -> None:
    """Score in this process and ``workers - 1`` others, calling ``on_done`` once per chunk.

    Either ``chunks`` yields ``(index, first_row, batch)`` read here, or
    ``parquet=(files, columns, chunk_rows, todo)`` names the chunks (``todo``) that the scorers
    read themselves. ``on_done`` is never called from two threads at once. The first error stops
    every process and is raised here.
    """
    schema_ipc = schema.serialize().to_pybytes()
    init = {
        "keep": keep, "on_error": on_error, "prefix": prefix, "threads": threads, "workdir": str(workdir),
        "parquet": list(parquet[:3]) if parquet is not None else None,
        "bundle_size": len(bundle_bytes), "schema_size": len(schema_ipc), "log": log,
    }
    json.dumps(init)  # fail here, not in a child, if anything is not plain data
    tasks: Iterator[Task]
    if parquet is not None:
        tasks = Ranges(parquet[3], workers)
    elif chunks is not None:
        tasks = chunks
    else:
        raise ValueError("run_workers needs chunks or parquet")
    take = threading.Lock()  # the task iterator is shared by every scoring thread
    report = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def next_task() -> Task | None:
        with take:
            return None if stop.is_set() else next(tasks, None)

    def serve(run: Callable[[Task], Iterator[Result]]) -> None:
        try:
            while (task := next_task()) is not None:
                for result in run(task):
                    with report:
                        on_done(*result)
                    if stop.is_set():  # another scorer failed: do not finish a long range first
                        return
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    procs: list[WorkerProcess] = []
    threads_: list[threading.Thread] = []
    local: ChunkWorker | None = None
    try:
        for n in range(1, workers):  # started first: they import while this process scores
            procs.append(WorkerProcess(n, init, bundle_bytes, schema_ipc, workdir))
        local = ChunkWorker.from_bytes(bundle_bytes, schema_ipc, keep=keep, on_error=on_error, prefix=prefix,
                                       threads=threads, workdir=str(workdir),
                                       parquet=parquet[:3] if parquet is not None else None, log=log)

        def run_local(task: Task) -> Iterator[Result]:
            if len(task) == 2:
                return local.score_range(*task)
            return iter([local.score_chunk(task)])

        threads_ = [threading.Thread(target=serve, args=(run_local,), name="modelport-score-0", daemon=True)]
        threads_ += [threading.Thread(target=serve, args=(p.run,), name=f"modelport-score-{p.number}", daemon=True)
                     for p in procs]
        for t in threads_:
            t.start()
        for t in threads_:
            t.join()
    except BaseException as exc:
        errors.insert(0, exc)
        stop.set()
    finally:
        for p in procs:  # a worker still scoring after an error is stopped, not waited for
            p.close(kill=bool(errors))
        for t in threads_:
            t.join()
        if local is not None:
            local.close()
    if errors:
        # a chunk's own error (a bad row) explains more than "worker stopped" from the others
        errors.sort(key=lambda e: not isinstance(e, InputError))
        raise errors[0]
