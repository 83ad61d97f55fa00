"""Writing an export: everything goes to a temporary sibling of the output directory and is renamed
into place only when the whole artifact is complete, so a failure (a bundle too large for the
platform, a dependency that does not fit its runtime, a build that fails) leaves nothing behind.

Also the deterministic zip of a directory (sorted entries, fixed timestamps, world-readable
permissions, which AWS Lambda requires of every file it runs) and the size checks against a
platform's published limits.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelport._fs import fsync_path, temp_sibling
from modelport.errors import ExportError, InputError

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
MB = 1_000_000
MiB = 1 << 20


@contextmanager
def staging(output: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """A fresh directory to build the artifact in; on success it becomes ``output``.

    ``output`` may not exist, or be an empty directory; a non-empty one is refused unless
    ``overwrite`` (then it is replaced as a whole, after the new artifact is complete).
    """
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise InputError(f"the output {out} is a file; export writes a directory.", hint="choose a directory path with -o")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(
            f"the output directory {out} already exists and is not empty; export writes a whole directory "
            "and does not mix its files with others.",
            hint="choose a new or empty directory, or pass --overwrite (overwrite=True) to replace it",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if out.is_dir():
            if any(out.iterdir()):
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                os.rename(out, old)
            else:
                out.rmdir()
        os.rename(tmp, out)
        fsync_path(out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def tree_size(root: Path) -> int:
    """Bytes of every regular file under ``root`` (what a platform counts as unzipped size)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def zip_directory(root: Path, target: Path, *, level: int = 6) -> int:
    """Zip the files under ``root`` into ``target`` deterministically; returns the zip's size.

    Entries are sorted with fixed timestamps; files are 0644 (0755 when executable here) and
    directories 0755, because Lambda and the other platforms run code as another user than the
    one who zipped it and need global read permission on every file.
    """
    entries: list[tuple[str, Path]] = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for f in files:
            p = Path(dirpath, f)
            if p.is_symlink():
                raise ExportError(f"{p} is a symbolic link; artifacts hold regular files only.")
            entries.append((p.relative_to(root).as_posix(), p))
    entries.sort()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, p in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            mode = 0o755 if os.access(p, os.X_OK) else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            with p.open("rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return target.stat().st_size


@dataclass(frozen=True)
class SizeLimit:
    """One published limit of a platform: what is measured, the bound, and where it is documented."""

    what: str  # "unzipped" or "zipped"
    bytes: int
    text: str  # how the platform states it, e.g. "250 MB unzipped (function code and layers)"
    hard: bool = True  # False: exceeding it only changes how the artifact is uploaded

    def check(self, platform: str, size: int, *, subject: str) -> str | None:
        """Raise when ``size`` exceeds a hard limit; return a note for a soft one (or None)."""
        if size <= self.bytes:
            return None
        message = (
            f"{subject} is {_mb(size)} {self.what}, over {platform}'s limit of {self.text}."
        )
        if self.hard:
            raise ExportError(
                message,
                hint="a bundle this size belongs in a container image: modelport export BUNDLE --target container",
            )
        return message


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


def mb(n: int) -> str:
    """A size as people read it in platform quotas (decimal megabytes)."""
    return _mb(n)
