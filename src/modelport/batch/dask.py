"""Scoring Dask DataFrames: ``map_partitions`` with the bundle shipped once per worker.

With a ``dask.distributed`` client, the bundle's ``.mpk`` bytes travel once to every worker inside a
worker plugin (also to workers that join later); each worker opens the bundle and its ONNX Runtime
session once and keeps them in a process-wide cache keyed by the bundle digest. The partition tasks
themselves carry only that digest, never the bundle. Without a distributed client (the local
threaded scheduler) the cache is filled in this process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelport._deps import require
from modelport.batch.score import ChunkScorer, OnError, check_clash, check_columns, resolve_keep, score_frame
from modelport.errors import InputError, ModelportError

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle

_BUNDLES: dict[str, Bundle] = {}
_LOCK = threading.Lock()


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
    from modelport.bundle.core import Bundle

    with _LOCK:
        if digest not in _BUNDLES:
            b = Bundle.from_bytes(data, origin=f"<dask bundle {digest[:19]}>")
            _ = b.runtime  # one ONNX Runtime session per worker process, created here
            _BUNDLES[digest] = b


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


def _partition(
    df: Any, digest: str, kept: list[str], on_error: str, prefix: str, error_column: str | None,
    partition_info: dict[str, Any] | None = None,
) -> Any:
    bundle = _BUNDLES.get(digest)
    if bundle is None:
        raise ModelportError(
            f"bundle {digest[:19]}… is not installed on this Dask worker.",
            hint="call modelport.dask.predict with the client that runs the graph (or modelport.dask.ship(bundle, client))",
        )
    core = ChunkScorer(bundle, on_error=on_error, prefix=prefix)  # type: ignore[arg-type]
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
