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
import re
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
    """Parse and validate ``manifest.json`` (strict JSON: no NaN or Infinity, no number that overflows)."""
    try:
        manifest = json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and int digit limits, are ValueErrors
        raise BundleError(f"{origin}: manifest.json is not valid JSON ({_brief(exc)}).") from exc
    except RecursionError as exc:
        raise BundleError(f"{origin}: manifest.json nests too deeply to be read (not a manifest modelport writes).") from exc
    validate(manifest, origin=origin)
    return manifest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} does not fit a float")
    return value


def files_table(files: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    return {name: {"sha256": sha256(data), "size": len(data)} for name, data in sorted(files.items())}


def identity(manifest: Mapping[str, Any]) -> str:
    core = {k: manifest.get(k) for k in IDENTITY_FIELDS}
    return "sha256:" + sha256(canonical_json(core))


def validate(manifest: Any, *, origin: str) -> None:
    """Check the schema: required fields, and the type of every field modelport reads."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{origin}: manifest.json must hold a JSON object.")
    fmt = manifest.get("format")
    if not isinstance(fmt, str) or "/" not in fmt:
        raise BundleError(f"{origin}: manifest.json has no valid 'format' (expected {FORMAT!r}).")
    name, _, version = fmt.partition("/")
    if name != FORMAT_NAME or not version.isdigit() or len(version) > 6:
        raise BundleError(f"{origin}: unknown bundle format {fmt!r} (expected {FORMAT!r}).")
    if int(version) > FORMAT_VERSION:
        raise FormatVersionError(
            f"{origin}: the bundle has format {fmt!r}, newer than this modelport reads ({FORMAT!r}).",
            hint="upgrade modelport: pip install -U modelport",
        )
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise BundleError(f"{origin}: manifest.json lacks required field(s): {', '.join(missing)}.")
    task = manifest["task"]
    if not isinstance(task, str) or task not in TASKS:
        raise BundleError(f"{origin}: manifest.json has unknown task {task!r}; expected one of {TASKS}.")
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{origin}: manifest.json has an empty or invalid 'files' table.")
    for path, entry in files.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and _SHA256.fullmatch(entry["sha256"])
            and _is_int(entry.get("size"))
            and entry["size"] >= 0
        ):
            raise BundleError(f"{origin}: the files table entry for {path!r} is invalid.")
    if "model.onnx" not in files:
        raise BundleError(f"{origin}: the files table does not list model.onnx.")
    _check_fields(manifest, origin)
    try:
        Signature.from_dict(manifest["signature"])
    except BundleError as exc:
        raise BundleError(f"{origin}: {exc.message}") from exc
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise BundleError(f"{origin}: manifest.json has a malformed 'signature' ({type(exc).__name__}: {_brief(exc)}).") from exc
    classes = manifest.get("classes")
    if classes is not None and (
        not isinstance(classes, list)
        or not all(isinstance(c, (str, int, float)) for c in classes)
        or len(set(map(repr, classes))) != len(classes)
    ):
        raise BundleError(f"{origin}: 'classes' must be a list of distinct labels (strings or numbers).")


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an int too large for a float
        return False


def _check_fields(m: Mapping[str, Any], origin: str) -> None:
    """The optional fields modelport reads must have the types it reads them as."""

    def bad(field: str, expected: str) -> BundleError:
        value = repr(m.get(field)) if "." not in field else "a value"
        if len(value) > 80:
            value = value[:79] + "…"
        return BundleError(f"{origin}: manifest.json field {field!r} must be {expected}; got {value} instead.")

    name = m["name"]
    if not isinstance(name, str) or not name:
        raise bad("name", "a non-empty string")
    version = m.get("version")
    if version is not None and not (isinstance(version, str) or (_is_int(version) and abs(version) < 2**63)):
        raise bad("version", "a string, a whole number or null")
    for key in ("description", "created"):
        if m.get(key) is not None and not isinstance(m[key], str):
            raise bad(key, "a string or null")
    if not isinstance(m["source"], dict):
        raise bad("source", "an object")
    metrics = m.get("metrics")
    if metrics is not None:
        if not isinstance(metrics, dict):
            raise bad("metrics", "an object of numbers")
        for k, v in metrics.items():
            if v is not None and not _is_number(v):
                raise bad(f"metrics.{k}", "a finite number or null")
    tags = m.get("tags")
    if tags is not None and (not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())):
        raise bad("tags", "an object of strings")
    lineage = m.get("lineage")
    if lineage is not None and (not isinstance(lineage, dict)
                                or not isinstance(lineage.get("parent"), (str, type(None)))):
        raise bad("lineage", "an object whose 'parent' is a digest string or null")
    onnx_meta = m.get("onnx")
    if onnx_meta is not None:
        if not isinstance(onnx_meta, dict):
            raise bad("onnx", "an object")
        if onnx_meta.get("ir_version") is not None and not _is_int(onnx_meta["ir_version"]):
            raise bad("onnx.ir_version", "a whole number")
        opsets = onnx_meta.get("opsets")
        if opsets is not None and (not isinstance(opsets, dict) or not all(_is_int(v) for v in opsets.values())):
            raise bad("onnx.opsets", "an object of whole numbers")
        if onnx_meta.get("producer") is not None and not isinstance(onnx_meta["producer"], str):
            raise bad("onnx.producer", "a string")
    parity = m.get("parity")
    if parity is not None:
        if not isinstance(parity, dict):
            raise bad("parity", "an object")
        for key in ("max_abs_error", "max_rel_error", "label_agreement"):
            if parity.get(key) is not None and not _is_number(parity[key]):
                raise bad(f"parity.{key}", "a finite number or null")
        if parity.get("samples") is not None and not _is_int(parity["samples"]):
            raise bad("parity.samples", "a whole number")
        tolerance = parity.get("tolerance")
        if tolerance is not None and (not isinstance(tolerance, dict)
                                      or not all(_is_number(v) for v in tolerance.values())):
            raise bad("parity.tolerance", "an object of finite numbers")
        for key, kind in (("outputs", dict), ("notes", list), ("worst_rows", list)):
            if parity.get(key) is not None and not isinstance(parity[key], kind):
                raise bad(f"parity.{key}", f"{'an object' if kind is dict else 'a list'}")
        outputs = parity.get("outputs") or {}
        if not all(isinstance(v, dict) for v in outputs.values()):
            raise bad("parity.outputs", "an object of objects")
    reference = m.get("reference")
    if reference is not None:
        if not isinstance(reference, dict):
            raise bad("reference", "an object")
        for key in ("rows", "stored_rows", "probes"):
            if reference.get(key) is not None and not _is_int(reference[key]):
                raise bad(f"reference.{key}", "a whole number")
        columns = reference.get("columns")
        if columns is not None and (not isinstance(columns, dict) or not all(isinstance(v, dict) for v in columns.values())):
            raise bad("reference.columns", "an object of objects")
        for name, stats in (columns or {}).items():
            _check_statistics(stats, f"reference.columns.{name}", bad)


def _check_statistics(stats: Mapping[str, Any], where: str, bad: Any) -> None:
    """One column's training statistics (``bundle.reference.statistics``), as inspect and drift read them."""
    kind = stats.get("kind")
    if kind not in (None, "numeric", "categorical"):
        raise bad(f"{where}.kind", "'numeric' or 'categorical'")
    for key in ("count", "missing", "distinct"):
        if stats.get(key) is not None and not _is_int(stats[key]):
            raise bad(f"{where}.{key}", "a whole number")
    if kind == "categorical":
        if not _is_int(stats.get("distinct")):
            raise bad(f"{where}.distinct", "a whole number")
        freq = stats.get("frequencies")
        if freq is not None and (not isinstance(freq, dict) or not all(_is_int(v) for v in freq.values())):
            raise bad(f"{where}.frequencies", "an object of whole numbers")
    for key in ("mean", "std", "min", "max"):
        if stats.get(key) is not None and not _is_number(stats[key]):
            raise bad(f"{where}.{key}", "a finite number or null")
    quantiles = stats.get("quantiles")
    if quantiles is not None and (not isinstance(quantiles, list) or not all(_is_number(q) for q in quantiles)):
        raise bad(f"{where}.quantiles", "a list of finite numbers")
    hist = stats.get("histogram")
    if hist is not None and not (isinstance(hist, dict) and isinstance(hist.get("edges"), list)
                                 and isinstance(hist.get("counts"), list)
                                 and all(_is_number(e) for e in hist["edges"])
                                 and all(_is_int(c) for c in hist["counts"])):
        raise bad(f"{where}.histogram", "an object of 'edges' (numbers) and 'counts' (whole numbers)")


def check_sizes(manifest: Mapping[str, Any], sizes: Mapping[str, int], *, origin: str) -> None:
    """Every listed file present with the size the table records; nothing unlisted besides the manifest.

    Needs only sizes, so an archive is checked against its manifest before anything is inflated.
    """
    table = manifest["files"]
    if signing.SIGNATURE_FILE in table:
        raise IntegrityError(
            f"{origin}: the files table lists {signing.SIGNATURE_FILE}, the signature over the manifest; it cannot "
            "be one of the files the manifest lists."
        )
    for path, entry in sorted(table.items()):
        if path not in sizes:
            raise IntegrityError(f"{origin}: {path} is listed in the manifest but missing from the bundle.")
        if sizes[path] != entry["size"]:
            raise IntegrityError(
                f"{origin}: {path} has {sizes[path]} bytes but the manifest records {entry['size']}; "
                "the bundle is truncated or was modified."
            )
    extra = sorted(set(sizes) - set(table) - {"manifest.json", signing.SIGNATURE_FILE})
    if extra:
        raise IntegrityError(f"{origin}: file(s) not listed in the manifest: {', '.join(extra)}.")


def check_files(manifest: Mapping[str, Any], files: Mapping[str, bytes], *, origin: str) -> None:
    """Every listed file present with its digest and size; nothing unlisted besides the manifest and
    a signature, which is parsed and bounded here rather than carried along unread."""
    check_sizes(manifest, {name: len(data) for name, data in files.items()}, origin=origin)
    for path, entry in sorted(manifest["files"].items()):
        if sha256(files[path]) != entry["sha256"]:
            raise IntegrityError(f"{origin}: {path} does not match its sha256 digest; the bundle was modified.")
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


def _brief(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
