"""Scoring on Dask: DataFrames with ``map_partitions``, and Parquet files chunk by chunk.

With a ``dask.distributed`` client, the bundle's ``.mpk`` bytes travel once to every worker inside a
worker plugin (also to workers that join later); each worker opens the bundle and creates its one
ONNX Runtime session once (:data:`LOADS` counts this) and keeps them in a process-wide cache keyed
by the bundle digest. The tasks themselves carry only that digest, never the bundle. Without a
distributed client (the local threaded scheduler) the cache is filled in this process.

The session runs single-threaded: a worker runs one task per thread, so a worker with T threads
scores T partitions side by side, one core each, like local scoring's one run per core.

``score_file(..., engine="dask")`` on Parquet does not go through DataFrames (pandas conversions
cost more than the scoring): :func:`score_chunks` tasks read runs of chunks of the file
with pyarrow on the worker, score them and commit the same parts as local scoring into the job's
work directory (which, like the input, the workers must be able to reach).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelport._deps import require
from modelport.batch.score import ChunkScorer, OnError, check_clash, check_columns, resolve_keep, score_frame
from modelport.errors import InputError, ModelportError

if TYPE_CHECKING:
    from modelport.batch.worker import ChunkWorker
    from modelport.bundle.core import Bundle
    from modelport.runtime.session import Runtime

_BUNDLES: dict[str, Bundle] = {}
_RUNTIMES: dict[str, Runtime] = {}
#: how many times each bundle was opened, with its ONNX Runtime session, in this process
#: (once per worker process when the plugin does its job)
LOADS: dict[str, int] = {}
_LOCK = threading.RLock()
#: the chunk scorers of the file jobs this worker has taken part in (the latest few)
_JOBS: dict[tuple[str, str], ChunkWorker] = {}
_MAX_JOBS = 4


def _plugin_class() -> type:
    distributed = require("distributed", purpose="scoring on Dask")

    class BundlePlugin(distributed.WorkerPlugin):  # type: ignore[name-defined]
        """Holds a bundle's bytes; opens the bundle once on each worker it is installed on."""

        def __init__(self, digest: str, data: bytes) -> None:
            self.digest = digest
            self.data = data
            self.name = f"modelport-bundle-{digest}"

        def setup(self, worker: Any) -> None:
            _install(self.digest, self.data)

    return BundlePlugin


def _install(digest: str, data: bytes) -> None:
    from modelport.batch.score import BATCH_SESSION_CONFIG
    from modelport.bundle.core import Bundle
    from modelport.runtime.session import Runtime

    with _LOCK:
        if digest not in _BUNDLES:
            b = Bundle.from_bytes(data, origin=f"<dask bundle {digest[:19]}>")
            # one ONNX Runtime session per worker process, created here; single-threaded runs,
            # one per task thread (see the module docstring)
            _RUNTIMES[digest] = Runtime(b, intra_op_threads=1, inter_op_threads=1, session_config=BATCH_SESSION_CONFIG)
            _BUNDLES[digest] = b
            LOADS[digest] = LOADS.get(digest, 0) + 1


def ship(bundle: Bundle, client: Any | None = None) -> str:
    """Make ``bundle`` available on every worker of ``client`` (default: the current one) once."""
    client = client if client is not None else _current_client()
    data = bundle.to_bytes()
    digest = bundle.digest
    if client is None:
        _install(digest, data)
        return digest
    plugin = _plugin_class()(digest, data)
    client.register_plugin(plugin, name=plugin.name)
    return digest


def _current_client() -> Any | None:
    try:
        distributed = require("distributed", purpose="scoring on Dask")
    except ModelportError:
        return None
    try:
        return distributed.default_client()
    except ValueError:  # no client: the local scheduler runs tasks in this process
        return None


def _runtime(digest: str) -> Runtime:
    runtime = _RUNTIMES.get(digest)
    if runtime is None:
        raise ModelportError(
            f"bundle {digest[:19]}… is not installed on this Dask worker.",
            hint="call modelport.dask.predict with the client that runs the graph (or modelport.dask.ship(bundle, client))",
        )
    return runtime


def _partition(
    df: Any, digest: str, kept: list[str], on_error: str, prefix: str, error_column: str | None,
    partition_info: dict[str, Any] | None = None,
) -> Any:
    runtime = _runtime(digest)
    core = ChunkScorer(runtime.bundle, on_error=on_error, prefix=prefix, runtime=runtime)  # type: ignore[arg-type]
    try:
        frame, _ = score_frame(core, df, kept, error_column=error_column)
    except InputError as exc:
        where = f"partition {partition_info['number']}" if partition_info else "a partition"
        raise InputError(f"{where}: {exc.message} (row numbers count from the partition's start)", hint=exc.hint) from exc
    return frame


def predict(
    bundle: Bundle | str,
    ddf: Any,
    *,
    keep: str | Sequence[str] | None = None,
    on_error: OnError = "fail",
    prefix: str = "",
    error_column: str | None = None,
    client: Any | None = None,
) -> Any:
    """Score a Dask DataFrame lazily; returns a Dask DataFrame of kept + prediction columns.

    The bundle is shipped once per worker (see :func:`ship`); partitions are scored with the same
    chunk scorer as local files. ``on_error="skip"`` drops rows that cannot be scored and
    ``"null"`` gives them null predictions; ``error_column="error"`` adds the reason per row
    (null where scored) so that rejects can be collected. With ``on_error="fail"`` the first bad
    row fails the computation with an InputError naming the row within its partition.
    """
    from modelport._uri import load

    b = load(bundle)
    names = [str(c) for c in ddf.columns]
    check_columns(b, names, where="the Dask DataFrame")
    kept = resolve_keep(b, names, keep)
    core = ChunkScorer(b, on_error=on_error, prefix=prefix)
    check_clash(core, kept)
    meta, _ = score_frame(core, ddf._meta, kept, error_column=error_column)
    digest = ship(b, client)
    return ddf.map_partitions(
        _partition, digest, kept, on_error, prefix, error_column, meta=meta, enforce_metadata=False,
    )


def score_chunks(digest: str, job: dict[str, Any], start: int, stop: int) -> list[tuple[int, int, int, int]]:
    """A Dask task of ``score_file``: read chunks ``start`` .. ``stop - 1`` of the job's Parquet
    input here, score them with this worker's session and commit their parts to the job's work
    directory. Returns ``(chunk, rows in, rows out, rejects)`` per chunk.

    ``job``: ``schema`` (the input's Arrow schema, IPC bytes), ``keep``, ``on_error``, ``prefix``,
    ``workdir``, ``files``, ``columns`` and ``chunk_rows``; plain data, the same for every task.
    """
    return list(_chunk_worker(digest, job).score_range(start, stop))


def _chunk_worker(digest: str, job: dict[str, Any]) -> ChunkWorker:
    from modelport.batch.worker import ChunkWorker

    key = (digest, str(job["workdir"]))
    with _LOCK:
        worker = _JOBS.get(key)
        if worker is None:
            pa = require("pyarrow", purpose="scoring on Dask")
            schema = pa.ipc.read_schema(pa.py_buffer(job["schema"]))
            worker = ChunkWorker(
                _runtime(digest), schema, keep=list(job["keep"]), on_error=job["on_error"], prefix=job["prefix"],
                workdir=job["workdir"], parquet=(job["files"], job["columns"], job["chunk_rows"]), durable=False,
            )
            while len(_JOBS) >= _MAX_JOBS:
                _JOBS.pop(next(iter(_JOBS)))
            _JOBS[key] = worker
    return worker
