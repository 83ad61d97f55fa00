"""The durable state of a file-scoring job, so that a crash or ``kill -9`` can be resumed.

A job works in a hidden sibling of its output, ``.<output name>.modelport-partial/``:

* ``job.json``: what the job is (bundle digest, input files with sizes and mtimes, chunk size,
  kept columns, error policy, output format). A resume with anything different is refused.
* ``parts/<chunk>.arrow``: the scored rows of one input chunk (Arrow IPC: no encoding cost, read
  back memory-mapped). Each is written to a temporary name, flushed to disk and renamed, so a
  part either exists complete or not at all; its existence is the journal entry "chunk done".
  ``parts/<chunk>.rejects.arrow`` (row, reason) is written *before* its part, so a present part
  always has its rejects beside it; so is ``parts/<chunk>.unknown.json``, the chunk's count of
  scored values outside a column's categories, per column (when there were any).
* ``end.json``: written once the input has been read to its end (number of chunks and rows).

A Spark job cannot cut its input into chunks of our choosing: its Python workers record *pieces*
instead, ``parts/r<first row>-<rows>.arrow`` (with ``.rejects.arrow`` / ``.unknown.json`` beside),
named by their first global input row and their number of input rows, in the same format.

While chunks complete, :class:`Assembler` appends the parts, in chunk order, to a temporary output
file; at the end it is flushed and renamed onto the output (and the rejects file likewise), and
the work directory is removed. The temporary output is never trusted after a crash: a resumed job
rebuilds it from the parts, redoes only chunks without a part, and the output ends with every
input row exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelport._deps import require
from modelport._fs import fsync_path, temp_sibling
from modelport.batch.io import Writer
from modelport.batch.score import ERROR_COLUMN, Rejects, add_counts
from modelport.errors import InputError

JOB_FILE = "job.json"
END_FILE = "end.json"


def workdir_for(output: Path) -> Path:
    return output.parent / f".{output.name}.modelport-partial"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = temp_sibling(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


class WorkDir:
    """Parts, journal and final assembly of one job.

    ``durable=False`` (engine jobs, which are not resumable) skips flushing each part to disk:
    the rename still makes a part appear complete or not at all to the process assembling it.
    """

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        self.parts = path / "parts"
        self.durable = durable

    # ------------------------------------------------------------------ lifecycle
    @property
    def exists(self) -> bool:
        return (self.path / JOB_FILE).exists()

    def create(self, job: dict[str, Any]) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.parts.mkdir(parents=True)
        _atomic_write_bytes(self.path / JOB_FILE, json.dumps(job, indent=1, sort_keys=True).encode())

    def check_same_job(self, job: dict[str, Any]) -> None:
        try:
            old = json.loads((self.path / JOB_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{self.path}: the journal of the interrupted run is unreadable ({exc}).",
                hint="start over with --overwrite",
            ) from exc
        diff = [k for k in sorted(set(job) | set(old)) if job.get(k) != old.get(k)]
        if diff:
            raise InputError(
                f"cannot resume: the interrupted run in {self.path} was started with a different "
                f"{', '.join(diff)} (the input file, the bundle or the options changed).",
                hint="run with the same bundle, input and options, or start over with --overwrite",
            )
        self.parts.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # ------------------------------------------------------------------ parts
    def _stem(self, index: int, rows: int | None) -> str:
        return f"{index:09d}" if rows is None else f"r{index:015d}-{rows}"

    def part_path(self, index: int, rows: int | None = None) -> Path:
        """Chunk ``index``'s part; with ``rows``: the piece of ``rows`` input rows from row ``index``."""
        return self.parts / f"{self._stem(index, rows)}.arrow"

    def rejects_path(self, index: int, rows: int | None = None) -> Path:
        return self.parts / f"{self._stem(index, rows)}.rejects.arrow"

    def unknown_path(self, index: int, rows: int | None = None) -> Path:
        return self.parts / f"{self._stem(index, rows)}.unknown.json"

    def unknown(self, index: int, rows: int | None = None) -> dict[str, int]:
        """Chunk ``index``'s count of scored unknown categories per column ({} when none)."""
        path = self.unknown_path(index, rows)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable ({exc}).", hint="start over with --overwrite") from exc
        return {str(k): int(v) for k, v in data.items()}

    def pieces(self) -> dict[int, int]:
        """The finished pieces: first input row -> number of input rows."""
        out = {}
        for p in self.parts.glob("r*.arrow"):
            stem = p.name[1:].split(".")[0]
            first, _, rows = stem.partition("-")
            if p.name.count(".") == 1 and first.isdigit() and rows.isdigit():
                out[int(first)] = int(rows)
        return out

    def done(self) -> set[int]:
        out = set()
        for p in self.parts.glob("*.arrow"):
            stem = p.name.split(".")[0]
            if p.name.count(".") == 1 and stem.isdigit():
                out.add(int(stem))
        return out

    def write_part(self, index: int, batch: Any, rejects: Rejects, rows: int | None = None) -> None:
        """Record chunk ``index`` (with ``rows``: a piece, see :meth:`part_path`): rejects first,
        then the part, whose rename is the commit."""
        pa = require("pyarrow", purpose="batch scoring")
        rp = self.rejects_path(index, rows)
        if len(rejects):
            rej = pa.record_batch({"row": pa.array(rejects.rows, pa.int64()), "reason": pa.array(rejects.reasons, pa.string())})
            self._write_batch(pa, rej, rp)
        elif rp.exists():
            rp.unlink()
        up = self.unknown_path(index, rows)
        if rejects.unknown:
            if self.durable:
                _atomic_write_bytes(up, json.dumps(rejects.unknown, sort_keys=True).encode())
            else:
                tmp = temp_sibling(up)
                tmp.write_text(json.dumps(rejects.unknown, sort_keys=True))
                os.replace(tmp, up)
        elif up.exists():
            up.unlink()
        self._write_batch(pa, batch, self.part_path(index, rows))

    def _write_batch(self, pa: Any, batch: Any, path: Path) -> None:
        tmp = temp_sibling(path)
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as w:
            w.write_batch(batch)
        if self.durable:
            fsync_path(tmp)
        os.replace(tmp, path)
        if self.durable:
            fsync_path(path.parent)

    def read(self, path: Path) -> Iterator[Any]:
        pa = require("pyarrow", purpose="batch scoring")
        with pa.memory_map(str(path), "r") as src:
            reader = pa.ipc.open_file(src)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)

    def mark_end(self, chunks: int, rows: int) -> None:
        _atomic_write_bytes(self.path / END_FILE, json.dumps({"chunks": chunks, "rows": rows}).encode())

    def end(self) -> dict[str, int] | None:
        try:
            return json.loads((self.path / END_FILE).read_text())
        except (OSError, ValueError):
            return None



