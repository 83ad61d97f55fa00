"""The model a consumer scores with, and hot swap: serving's model repository (file polling and
registry alias following, :mod:`modelport.serve.repository`) resolves the source; the consumer
picks up a new version between two batches, so every output names the version that scored it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, cast

from modelport.batch.score import ChunkScorer, input_columns
from modelport.bundle.core import Bundle
from modelport.errors import InputError, ModelportError

log = logging.getLogger("modelport.stream")


@dataclass
class StreamModel:
    """One loaded version: its bundle, scorer (per-row rejects) and identity."""

    bundle: Bundle
    name: str
    version: str
    digest: str
    origin: str
    scorer: ChunkScorer
    columns: list[str]
    column_set: frozenset[str]

    @classmethod
    def build(cls, bundle: Bundle, name: str, version: str, origin: str, *, threads: int | None = 1) -> StreamModel:
        from modelport.runtime.session import Runtime

        runtime = Runtime(bundle, intra_op_threads=threads, inter_op_threads=1 if threads else None)
        scorer = ChunkScorer(bundle, on_error="skip", runtime=runtime)
        columns = input_columns(bundle)
        model = cls(bundle, name, version, bundle.digest, origin, scorer, columns, frozenset(columns))
        model._warm_up()
        return model

    def _warm_up(self) -> None:
        # the first ONNX Runtime call allocates; do it here, not in the first batch's latency
        ref = self.bundle.reference_inputs
        if not ref:
            return
        with contextlib.suppress(Exception):
            self.scorer.runtime.run({k: v[:1] for k, v in ref.items()})


class ModelSource:
    """The current model of a consumer, re-resolved every ``poll`` seconds.

    ``model``: a Bundle (fixed), a bundle path, or ``models:/NAME[/VERSION|@ALIAS]``. With an alias
    (or ``models:/NAME``, the latest version) the registry is asked again on every :meth:`poll`;
    a path is re-read when its file changes.
    """

    def __init__(self, model: str | Bundle, *, registry_url: str | None = None, threads: int | None = 1) -> None:
        self.threads = threads
        self._repo: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if isinstance(model, Bundle):
            name = model.name
            self.current = StreamModel.build(model, name, model.version or "1", model.origin, threads=threads)
            self.follows = False
            return
        from modelport.serve.repository import ModelRepository, VersionPolicy

        def make(bundle: Bundle, name: str, version: str, origin: str) -> Any:
            return StreamModel.build(bundle, name, version, origin, threads=threads)

        try:
            repo = ModelRepository(
                [str(model)], cast(Any, make), policy=VersionPolicy("latest"), registry_url=registry_url
            )
            repo.load_all()
        except ModelportError as exc:
            raise type(exc)(f"cannot load the model {model!r}: {exc.message}", hint=exc.hint) from None
        names = repo.names()
        if len(names) != 1:
            raise InputError(
                f"{model!r} holds {len(names)} models ({', '.join(names)}); a stream scores with one.",
                hint="give one bundle, or models:/NAME@ALIAS",
            )
        self._repo = repo
        self._name = names[0]
        self.current = cast(StreamModel, repo.get(self._name))
        self.follows = str(model).startswith("models:/") and "/" not in str(model)[len("models:/"):]

    def poll(self) -> StreamModel | None:
        """Look for a new version; returns it when it changed (the caller makes it ``current``)."""
        if self._repo is None:
            return None
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        repo = self._repo
        try:
            coro = repo.follow_once() if repo.following() else repo.refresh()
            changed = self._loop.run_until_complete(coro)
        except ModelportError as exc:
            log.warning("could not look for a new model version: %s", exc)
            return None
        if not changed:
            return None
        new = cast(StreamModel, repo.get(self._name))
        return None if new is self.current else new

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None
