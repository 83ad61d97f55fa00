"""The manifest (``manifest.json``) of format ``modelport/1``: schema checks, digests, identity.

A bundle's identity (its ``digest``) is the sha256 of the canonical JSON of the parts of the
manifest that decide behaviour: the format, the ``files`` table (path -> sha256, size), the
signature, the task and the class labels. Descriptive fields (name, description, metrics, tags,
creation time) can change without changing what the bundle computes, so they are not part of it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from modelport.bundle import signing
from modelport.bundle.signature import Signature
from modelport.errors import BundleError, FormatVersionError, IntegrityError

FORMAT = "modelport/1"
FORMAT_NAME, _, _FORMAT_VERSION = FORMAT.partition("/")
FORMAT_VERSION = int(_FORMAT_VERSION)
TASKS = ("classification", "regression", "clustering", "transform", "anomaly", "tensor")
REQUIRED = ("format", "name", "task", "signature", "files", "source")
#: the manifest fields the identity digest covers; everything else is descriptive
IDENTITY_FIELDS = ("format", "files", "signature", "task", "classes")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def dumps(manifest: Mapping[str, Any]) -> bytes:
    """The manifest as it is written: sorted keys, two-space indent, no NaN, trailing newline."""
    return (json.dumps(_clean(manifest), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def loads(data: bytes, *, origin: str) -> dict[str, Any]:
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{origin}: manifest.json is not valid JSON ({exc}).") from exc
    validate(manifest, origin=origin)
    return manifest


def files_table(files: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    return {name: {"sha256": sha256(data), "size": len(data)} for name, data in sorted(files.items())}


def identity(manifest: Mapping[str, Any]) -> str:
    core = {k: manifest.get(k) for k in IDENTITY_FIELDS}
    return "sha256:" + sha256(canonical_json(core))


def validate(manifest: Any, *, origin: str) -> None:
    if not isinstance(manifest, dict):
        raise BundleError(f"{origin}: manifest.json must hold a JSON object.")
    fmt = manifest.get("format")
    if not isinstance(fmt, str) or "/" not in fmt:
        raise BundleError(f"{origin}: manifest.json has no valid 'format' (expected {FORMAT!r}).")
    name, _, version = fmt.partition("/")
    if name != FORMAT_NAME or not version.isdigit():
        raise BundleError(f"{origin}: unknown bundle format {fmt!r} (expected {FORMAT!r}).")
    if int(version) > FORMAT_VERSION:
        raise FormatVersionError(
            f"{origin}: the bundle has format {fmt!r}, newer than this modelport reads ({FORMAT!r}).",
            hint="upgrade modelport: pip install -U modelport",
        )
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise BundleError(f"{origin}: manifest.json lacks required field(s): {', '.join(missing)}.")
    if manifest["task"] not in TASKS:
        raise BundleError(f"{origin}: manifest.json has unknown task {manifest['task']!r}; expected one of {TASKS}.")
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{origin}: manifest.json has an empty or invalid 'files' table.")
    for path, entry in files.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
            and isinstance(entry.get("size"), int)
        ):
            raise BundleError(f"{origin}: the files table entry for {path!r} is invalid.")
    if "model.onnx" not in files:
        raise BundleError(f"{origin}: the files table does not list model.onnx.")
    Signature.from_dict(manifest["signature"])
    classes = manifest.get("classes")
    if classes is not None and (not isinstance(classes, list) or len(set(map(repr, classes))) != len(classes)):
        raise BundleError(f"{origin}: 'classes' must be a list of distinct labels.")


def check_files(manifest: Mapping[str, Any], files: Mapping[str, bytes], *, origin: str) -> None:
    """Every listed file present with its digest and size; nothing unlisted besides the manifest and
    a signature, which is parsed and bounded here rather than carried along unread."""
    table = manifest["files"]
    if signing.SIGNATURE_FILE in table:
        raise IntegrityError(
            f"{origin}: the files table lists {signing.SIGNATURE_FILE}, the signature over the manifest; it cannot "
            "be one of the files the manifest lists."
        )
    for path, entry in sorted(table.items()):
        if path not in files:
            raise IntegrityError(f"{origin}: {path} is listed in the manifest but missing from the bundle.")
        data = files[path]
        if len(data) != entry["size"]:
            raise IntegrityError(
                f"{origin}: {path} has {len(data)} bytes but the manifest records {entry['size']}; "
                "the bundle is truncated or was modified."
            )
        if sha256(data) != entry["sha256"]:
            raise IntegrityError(f"{origin}: {path} does not match its sha256 digest; the bundle was modified.")
    extra = sorted(set(files) - set(table) - {"manifest.json", signing.SIGNATURE_FILE})
    if extra:
        raise IntegrityError(f"{origin}: file(s) not listed in the manifest: {', '.join(extra)}.")
    if signing.SIGNATURE_FILE in files:
        # who signed is checked only on request (modelport.signing); its form is checked on every load
        signing.parse(files[signing.SIGNATURE_FILE], origin=origin)


def _clean(obj: Any) -> Any:
    """JSON cannot carry NaN/inf: write them as null so manifests stay strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _clean(obj.item())
    return obj
