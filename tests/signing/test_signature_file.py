"""``manifest.sig`` is parsed and bounded on every load (bundle/signing.py): a malformed one is
refused with a SignatureError that names the file and the reason, on both layouts, and never rides
along unread; an unsigned bundle loads as before. No key is needed for any of this."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import modelport as mp
from modelport.bundle import manifest as mf
from modelport.bundle.signing import MAX_SIGNATURE_BYTES, SIGNATURE_FILE
from modelport.errors import IntegrityError, SignatureError

from .conftest import bundle_path, save, sig_doc, with_statement


@pytest.fixture(scope="module")
def signed(small_bundle, pki) -> mp.Bundle:
    return mp.sign(small_bundle, key=pki.key)


def test_unsigned_bundle_still_loads(small_bundle, tmp_path, layout):
    path = save(small_bundle, bundle_path(tmp_path, layout))
    b = mp.load(path)
    assert SIGNATURE_FILE not in b.files and b.digest == small_bundle.digest


def test_signed_bundle_loads_with_its_signature_and_the_same_digest(signed, small_bundle, tmp_path, layout):
    path = save(signed, bundle_path(tmp_path, layout))
    b = mp.load(path)
    assert b.files[SIGNATURE_FILE] == signed.files[SIGNATURE_FILE]
    assert b.digest == small_bundle.digest


def _doc(edit: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def mutate(raw: bytes) -> bytes:
        doc = json.loads(raw)
        edit(doc)
        return json.dumps(doc).encode()

    return mutate


def _statement(edit: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def mutate(raw: bytes) -> bytes:
        doc, statement = sig_doc(raw)
        edit(statement)
        return with_statement(doc, statement)

    return mutate


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for p in parents:
            doc = doc[p]
        if value is _DELETE:
            del doc[last]
        else:
            doc[last] = value

    return edit


_DELETE = object()
_EVIL = base64.b64encode(b"x" * 2000).decode()

# (id, mutation of a valid manifest.sig, a fragment the error must contain)
MALFORMED: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("truncated", lambda raw: raw[: len(raw) // 2], "not valid JSON"),
    ("truncated-to-one-byte", lambda raw: raw[:1], "not valid JSON"),
    ("empty", lambda raw: b"", "not valid JSON"),
    ("garbled-bytes", lambda raw: bytes((b * 7 + 3) % 256 for b in raw), "not UTF-8"),
    ("garbled-middle", lambda raw: raw[:40] + b"\x00\x01garbage" + raw[60:], "not valid JSON"),
    # incompressible, so that the archive's ratio limit does not refuse it before the signature's own bound
    ("oversized", lambda raw: raw + random.Random(0).randbytes(MAX_SIGNATURE_BYTES), "more than"),
    ("deeply-nested", lambda raw: b"[" * 200_000 + b"]" * 200_000, "not JSON this reader accepts"),
    ("not-an-object", lambda raw: b"[1, 2, 3]", "JSON object"),
    ("wrong-media-type", _doc(_set("mediaType", "application/json")), "mediaType"),
    ("no-material", _doc(_set("verificationMaterial", _DELETE)), "verificationMaterial"),
    ("rekor-entries", _doc(_set("verificationMaterial.tlogEntries", [{"logIndex": "1"}])), "offline signatures"),
    ("fulcio-certificate", _doc(_set("verificationMaterial", {"certificate": {"rawBytes": "AAAA"}})),
     "offline signatures"),
    ("no-key-hint", _doc(_set("verificationMaterial.publicKey", {})), "hint"),
    ("bad-key-hint", _doc(_set("verificationMaterial.publicKey.hint", "abc")), "hint"),
    ("key-and-chain", _doc(_set("verificationMaterial.x509CertificateChain", {"certificates": []})), "either"),
    ("no-envelope", _doc(_set("dsseEnvelope", _DELETE)), "dsseEnvelope"),
    ("payload-not-base64", _doc(_set("dsseEnvelope.payload", "%%% not base64 %%%")), "not valid base64"),
    ("payload-not-json", _doc(_set("dsseEnvelope.payload", base64.b64encode(b"{nope").decode())),
     "payload is not valid JSON"),
    ("payload-type", _doc(_set("dsseEnvelope.payloadType", "text/plain")), "payloadType"),
    ("no-signature", _doc(_set("dsseEnvelope.signatures", [])), "exactly one signature"),
    ("two-signatures", _doc(lambda d: d["dsseEnvelope"]["signatures"].append(d["dsseEnvelope"]["signatures"][0])),
     "exactly one signature"),
    ("signature-not-base64", _doc(lambda d: d["dsseEnvelope"]["signatures"][0].update(sig="!!")),
     "not valid base64"),
    ("signature-too-long", _doc(lambda d: d["dsseEnvelope"]["signatures"][0].update(sig=_EVIL)), "expected 1 to"),
    ("not-in-toto", _statement(_set("_type", "https://example.com/other")), "in-toto statement"),
    ("predicate-type", _statement(_set("predicateType", "https://slsa.dev/provenance/v1")), "predicateType"),
    ("two-subjects", _statement(lambda s: s["subject"].append(s["subject"][0])), "exactly one subject"),
    ("shard-serialization", _statement(_set("predicate.serialization.method", "shards")), "whole files"),
    ("blake2", _statement(_set("predicate.serialization.hash_type", "blake2")), "whole files"),
    ("symlinks-allowed", _statement(_set("predicate.serialization.allow_symlinks", True)), "symbolic links"),
    ("ignores-the-model", _statement(_set("predicate.serialization.ignore_paths", ["manifest.sig", "model.onnx"])),
     "leaves files out"),
    ("no-resources", _statement(_set("predicate.resources", [])), "lists no files"),
    ("resource-bad-digest", _statement(lambda s: s["predicate"]["resources"][0].update(digest="zz")),
     "64 hex digits"),
    ("resource-md5", _statement(lambda s: s["predicate"]["resources"][0].update(algorithm="md5")), "sha256"),
    ("resource-traversal", _statement(lambda s: s["predicate"]["resources"][0].update(name="../../etc/passwd")),
     "unsafe path"),
    ("resource-absolute", _statement(lambda s: s["predicate"]["resources"][0].update(name="/etc/passwd")),
     "unsafe path"),
    ("resource-twice", _statement(lambda s: s["predicate"]["resources"].append(s["predicate"]["resources"][0])),
     "twice"),
    ("resource-is-the-signature", _statement(lambda s: s["predicate"]["resources"][0].update(name="manifest.sig")),
     "itself"),
    ("subject-inconsistent", _statement(lambda s: s["subject"][0]["digest"].update(sha256="0" * 64)),
     "inconsistent"),
]


@pytest.mark.parametrize(("mutate", "reason"), [(m, r) for _, m, r in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_malformed_signature_is_refused_on_load(signed, tmp_path, layout, mutate, reason):
    files = {**signed.files, SIGNATURE_FILE: mutate(signed.files[SIGNATURE_FILE])}
    path = save(files, bundle_path(tmp_path, layout))
    with pytest.raises(SignatureError) as err:
        mp.load(path)
    assert SIGNATURE_FILE in str(err.value) and str(path) in str(err.value)
    assert reason in str(err.value), str(err.value)
    assert err.value.hint and "modelport sign" in err.value.hint


def test_malformed_signature_is_refused_from_bytes_too(signed):
    from modelport.bundle import archive

    data = archive.write_mpk_bytes({**signed.files, SIGNATURE_FILE: b"{"})
    with pytest.raises(SignatureError, match=r"manifest\.sig is not a valid signature"):
        mp.Bundle.from_bytes(data, origin="upload.mpk")


def test_too_many_certificates_are_refused(signed, tmp_path):
    doc = json.loads(signed.files[SIGNATURE_FILE])
    del doc["verificationMaterial"]["publicKey"]
    doc["verificationMaterial"]["x509CertificateChain"] = {"certificates": [{"rawBytes": "AAAA"}] * 11}
    path = save({**signed.files, SIGNATURE_FILE: json.dumps(doc).encode()}, tmp_path / "b.mpk")
    with pytest.raises(SignatureError, match="1 to 10 certificates"):
        mp.load(path)


def test_files_table_may_not_list_the_signature(small_bundle, tmp_path):
    files = dict(small_bundle.files)
    files[SIGNATURE_FILE] = b"{}"
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = mf.files_table({k: v for k, v in files.items() if k != "manifest.json"})
    files["manifest.json"] = mf.dumps(manifest)
    with pytest.raises(IntegrityError, match=r"files table lists manifest\.sig"):
        mp.load(save(files, tmp_path / "b.mpk"))


def test_loading_a_signed_bundle_needs_no_signing_library(signed, tmp_path):
    path = save(signed, tmp_path / "b.mpk")
    code = (
        "import sys, modelport\n"
        f"b = modelport.load({str(path)!r})\n"
        "assert 'manifest.sig' in b.files\n"
        "print(','.join(m for m in ('model_signing', 'cryptography', 'OpenSSL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
