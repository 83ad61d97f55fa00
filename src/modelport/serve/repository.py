"""The model repository of a server: which bundles are served under which name and version.

Sources are bundle files (``.mpk``), bundle directories, directories holding bundles, and
registry URIs (``models:/NAME/VERSION``, ``models:/NAME@ALIAS``). A directory may hold bundles
directly (each served under its manifest name) or one sub-directory per model whose entries are
versions (``fraud/1.mpk``, ``fraud/2/``). A bundle's version is its manifest version, else the
version its file or directory name gives (``2.mpk``), else ``1``.

Swapping is copy-on-write: the new set of versions is loaded completely, then put in place with
one assignment. A request that already holds the old version finishes on it (its batcher drains
on its own), so a swap never fails an in-flight request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.bundle.core import Bundle
from modelport.errors import BundleError, ModelNotFoundError, ModelportError, ServingError

if TYPE_CHECKING:
    from modelport.serve.model import ServedModel
    from modelport.signing import SignaturePolicy

log = logging.getLogger("modelport.serve")

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


# ----------------------------------------------------------------------------- version policy
@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model are loaded: ``all``, the ``latest`` N, or ``specific`` ones."""

    kind: str = "all"
    n: int = 1
    versions: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """``all`` | ``latest`` | ``latest:N`` | ``specific:V1,V2``."""
        kind, _, arg = text.strip().partition(":")
        if kind == "all" and not arg:
            return cls("all")
        if kind == "latest":
            try:
                n = int(arg) if arg else 1
            except ValueError:
                n = 0
            if n < 1:
                raise ServingError(f"version policy {text!r}: N must be a positive integer.", hint="e.g. latest:2")
            return cls("latest", n=n)
        if kind == "specific" and arg:
            return cls("specific", versions=tuple(v.strip() for v in arg.split(",") if v.strip()))
        raise ServingError(
            f"unknown version policy {text!r}.", hint="use all, latest, latest:N or specific:V1,V2"
        )

    def select(self, versions: Sequence[str]) -> list[str]:
        ordered = sorted(versions, key=version_key)
        if self.kind == "latest":
            return ordered[-self.n:]
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered


