"""Registry push under a signature policy (``reg.push(..., signature_policy=...)`` and
``modelport push --require-signature --trusted-key ... --ca ...``): every bad signature is refused
with the file and the reason before anything is stored; a signature brought by a later push of the
same digest is added to a version stored unsigned."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

import modelport as mp
from modelport.bundle.signing import SIGNATURE_FILE
from modelport.cli.main import cli
from modelport.errors import InputError, SignatureError
from modelport.signing import SignaturePolicy

from .conftest import edit_manifest, save


@pytest.fixture
def fresh_postgres(postgres_url) -> Iterator[str]:
    """A PostgreSQL schema of its own for one test (as in tests/registry), dropped afterwards."""
    import psycopg

    name = f"mp_sig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options=-csearch_path%3D{name}"
    from modelport import registry

    for key, reg in list(registry._CACHE.items()):
        if name in key[1]:
            reg.close()
            del registry._CACHE[key]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def reg(request, tmp_path):
    from modelport.registry import open_registry

    url = (f"sqlite:///{tmp_path / 'reg' / 'registry.db'}" if request.param == "sqlite"
           else request.getfixturevalue("fresh_postgres"))
    return open_registry(url, artifacts=str(tmp_path / "artifacts"))


@pytest.fixture
def policy(pki) -> SignaturePolicy:
    return SignaturePolicy(trusted_keys=[pki.pub], cas=[pki.root])


def _bad_bundles(small_bundle, other_bundle, pki) -> dict[str, tuple[dict[str, bytes], str]]:
    signed = mp.sign(small_bundle, key=pki.key)
    raw = signed.files[SIGNATURE_FILE]
    evil = mp.sign(small_bundle, key=pki.other_leaf_key, certificate=pki.other_leaf,
                   certificate_chain=[pki.other_root])
    return {
        "unsigned": (dict(small_bundle.files), "the bundle is not signed"),
        "untrusted-key": (dict(mp.sign(small_bundle, key=pki.other_key).files), "not a trusted key"),
        "untrusted-ca": (dict(evil.files), "does not chain to a trusted CA"),
        "copied": ({**small_bundle.files, SIGNATURE_FILE: mp.sign(other_bundle, key=pki.key).files[SIGNATURE_FILE]},
                   "made for another bundle"),
        "truncated": ({**signed.files, SIGNATURE_FILE: raw[: len(raw) // 3]}, "not a valid signature"),
        "edited-metric": (edit_manifest(dict(signed.files), lambda m: m["metrics"].update(auc=0.99)),
                          "manifest.json was changed after signing"),
    }


CASES = ["unsigned", "untrusted-key", "untrusted-ca", "copied", "truncated", "edited-metric"]


@pytest.mark.parametrize("case", CASES)
def test_push_refuses_each_bad_signature(reg, policy, small_bundle, other_bundle, pki, tmp_path, case):
    files, reason = _bad_bundles(small_bundle, other_bundle, pki)[case]
    path = save(files, tmp_path / "b.mpk")
    with pytest.raises(SignatureError) as err:
        reg.push(path, signature_policy=policy)
    text = str(err.value)
    assert text.startswith(f"refusing to push {path}") or case == "truncated", text
    assert str(path) in text and SIGNATURE_FILE in text and reason in text, text
    assert reg.models() == []  # nothing stored
    # without a policy the same push goes through (only a malformed signature stops every load)
    if case != "truncated":
        assert reg.push(path).is_new


def test_push_accepts_a_trusted_signature(reg, policy, small_bundle, pki, tmp_path):
    key_signed = save(mp.sign(small_bundle, key=pki.key), tmp_path / "k.mpk")
    info = reg.push(key_signed, signature_policy=policy)
    assert info.is_new and info.digest == small_bundle.digest
    loaded = reg.load(info.uri)
    assert loaded.files[SIGNATURE_FILE] == mp.load(key_signed).files[SIGNATURE_FILE]
    assert policy.check(loaded).verified  # what the registry hands out still verifies
    cert_signed = mp.sign(small_bundle, key=pki.leaf_key, certificate=pki.leaf, certificate_chain=[pki.intermediate])
    assert reg.push(cert_signed, name="iris-cert", signature_policy=policy).is_new


def test_a_later_signature_is_added_to_an_unsigned_version(reg, policy, small_bundle, pki, tmp_path):
    first = reg.push(small_bundle)
    assert SIGNATURE_FILE not in reg.load(first.uri).files
    again = reg.push(mp.sign(small_bundle, key=pki.key), signature_policy=policy)
    assert (again.version, again.is_new) == (first.version, False)
    assert policy.check(reg.load(first.uri)).verified
    # without a policy a different signature does not replace one already stored ...
    reg.push(mp.sign(small_bundle, key=pki.other_key))
    assert policy.check(reg.load(first.uri)).verified
    # ... with one (that accepts it), it does
    other_policy = SignaturePolicy(trusted_keys=[pki.other_pub])
    reg.push(mp.sign(small_bundle, key=pki.other_key), signature_policy=other_policy)
    assert other_policy.check(reg.load(first.uri)).verified
    assert [v.version for v in reg.versions("iris")] == [first.version]
    assert reg.gc()  # the archive it no longer uses is left for gc, never deleted under a live transaction


def test_cli_push_policy(small_bundle, pki, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    unsigned = save(small_bundle, tmp_path / "u.mpk")
    r = runner.invoke(cli, ["push", str(unsigned), "--require-signature", "--trusted-key", str(pki.pub)])
    assert r.exit_code == 5 and "refusing to push" in r.output and "not signed" in r.output, r.output
    r = runner.invoke(cli, ["push", str(unsigned), "--trusted-key", str(pki.pub)])
    assert r.exit_code == 2 and "only used together with --require-signature" in r.output, r.output
    r = runner.invoke(cli, ["push", str(unsigned), "--require-signature"])
    assert r.exit_code == 2 and "no --trusted-key and no --ca" in r.output, r.output
    signed = save(mp.sign(small_bundle, key=pki.leaf_key, certificate=pki.leaf, certificate_chain=[pki.intermediate]),
                  tmp_path / "s.mpk")
    r = runner.invoke(cli, ["push", str(signed), "--require-signature", "--ca", str(pki.root),
                            "--trusted-certificate", str(pki.leaf2)])
    assert r.exit_code == 5 and "not one of the pinned signing certificates" in r.output, r.output
    r = runner.invoke(cli, ["push", str(signed), "--require-signature", "--trusted-key", str(pki.pub),
                            "--ca", str(pki.root)])
    assert r.exit_code == 0 and "pushed iris version 1" in r.output, r.output


def test_policy_needs_trust_material(pki):
    with pytest.raises(InputError):
        SignaturePolicy.from_options(require=True, trusted_keys=[], cas=[])
