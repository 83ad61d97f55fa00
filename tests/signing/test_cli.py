"""``modelport sign``, ``modelport verify --public-key/--ca/--certificate`` and what ``inspect`` and
``verify`` say about the digest and the signature; in-process with CliRunner, and the installed
console script in a clean subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

import modelport as mp
from modelport.bundle.signing import SIGNATURE_FILE
from modelport.cli.main import COMMANDS, cli

from .conftest import bundle_path, edit_manifest, save


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "250"})


def _fp(pub: Path) -> str:
    return "sha256:" + hashlib.sha256(pub.read_bytes()).hexdigest()


def test_sign_is_a_command():
    assert "sign" in COMMANDS


def test_sign_then_verify(runner, small_bundle, pki, tmp_path, layout):
    path = save(small_bundle, bundle_path(tmp_path, layout))
    r = runner.invoke(cli, ["sign", str(path), "--key", str(pki.key)])
    assert r.exit_code == 0, r.output
    assert f"signer:  key {_fp(pki.pub)}" in r.stdout and small_bundle.digest in r.stdout
    r = runner.invoke(cli, ["verify", str(path), "--public-key", str(pki.pub)])
    assert r.exit_code == 0, r.output
    assert f"signature: verified: key {_fp(pki.pub)}" in r.stdout
    assert "verdict: PASS" in r.stdout and "a trusted signature" in r.stdout
    assert "digest covers: the files table" in r.stdout and "metrics" in r.stdout.split("digest covers")[1]
    data = json.loads(runner.invoke(cli, ["verify", str(path), "--public-key", str(pki.pub), "--json"]).stdout)
    assert data["pass"] is True
    assert data["signing"]["verified"] is True and data["signing"]["signer"]["key_fingerprint"] == _fp(pki.pub)
    assert "manifest.json" in data["signing"]["files_covered"]
    assert data["digest_covers"]["fields"] == ["format", "files", "signature", "task", "classes"]
    assert {"metrics", "tags", "description"} <= set(data["digest_covers"]["not_covered"])


def test_sign_with_a_certificate_chain_and_json(runner, small_bundle, pki, tmp_path):
    path = save(small_bundle, tmp_path / "b.mpk")
    out = tmp_path / "signed"
    r = runner.invoke(cli, ["sign", str(path), "--key", str(pki.leaf_key), "--certificate", str(pki.leaf),
                            "--certificate-chain", str(pki.intermediate), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["written"] == str(out) and data["digest"] == small_bundle.digest
    assert data["signing"]["signer"]["certificate"]["subject"] == "CN=release-leaf,O=Acme ML"
    assert SIGNATURE_FILE not in mp.load(path).files  # -o leaves the input alone
    r = runner.invoke(cli, ["verify", str(out), "--ca", str(pki.root), "--certificate", str(pki.leaf)])
    assert r.exit_code == 0, r.output
    assert "signature: verified: certificate CN=release-leaf,O=Acme ML" in r.stdout


def test_password_from_the_environment(runner, small_bundle, pki, tmp_path):
    path = save(small_bundle, tmp_path / "b.mpk")
    r = runner.invoke(cli, ["sign", str(path), "--key", str(pki.encrypted_key), "--password-env", "KEYPW"])
    assert r.exit_code == 2 and "KEYPW: the variable is not set" in r.output
    r = runner.invoke(cli, ["sign", str(path), "--key", str(pki.encrypted_key), "--password-env", "KEYPW"],
                      env={"KEYPW": "s3cret"})
    assert r.exit_code == 0, r.output
    assert runner.invoke(cli, ["verify", str(path), "--public-key", str(pki.encrypted_pub)]).exit_code == 0


def test_verify_without_a_key_works_as_before(runner, small_bundle, pki, tmp_path):
    unsigned = save(small_bundle, tmp_path / "u.mpk")
    r = runner.invoke(cli, ["verify", str(unsigned)])
    assert r.exit_code == 0, r.output
    assert "signature: none" in r.stdout and "verdict: PASS" in r.stdout
    data = json.loads(runner.invoke(cli, ["verify", str(unsigned), "--json"]).stdout)
    assert data["pass"] is True and data["signing"]["present"] is False
    signed = save(mp.sign(small_bundle, key=pki.key), tmp_path / "s.mpk")
    r = runner.invoke(cli, ["verify", str(signed)])
    assert r.exit_code == 0, r.output
    assert "signature: present but not verified" in r.stdout and _fp(pki.pub) in r.stdout


def _bad(runner, path: Path, *trust: str, match: str, code: int = 5) -> dict:
    r = runner.invoke(cli, ["verify", str(path), *trust])
    assert r.exit_code == code, r.output
    assert match in r.output, r.output
    assert "verdict: FAIL" in r.stdout
    data = json.loads(runner.invoke(cli, ["verify", str(path), *trust, "--json"]).stdout)
    assert data["pass"] is False and match in data["error"]
    return data


def test_verify_refuses_each_bad_signature(runner, small_bundle, other_bundle, pki, tmp_path, layout):
    key = ("--public-key", str(pki.pub))
    signed = mp.sign(small_bundle, key=pki.key)
    # unsigned, when a key is required
    unsigned = save(small_bundle, bundle_path(tmp_path, layout, "unsigned"))
    data = _bad(runner, unsigned, *key, match="the bundle is not signed")
    assert data["parity"] is None  # an untrusted bundle is not run
    # signed by a key nobody trusts
    _bad(runner, save(mp.sign(small_bundle, key=pki.other_key), bundle_path(tmp_path, layout, "other")), *key,
         match="which is not a trusted key")
    # a signature from another bundle
    donor = mp.sign(other_bundle, key=pki.key).files[SIGNATURE_FILE]
    _bad(runner, save({**small_bundle.files, SIGNATURE_FILE: donor}, bundle_path(tmp_path, layout, "copied")), *key,
         match="made for another bundle")
    # truncated: the bundle cannot even be loaded, with or without a key
    raw = signed.files[SIGNATURE_FILE]
    cut = save({**signed.files, SIGNATURE_FILE: raw[:100]}, bundle_path(tmp_path, layout, "cut"))
    _bad(runner, cut, *key, match="manifest.sig is not a valid signature")
    _bad(runner, cut, match="manifest.sig is not a valid signature")
    # signed by an unrelated CA
    evil = mp.sign(small_bundle, key=pki.other_leaf_key, certificate=pki.other_leaf, certificate_chain=[pki.other_root])
    _bad(runner, save(evil, bundle_path(tmp_path, layout, "evil")), "--ca", str(pki.root),
         match="does not chain to a trusted CA")


def test_edited_metric_after_signing_is_caught(runner, small_bundle, pki, tmp_path, layout):
    signed = mp.sign(small_bundle, key=pki.key)
    path = save(edit_manifest(dict(signed.files), lambda m: m["metrics"].update(auc=0.99)),
                bundle_path(tmp_path, layout))
    assert mp.load(path).manifest["metrics"]["auc"] == 0.99 and mp.load(path).digest == small_bundle.digest
    data = _bad(runner, path, "--public-key", str(pki.pub), match="manifest.json was changed after signing")
    assert data["digests_ok"] is True  # the digests alone would have passed it
    _bad(runner, path, match="manifest.json was changed after signing")  # and without a key too


def test_bad_key_file_is_a_usage_error(runner, small_bundle, pki, tmp_path):
    path = save(small_bundle, tmp_path / "b.mpk")
    r = runner.invoke(cli, ["verify", str(path), "--public-key", str(pki.key)])
    assert r.exit_code == 2 and "it is a private key" in r.output


def test_inspect_says_what_is_covered_and_who_signed(runner, small_bundle, pki, tmp_path):
    path = save(mp.sign(small_bundle, key=pki.leaf_key, certificate=pki.leaf, certificate_chain=[pki.intermediate]),
                tmp_path / "b.mpk")
    data = json.loads(runner.invoke(cli, ["inspect", str(path), "--json"]).stdout)
    assert data["digest_covers"]["fields"] == ["format", "files", "signature", "task", "classes"]
    assert "metrics" in data["digest_covers"]["not_covered"]
    sig = data["signing"]
    assert sig["present"] and sig["verified"] is False and sig["matches_files"] is True
    assert sig["signer"]["certificate"]["subject"] == "CN=release-leaf,O=Acme ML"
    assert sorted(sig["files_covered"]) == sorted([*small_bundle.manifest["files"], "manifest.json"])
    r = runner.invoke(cli, ["inspect", str(path)])
    assert r.exit_code == 0, r.output
    for text in ("Digest and signature", "digest covers", "not in digest", "signed by",
                 "certificate CN=release-leaf,O=Acme ML", "manifest.json included", "verified"):
        assert text in r.stdout, text
    unsigned = json.loads(runner.invoke(cli, ["inspect", str(save(small_bundle, tmp_path / "u.mpk")), "--json"]).stdout)
    assert unsigned["signing"]["present"] is False


def test_inspect_shows_an_edit_after_signing(runner, small_bundle, pki, tmp_path):
    signed = mp.sign(small_bundle, key=pki.key)
    path = save(edit_manifest(dict(signed.files), lambda m: m.update(description="x")), tmp_path / "b.mpk")
    data = json.loads(runner.invoke(cli, ["inspect", str(path), "--json"]).stdout)
    assert data["signing"]["matches_files"] is False
    assert any(p.startswith("manifest.json was changed after signing") for p in data["signing"]["problems"])
    assert "NO: manifest.json was changed" in runner.invoke(cli, ["inspect", str(path)]).stdout


# ----------------------------------------------------------------------------- the installed command
def _script() -> Path:
    script = Path(sysconfig.get_path("scripts")) / "modelport"
    assert script.exists(), f"{script} is not installed; pip install -e . in this environment"
    return script


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{_script().parent}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(tmp_path),
           "MODELPORT_HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}
    return subprocess.run([str(_script()), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=180, check=False)


def test_console_script_sign_and_verify(small_bundle, pki, tmp_path):
    path = save(small_bundle, tmp_path / "b.mpk")
    r = _run(["sign", str(path), "--key", str(pki.key)], tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    r = _run(["verify", str(path), "--public-key", str(pki.pub), "--json"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["signing"]["verified"] is True
    r = _run(["verify", str(path), "--public-key", str(pki.other_pub)], tmp_path)
    assert r.returncode == 5 and "not a trusted key" in r.stdout, r.stdout + r.stderr
    # editing metrics.auc afterwards is caught by the installed command too
    edited = save(edit_manifest(dict(mp.load(path).files), lambda m: m["metrics"].update(auc=0.99)),
                  tmp_path / "edited.mpk")
    r = _run(["verify", str(edited), "--public-key", str(pki.pub)], tmp_path)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "manifest.json was changed after signing" in r.stdout and "Traceback" not in r.stderr


def test_a_certificate_that_is_not_der_is_a_clean_failure(runner, small_bundle, pki, tmp_path):
    signed = mp.sign(small_bundle, key=pki.leaf_key, certificate=pki.leaf, certificate_chain=[pki.intermediate])
    doc = json.loads(signed.files[SIGNATURE_FILE])
    doc["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"] = "bm90IGEgY2VydGlmaWNhdGU="
    path = save({**signed.files, SIGNATURE_FILE: json.dumps(doc).encode()}, tmp_path / "b.mpk")
    for trust in ([], ["--ca", str(pki.root)]):
        r = runner.invoke(cli, ["verify", str(path), *trust, "--json"])
        assert r.exit_code == 5, r.output
        assert "not valid DER" in json.loads(r.stdout)["signing"]["error"]
    r = runner.invoke(cli, ["inspect", str(path)])
    assert r.exit_code == 5 and "not valid DER" in r.output, r.output
