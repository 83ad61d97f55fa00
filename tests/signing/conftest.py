"""Fixtures of the signing tests: real EC keys (openssl and cryptography), a real private CA chain
(root -> intermediate -> signing certificate) plus an unrelated CA, and small real bundles.

Nothing is mocked: keys are generated here, bundles are packed from fitted models, and every
signature is made and checked by OpenSSF model-signing through modelport.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelport.bundle import manifest as mf
from modelport.bundle.core import MODEL_FILE, Bundle
from modelport.bundle.signing import SIGNATURE_FILE


@dataclass(frozen=True)
class PKI:
    key: Path  # the trusted EC key pair, made by openssl (P-256)
    pub: Path
    other_key: Path  # a key pair nobody trusts (cryptography, P-256)
    other_pub: Path
    p384_key: Path
    p384_pub: Path
    encrypted_key: Path  # P-256, password "s3cret"
    encrypted_pub: Path
    rsa_key: Path
    rsa_pub: Path
    root: Path  # private CA root
    intermediate: Path
    leaf: Path  # signing certificate issued by the intermediate (digitalSignature, code signing)
    leaf_key: Path
    leaf2: Path  # a second signing certificate from the same chain
    leaf2_key: Path
    nosign: Path  # issued by the intermediate, but only for key agreement: may not sign
    nosign_key: Path
    other_root: Path  # an unrelated CA
    other_leaf: Path
    other_leaf_key: Path


def _pem_private(key: Any, password: bytes | None = None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    enc = (serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _pem_public(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool, can_sign: bool = True) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme ML"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.timezone.utc)
    usage = dict(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)
    if ca:
        usage.update(key_cert_sign=True, crl_sign=True)
    elif can_sign:
        usage.update(digital_signature=True)
    else:
        usage.update(key_agreement=True)
    b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=1 if ca else None), critical=True)
         .add_extension(x509.KeyUsage(**usage), critical=True))
    if not ca and can_sign:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PKI:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    d = tmp_path_factory.mktemp("pki")
    assert shutil.which("openssl"), "openssl is needed to make the test key the way the docs say"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(d / "ec.key")],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "ec", "-in", str(d / "ec.key"), "-pubout", "-out", str(d / "ec.pub")],
                   check=True, capture_output=True)

    def pair(name: str, key: Any, password: bytes | None = None) -> tuple[Path, Path]:
        (d / f"{name}.key").write_bytes(_pem_private(key, password))
        (d / f"{name}.pub").write_bytes(_pem_public(key))
        return d / f"{name}.key", d / f"{name}.pub"

    other = pair("other", ec.generate_private_key(ec.SECP256R1()))
    p384 = pair("p384", ec.generate_private_key(ec.SECP384R1()))
    encrypted = pair("encrypted", ec.generate_private_key(ec.SECP256R1()), b"s3cret")
    rsa_pair = pair("rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def pem(cert: Any, name: str) -> Path:
        (d / name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return d / name

    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = _cert("Acme Root CA", root_key, "Acme Root CA", root_key, ca=True)
    inter = _cert("Acme Signing CA", inter_key, "Acme Root CA", root_key, ca=True)
    leaves = {}
    for name, can_sign in (("leaf", True), ("leaf2", True), ("nosign", False)):
        k = ec.generate_private_key(ec.SECP256R1())
        (d / f"{name}.key").write_bytes(_pem_private(k))
        leaves[name] = pem(_cert(f"release-{name}", k, "Acme Signing CA", inter_key, ca=False, can_sign=can_sign),
                           f"{name}.pem")
    other_root_key, other_leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    other_root = _cert("Evil Root CA", other_root_key, "Evil Root CA", other_root_key, ca=True)
    (d / "other-leaf.key").write_bytes(_pem_private(other_leaf_key))
    return PKI(
        key=d / "ec.key", pub=d / "ec.pub", other_key=other[0], other_pub=other[1], p384_key=p384[0],
        p384_pub=p384[1], encrypted_key=encrypted[0], encrypted_pub=encrypted[1], rsa_key=rsa_pair[0],
        rsa_pub=rsa_pair[1], root=pem(root, "root.pem"), intermediate=pem(inter, "intermediate.pem"),
        leaf=leaves["leaf"], leaf_key=d / "leaf.key", leaf2=leaves["leaf2"], leaf2_key=d / "leaf2.key",
        nosign=leaves["nosign"], nosign_key=d / "nosign.key", other_root=pem(other_root, "other-root.pem"),
        other_leaf=pem(_cert("intruder", other_leaf_key, "Evil Root CA", other_root_key, ca=False), "other-leaf.pem"),
        other_leaf_key=d / "other-leaf.key",
    )


@pytest.fixture(scope="session")
def small_bundle(iris) -> Bundle:
    from sklearn.tree import DecisionTreeClassifier

    import modelport as mp

    X, y = iris
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    return mp.pack(model, X, name="iris", version="1", metrics={"auc": 0.91}, tags={"team": "risk"},
                   description="three species")


def variant(bundle: Bundle, i: int, **manifest_changes: Any) -> Bundle:
    """The same model under another digest (only the graph's doc string differs): it computes what
    ``bundle`` computes, so it passes ``check``, but it is another bundle."""
    m = bundle.onnx_model
    copy = type(m)()
    copy.CopyFrom(m)
    copy.doc_string = f"variant {i}"
    files = {k: v for k, v in bundle.files.items() if k not in ("manifest.json", SIGNATURE_FILE)}
    files[MODEL_FILE] = copy.SerializeToString()
    manifest = {**json.loads(bundle.files["manifest.json"]), **manifest_changes}
    manifest["files"] = mf.files_table(files)
    return Bundle({**files, "manifest.json": mf.dumps(manifest)}, origin="<variant>")


@pytest.fixture(scope="session")
def other_bundle(small_bundle) -> Bundle:
    return variant(small_bundle, 1, version="2")


def edit_manifest(files: dict[str, bytes], edit: Callable[[dict[str, Any]], None]) -> dict[str, bytes]:
    """``files`` with manifest.json edited in place (the files table untouched: the digest stays the same)."""
    manifest = json.loads(files["manifest.json"])
    edit(manifest)
    return {**files, "manifest.json": mf.dumps(manifest)}


def sig_doc(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """A signature file as (Sigstore bundle dict, decoded in-toto statement)."""
    doc = json.loads(raw)
    return doc, json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))


def with_statement(doc: dict[str, Any], statement: dict[str, Any]) -> bytes:
    """``doc`` with its payload replaced by ``statement`` (the envelope's signature left as it was)."""
    out = json.loads(json.dumps(doc))
    out["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(out).encode()


def save(bundle_or_files: Bundle | dict[str, bytes], path: Path) -> Path:
    """Write a bundle (or raw files, unchecked) as a directory or an .mpk, by the path's suffix."""
    from modelport.bundle import archive

    files = bundle_or_files.files if isinstance(bundle_or_files, Bundle) else bundle_or_files
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return archive.write(path, files)


@pytest.fixture(params=["mpk", "dir"])
def layout(request) -> str:
    """Every signing test runs on both bundle layouts: an .mpk archive and a directory."""
    return request.param


def bundle_path(tmp_path: Path, layout: str, name: str = "b") -> Path:
    return tmp_path / (f"{name}.mpk" if layout == "mpk" else name)
