"""Reading and writing a bundle's files: a directory, or a deterministic zip (``.mpk``).

Writing is deterministic (sorted entries, fixed timestamps and permissions) and atomic
(a temporary sibling, then a rename), so the same files always give the same bytes and a
crash never leaves half a bundle.

Reading trusts nothing, and inflates nothing it has not accounted for first:

1. the archive's structure: the central directory's size and entry count (from the end record,
   before ``zipfile`` builds anything), entry names, links, encryption, compression method, each
   entry's declared size and compression ratio, the whole archive's ratio, overlapping entries;
2. the manifest, read first and bounded (``max_manifest_bytes``);
3. the manifest's files table against the entries (every listed file present with the size the
   table records, nothing unlisted) -- so nothing is inflated that the manifest does not declare;
4. only then each file, streamed with a cap of its declared size (headers can lie).

A directory bundle is read through directory file descriptors: every path component is opened
with ``O_NOFOLLOW`` relative to its already-opened parent, every file with ``O_NONBLOCK`` (a FIFO
cannot block the reader) and checked with ``fstat`` on the opened descriptor to be the regular file
of the size that was listed, so a link or special file swapped in between listing and reading is
refused rather than followed.
"""

from __future__ import annotations

import io
import itertools
import os
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from modelport._fs import atomic_file
from modelport.errors import BundleError, IntegrityError

MANIFEST = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: entries (and, in all, archives) smaller than this are exempt from the compression-ratio limit
RATIO_FLOOR = 1024**2
#: a central-directory record may take this many bytes on average (names, extra fields)
_CD_BYTES_PER_ENTRY = 1024
_MAX_NAME_BYTES = 1024


@dataclass(frozen=True)
class Limits:
    """What a bundle may hold; generous for real models, fatal for zip bombs.

    Sizes are *declared* sizes, checked before anything is inflated; reads stop at the declared size.
    ``max_ratio`` caps uncompressed / compressed bytes for every entry above 1 MiB and for the
    archive as a whole (plus 1 MiB), in the bundle and in every archive nested in it (``.npz``).
    ``max_parse_ratio`` caps what parsing ``model.onnx`` may allocate, as a multiple of its size, and
    ``max_nodes`` its nodes once local functions are inlined (what an ONNX Runtime session costs).
    The figures these limits give are in docs/security.md.
    """

    max_entries: int = 1_000
    max_entry_bytes: int = 4 * 1024**3
    max_total_bytes: int = 8 * 1024**3
    max_ratio: float = 200.0
    max_manifest_bytes: int = 16 * 1024**2
    max_parse_ratio: float = 32.0
    max_nodes: int = 250_000


DEFAULT_LIMITS = Limits()


def check_member_name(name: str, origin: str, *, allow_control: bool = False) -> str:
    """Refuse absolute paths, ``..``, backslashes and drive letters in an entry name, and control
    characters unless ``allow_control`` (array names inside an .npz are column names, not paths)."""
    if not name or "\\" in name or "\x00" in name or len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        raise IntegrityError(f"{origin}: entry {name[:200]!r} has an invalid name.")
    p = PurePosixPath(name)
    if p.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise IntegrityError(f"{origin}: entry {name!r} is an absolute path; bundles hold relative paths only.")
    if any(part in ("..", ".", "") for part in name.split("/")):
        raise IntegrityError(f"{origin}: entry {name!r} leaves the bundle (contains '..' or empty parts).")
    if not allow_control and any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        raise IntegrityError(f"{origin}: entry {name!r} has control characters in its name.")
    return name


# ------------------------------------------------------------------------------------------ writing
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


# ------------------------------------------------------------------------------------------ reading
class Source(Protocol):
    """An opened archive: declared sizes of its files, and bounded reads of them."""

    origin: str
    sizes: dict[str, int]
    stored_bytes: int  # what the bundle takes where it is stored (the .mpk file, or its files)

    def read(self, name: str) -> bytes: ...

    def close(self) -> None: ...