class Assembler:
    """Appends finished parts, in input order, to a temporary output; renames it into place at the end.

    Parts are chunks (``done(index)``, numbered 0, 1, 2 ...) or, for an engine that chooses its own
    batches, pieces (``done(first_row, rows)``, starting at row 0, each where the last one ended).
    """

    def __init__(self, work: WorkDir, output: Path, fmt: str, schema: Any, *, rejects_path: Path | None,
                 delimiter: str = ",") -> None:
        self.work = work
        self.output = output
        self.rejects_path = rejects_path
        self.tmp = temp_sibling(output)
        self.writer = Writer(self.tmp, fmt, schema, delimiter=delimiter)
        #: the next chunk number, or the first row of the next piece
        self.next = 0
        self.ready: dict[int, int | None] = {}
        self.by_rows = False
        self.rejects: list[Any] = []
        self.rows = 0
        #: scored values outside a column's categories, per column, over the chunks appended so far
        self.unknown: dict[str, int] = {}

    def done(self, index: int, rows: int | None = None) -> None:
        """Chunk ``index`` (or the piece of ``rows`` rows from row ``index``) is on disk: append it
        and any that were waiting for it."""
        self.ready[index] = rows
        self.by_rows = rows is not None
        while self.next in self.ready:
            span = self.ready.pop(self.next)
            for b in self.work.read(self.work.part_path(self.next, span)):
                self.writer.write(b)
            rp = self.work.rejects_path(self.next, span)
            if self.rejects_path is not None and rp.exists():
                self.rejects.extend(self.work.read(rp))
            add_counts(self.unknown, self.work.unknown(self.next, span))
            self.next += 1 if span is None else span

    def finish(self, chunks: int) -> tuple[int, int]:
        """Close and rename the output once chunks 0..chunks-1 are in; returns (rows, rejects).

        For pieces, ``chunks`` is the number of input rows they must cover."""
        for i in sorted(self.work.done()):
            if i >= self.next:
                self.done(i)
        if self.next < chunks:
            self.abort()
            what = "input row" if self.by_rows else "chunk"
            raise InputError(f"{self.work.path}: {what} {self.next} has no results; cannot assemble the output.",
                             hint="run the job again" if self.by_rows else "run again with --resume")
        self.writer.close()
        fsync_path(self.tmp)
        os.replace(self.tmp, self.output)
        fsync_path(self.output.parent)
        n_rej = 0
        if self.rejects_path is not None:
            n_rej = write_rejects(self.rejects_path, iter(self.rejects))
        return self.writer.rows, n_rej

    def abort(self) -> None:
        self.writer.abort()
        self.tmp.unlink(missing_ok=True)


