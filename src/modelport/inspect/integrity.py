"""File-by-file integrity of a bundle on disk, for telling a person exactly which file is wrong.

Loading a bundle (:class:`modelport.Bundle`) stops at the first problem it finds. When that
happens, :func:`file_report` goes through every file the manifest lists (and every file it does
not) and says for each one whether it is present, the right size and the right sha256. It reads
the archive with the same safety checks as loading, and never parses or executes model data.
"""

from __future__ import annotations

import json
import os
from typing import Any

from modelport.bundle import archive
from modelport.bundle.manifest import sha256
from modelport.errors import BundleError

__all__ = ["file_report"]


def file_report(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One entry per file: ``path``, ``status`` (ok / missing / size / digest / unlisted) and sizes.

    Raises the loader's own BundleError when the archive cannot be read at all (unsafe entry
    names, links, zip bombs, truncation) or the manifest is not a JSON object with a files table:
    then there is no table to report and that error already names the entry and the reason.
    """
    files = archive.read(path, check_table=False)
    raw = files.get(archive.MANIFEST)
    if raw is None:
        raise BundleError(f"{path}: no manifest.json; this is not a modelport bundle.")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and int digit limits, are ValueErrors
        raise BundleError(f"{path}: manifest.json is not valid JSON ({exc}).") from exc
    except RecursionError as exc:
        raise BundleError(f"{path}: manifest.json nests too deeply to be read (not a manifest modelport writes).") from exc
    table = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(table, dict):
        raise BundleError(f"{path}: manifest.json has no 'files' table to check the files against.")
    out: list[dict[str, Any]] = []
    for name in sorted(table):
        entry = table[name] if isinstance(table[name], dict) else {}
        want_sha, want_size = entry.get("sha256"), entry.get("size")
        data = files.get(name)
        row: dict[str, Any] = {
            "path": name,
            "expected_size": want_size,
            "size": None if data is None else len(data),
            "expected_sha256": want_sha,
            "sha256": None if data is None else sha256(data),
        }
        if data is None:
            row["status"] = "missing"
            row["reason"] = "listed in the manifest but not in the bundle"
        elif len(data) != want_size:
            row["status"] = "size"
            row["reason"] = f"{len(data)} bytes, the manifest records {want_size} (truncated or modified)"
        elif row["sha256"] != want_sha:
            row["status"] = "digest"
            row["reason"] = "content does not match its sha256 digest (modified)"
        else:
            row["status"] = "ok"
            row["reason"] = ""
        out.append(row)
    for name in sorted(set(files) - set(table) - {archive.MANIFEST, "manifest.sig"}):
        out.append({
            "path": name, "status": "unlisted", "reason": "not listed in the manifest",
            "expected_size": None, "size": len(files[name]), "expected_sha256": None, "sha256": sha256(files[name]),
        })
    return out
