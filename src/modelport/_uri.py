"""Model URIs: a bundle path (directory or ``.mpk``) or a registry URI ``models:/NAME[/VERSION|@ALIAS]``."""

from __future__ import annotations

import os
from typing import Any

from modelport.bundle.core import Bundle

SCHEME = "models:/"


def is_registry_uri(uri: Any) -> bool:
    return isinstance(uri, str) and uri.startswith(SCHEME)


def load(uri: str | os.PathLike[str] | Bundle, **kwargs: Any) -> Bundle:
    if isinstance(uri, Bundle):
        return uri
    if is_registry_uri(uri):
        from modelport.registry import open_registry

        return open_registry().load(str(uri))
    return Bundle.read(uri, **kwargs)