def write_atomic(output: Path, fmt: str, schema: Any, batches: Iterator[Any], *, delimiter: str = ",") -> int:
    """Write batches to a temporary sibling of ``output``, flush it, and rename it onto ``output``."""
    tmp = temp_sibling(output)
    writer = Writer(tmp, fmt, schema, delimiter=delimiter)
    try:
        for b in batches:
            writer.write(b)
        writer.close()
        fsync_path(tmp)
        os.replace(tmp, output)
        fsync_path(output.parent)
    except BaseException:
        writer.abort()
        tmp.unlink(missing_ok=True)
        raise
    return writer.rows


def write_rejects(path: Path, batches: Iterator[Any]) -> int:
    """The rejects file: ``row`` (0-based input row) and ``reason``, in the format of its suffix."""
    from modelport.batch.io import format_of

    pa = require("pyarrow", purpose="batch scoring")
    schema = pa.schema([pa.field("row", pa.int64()), pa.field("reason", pa.string())])
    fmt = format_of(path, what="rejects")
    return write_atomic(path, fmt, schema, (b.select(["row", "reason"]) for b in batches))


def split_errors(batches: Iterator[Any], on_error: str, sink: list[Any], first_row: int = 0) -> Iterator[Any]:
    """Engine parts carry an error column per row: turn it into rejects with global row numbers.

    Rows are numbered as they stream by in input order; rows with an error are dropped
    (``skip``) or kept with their null predictions (``null``); rejects batches go to ``sink``.
    """
    pa = require("pyarrow", purpose="batch scoring")
    pc = require("pyarrow.compute", purpose="batch scoring")
    row = first_row
    for b in batches:
        err = b.column(ERROR_COLUMN)
        body = b.drop_columns([ERROR_COLUMN]) if hasattr(b, "drop_columns") else b.select(
            [n for n in b.schema.names if n != ERROR_COLUMN]
        )
        if err.null_count < len(err):
            is_err = pc.is_valid(err)
            idx = pc.indices_nonzero(is_err) if hasattr(pc, "indices_nonzero") else pa.array(
                [i for i, v in enumerate(is_err.to_pylist()) if v], pa.uint64()
            )
            rows = pc.add(idx.cast(pa.int64()), row)
            sink.append(pa.record_batch({"row": rows, "reason": err.take(idx)}))
            if on_error == "fail":
                first = sink[-1]
                raise InputError(
                    f"row {first.column(0)[0].as_py()} cannot be scored: {first.column(1)[0].as_py()}",
                    hint="fix the row, or pass --on-error skip or --on-error null",
                )
            if on_error == "skip":
                body = body.filter(pc.invert(is_err))
        row += b.num_rows
        yield body
