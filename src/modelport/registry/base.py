"""The registry's public types: the ``Registry`` protocol every back end implements, and the
records it returns (``VersionInfo``, ``ModelInfo``, ``LineageEntry``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle
    from modelport.signing import SignaturePolicy


@dataclass(frozen=True)
class VersionInfo:
    """One version of a model in the registry.

    ``created`` is when the registry stored it (bundles carry no timestamps of their own);
    ``parent`` is the digest recorded at pack time in ``manifest["lineage"]["parent"]``.
    ``is_new`` is True only on the value returned by the push that created the version.
    """

    name: str
    version: int
    digest: str
    created: datetime
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    parent: str | None = None
    description: str | None = None
    task: str | None = None
    size: int = 0
    blob: str = ""
    deleted: datetime | None = None
    is_new: bool = field(default=False, compare=False)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "digest": self.digest,
            "created": self.created.isoformat(),
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
            "metrics": dict(self.metrics),
            "parent": self.parent,
            "description": self.description,
            "task": self.task,
            "size": self.size,
            "deleted": None if self.deleted is None else self.deleted.isoformat(),
        }


@dataclass(frozen=True)
class ModelInfo:
    """A model: its name, newest live version, number of live versions and aliases."""

    name: str
    created: datetime
    latest: int | None
    versions: int
    aliases: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created.isoformat(),
            "latest": self.latest,
            "versions": self.versions,
            "aliases": dict(self.aliases),
        }


@dataclass(frozen=True)
class LineageEntry:
    """One link of a lineage chain: a digest, and the registry version holding it if there is one."""

    digest: str
    version: VersionInfo | None

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "version": None if self.version is None else self.version.to_dict()}


@runtime_checkable
class Registry(Protocol):
    """What every registry back end offers. URIs are ``models:/NAME[/VERSION|@ALIAS]``."""

    url: str

    def push(
        self,
        bundle: Bundle | str | os.PathLike[str],
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        signature_policy: SignaturePolicy | None = None,
    ) -> VersionInfo: ...

    def resolve(self, uri: str) -> VersionInfo: ...

    def load(self, uri: str) -> Bundle: ...

    def manifest(self, uri: str) -> dict[str, Any]: ...

    def pull(self, uri: str, path: str | os.PathLike[str]) -> VersionInfo: ...

    def models(self) -> list[ModelInfo]: ...

    def versions(self, name: str, *, include_deleted: bool = False) -> list[VersionInfo]: ...

    def set_alias(self, name: str, alias: str, version: int | str) -> VersionInfo: ...

    def remove_alias(self, name: str, alias: str) -> None: ...

    def set_tags(self, uri: str, tags: Mapping[str, str]) -> VersionInfo: ...

    def remove_tags(self, uri: str, keys: list[str]) -> VersionInfo: ...

    def search(
        self,
        *,
        name: str | None = None,
        tags: Mapping[str, str | None] | None = None,
        where: str | None = None,
        include_deleted: bool = False,
    ) -> list[VersionInfo]: ...

    def delete(self, uri: str, *, force: bool = False) -> VersionInfo: ...

    def lineage(self, uri: str) -> list[LineageEntry]: ...

    def gc(self) -> list[str]: ...

    def close(self) -> None: ...
