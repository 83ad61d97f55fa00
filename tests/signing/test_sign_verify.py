"""Signing and verifying through the Python API (modelport.sign / verify_signature / SignaturePolicy):
round trips on both layouts with EC keys and a private CA chain, and every bad input refused with a
SignatureError that names the file and the reason."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

import modelport as mp
from modelport.bundle.signing import SIGNATURE_FILE
from modelport.errors import InputError, SignatureError
from modelport.signing import SignaturePolicy, status

from .conftest import bundle_path, edit_manifest, save, sig_doc, with_statement


# ----------------------------------------------------------------------------- round trips
def test_key_round_trip_in_place(small_bundle, pki, tmp_path, layout):
    path = save(small_bundle, bundle_path(tmp_path, layout))
    before = {k: v for k, v in mp.load(path).files.items()}
    signed = mp.sign(path, key=pki.key)
    again = mp.load(path)
    assert SIGNATURE_FILE in again.files
    # signing adds one file and changes nothing else, not even the identity digest
    assert {k: v for k, v in again.files.items() if k != SIGNATURE_FILE} == before
    assert again.digest == small_bundle.digest == signed.digest
    report = mp.verify_signature(path, public_keys=[pki.pub])
    assert report.verified and report.file == SIGNATURE_FILE
    # the fingerprint is the sha256 of the PEM public key: what `sha256sum ec.pub` prints for openssl's file
    assert report.signer.key_fingerprint == "sha256:" + hashlib.sha256(pki.pub.read_bytes()).hexdigest()
    assert report.trusted_by == report.signer.describe()
    # every file is covered, the manifest included
    assert set(report.covers) == set(before) and "manifest.json" in report.covers


def test_certificate_chain_round_trip(small_bundle, pki, tmp_path, layout):
    path = save(small_bundle, bundle_path(tmp_path, layout))
    mp.sign(path, key=pki.leaf_key, certificate=pki.leaf, certificate_chain=[pki.intermediate])
    report = mp.verify_signature(path, cas=[pki.root])
    assert report.signer.kind == "certificate"
    assert report.signer.subject == "CN=release-leaf,O=Acme ML"
    assert report.signer.issuer == "CN=Acme Signing CA,O=Acme ML"
    assert "Acme Root CA" in report.trusted_by
    # pinning the signing certificate as well
    assert mp.verify_signature(path, cas=[pki.root], certificates=[pki.leaf]).verified


def test_other_curves_and_an_encrypted_key(small_bundle, pki, tmp_path):
    mp.sign(save(small_bundle, tmp_path / "a.mpk"), key=pki.p384_key)
    assert mp.verify_signature(tmp_path / "a.mpk", public_keys=[pki.p384_pub]).verified
    mp.sign(save(small_bundle, tmp_path / "b.mpk"), key=pki.encrypted_key, password="s3cret")
    assert mp.verify_signature(tmp_path / "b.mpk", public_keys=[pki.encrypted_pub]).verified


def test_any_of_several_trusted_keys(small_bundle, pki):
    signed = mp.sign(small_bundle, key=pki.other_key)
    policy = SignaturePolicy(trusted_keys=[pki.pub, pki.other_pub.read_bytes()])
    assert policy.check(signed).signer.key_fingerprint.endswith(hashlib.sha256(pki.other_pub.read_bytes()).hexdigest())


def test_resigning_replaces_the_signature(small_bundle, pki, tmp_path, layout):
    path = save(small_bundle, bundle_path(tmp_path, layout))
    mp.sign(path, key=pki.key)
    mp.sign(path, key=pki.other_key)
    assert mp.verify_signature(path, public_keys=[pki.other_pub]).verified
    with pytest.raises(SignatureError, match="not a trusted key"):
        mp.verify_signature(path, public_keys=[pki.pub])
    assert mp.load(path).digest == small_bundle.digest


def test_sign_an_object_to_an_output(small_bundle, pki, tmp_path, layout):
    out = bundle_path(tmp_path, layout, "out")
    signed = mp.sign(small_bundle, key=pki.key, output=out)
    assert SIGNATURE_FILE not in small_bundle.files  # the original object is untouched
    assert mp.load(out).files == signed.files
    assert mp.verify_signature(out, public_keys=[pki.pub]).verified


def test_signed_directory_verifies_with_model_signings_own_cli(small_bundle, pki, tmp_path):
    path = save(small_bundle, tmp_path / "b")
    mp.sign(path, key=pki.leaf_key, certificate=pki.leaf, certificate_chain=[pki.intermediate])
    r = subprocess.run([sys.executable, "-m", "model_signing", "verify", "certificate", str(path), "--signature",
                        str(path / SIGNATURE_FILE), "--certificate_chain", str(pki.root)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# ----------------------------------------------------------------------------- bad input
def _refused(path, match: str, **trust) -> SignatureError:
    with pytest.raises(SignatureError) as err:
        mp.verify_signature(path, **trust)
    text = str(err.value)
    assert str(path) in text and SIGNATURE_FILE in text, text
    assert match in text, text
    return err.value


def test_untrusted_key(small_bundle, pki, tmp_path, layout):
    path = mp.sign(small_bundle, key=pki.other_key, output=bundle_path(tmp_path, layout)) and bundle_path(tmp_path, layout)
    err = _refused(path, "not a trusted key", public_keys=[pki.pub])
    assert hashlib.sha256(pki.other_pub.read_bytes()).hexdigest() in str(err)


def test_key_signature_when_only_a_ca_is_trusted(small_bundle, pki, tmp_path):
    path = tmp_path / "b.mpk"
    mp.sign(small_bundle, key=pki.key, output=path)
    _refused(path, "only certificates from the CA", cas=[pki.root])


def test_untrusted_ca(small_bundle, pki, tmp_path, layout):
    path = bundle_path(tmp_path, layout)
    mp.sign(small_bundle, key=pki.other_leaf_key, certificate=pki.other_leaf, certificate_chain=[pki.other_root],
            output=path)
    _refused(path, "does not chain to a trusted CA", cas=[pki.root])


def test_certificate_signature_when_only_keys_are_trusted(small_bundle, pki, tmp_path):
    path = tmp_path / "b.mpk"
    mp.sign(small_bundle, key=pki.leaf_key, certificate=pki.leaf, certificate_chain=[pki.intermediate], output=path)
    _refused(path, "no CA is trusted", public_keys=[pki.pub])


def test_pinned_certificate_mismatch(small_bundle, pki, tmp_path):
    path = tmp_path / "b.mpk"
    mp.sign(small_bundle, key=pki.leaf2_key, certificate=pki.leaf2, certificate_chain=[pki.intermediate], output=path)
    _refused(path, "not one of the pinned signing certificates", cas=[pki.root], certificates=[pki.leaf])


def test_certificate_that_may_not_sign(small_bundle, pki, tmp_path):
    path = tmp_path / "b.mpk"
    mp.sign(small_bundle, key=pki.nosign_key, certificate=pki.nosign, certificate_chain=[pki.intermediate],
            output=path)
    _refused(path, "may not sign", cas=[pki.root])


def test_unsigned_bundle_when_a_key_is_required(small_bundle, pki, tmp_path, layout):
    path = save(small_bundle, bundle_path(tmp_path, layout))
    err = _refused(path, "not signed", public_keys=[pki.pub])
    assert "modelport sign" in (err.hint or "")


def test_signature_copied_from_another_bundle(small_bundle, other_bundle, pki, tmp_path, layout):
    donor = mp.sign(other_bundle, key=pki.key)
    files = {**small_bundle.files, SIGNATURE_FILE: donor.files[SIGNATURE_FILE]}
    path = save(files, bundle_path(tmp_path, layout))
    err = _refused(path, "another bundle", public_keys=[pki.pub])
    assert "model.onnx was changed after signing" in str(err)


def test_truncated_signature(small_bundle, pki, tmp_path, layout):
    signed = mp.sign(small_bundle, key=pki.key)
    raw = signed.files[SIGNATURE_FILE]
    path = save({**signed.files, SIGNATURE_FILE: raw[: len(raw) - 40]}, bundle_path(tmp_path, layout))
    _refused(path, "not valid JSON", public_keys=[pki.pub])


@pytest.mark.parametrize("edit", [
    pytest.param(lambda m: m["metrics"].update(auc=0.99), id="metrics.auc"),
    pytest.param(lambda m: m["tags"].update(team="fraud"), id="tags.team"),
    pytest.param(lambda m: m.update(description="now state of the art"), id="description"),
    pytest.param(lambda m: m.update(version="7"), id="version"),
    pytest.param(lambda m: m["parity"].update(max_abs_error=0.0), id="parity"),
])
def test_descriptive_field_edited_after_signing(small_bundle, pki, tmp_path, layout, edit):
    signed = mp.sign(small_bundle, key=pki.key)
    files = edit_manifest(dict(signed.files), edit)
    path = save(files, bundle_path(tmp_path, layout))
    edited = mp.load(path)
    # the digest leaves descriptive fields out, so only the signature can catch this
    assert edited.digest == small_bundle.digest
    _refused(path, "manifest.json was changed after signing", public_keys=[pki.pub])
    with pytest.raises(SignatureError, match="edited after it was signed"):
        from modelport.signing import check_consistent

        check_consistent(edited)  # caught even without a key


def test_file_replaced_after_signing_with_a_resealed_manifest(small_bundle, other_bundle, pki, tmp_path, layout):
    # the attacker swaps in another model and rewrites the files table to match: the digests hold,
    # only the signature tells
    signed = mp.sign(small_bundle, key=pki.key)
    files = {**other_bundle.files, SIGNATURE_FILE: signed.files[SIGNATURE_FILE]}
    path = save(files, bundle_path(tmp_path, layout))
    mp.load(path)
    _refused(path, "model.onnx was changed after signing", public_keys=[pki.pub])


def test_statement_rewritten_to_match_an_edit(small_bundle, pki, tmp_path, layout):
    # the attacker edits metrics.auc and rewrites the signed statement's digest for manifest.json to
    # match, keeping the old envelope signature: the digests agree, the cryptography does not
    signed = mp.sign(small_bundle, key=pki.key)
    files = edit_manifest(dict(signed.files), lambda m: m["metrics"].update(auc=0.99))
    doc, statement = sig_doc(signed.files[SIGNATURE_FILE])
    root = hashlib.sha256()
    for r in statement["predicate"]["resources"]:
        if r["name"] == "manifest.json":
            r["digest"] = hashlib.sha256(files["manifest.json"]).hexdigest()
        root.update(bytes.fromhex(r["digest"]))
    statement["subject"][0]["digest"]["sha256"] = root.hexdigest()
    files[SIGNATURE_FILE] = with_statement(doc, statement)
    path = save(files, bundle_path(tmp_path, layout))
    _refused(path, "not valid for key", public_keys=[pki.pub])


def test_resigned_by_the_attacker(small_bundle, pki, tmp_path, layout):
    signed = mp.sign(small_bundle, key=pki.key)
    edited = mp.Bundle(edit_manifest(dict(signed.files), lambda m: m["metrics"].update(auc=0.99)), origin="<x>")
    path = bundle_path(tmp_path, layout)
    mp.sign(edited, key=pki.other_key, output=path)
    _refused(path, "not a trusted key", public_keys=[pki.pub])


def test_forged_hint_does_not_help(small_bundle, pki, tmp_path):
    # a signature made by another key but claiming the trusted key's fingerprint fails on the cryptography
    signed = mp.sign(small_bundle, key=pki.other_key)
    doc = json.loads(signed.files[SIGNATURE_FILE])
    doc["verificationMaterial"]["publicKey"]["hint"] = hashlib.sha256(pki.pub.read_bytes()).hexdigest()
    path = save({**signed.files, SIGNATURE_FILE: json.dumps(doc).encode()}, tmp_path / "b.mpk")
    _refused(path, "not valid for key", public_keys=[pki.pub])


# ----------------------------------------------------------------------------- keys and policies
@pytest.mark.parametrize(("which", "match"), [
    ("rsa_pub", "EC keys"),
    ("key", "it is a private key"),
    ("root", "not a PEM public key"),
])
def test_bad_trusted_key_files(pki, which, match):
    with pytest.raises(InputError, match=match):
        SignaturePolicy(trusted_keys=[getattr(pki, which)])


def test_bad_signing_keys(small_bundle, pki, tmp_path):
    with pytest.raises(InputError, match="EC keys"):
        mp.sign(small_bundle, key=pki.rsa_key)
    with pytest.raises(InputError, match="encrypted"):
        mp.sign(small_bundle, key=pki.encrypted_key)
    with pytest.raises(InputError, match="password is wrong"):
        mp.sign(small_bundle, key=pki.encrypted_key, password="wrong")
    with pytest.raises(InputError, match="not the certificate of"):
        mp.sign(small_bundle, key=pki.key, certificate=pki.leaf, certificate_chain=[pki.intermediate])
    with pytest.raises(InputError, match="needs its chain"):
        mp.sign(small_bundle, key=pki.leaf_key, certificate=pki.leaf)
    with pytest.raises(InputError, match="cannot sign models:/iris/1"):
        mp.sign("models:/iris/1", key=pki.key)
    with pytest.raises(InputError, match="no PEM certificate"):
        SignaturePolicy(cas=[pki.pub])


def test_policy_options():
    assert SignaturePolicy.from_options(require=False) is None
    with pytest.raises(InputError, match="only used together with --require-signature"):
        SignaturePolicy.from_options(require=False, trusted_keys=["k.pub"])
    with pytest.raises(InputError, match="got no --trusted-key and no --ca"):
        SignaturePolicy.from_options(require=True)
    with pytest.raises(InputError, match="at least one trusted public key"):
        SignaturePolicy()


def test_pinned_certificates_need_a_ca(pki):
    with pytest.raises(InputError, match="no CA was given"):
        SignaturePolicy(trusted_keys=[pki.pub], certificates=[pki.leaf])


def test_status_without_keys(small_bundle, pki):
    assert status(small_bundle)["present"] is False
    info = status(mp.sign(small_bundle, key=pki.leaf_key, certificate=pki.leaf, certificate_chain=[pki.intermediate]))
    assert info["present"] and info["matches_files"] and not info["verified"]
    assert info["signer"]["certificate"]["subject"] == "CN=release-leaf,O=Acme ML"
    assert "manifest.json" in info["files_covered"]


def test_missing_sign_extra_names_the_pip_line(small_bundle, pki, tmp_path):
    path = save(small_bundle, tmp_path / "b.mpk")
    code = (
        "import sys\n"
        "sys.modules['model_signing'] = None  # what an environment without modelport[sign] has\n"
        "import modelport\n"
        "try:\n"
        f"    modelport.sign({str(path)!r}, key={str(pki.key)!r})\n"
        "except modelport.MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'modelport[sign]'" in out.stdout, out.stdout + out.stderr
