"""Registry model URIs: ``models:/NAME`` (latest), ``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``.

Parsing is strict so that a typo gives an error that says what a URI looks like, rather than
a lookup of a model nobody meant. Names and aliases are validated here too, once for every
back end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelport.errors import InputError

SCHEME = "models:/"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# an alias must not look like a version number, or models:/x@3 and models:/x/3 would blur
ALIAS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,127}")
RESERVED_ALIASES = frozenset({"latest"})

FORMS = "models:/NAME, models:/NAME/VERSION or models:/NAME@ALIAS"


@dataclass(frozen=True)
class ModelRef:
    """What a URI points at: a model's latest version, one version, or an alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    @property
    def uri(self) -> str:
        if self.version is not None:
            return f"{SCHEME}{self.name}/{self.version}"
        if self.alias is not None:
            return f"{SCHEME}{self.name}@{self.alias}"
        return f"{SCHEME}{self.name}"

    def __str__(self) -> str:
        return self.uri


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InputError(
            f"{name!r} is not a valid model name: expected 1-128 characters from letters, digits, "
            "'.', '_' and '-', starting with a letter or digit.",
            hint="pass another name (modelport push --name NAME, or pack(..., name=NAME))",
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias) or alias in RESERVED_ALIASES:
        raise InputError(
            f"{alias!r} is not a valid alias: expected 1-128 characters from letters, digits, '.', '_' "
            "and '-', starting with a letter or '_' (and not 'latest', which always means the newest version).",
            hint="use a name such as production, staging or champion",
        )
    return alias


def parse(uri: str, *, bare: bool = False) -> ModelRef:
    """Parse a registry URI. With ``bare=True`` the ``models:/`` prefix may be left out (CLI use)."""
    if not isinstance(uri, str):
        raise InputError(f"a model URI must be a string, got {type(uri).__name__}.", hint=f"use {FORMS}")
    text = uri.strip()
    if text.startswith(SCHEME):
        text = text[len(SCHEME):]
    elif not bare:
        raise InputError(f"{uri!r} is not a registry URI; expected {FORMS}.")
    if "@" in text:
        name, _, alias = text.partition("@")
        _name(name, uri)
        if alias == "latest":
            return ModelRef(_name(name, uri))
        if not alias or not ALIAS_RE.fullmatch(alias):
            raise InputError(f"{uri!r}: {alias!r} is not a valid alias.", hint=f"use {FORMS}")
        return ModelRef(_name(name, uri), alias=alias)
    if "/" in text:
        name, _, version = text.partition("/")
        _name(name, uri)
        if version == "latest":
            return ModelRef(name)
        if not version.isdigit() or int(version) < 1:
            raise InputError(
                f"{uri!r}: the version must be a positive whole number (or 'latest'), got {version!r}.",
                hint=f"use {FORMS}",
            )
        return ModelRef(_name(name, uri), version=int(version))
    return ModelRef(_name(text, uri))


def _name(name: str, uri: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise InputError(f"{uri!r}: {name!r} is not a valid model name.", hint=f"use {FORMS}")
    return name