def read(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS, check_table: bool = True) -> dict[str, bytes]:
    """Read every file of a bundle directory or ``.mpk`` zip, checking names, links, sizes and ratios.

    With ``check_table`` (the default) the manifest is read first and nothing is inflated unless the
    manifest's files table lists it with the size its entry declares. ``check_table=False`` reads
    every entry within the limits (for reporting on a damaged bundle file by file).
    """
    with open_source(path, limits=limits) as src:
        return read_source(src, limits=limits, check_table=check_table)


def read_mpk_bytes(data: bytes, *, origin: str = "<bytes>", limits: Limits = DEFAULT_LIMITS,
                   check_table: bool = True) -> dict[str, bytes]:
    src = ZipSource(io.BytesIO(data), len(data), origin=origin, limits=limits)
    try:
        return read_source(src, limits=limits, check_table=check_table)
    finally:
        src.close()


def read_source(src: Source, *, limits: Limits, check_table: bool = True) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if check_table:
        from modelport.bundle import manifest as mf

        if MANIFEST not in src.sizes:
            raise BundleError(f"{src.origin}: no manifest.json; this is not a modelport bundle.")
        out[MANIFEST] = src.read(MANIFEST)
        manifest = mf.loads(out[MANIFEST], origin=src.origin)
        mf.check_sizes(manifest, src.sizes, origin=src.origin)
    for name in sorted(src.sizes):
        if name not in out:
            out[name] = src.read(name)
    return out


