"""The artifact store: bundle archives (``.mpk`` bytes) kept content-addressed by their sha256.

A blob's key is the sha256 of its bytes, so identical bundles are stored once and a blob that
was changed on disk is caught on read. Local directories are written atomically (a temporary
sibling, fsync, rename); any other fsspec URL (``s3://``, ``gs://``, ``memory://`` ...) is
written with one ``pipe`` per object, which object stores apply atomically.

Layout: ``<root>/sha256/<first two hex digits>/<64 hex digits>.mpk``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from modelport._deps import require
from modelport._fs import atomic_file
from modelport.errors import IntegrityError, RegistryError

_KEY = re.compile(r"[0-9a-f]{64}")
TMP_PREFIX = ".tmp-"


def blob_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise IntegrityError(f"{key!r} is not a sha256 blob key (64 lowercase hex digits).")
    return key


class ArtifactStore(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> bool: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def blobs(self) -> Iterator[str]: ...

    def stale_temporaries(self, key: str | None = None, *, older_than: float = 0.0) -> list[str]: ...

    def remove_temporary(self, name: str) -> None: ...


class LocalStore:
    """Blobs in a local directory (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root / "sha256" / key[:2] / f"{key}.mpk"

    def put(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key``; False when it was already there (nothing written)."""
        if blob_key(data) != _check_key(key):
            raise IntegrityError(f"refusing to store blob {key}: the bytes have another sha256.")
        target = self._path(key)
        if target.is_file():
            # an intact copy is kept; a damaged one is replaced, so pushing again repairs the store
            with contextlib.suppress(OSError):
                if blob_key(target.read_bytes()) == key:
                    return False
        target.parent.mkdir(parents=True, exist_ok=True)
        # the temporary name carries the key so that gc can tell whose write it was
        with atomic_file(target, prefix=f"{TMP_PREFIX}{key}-") as fh:
            fh.write(data)
        return True

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise IntegrityError(
                f"blob {key} is missing from the artifact store {self.url}.",
                hint="the registry's files were removed or it points at another store; set MODELPORT_ARTIFACTS "
                "to the store the registry was created with",
            ) from exc
        except OSError as exc:
            raise RegistryError(f"cannot read blob {key} from {self.url}: {exc}.") from exc
        _verify(key, data, self.url)
        return data

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def blobs(self) -> Iterator[str]:
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for sub in sorted(base.iterdir()):
            if sub.is_dir():
                for f in sorted(sub.iterdir()):
                    if f.suffix == ".mpk" and _KEY.fullmatch(f.stem):
                        yield f.stem

    def stale_temporaries(self, key: str | None = None, *, older_than: float = 0.0) -> list[str]:
        """Temporary files left by writes that died (kill -9), optionally only those of ``key``."""
        base = self.root / "sha256"
        if not base.is_dir():
            return []
        now = time.time()
        out = []
        dirs = [base / key[:2]] if key else [d for d in base.iterdir() if d.is_dir()]
        for d in dirs:
            if not d.is_dir():
                continue
            for f in d.iterdir():
                if not f.name.startswith(TMP_PREFIX):
                    continue
                if key and not f.name.startswith(f"{TMP_PREFIX}{key}-"):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if now - f.stat().st_mtime >= older_than:
                        out.append(str(f))
        return sorted(out)

    def remove_temporary(self, name: str) -> None:
        path = Path(name)
        if path.name.startswith(TMP_PREFIX) and self.root in path.parents:
            path.unlink(missing_ok=True)


class FsspecStore:
    """Blobs under any fsspec URL (``s3://bucket/prefix``, ``gs://``, ``memory://`` ...)."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        fsspec = require("fsspec", purpose="an artifact store at a URL")
        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **storage_options)
        except (ValueError, ImportError) as exc:
            raise RegistryError(
                f"cannot open the artifact store {url!r}: {exc}.",
                hint="install the fsspec back end for this protocol (e.g. s3fs, gcsfs) or use a local directory",
            ) from exc
        self.root = self.root.rstrip("/")

    def _path(self, key: str) -> str:
        _check_key(key)
        return f"{self.root}/sha256/{key[:2]}/{key}.mpk"

    def put(self, key: str, data: bytes) -> bool:
        if blob_key(data) != _check_key(key):
            raise IntegrityError(f"refusing to store blob {key}: the bytes have another sha256.")
        path = self._path(key)
        if self.fs.exists(path):
            return False
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)
        return True

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError as exc:
            raise IntegrityError(f"blob {key} is missing from the artifact store {self.url}.") from exc
        except OSError as exc:
            raise RegistryError(f"cannot read blob {key} from {self.url}: {exc}.") from exc
        _verify(key, data, self.url)
        return bytes(data)

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))

    def blobs(self) -> Iterator[str]:
        base = f"{self.root}/sha256"
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return
        for p in sorted(found):
            stem = p.rsplit("/", 1)[-1]
            if stem.endswith(".mpk") and _KEY.fullmatch(stem[:-4]):
                yield stem[:-4]

    def stale_temporaries(self, key: str | None = None, *, older_than: float = 0.0) -> list[str]:
        return []  # one pipe per object: nothing temporary is ever left behind

    def remove_temporary(self, name: str) -> None:
        return None


def open_store(location: str | os.PathLike[str]) -> ArtifactStore:
    """A local path or ``file://`` URL gives a LocalStore (atomic renames); any other URL fsspec."""
    text = os.fspath(location)
    if text.startswith("file://"):
        return LocalStore(text[len("file://"):])
    if "://" in text:
        return FsspecStore(text)
    return LocalStore(text)


def _verify(key: str, data: bytes, where: str) -> None:
    got = blob_key(data)
    if got != key:
        raise IntegrityError(
            f"blob {key} in {where} has sha256 {got}: it was modified or corrupted after it was stored.",
            hint="push the same bundle file again from a good copy (modelport push FILE) to repair the store",
        )
