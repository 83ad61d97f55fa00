"""Pickle-free, deterministic ``.npz`` archives of named arrays.

numpy's own ``savez`` stamps the current time into the zip; this writer uses a fixed one so the
same arrays always give the same bytes. Reading always uses ``allow_pickle=False``: object
arrays are refused both ways.
"""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Mapping

import numpy as np

from modelport.errors import IntegrityError

_EPOCH = (1980, 1, 1, 0, 0, 0)


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


def loads(data: bytes, *, origin: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:  # numpy raises ValueError, OSError, BadZipFile ... for bad data
        raise IntegrityError(f"{origin}: not a valid pickle-free .npz archive ({exc}).") from exc