@contextmanager
def open_source(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> Iterator[Source]:
    """Open a bundle directory or ``.mpk`` file for bounded reading (see the module docstring)."""
    src_path = Path(path)
    try:
        fd = os.open(src_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BundleError(f"{src_path}: no such bundle file or directory.") from None
    except OSError as exc:
        if os.path.islink(src_path):
            raise IntegrityError(f"{src_path}: the bundle path is a symbolic link; pass the real path.") from None
        raise BundleError(f"{src_path}: cannot open the bundle ({exc.strerror or exc}).") from exc
    source: Source
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    # each source owns the descriptor from here on, and closes it if it refuses the bundle
    if stat.S_ISDIR(st.st_mode):
        source = DirSource(fd, origin=str(src_path), limits=limits)
    elif stat.S_ISREG(st.st_mode):
        source = ZipSource(os.fdopen(fd, "rb"), st.st_size, origin=str(src_path), limits=limits)
    else:
        os.close(fd)
        raise BundleError(
            f"{src_path}: not a regular file or directory (a FIFO, socket or device); not a modelport bundle."
        )
    try:
        yield source
    finally:
        source.close()


class ZipSource:
    """An ``.mpk`` archive whose structure has been checked; entries are inflated on ``read``."""

    def __init__(self, fh: BinaryIO, size: int, *, origin: str, limits: Limits, nested: bool = False) -> None:
        self.origin = origin
        self._fh = fh
        self._zf: zipfile.ZipFile | None = None
        try:
            self._infos = self._check_structure(size, limits, nested=nested)
        except BaseException:
            self.close()
            raise
        self.sizes = {name: info.file_size for name, info in self._infos.items()}
        self.stored_bytes = size

    def close(self) -> None:
        if self._zf is not None:
            self._zf.close()
        self._fh.close()

    def _check_structure(self, size: int, limits: Limits, *, nested: bool) -> dict[str, zipfile.ZipInfo]:
        origin = self.origin
        entries, cd_size = _central_directory(self._fh, size, origin)
        if entries > limits.max_entries:
            raise IntegrityError(f"{origin}: {entries} entries, more than the limit of {limits.max_entries}.")
        if cd_size > _CD_BYTES_PER_ENTRY * max(entries, 1) + 65_536:
            raise IntegrityError(f"{origin}: a central directory of {cd_size} bytes for {entries} entries; "
                                 "the archive is corrupt or built to exhaust memory.")
        try:
            self._fh.seek(0)
            self._zf = zipfile.ZipFile(self._fh)
            infos = self._zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, NotImplementedError,
                UnicodeDecodeError) as exc:
            raise IntegrityError(f"{origin}: corrupt or truncated archive ({_brief(exc)}).") from exc
        if len(infos) > limits.max_entries:
            raise IntegrityError(f"{origin}: {len(infos)} entries, more than the limit of {limits.max_entries}.")
        _check_no_overlap(infos, origin)
        files: dict[str, zipfile.ZipInfo] = {}
        names: set[str] = set()
        total = 0
        for info in infos:
            name = info.filename
            if info.is_dir():
                check_member_name(name.rstrip("/"), origin, allow_control=nested)
                continue
            check_member_name(name, origin, allow_control=nested)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise IntegrityError(f"{origin}: entry {name!r} is a symbolic link; bundles may not hold links.")
            if name in names:
                raise IntegrityError(f"{origin}: entry {name!r} appears twice.")
            names.add(name)
            if info.flag_bits & 0x1:
                raise IntegrityError(f"{origin}: entry {name!r} is encrypted; bundles are never encrypted.")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise IntegrityError(
                    f"{origin}: entry {name!r} uses compression method {info.compress_type}; bundles use deflate "
                    "(or no compression) only."
                )
            if info.file_size > limits.max_entry_bytes:
                raise IntegrityError(f"{origin}: entry {name!r} declares {info.file_size} bytes, over the limit.")
            if name in (MANIFEST, SIGNATURE_FILE) and not nested and info.file_size > limits.max_manifest_bytes:
                raise IntegrityError(f"{origin}: {name} declares {info.file_size} bytes, over the limit of "
                                     f"{limits.max_manifest_bytes}.")
            if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
                raise IntegrityError(f"{origin}: entry {name!r} is stored uncompressed but declares "
                                     f"{info.file_size} bytes in {info.compress_size}.")
            if info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise IntegrityError(
                    f"{origin}: entry {name!r} expands {info.file_size / max(info.compress_size, 1):.0f}x "
                    "(a zip bomb?); refusing to unpack it."
                )
            total += info.file_size
            if total > limits.max_total_bytes:
                raise IntegrityError(f"{origin}: more than {limits.max_total_bytes} bytes in all, over the limit.")
            files[name] = info
        if total > limits.max_ratio * size + RATIO_FLOOR:
            raise IntegrityError(
                f"{origin}: the archive's entries expand {total / max(size, 1):.0f}x in all (a zip bomb?); "
                "refusing to unpack them."
            )
        return files

    def open(self, name: str) -> BinaryIO:
        """A stream of one entry (the caller bounds what it reads; ``read`` checks the size itself)."""
        assert self._zf is not None
        try:
            return self._zf.open(self._infos[name])  # type: ignore[return-value]
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError,
                RuntimeError, struct.error) as exc:
            raise IntegrityError(f"{self.origin}: entry {name!r} is corrupt or truncated ({_brief(exc)}).") from exc

    def read(self, name: str) -> bytes:
        info = self._infos[name]
        assert self._zf is not None
        try:
            with self._zf.open(info) as fh:
                # read at most one byte past the declared size: headers can lie
                blob = fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError,
                RuntimeError, struct.error) as exc:
            raise IntegrityError(f"{self.origin}: entry {name!r} is corrupt or truncated ({_brief(exc)}).") from exc
        if len(blob) != info.file_size:
            raise IntegrityError(f"{self.origin}: entry {name!r} is not the size its header declares.")
        return blob


