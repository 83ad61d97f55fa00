"""The signature file of a bundle (``manifest.sig``): its format, its bounds and what it lists.

A signed bundle carries one more file, ``manifest.sig``: a Sigstore bundle (JSON, media type
``application/vnd.dev.sigstore.bundle.v0.3+json``) as OpenSSF model-signing writes it. Its DSSE
envelope holds an in-toto statement that lists the sha256 of every other file of the bundle,
``manifest.json`` included, so the signature covers what the identity digest leaves out (metrics,
tags, description ...). The file is not in the manifest's files table (it signs the manifest), so
signing never changes a bundle's digest.

This module only *reads* the file, with the standard library like the rest of ``bundle/``: a
loader parses and bounds it (:func:`parse`) so that a malformed one is refused instead of riding
along, and :func:`mismatches` compares what it lists with the bundle's files. Whether a trusted
key or CA made the signature is decided by :mod:`modelport.signing` (which needs ``modelport[sign]``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelport.bundle.archive import MANIFEST, check_member_name
from modelport.errors import IntegrityError, SignatureError

SIGNATURE_FILE = "manifest.sig"
#: what a signature covers, in words (inspect and verify print it)
COVERS = f"every file of the bundle, {MANIFEST} included (so metrics, tags and description too), except {SIGNATURE_FILE}"
#: a signature lists one digest per file (about 200 bytes each, base64) and a few certificates;
#: 1 MiB holds a bundle at the archive's entry limit many times over
MAX_SIGNATURE_BYTES = 1 << 20
MAX_CERTIFICATES = 10
MAX_CERTIFICATE_BYTES = 16 << 10
MAX_SIG_BYTES = 1024  # an ECDSA signature in DER is at most 139 bytes (P-521)

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HINT = (
    "sign the bundle again (modelport sign BUNDLE --key KEY), or delete manifest.sig to use the bundle unsigned"
)


@dataclass(frozen=True)
class SignatureFile:
    """What ``manifest.sig`` claims, parsed but not yet verified.

    ``kind`` is ``"key"`` (an EC key; ``key_hint`` is the sha256 of its public key in PEM) or
    ``"certificate"`` (``certificates``: DER, the signing certificate first, then its chain).
    ``resources`` maps each signed file to its sha256 (hex).
    """

    kind: str
    key_hint: str | None
    certificates: tuple[bytes, ...]
    resources: Mapping[str, str]
    ignore_paths: tuple[str, ...]
    model_name: str

    @property
    def covers(self) -> list[str]:
        return sorted(self.resources)


def parse(data: bytes, *, origin: str) -> SignatureFile:
    """Parse and bound ``manifest.sig``; SignatureError naming the file and the reason if it is malformed."""

    def bad(reason: str) -> SignatureError:
        return SignatureError(f"{origin}: {SIGNATURE_FILE} is not a valid signature: {reason}.", hint=_HINT)

    if len(data) > MAX_SIGNATURE_BYTES:
        raise bad(f"it has {len(data)} bytes, more than the {MAX_SIGNATURE_BYTES} a signature may have")
    doc = _json(data, bad, what="the file")
    if not isinstance(doc, dict):
        raise bad("it must hold a JSON object (a Sigstore bundle)")
    if doc.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise bad(f"its mediaType must be {BUNDLE_MEDIA_TYPE!r}; got {_short(doc.get('mediaType'))} instead")
    material = _obj(doc, "verificationMaterial", bad)
    if material.get("tlogEntries") not in (None, []) or "timestampVerificationData" in material:
        raise bad("it carries transparency-log entries or timestamps (a Sigstore public-good signature); "
                  "modelport verifies offline signatures only: an EC key or a private CA")
    kind, key_hint, certificates = _material(material, bad)
    envelope = _obj(doc, "dsseEnvelope", bad)
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise bad(f"its payloadType must be {PAYLOAD_TYPE!r}; got {_short(envelope.get('payloadType'))} instead")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict):
        raise bad("its envelope must hold exactly one signature")
    _b64(sigs[0].get("sig"), bad, what="the envelope's signature", limit=MAX_SIG_BYTES)
    payload = _json(_b64(envelope.get("payload"), bad, what="the envelope's payload"), bad, what="the payload")
    if not isinstance(payload, dict) or payload.get("_type") != STATEMENT_TYPE:
        raise bad(f"its payload must be an in-toto statement ({STATEMENT_TYPE})")
    if payload.get("predicateType") != PREDICATE_TYPE:
        raise bad(f"its predicateType must be {PREDICATE_TYPE!r}; got {_short(payload.get('predicateType'))} instead")
    subjects = payload.get("subject")
    if not (isinstance(subjects, list) and len(subjects) == 1 and isinstance(subjects[0], dict)
            and isinstance(subjects[0].get("name"), str) and isinstance(subjects[0].get("digest"), dict)
            and _is_hex64(subjects[0]["digest"].get("sha256"))):
        raise bad("its statement must name exactly one subject with a sha256 digest")
    predicate = _obj(payload, "predicate", bad)
    serialization = _obj(predicate, "serialization", bad)
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        raise bad("it must list whole files hashed with sha256 (model-signing's 'files' serialization); got "
                  f"method {_short(serialization.get('method'))}, hash {_short(serialization.get('hash_type'))}")
    if serialization.get("allow_symlinks") not in (False, None):
        raise bad("it was made allowing symbolic links; bundles hold no links")
    ignored = serialization.get("ignore_paths", [])
    if not isinstance(ignored, list) or not all(isinstance(p, str) for p in ignored):
        raise bad("its ignore_paths must be a list of paths")
    left_out = sorted(set(ignored) - {SIGNATURE_FILE})
    if left_out:
        raise bad(f"it leaves files out of what it covers ({', '.join(_short(p) for p in left_out[:5])}); "
                  f"a bundle's signature covers every file but {SIGNATURE_FILE}")
    resources = predicate.get("resources")
    if not isinstance(resources, list) or not resources:
        raise bad("it lists no files")
    table: dict[str, str] = {}
    root = hashlib.sha256()
    for entry in resources:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and entry.get("algorithm") == "sha256" and _is_hex64(entry.get("digest"))):
            raise bad("each file it lists must have a name and a sha256 digest (64 hex digits)")
        name = entry["name"]
        try:
            check_member_name(name, origin)
        except IntegrityError as exc:
            raise bad(f"it lists an unsafe path {_short(name)}") from exc
        if name in table:
            raise bad(f"it lists {_short(name)} twice")
        if name == SIGNATURE_FILE:
            raise bad(f"it lists {SIGNATURE_FILE} itself")
        table[name] = entry["digest"]
        root.update(bytes.fromhex(entry["digest"]))
    if root.hexdigest() != subjects[0]["digest"]["sha256"]:
        raise bad("its subject digest does not match the files it lists (the statement is inconsistent)")
    return SignatureFile(kind=kind, key_hint=key_hint, certificates=certificates, resources=table,
                         ignore_paths=tuple(ignored), model_name=subjects[0]["name"])


def mismatches(sig: SignatureFile, files: Mapping[str, bytes]) -> list[tuple[str, str]]:
    """``(path, reason)`` for every file where the bundle and what ``sig`` lists disagree; [] when it covers all."""
    out: list[tuple[str, str]] = []
    present = {name: data for name, data in files.items() if name != SIGNATURE_FILE}
    for name in sorted(set(present) | set(sig.resources)):
        signed = sig.resources.get(name)
        if name not in present:
            out.append((name, "is covered by the signature but missing from the bundle (removed after signing)"))
        elif signed is None:
            out.append((name, "was added after signing (the signature does not cover it)"))
        else:
            actual = hashlib.sha256(present[name]).hexdigest()
            if actual != signed:
                out.append((name, f"was changed after signing (its sha256 is {actual[:16]}..., the signature "
                                  f"records {signed[:16]}...)"))
    return out


def check_covers(sig: SignatureFile, files: Mapping[str, bytes], *, origin: str) -> None:
    """SignatureError naming the files when ``sig`` does not list every file of the bundle as it is."""
    problems = mismatches(sig, files)
    if not problems:
        return
    listed = "; ".join(f"{name} {reason}" for name, reason in problems[:5])
    if len(problems) > 5:
        listed += f"; ... ({len(problems)} files in all)"
    model_changed = any(name == "model.onnx" for name, _ in problems)
    why = ("the signature was made for another bundle (copied from one?) or the model was replaced"
           if model_changed else "the bundle was edited after it was signed")
    raise SignatureError(
        f"{origin}: {SIGNATURE_FILE} does not match the bundle's files: {listed}. {why[0].upper()}{why[1:]}.",
        hint="do not use this bundle unless you made the change; if you did, sign it again with modelport sign",
    )


# ----------------------------------------------------------------------------- helpers
def _material(material: dict[str, Any], bad: Any) -> tuple[str, str | None, tuple[bytes, ...]]:
    key = material.get("publicKey")
    chain = material.get("x509CertificateChain")
    if (key is None) == (chain is None):
        if "certificate" in material:
            raise bad("it carries a single Fulcio-style certificate (a Sigstore public-good signature); modelport "
                      "verifies offline signatures only: an EC key or a private CA")
        raise bad("its verificationMaterial must hold either publicKey or x509CertificateChain")
    if key is not None:
        if not isinstance(key, dict) or not _is_hex64(key.get("hint")):
            raise bad("its publicKey must carry a hint (the sha256 of the signer's public key; older model-signing "
                      "releases omitted it)")
        return "key", key["hint"], ()
    certs = chain.get("certificates") if isinstance(chain, dict) else None
    if not isinstance(certs, list) or not 1 <= len(certs) <= MAX_CERTIFICATES:
        raise bad(f"its x509CertificateChain must list 1 to {MAX_CERTIFICATES} certificates")
    ders = []
    for cert in certs:
        if not isinstance(cert, dict):
            raise bad("each certificate of its chain must be an object with rawBytes")
        ders.append(_b64(cert.get("rawBytes"), bad, what="a certificate", limit=MAX_CERTIFICATE_BYTES))
    return "certificate", None, tuple(ders)


def _json(data: bytes, bad: Any, *, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise bad(f"{what} is not UTF-8 text (garbled or truncated?)") from exc
    except json.JSONDecodeError as exc:
        raise bad(f"{what} is not valid JSON (truncated or garbled? {exc.msg}, byte {exc.pos})") from exc
    except (RecursionError, ValueError) as exc:
        raise bad(f"{what} is not JSON this reader accepts ({type(exc).__name__})") from exc


def _b64(value: Any, bad: Any, *, what: str, limit: int = MAX_SIGNATURE_BYTES) -> bytes:
    if not isinstance(value, str) or not value:
        raise bad(f"{what} is missing or not a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad(f"{what} is not valid base64 (truncated or garbled?)") from exc
    if not raw or len(raw) > limit:
        raise bad(f"{what} has {len(raw)} bytes; expected 1 to {limit}")
    return raw


def _obj(doc: dict[str, Any], key: str, bad: Any) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise bad(f"it has no {key} object")
    return value


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