def version_key(v: str) -> tuple[Any, ...]:
    """Order versions naturally: 2 < 10, 1.2 < 1.10; numbers before words."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-_]", v))


# ----------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    """A bundle a source offers: served as ``name``/``version``; ``stamp`` changes when it does."""

    name: str
    version: str
    origin: str
    stamp: Any
    bundle: Bundle | None = None
    loader: Callable[[], Bundle] | None = None
    follow: str | None = None  # registry alias URI to keep following


@dataclass
class Source:
    spec: str
    name: str | None = None  # NAME=... override
    path: Path | None = None
    uri: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Source:
        name = None
        raw = spec
        if "=" in spec and not os.path.exists(spec):
            left, _, right = spec.partition("=")
            if _NAME.match(left):
                name, raw = left, right
        if raw.startswith("models:/"):
            return cls(spec, name=name, uri=raw)
        path = Path(raw).expanduser()
        if not path.exists():
            raise ServingError(
                f"model source {raw!r} does not exist.",
                hint="give a .mpk file, a bundle directory, a directory of bundles or models:/NAME@ALIAS",
            )
        return cls(spec, name=name, path=path)


@dataclass
class _Entry:
    versions: dict[str, ServedModel] = field(default_factory=dict)


class ModelRepository:
    """The served models. ``make_model(bundle, name, version, origin)`` builds a ServedModel."""

    def __init__(
        self,
        sources: Sequence[str | Source],
        make_model: Callable[[Bundle, str, str, str], ServedModel],
        *,
        policy: VersionPolicy = VersionPolicy(),
        default_versions: dict[str, str] | None = None,
        registry_url: str | None = None,
        signature_policy: SignaturePolicy | None = None,
    ) -> None:
        self.sources = [s if isinstance(s, Source) else Source.parse(s) for s in sources]
        # checked in _build, the one place every load passes (startup, reload, load API, alias moves):
        # a refused bundle raises there, so it never replaces what is being served
        self.signature_policy = signature_policy
        self._make = make_model
        self.policy = policy
        self.default_versions = dict(default_versions or {})
        self.registry_url = registry_url
        self._models: dict[str, dict[str, ServedModel]] = {}
        self._defaults: dict[str, str] = {}  # resolved default version per model (hot path)
        self._known: dict[str, list[Candidate]] = {}
        self._cache: dict[str, tuple[Any, Bundle]] = {}
        self._unloaded: set[str] = set()
        self._lock = asyncio.Lock()
        self.scan_errors: list[str] = []
        self._roots: list[tuple[re.Pattern[str], str]] | None = None

    # ------------------------------------------------------------------ lookups (hot path)
    def get(self, name: str, version: str | None = None) -> ServedModel:
        versions = self._models.get(name)
        if versions is None:
            raise ModelNotFoundError(f"unknown model {name!r}. {self.describe()}")
        if version is None or version == "":
            version = self._defaults[name]
        model = versions.get(version)
        if model is None:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version!r} loaded; served versions: "
                f"{', '.join(sorted(versions, key=version_key))}. {self.describe()}"
            )
        return model

    def default_version(self, name: str) -> str:
        versions = self._models[name]
        want = self.default_versions.get(name)
        if want is not None and want in versions:
            return want
        return max(versions, key=version_key)

    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[str]:
        return sorted(self._models.get(name, {}), key=version_key)

    def all_models(self) -> list[ServedModel]:
        return [m for versions in list(self._models.values()) for m in versions.values()]

    def public_text(self, text: str) -> str:
        """``text`` (an error message, a model's origin) without the server's file paths and
        registry URL, for clients: a bundle under a source directory is named relative to it
        (``fraud/2.mpk``), any other absolute path by its last part, the registry as
        ``<registry>``. The server log keeps the full text."""
        roots = self._roots
        if roots is None:
            roots = self._roots = _roots(self.sources, self.registry_url)
        for pattern, repl in roots:
            text = pattern.sub(repl, text)
        text = _USERINFO.sub(r"\1<credentials>@", text)
        text = _FILE_URL.sub(r"\1", text)
        return _ABSOLUTE.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1] or "/", text)

    def describe(self) -> str:
        if not self._models:
            return "No models are served."
        parts = [f"{n} (versions {', '.join(self.versions(n))})" for n in self.names()]
        return "Served: " + "; ".join(parts) + "."

    # ------------------------------------------------------------------ loading
    def load_all(self) -> None:
        """Scan every source and load what the version policy selects (blocking; at startup)."""
        known = self._scan()
        models: dict[str, dict[str, ServedModel]] = {}
        for name, cands in known.items():
            models[name] = self._build(name, cands, {})
        self._known = known
        self._models = models
        self._defaults = {n: self.default_version(n) for n in models}
        if not models:
            raise ServingError(
                "no bundles found in the given sources: " + ", ".join(s.spec for s in self.sources) + ".",
                hint="pass .mpk files, bundle directories or directories that hold them",
            )

    async def refresh(self) -> list[str]:
        """Re-scan the sources; load new or changed bundles and drop removed ones. Returns what changed."""
        async with self._lock:
            known = await asyncio.to_thread(self._scan, tolerant=True)
            changed: list[str] = []
            for name in sorted(set(known) | set(self._models)):
                if name in self._unloaded:
                    continue
                cands = known.get(name, [])
                if not cands and self.scan_errors:
                    continue  # maybe its file is being rewritten: keep serving until it reads cleanly
                current = self._models.get(name, {})
                wanted = {c.version: c for c in self._selected(cands)}
                same = set(wanted) == set(current) and all(
                    current[v].digest == _digest(c) for v, c in wanted.items()
                )
                if same:
                    continue
                try:
                    new = await asyncio.to_thread(self._build, name, cands, current)
                except ModelportError as exc:
                    log.error("could not reload model %s: %s", name, exc)
                    continue
                self._install(name, new)
                changed.append(name)
            self._known = known
            return changed

    async def load(self, name: str) -> list[str]:
        """Load (or reload) every policy-selected version of ``name`` from the sources."""
        async with self._lock:
            known = await asyncio.to_thread(self._scan, tolerant=True)
            self._known = known
            cands = known.get(name)
            if not cands and self.scan_errors:
                raise BundleError(
                    f"no readable bundle offers a model named {name!r}; unreadable: " + "; ".join(self.scan_errors),
                    hint="fix or replace the file, then load again",
                )
            if not cands:
                raise ModelNotFoundError(
                    f"no source offers a model named {name!r}; known: {', '.join(sorted(known)) or 'none'}."
                )
            new = await asyncio.to_thread(self._build, name, cands, self._models.get(name, {}))
            self._unloaded.discard(name)
            self._install(name, new)
            return sorted(new, key=version_key)

    async def unload(self, name: str) -> None:
        async with self._lock:
            if name not in self._models:
                raise ModelNotFoundError(f"model {name!r} is not loaded. {self.describe()}")
            self._unloaded.add(name)
            self._install(name, None)

    def index(self) -> list[dict[str, Any]]:
        """The repository index: every known model version with its state."""
        out = []
        names = sorted(set(self._known) | set(self._models))
        for name in names:
            loaded = self._models.get(name, {})
            versions = {c.version for c in self._known.get(name, [])} | set(loaded)
            for v in sorted(versions, key=version_key):
                if v in loaded:
                    out.append({"name": name, "version": v, "state": "READY", "reason": ""})
                else:
                    reason = "unloaded" if name in self._unloaded else "not selected by the version policy"
                    out.append({"name": name, "version": v, "state": "UNAVAILABLE", "reason": reason})
        return out

    # ------------------------------------------------------------------ registry aliases
    def following(self) -> list[Source]:
        return [s for s in self.sources if s.uri is not None and "@" in s.uri]

    async def follow_once(self) -> list[str]:
        """Resolve every followed alias; swap in the new version where its digest changed."""
        changed = []
        for src in self.following():
            try:
                cand = await asyncio.to_thread(self._registry_candidate, src)
            except ModelportError as exc:
                log.warning("could not resolve %s: %s", src.uri, exc)
                continue
            current = self._models.get(cand.name, {})
            if cand.name in self._unloaded:
                continue
            if len(current) == 1 and next(iter(current.values())).digest == cand.stamp:
                continue
            async with self._lock:
                try:
                    new = await asyncio.to_thread(self._build, cand.name, [cand], {})
                except ModelportError as exc:
                    log.error("could not load %s for %s: %s", cand.origin, src.uri, exc)
                    continue
                self._install(cand.name, new)
                self._known[cand.name] = [cand]
            log.info("%s now serves %s version %s", src.uri, cand.name, cand.version)
            changed.append(cand.name)
        return changed

    # ------------------------------------------------------------------ internals
    def _install(self, name: str, versions: dict[str, ServedModel] | None) -> None:
        models = dict(self._models)  # copy-on-write: readers see the old or the new table, never half
        defaults = dict(self._defaults)
        if versions:
            models[name] = versions
        else:
            models.pop(name, None)
            defaults.pop(name, None)
        self._models = models
        if versions:
            defaults[name] = self.default_version(name)
        self._defaults = defaults

    def _selected(self, cands: list[Candidate]) -> list[Candidate]:
        by_version = {c.version: c for c in cands}
        return [by_version[v] for v in self.policy.select(list(by_version))]

    def _build(self, name: str, cands: list[Candidate], current: dict[str, ServedModel]) -> dict[str, ServedModel]:
        out: dict[str, ServedModel] = {}
        for c in self._selected(cands):
            old = current.get(c.version)
            if old is not None and old.digest == _digest(c):
                out[c.version] = old  # unchanged: keep the warm session
                continue
            bundle = c.bundle if c.bundle is not None else c.loader() if c.loader is not None else None
            if bundle is None:
                raise ServingError(f"{c.origin}: nothing to load.")
            if self.signature_policy is not None:
                self.signature_policy.check(bundle)
            out[c.version] = self._make(bundle, name, c.version, c.origin)
        return out

    def _scan(self, tolerant: bool = False) -> dict[str, list[Candidate]]:
        found: dict[str, list[Candidate]] = {}
        self.scan_errors = []
        for src in self.sources:
            try:
                cands = self._candidates(src, tolerant)
            except ModelportError as exc:
                if not tolerant:
                    raise
                log.error("skipping source %s: %s", src.spec, exc)
                self.scan_errors.append(exc.message)
                continue
            for c in cands:
                same = [o for o in found.get(c.name, []) if o.version == c.version]
                if same:
                    msg = (
                        f"two bundles claim model {c.name!r} version {c.version}: {same[0].origin} and {c.origin}."
                    )
                    if not tolerant:
                        raise ServingError(msg, hint="give them distinct manifest versions, or NAME=path overrides")
                    log.error("%s Keeping the first.", msg)
                    continue
                found.setdefault(c.name, []).append(c)
        return found

    def _candidates(self, src: Source, tolerant: bool = False) -> list[Candidate]:
        if src.uri is not None:
            return [self._registry_candidate(src)]
        assert src.path is not None
        path = src.path
        if not path.exists():
            raise ServingError(f"model source {str(path)!r} no longer exists.")
        if _is_bundle(path):
            return [self._file_candidate(path, src.name, None)]
        if not path.is_dir():
            raise ServingError(f"{path} is neither a bundle (.mpk or a directory with manifest.json) nor a directory.")
        found: list[tuple[Path, str | None]] = []
        for entry in sorted(path.iterdir()):
            if entry.name.startswith("."):
                continue
            if _is_bundle(entry):
                found.append((entry, src.name))
            elif entry.is_dir():  # one model per sub-directory, its entries are versions
                found += [(sub, src.name or entry.name) for sub in sorted(entry.iterdir()) if _is_bundle(sub)]
        out = []
        for bundle_path, name in found:
            try:
                out.append(self._file_candidate(bundle_path, name, _version_from_path(bundle_path)))
            except ModelportError as exc:
                if not tolerant:
                    raise
                # one unreadable file (say, half-copied) must not hide its neighbours
                log.error("skipping %s: %s", bundle_path, exc)
                self.scan_errors.append(exc.message)
        return out

    def _file_candidate(self, path: Path, name: str | None, layout_version: str | None) -> Candidate:
        stamp = _stamp(path)
        key = str(path.resolve())
        cached = self._cache.get(key)
        if cached is not None and cached[0] == stamp:
            bundle = cached[1]
        else:
            bundle = Bundle.read(path)
            self._cache[key] = (stamp, bundle)
        version = bundle.version or layout_version or "1"
        return Candidate(name or bundle.name, str(version), str(path), bundle.digest, bundle=bundle)

    def _registry_candidate(self, src: Source) -> Candidate:
        assert src.uri is not None
        try:
            from modelport.registry import open_registry
        except ImportError as exc:
            raise ServingError(
                f"cannot serve {src.uri}: the model registry (modelport.registry) is not available ({exc}).",
                hint="pip install 'modelport[registry]', or serve the bundle file itself",
            ) from exc
        reg = open_registry(self.registry_url)
        info = reg.resolve(src.uri)
        pinned = f"models:/{info.name}/{info.version}"
        return Candidate(
            src.name or info.name,
            str(info.version),
            pinned,
            info.digest,
            loader=lambda: reg.load(pinned),
            follow=src.uri if "@" in src.uri else None,
        )


# an absolute POSIX path of two parts or more (not the path part of a URL or of models:/NAME; a
# one-part path such as /docs is an endpoint in our own messages, not a place on the server)
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])~?(?:/[^\s/'\"`,;:()\[\]{}<>]+){2,}/?")
_FILE_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*:///)((?:[^\s/'\"]+/)*)")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@]*@")


def _roots(sources: Sequence[Source], registry_url: str | None) -> list[tuple[re.Pattern[str], str]]:
    """(pattern, replacement) pairs that remove the configured source locations from a text."""
    found: set[str] = set()
    for src in sources:
        if src.path is None:
            continue
        for p in (src.path, src.path.absolute(), src.path.resolve()):
            root = p.parent if p.is_file() or p.suffix == ".mpk" else p
            text = str(root)
            if text not in ("", ".", "/"):
                found.add(text.rstrip("/"))
    pairs = [(re.compile(r"(?<![\w.~-])" + re.escape(r) + "/"), "") for r in sorted(found, key=len, reverse=True)]
    urls = {u for u in (registry_url, os.environ.get("MODELPORT_REGISTRY")) if u}
    pairs += [(re.compile(re.escape(u)), "<registry>") for u in sorted(urls, key=len, reverse=True)]
    return pairs


def _digest(c: Candidate) -> str:
    return c.bundle.digest if c.bundle is not None else str(c.stamp)


def _is_bundle(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".mpk") or (path.is_dir() and (path / "manifest.json").is_file())


def _version_from_path(path: Path) -> str | None:
    stem = path.stem if path.is_file() else path.name
    return stem if stem.isdigit() else None


def _stamp(path: Path) -> tuple[int, int]:
    if path.is_file():
        st = path.stat()
        return (st.st_mtime_ns, st.st_size)
    latest, total = 0, 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            latest = max(latest, st.st_mtime_ns)
            total += st.st_size
    return (latest, total)