def _central_directory(fh: BinaryIO, size: int, origin: str) -> tuple[int, int]:
    """(entry count, central-directory bytes) from the end-of-central-directory record (zip64 too)."""
    tail_len = min(size, 22 + 65_535)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    # where zipfile looks: a record without a comment at the very end first, else the last signature
    if len(tail) >= 22 and tail[-22:-18] == b"PK\x05\x06" and tail[-2:] == b"\x00\x00":
        pos = len(tail) - 22
    else:
        pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        fh.seek(0)
        head = fh.read(4)
        if head == b"PK\x03\x04":  # starts like a zip but has no central directory: cut short
            raise IntegrityError(
                f"{origin}: corrupt or truncated archive (a zip without its end-of-archive record).",
                hint="copy or download the bundle again",
            )
        raise BundleError(
            f"{origin}: not a modelport bundle (neither a directory nor a zip archive).",
            hint="pass a bundle directory or an .mpk file written by modelport",
        )
    _, _, _, _, entries, cd_size, _, _ = struct.unpack("<4s4H2LH", tail[pos:pos + 22])
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc = size - tail_len + pos - 20
        if loc < 0:
            raise IntegrityError(f"{origin}: corrupt or truncated archive (a zip64 archive without its locator).")
        fh.seek(loc)
        locator = fh.read(20)
        if locator[:4] != b"PK\x06\x07":
            raise IntegrityError(f"{origin}: corrupt or truncated archive (a zip64 archive without its locator).")
        (offset,) = struct.unpack("<Q", locator[8:16])
        if offset > size - 56:
            raise IntegrityError(f"{origin}: corrupt or truncated archive (its zip64 record is out of range).")
        fh.seek(offset)
        record = fh.read(56)
        if record[:4] != b"PK\x06\x06":
            raise IntegrityError(f"{origin}: corrupt or truncated archive (no zip64 end-of-archive record).")
        entries, cd_size = struct.unpack("<QQ", record[32:48])
    return int(entries), int(cd_size)


def _check_no_overlap(infos: list[zipfile.ZipInfo], origin: str) -> None:
    """Entries that share compressed bytes are how the smallest zip bombs are built; real zips never do."""
    spans = sorted((i.header_offset, i.header_offset + 30 + _name_bytes(i) + i.compress_size, i.filename)
                   for i in infos)
    for (_, end, name), (start, _, nxt) in itertools.pairwise(spans):
        if end > start:
            raise IntegrityError(f"{origin}: entries {name!r} and {nxt!r} overlap (a zip bomb?); refusing to unpack them.")


