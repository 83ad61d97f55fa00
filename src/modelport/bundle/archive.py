"""Reading and writing a bundle's files: a directory, or a deterministic zip (``.mpk``).

Writing is deterministic (sorted entries, fixed timestamps and permissions) and atomic
(a temporary sibling, then a rename), so the same files always give the same bytes and a
crash never leaves half a bundle. Reading trusts nothing: entry names, links, sizes and
compression ratios are checked before a byte is used.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelport._fs import atomic_file
from modelport.errors import BundleError, IntegrityError

MANIFEST = "manifest.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Limits:
    """What a bundle may hold; generous for real models, fatal for zip bombs."""

    max_entries: int = 1_000
    max_entry_bytes: int = 4 * 1024**3
    max_total_bytes: int = 8 * 1024**3
    max_ratio: float = 200.0  # uncompressed / compressed, for entries above 1 MiB


DEFAULT_LIMITS = Limits()


def check_member_name(name: str, origin: str) -> str:
    """Refuse absolute paths, ``..``, backslashes and drive letters in an entry name."""
    if not name or "\\" in name or "\x00" in name:
        raise IntegrityError(f"{origin}: entry {name!r} has an invalid name.")
    p = PurePosixPath(name)
    if p.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise IntegrityError(f"{origin}: entry {name!r} is an absolute path; bundles hold relative paths only.")
    if any(part in ("..", ".", "") for part in name.split("/")):
        raise IntegrityError(f"{origin}: entry {name!r} leaves the bundle (contains '..' or empty parts).")
    return name


def write_mpk_bytes(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(files):
            check_member_name(name, "write")
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, files[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return buf.getvalue()


def write(path: str | os.PathLike[str], files: Mapping[str, bytes], *, overwrite: bool = True) -> Path:
    """Write ``files`` to ``path``: a zip when it ends in ``.mpk`` or ``.zip``, else a directory."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise BundleError(f"{target} already exists.", hint="choose another path or pass overwrite=True")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix in (".mpk", ".zip"):
        if target.is_dir():
            raise BundleError(f"{target} is a directory; cannot write a .mpk file there.")
        data = write_mpk_bytes(files)
        with atomic_file(target) as fh:
            fh.write(data)
        return target
    if target.exists() and not target.is_dir():
        raise BundleError(f"{target} exists and is not a directory.")
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(tmpdir, 0o755)  # mkdtemp makes it private; a saved bundle is as readable as a saved .mpk
        for name in sorted(files):
            check_member_name(name, "write")
            dest = tmpdir / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(files[name])
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmpdir, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmpdir, target)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return target


def read(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """Read every file of a bundle directory or ``.mpk`` zip, checking names, links and sizes."""
    src = Path(path)
    if src.is_symlink():
        raise IntegrityError(f"{src}: the bundle path is a symbolic link; pass the real path.")
    if src.is_dir():
        return _read_dir(src, limits)
    if not src.exists():
        raise BundleError(f"{src}: no such bundle file or directory.")
    if not zipfile.is_zipfile(src):
        with open(src, "rb") as fh:
            head = fh.read(4)
        if head == b"PK\x03\x04":  # starts like a zip but has no central directory: cut short
            raise IntegrityError(
                f"{src}: corrupt or truncated archive (a zip without its end-of-archive record).",
                hint="copy or download the bundle again",
            )
        raise BundleError(
            f"{src}: not a modelport bundle (neither a directory nor a zip archive).",
            hint="pass a bundle directory or an .mpk file written by modelport",
        )
    return read_mpk_bytes(src.read_bytes(), origin=str(src), limits=limits)


def read_mpk_bytes(data: bytes, *, origin: str = "<bytes>", limits: Limits = DEFAULT_LIMITS) -> dict[str, bytes]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise IntegrityError(f"{origin}: corrupt or truncated archive ({_brief(exc)}).") from exc
    out: dict[str, bytes] = {}
    total = 0
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise IntegrityError(f"{origin}: {len(infos)} entries, more than the limit of {limits.max_entries}.")
        for info in infos:
            name = info.filename
            if info.is_dir():
                check_member_name(name.rstrip("/"), origin)
                continue
            check_member_name(name, origin)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise IntegrityError(f"{origin}: entry {name!r} is a symbolic link; bundles may not hold links.")
            if name in out:
                raise IntegrityError(f"{origin}: entry {name!r} appears twice.")
            if info.file_size > limits.max_entry_bytes:
                raise IntegrityError(f"{origin}: entry {name!r} declares {info.file_size} bytes, over the limit.")
            if info.file_size > 1024**2 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise IntegrityError(
                    f"{origin}: entry {name!r} expands {info.file_size / max(info.compress_size, 1):.0f}x "
                    "(a zip bomb?); refusing to unpack it."
                )
            try:
                with zf.open(info) as fh:
                    # read at most one byte past the declared size: headers can lie
                    blob = fh.read(info.file_size + 1)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as exc:
                raise IntegrityError(f"{origin}: entry {name!r} is corrupt or truncated ({_brief(exc)}).") from exc
            if len(blob) != info.file_size:
                raise IntegrityError(f"{origin}: entry {name!r} is not the size its header declares.")
            total += len(blob)
            if total > limits.max_total_bytes:
                raise IntegrityError(f"{origin}: more than {limits.max_total_bytes} bytes in all, over the limit.")
            out[name] = blob
    return out


def _read_dir(root: Path, limits: Limits) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for d in dirnames:
            if (base / d).is_symlink():
                rel = (base / d).relative_to(root).as_posix()
                raise IntegrityError(f"{root}: {rel!r} is a symbolic link; bundles may not hold links.")
        for f in filenames:
            p = base / f
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                raise IntegrityError(f"{root}: {rel!r} is a symbolic link; bundles may not hold links.")
            if not p.is_file():
                raise IntegrityError(f"{root}: {rel!r} is not a regular file.")
            if f.startswith(".") and rel != f:
                continue
            if f.startswith("."):
                continue
            size = p.stat().st_size
            if size > limits.max_entry_bytes:
                raise IntegrityError(f"{root}: {rel!r} has {size} bytes, over the limit.")
            total += size
            if total > limits.max_total_bytes:
                raise IntegrityError(f"{root}: more than {limits.max_total_bytes} bytes in all, over the limit.")
            if len(out) >= limits.max_entries:
                raise IntegrityError(f"{root}: more than {limits.max_entries} files.")
            out[check_member_name(rel, str(root))] = p.read_bytes()
    return out


def _brief(exc: BaseException, limit: int = 160) -> str:
    """zipfile puts raw header bytes into some messages; keep errors readable."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
