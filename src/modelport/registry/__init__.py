"""The model registry: versions, aliases, tags, search and lineage of bundles.

    >>> from modelport.registry import open_registry
    >>> reg = open_registry()                       # MODELPORT_REGISTRY, else SQLite in MODELPORT_HOME
    >>> info = reg.push("churn.mpk")                # -> VersionInfo(name='churn', version=3, ...)
    >>> reg.set_alias("churn", "production", 3)
    >>> bundle = reg.load("models:/churn@production")

Metadata lives in SQLite (default, no setup) or PostgreSQL (``MODELPORT_REGISTRY=postgresql://...``);
bundle archives live in a content-addressed artifact store (a local directory or an fsspec URL,
``MODELPORT_ARTIFACTS``). SQLAlchemy is imported only when a registry is opened.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from modelport.errors import RegistryError
from modelport.registry.base import LineageEntry, ModelInfo, Registry, VersionInfo
from modelport.registry.uri import ModelRef, parse

if TYPE_CHECKING:
    from modelport.registry.sql import SQLRegistry

__all__ = [
    "LineageEntry",
    "ModelInfo",
    "ModelRef",
    "Registry",
    "VersionInfo",
    "default_url",
    "open_registry",
    "parse",
]

_CACHE: dict[tuple[int, str, str | None], SQLRegistry] = {}
_LOCK = threading.Lock()


def home() -> Path:
    """``MODELPORT_HOME``, default ``~/.modelport``."""
    return Path(os.environ.get("MODELPORT_HOME") or Path.home() / ".modelport").expanduser()


def default_url() -> str:
    """``MODELPORT_REGISTRY`` if set, else the SQLite database ``$MODELPORT_HOME/registry.db``."""
    env = os.environ.get("MODELPORT_REGISTRY")
    if env:
        return env
    return f"sqlite:///{home() / 'registry.db'}"


def open_registry(url: str | None = None, *, artifacts: str | os.PathLike[str] | None = None) -> Registry:
    """Open (creating on first use) the registry at ``url``.

    ``url``: ``sqlite:///path/to/registry.db`` or ``postgresql://user:pass@host:port/db``; None means
    ``MODELPORT_REGISTRY``, else SQLite under ``MODELPORT_HOME`` (default ``~/.modelport``).
    ``artifacts``: where bundle archives go (a directory or fsspec URL); None means
    ``MODELPORT_ARTIFACTS``, else what a PostgreSQL registry recorded when it was created, else
    ``<database>.artifacts/`` next to a SQLite file. Registries are cached per process.
    """
    raw = url or default_url()
    engine_url, display = _engine_url(raw)
    location = None if artifacts is None else os.fspath(artifacts)
    key = (os.getpid(), engine_url, location or os.environ.get("MODELPORT_ARTIFACTS"))
    with _LOCK:
        reg = _CACHE.get(key)
        if reg is None:
            from modelport.registry.sql import SQLRegistry

            reg = SQLRegistry(engine_url, artifacts=location, display_url=display)
            _CACHE[key] = reg
    return reg


def _engine_url(url: str) -> tuple[str, str]:
    """The SQLAlchemy URL for a registry URL, and a form of it without the password for messages."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise RegistryError(
                f"{url!r} is not a SQLite registry URL with a file path.",
                hint="use sqlite:///relative/path.db or sqlite:////absolute/path.db",
            )
        path = Path(url[len("sqlite:///"):]).expanduser()
        if str(path) == ":memory:":
            raise RegistryError("an in-memory SQLite registry would vanish with its connection; give a file path.")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"cannot create the registry directory {path.parent}: {exc}.") from exc
        return f"sqlite:///{path}", f"sqlite:///{path}"
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        engine = urlunsplit(("postgresql+psycopg", *parts[1:]))
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
        return engine, urlunsplit(("postgresql", netloc, *parts[2:]))
    raise RegistryError(
        f"unsupported registry URL {url!r}.",
        hint="set MODELPORT_REGISTRY to sqlite:///path/registry.db or postgresql://user@host/db (or unset it "
        "for the default SQLite registry in MODELPORT_HOME)",
    )