def _name_bytes(info: zipfile.ZipInfo) -> int:
    return len(info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace"))


class Budget:
    """What loading one bundle may materialize in all, nested archives (``.npz``) included.

    At most ``max_total_bytes``, and at most ``max_ratio`` times the bytes the bundle was stored in
    (its ``.mpk`` file, or its files) plus 1 MiB: a bomb nested in a bundle cannot multiply the
    outer archive's ratio by its own.
    """

    def __init__(self, limits: Limits, stored_bytes: int) -> None:
        self.limits = limits
        self.stored_bytes = stored_bytes
        self.limit = int(min(limits.max_total_bytes, limits.max_ratio * stored_bytes + RATIO_FLOOR))
        self.used = 0

    def charge(self, n: int, *, what: str, origin: str) -> None:
        if self.used + n > self.limit:
            raise IntegrityError(
                f"{origin}: {what} would bring what this bundle expands to past {self.limit} bytes "
                f"({self.limits.max_ratio:g}x the {self.stored_bytes} bytes it is stored in, at most "
                f"{self.limits.max_total_bytes}); a zip bomb? Refusing to unpack it."
            )
        self.used += n


class DirSource:
    """A bundle directory listed and read through directory descriptors (no link is ever followed)."""

    _FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

    def __init__(self, fd: int, *, origin: str, limits: Limits) -> None:
        self.origin = origin
        self._root = fd
        self._limits = limits
        self.sizes: dict[str, int] = {}
        try:
            self._list()
            self.stored_bytes = sum(self.sizes.values())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._root >= 0:
            os.close(self._root)
            self._root = -1

    def _list(self) -> None:
        origin, limits = self.origin, self._limits
        total = 0
        seen = 0
        pending: list[str] = [""]
        while pending:
            rel_dir = pending.pop()
            dfd = self._open_dir(rel_dir)
            listing: list[tuple[str, os.stat_result]] = []
            try:
                for name in sorted(os.listdir(dfd)):
                    if name.startswith("."):
                        continue  # hidden files and folders (.DS_Store, .nfs*, .git) are never read
                    seen += 1
                    if seen > limits.max_entries:
                        raise IntegrityError(f"{origin}: more than {limits.max_entries} files.")
                    listing.append((name, os.stat(name, dir_fd=dfd, follow_symlinks=False)))
            except OSError as exc:
                raise BundleError(f"{origin}: cannot list {rel_dir or '.'!r} ({exc.strerror or exc}).") from exc
            finally:
                os.close(dfd)
            for name, st in listing:
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if stat.S_ISLNK(st.st_mode):
                    raise IntegrityError(f"{origin}: {rel!r} is a symbolic link; bundles may not hold links.")
                if stat.S_ISDIR(st.st_mode):
                    check_member_name(rel, origin)
                    pending.append(rel)
                    continue
                if not stat.S_ISREG(st.st_mode):
                    raise IntegrityError(f"{origin}: {rel!r} is not a regular file.")
                check_member_name(rel, origin)
                if st.st_size > limits.max_entry_bytes:
                    raise IntegrityError(f"{origin}: {rel!r} has {st.st_size} bytes, over the limit.")
                if rel in (MANIFEST, SIGNATURE_FILE) and st.st_size > limits.max_manifest_bytes:
                    raise IntegrityError(f"{origin}: {rel} has {st.st_size} bytes, over the limit of "
                                         f"{limits.max_manifest_bytes}.")
                total += st.st_size
                if total > limits.max_total_bytes:
                    raise IntegrityError(f"{origin}: more than {limits.max_total_bytes} bytes in all, over the limit.")
                self.sizes[rel] = st.st_size

    def _open_dir(self, rel: str) -> int:
        fd = os.dup(self._root)
        for part in rel.split("/") if rel else ():
            try:
                nxt = os.open(part, self._FLAGS | os.O_DIRECTORY, dir_fd=fd)
            except OSError as exc:
                raise IntegrityError(f"{self.origin}: {rel!r} changed while being read, or is a link "
                                     f"({exc.strerror or exc}).") from exc
            finally:
                os.close(fd)
            fd = nxt
        return fd

    def read(self, name: str) -> bytes:
        expected = self.sizes[name]
        parent, _, base = name.rpartition("/")
        dfd = self._open_dir(parent)
        try:
            fd = os.open(base, self._FLAGS, dir_fd=dfd)
        except OSError as exc:
            kind = "is now a symbolic link" if exc.errno == 40 else f"cannot be opened ({exc.strerror or exc})"
            raise IntegrityError(f"{self.origin}: {name!r} {kind}; bundles may not hold links.") from exc
        finally:
            os.close(dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise IntegrityError(f"{self.origin}: {name!r} is not a regular file.")
            if st.st_size != expected:
                raise IntegrityError(f"{self.origin}: {name!r} changed while the bundle was being read.")
            chunks = []
            left = expected + 1  # one byte more than listed: a file that grew is refused
            while left > 0:
                chunk = os.read(fd, min(left, 16 * 1024**2))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as exc:
            raise IntegrityError(f"{self.origin}: {name!r} cannot be read ({exc.strerror or exc}).") from exc
        finally:
            os.close(fd)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if len(data) != expected:
            raise IntegrityError(f"{self.origin}: {name!r} changed while the bundle was being read.")
        return data


def _brief(exc: BaseException, limit: int = 160) -> str:
    """zipfile puts raw header bytes into some messages; keep errors readable."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
