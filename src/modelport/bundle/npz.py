"""Pickle-free, deterministic ``.npz`` archives of named arrays.

numpy's own ``savez`` stamps the current time into the zip; this writer uses a fixed one so the
same arrays always give the same bytes.

Reading never unpickles and never allocates what it has not checked: the archive's structure goes
through the same checks as a bundle's (entry count, names, encryption, method, declared sizes,
compression ratios, overlapping entries), and for every member the ``.npy`` header is read first
(dtype: plain numbers, booleans or fixed-width strings only; shape) and ``shape x itemsize`` must be
exactly the bytes the member declares after its header, charged to the bundle's load budget,
before the data is read (``numpy.load`` allocates the header's shape first, so a 100-byte header
could ask for terabytes).
"""

from __future__ import annotations

import io
import math
import stat
import zipfile
from collections.abc import Mapping

import numpy as np

from modelport.bundle.archive import DEFAULT_LIMITS, Budget, Limits, ZipSource
from modelport.errors import BundleError, IntegrityError

_EPOCH = (1980, 1, 1, 0, 0, 0)
#: numbers, booleans and fixed-width strings: what reference data holds (no objects, records or times)
_KINDS = frozenset("biufcUS")
_MAX_HEADER = 10_000


def dumps(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(arrays):
            arr = np.ascontiguousarray(arrays[name])
            if arr.dtype.hasobject:
                raise TypeError(f"array {name!r} has dtype object; convert strings to a fixed-width 'U' dtype")
            member = io.BytesIO()
            np.lib.format.write_array(member, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def loads(data: bytes, *, origin: str, budget: Budget | None = None,
          limits: Limits = DEFAULT_LIMITS) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, read within ``budget`` (default: ``limits`` on ``data`` alone)."""
    budget = budget if budget is not None else Budget(limits, len(data))
    try:
        src = ZipSource(io.BytesIO(data), len(data), origin=origin, limits=budget.limits, nested=True)
    except IntegrityError as exc:
        raise _invalid(origin, exc.message) from exc
    except BundleError as exc:  # not a zip at all
        raise _invalid(origin, "not a zip archive") from exc
    try:
        return {name[: -len(".npy")]: _member(src, name, origin, budget) for name in sorted(src.sizes)}
    finally:
        src.close()


def _member(src: ZipSource, name: str, origin: str, budget: Budget) -> np.ndarray:
    if not name.endswith(".npy"):
        raise _invalid(origin, f"member {name!r} is not an .npy array")
    declared = src.sizes[name]
    try:
        with src.open(name) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=_MAX_HEADER)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=_MAX_HEADER)
            else:
                raise ValueError(f"unknown .npy format version {version}")
            header = fh.tell()
            _check_dtype(dtype, name)
            if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ValueError(f"member {name!r} has an invalid shape {shape!r}")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes != declared - header:
                raise ValueError(f"member {name!r} declares shape {shape} of {dtype} ({nbytes} bytes) but holds "
                                 f"{declared - header} bytes of data")
            budget.charge(nbytes, what=f"array {name[:-4]!r} ({nbytes} bytes)", origin=origin)
            raw = fh.read(nbytes + 1)
    except IntegrityError:
        raise
    except Exception as exc:  # numpy's header parser (ValueError, SyntaxError ...), zlib, zipfile
        raise _invalid(origin, f"{type(exc).__name__}: {exc}") from exc
    if len(raw) != nbytes:
        raise _invalid(origin, f"member {name!r} is shorter than its header declares")
    arr = np.frombuffer(raw, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype.hasobject:
        raise ValueError(f"member {name!r} holds Python objects, which only pickle can read")
    if dtype.kind not in _KINDS or dtype.names is not None or dtype.subdtype is not None or dtype.itemsize == 0:
        raise ValueError(f"member {name!r} has dtype {dtype.str!r}; reference data holds numbers, booleans "
                         "and fixed-width strings only")


def _invalid(origin: str, reason: str) -> IntegrityError:
    reason = " ".join(reason.split())
    if len(reason) > 300:
        reason = reason[:299] + "…"
    return IntegrityError(f"{origin}: not a valid pickle-free .npz archive ({reason}).")
