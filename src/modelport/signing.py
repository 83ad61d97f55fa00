"""Signing bundles with OpenSSF model-signing, offline: an EC key, or a certificate from a private CA.

    >>> import modelport as mp
    >>> mp.sign("churn.mpk", key="ec.key")                  # writes manifest.sig into the bundle
    >>> mp.verify_signature("churn.mpk", public_keys=["ec.pub"]).signer.describe()
    'key sha256:0435940...'
    >>> policy = mp.SignaturePolicy(trusted_keys=["ec.pub"], cas=["root.pem"])
    >>> policy.check(mp.load("churn.mpk"))                  # SignatureError unless a trusted signer made it

A signature (``manifest.sig``, a Sigstore bundle written by model-signing) lists the sha256 of
every file of the bundle, ``manifest.json`` included, so an edited metric, tag or description is
caught although the identity digest leaves those out; the format is read by
:mod:`modelport.bundle.signing`. :class:`SignaturePolicy` is the one place that decides whether a
bundle is signed well enough: ``modelport verify``, registry push and ``modelport serve`` all call
it. It checks, in this order, that the bundle carries a signature, that the signer is trusted (a
key by its fingerprint, a certificate by its chain to a trusted CA and, if pinned, by its own
fingerprint), that the signature lists every file as it is now, and, through model-signing, that
the signature is cryptographically valid over exactly those digests.

Sigstore's online flow (Fulcio certificates, the Rekor log) is never used, and nothing here
touches the network. model-signing is imported only when a signature is made or verified; without
``modelport[sign]`` those raise MissingDependencyError. model-signing reads models from disk, so
the bundle's files (as loaded and validated, never re-read from their source) are written to a
private temporary directory for the duration of a call.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Union

from modelport._deps import require
from modelport.bundle import manifest as mf
from modelport.bundle.signing import COVERS, SIGNATURE_FILE, SignatureFile, check_covers, mismatches, parse
from modelport.errors import InputError, SignatureError

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle

__all__ = ["SignaturePolicy", "SignatureReport", "Signer", "check_consistent", "coverage", "sign", "signer_of",
           "status", "verify_signature"]

PathLike = Union[str, "os.PathLike[str]"]
KeySource = Union[str, "os.PathLike[str]", bytes]
CURVES = ("secp256r1", "secp384r1", "secp521r1")  # what model-signing accepts (P-256, P-384, P-521)
_KEYGEN = "openssl ecparam -name prime256v1 -genkey -noout -out ec.key && openssl ec -in ec.key -pubout -out ec.pub"


# ----------------------------------------------------------------------------- who signed
@dataclass(frozen=True)
class Signer:
    """Who made a signature, as the signature states it.

    ``key_fingerprint`` is ``sha256:`` + the sha256 of the signer's public key in PEM
    (SubjectPublicKeyInfo), which is ``sha256sum ec.pub`` for a key file written by openssl. For a
    certificate, ``subject`` / ``issuer`` are RFC 4514 names and ``certificate_fingerprint`` is the
    sha256 of its DER bytes.
    """

    kind: str
    key_fingerprint: str | None = None
    subject: str | None = None
    issuer: str | None = None
    serial: str | None = None
    certificate_fingerprint: str | None = None
    not_before: str | None = None
    not_after: str | None = None

    def describe(self) -> str:
        if self.kind == "key":
            return f"key {self.key_fingerprint}"
        if self.subject is None:
            return f"certificate {self.certificate_fingerprint} (install modelport[sign] to read its subject)"
        return f"certificate {self.subject} (issued by {self.issuer})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "description": self.describe(),
                               "key_fingerprint": self.key_fingerprint}
        if self.kind == "certificate":
            out["certificate"] = {"subject": self.subject, "issuer": self.issuer, "serial": self.serial,
                                  "sha256": self.certificate_fingerprint, "not_before": self.not_before,
                                  "not_after": self.not_after}
        return out


@dataclass(frozen=True)
class SignatureReport:
    """A signature that :class:`SignaturePolicy` accepted: who made it, whom we trusted, what it covers."""

    origin: str
    signer: Signer
    trusted_by: str
    covers: tuple[str, ...]
    file: str = SIGNATURE_FILE
    verified: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "present": True, "verified": self.verified, "signer": self.signer.to_dict(),
                "trusted_by": self.trusted_by, "covers": COVERS, "files_covered": list(self.covers),
                "matches_files": True, "problems": []}


# ----------------------------------------------------------------------------- the policy
class SignaturePolicy:
    """A bundle must carry ``manifest.sig``, made by one of ``trusted_keys`` or by a certificate
    that chains to one of ``cas`` (and, when ``certificates`` are given, is one of them), and the
    signature must cover every file of the bundle as it is.

    Keys and certificates are PEM files (paths) or PEM bytes; they are read and checked here, so a
    bad key file fails when the policy is made (at server start), not at the first bundle.
    """

    def __init__(self, *, trusted_keys: Iterable[KeySource] = (), cas: Iterable[KeySource] = (),
                 certificates: Iterable[KeySource] = ()) -> None:
        self._keys: dict[str, bytes] = {}  # fingerprint (hex) -> PEM of the public key
        for source in trusted_keys:
            pem, fp = _public_key(source)
            self._keys[fp] = pem
        self._cas: list[tuple[bytes, str]] = []  # (PEM, subject) of every trusted CA certificate
        for source in cas:
            self._cas += _certificates(source, what="CA certificate")
        self._pinned: dict[str, str] = {}  # sha256 of DER -> subject
        for source in certificates:
            for pem, subject in _certificates(source, what="certificate"):
                self._pinned[_pem_fingerprint(pem)] = subject
        if not self._keys and not self._cas:
            raise InputError(
                "a signature policy needs at least one trusted public key or CA certificate; got none.",
                hint="pass --trusted-key ec.pub (or --public-key for verify) and/or --ca root.pem",
            )
        if self._pinned and not self._cas:
            raise InputError(
                "pinned signing certificates are checked through their chain to a CA; no CA was given.",
                hint="add --ca root.pem (the private CA's root certificate)",
            )

    @classmethod
    def from_options(cls, *, require: bool, trusted_keys: Iterable[KeySource] = (), cas: Iterable[KeySource] = (),
                     certificates: Iterable[KeySource] = ()) -> SignaturePolicy | None:
        """The policy ``--require-signature --trusted-key K --ca C`` asks for (push, serve); None without it."""
        keys, roots, pins = list(trusted_keys), list(cas), list(certificates)
        if not require:
            if keys or roots or pins:
                raise InputError(
                    "trusted keys and CAs are only used together with --require-signature; got them without it.",
                    hint="add --require-signature (bundles are then refused unless signed by a trusted signer)",
                )
            return None
        if not keys and not roots:
            raise InputError(
                "--require-signature needs the signers to trust; got no --trusted-key and no --ca.",
                hint="add --trusted-key ec.pub (repeatable) and/or --ca root.pem",
            )
        return cls(trusted_keys=keys, cas=roots, certificates=pins)

    def describe(self) -> dict[str, Any]:
        return {"trusted_keys": [f"sha256:{fp}" for fp in sorted(self._keys)],
                "cas": [subject for _pem, subject in self._cas],
                "certificates": [f"sha256:{fp}" for fp in sorted(self._pinned)]}

    def __repr__(self) -> str:
        d = self.describe()
        return f"<SignaturePolicy keys={len(d['trusted_keys'])} cas={len(d['cas'])} pinned={len(d['certificates'])}>"

    def check(self, bundle: Bundle) -> SignatureReport:
        """The signature report of ``bundle``; SignatureError naming the file and the reason if refused."""
        origin = bundle.origin
        files = bundle.files
        raw = files.get(SIGNATURE_FILE)
        if raw is None:
            raise SignatureError(
                f"{origin}: the bundle is not signed (it has no {SIGNATURE_FILE}), and a signature by a trusted "
                "signer is required.",
                hint="sign it with: modelport sign BUNDLE --key ec.key (a key whose public half is trusted here)",
            )
        sig = parse(raw, origin=origin)
        signer = signer_of(sig, origin=origin)
        if sig.kind == "key":
            assert sig.key_hint is not None
            if sig.key_hint not in self._keys:
                trusted = (f"trusted keys: {', '.join(f'sha256:{fp}' for fp in sorted(self._keys))}" if self._keys
                           else "no key is trusted here, only certificates from the CA(s) given")
                raise SignatureError(
                    f"{origin}: {SIGNATURE_FILE} was made by key sha256:{sig.key_hint}, which is not a trusted key "
                    f"({trusted}).",
                    hint="have the bundle signed with a trusted key, or trust this signer's public key "
                    "(--trusted-key / --public-key) if you know it",
                )
            trusted_by = f"key sha256:{sig.key_hint}"
        else:
            if not self._cas:
                raise SignatureError(
                    f"{origin}: {SIGNATURE_FILE} was made with a certificate ({signer.describe()}), and no CA is "
                    "trusted to check it.",
                    hint="pass the private CA's root certificate with --ca root.pem",
                )
            leaf = hashlib.sha256(sig.certificates[0]).hexdigest()
            if self._pinned and leaf not in self._pinned:
                raise SignatureError(
                    f"{origin}: {SIGNATURE_FILE} was made with certificate sha256:{leaf} ({signer.describe()}), "
                    f"which is not one of the pinned signing certificates "
                    f"({', '.join(f'sha256:{fp}' for fp in sorted(self._pinned))}).",
                    hint="pin that certificate too (--certificate / --trusted-certificate), or re-sign with a "
                    "pinned one",
                )
            trusted_by = "CA " + "; ".join(subject for _pem, subject in self._cas)
        check_covers(sig, files, origin=origin)
        self._verify(bundle, raw, sig, signer)
        return SignatureReport(origin=origin, signer=signer, trusted_by=trusted_by, covers=tuple(sig.covers))

    def _verify(self, bundle: Bundle, raw: bytes, sig: SignatureFile, signer: Signer) -> None:
        ms = _model_signing()
        origin = bundle.origin
        with tempfile.TemporaryDirectory(prefix="modelport-verify-") as tmp:
            root = Path(tmp)
            model_dir = _materialise(bundle, root)
            sig_path = root / SIGNATURE_FILE
            sig_path.write_bytes(raw)
            config = ms.verifying.Config()
            if sig.kind == "key":
                key_path = root / "trusted.pub"
                assert sig.key_hint is not None
                key_path.write_bytes(self._keys[sig.key_hint])
                config.use_elliptic_key_verifier(public_key=key_path)
            else:
                ca_path = root / "trusted-ca.pem"
                ca_path.write_bytes(b"".join(pem for pem, _subject in self._cas))
                config.use_certificate_verifier(certificate_chain=[ca_path])
            config.set_hashing_config(_hashing(ms))
            try:
                config.verify(model_dir, sig_path)
            except Exception as exc:  # model-signing and OpenSSL raise many types; name the reason in our terms
                raise SignatureError(
                    f"{origin}: {SIGNATURE_FILE} does not verify: {_crypto_reason(exc, signer)}.",
                    hint="do not use this bundle; if you produced it, sign it again with modelport sign",
                ) from exc


# ----------------------------------------------------------------------------- functions
def sign(bundle: Bundle | PathLike, *, key: PathLike, certificate: PathLike | None = None,
         certificate_chain: Iterable[PathLike] = (), password: str | bytes | None = None,
         output: PathLike | None = None) -> Bundle:
    """Sign ``bundle`` (a Bundle, a bundle directory or an ``.mpk`` file) and return the signed Bundle.

    ``key`` is an EC private key (PEM; P-256, P-384 or P-521), encrypted with ``password`` if need be.
    With ``certificate`` (the key's certificate, PEM) and ``certificate_chain`` (the intermediate
    CAs up to, optionally, the root), the signature carries that chain and verifies against the
    private CA (``--ca``); without it, it verifies against the public key.

    The signature covers every file of the bundle, ``manifest.json`` included; the identity digest
    does not change, and an earlier signature is replaced. A bundle given as a path is signed in
    place (``manifest.sig`` beside the files of a directory; a rewritten archive for ``.mpk``)
    unless ``output`` names where to write the signed bundle; a Bundle given as an object is written
    only to ``output``.
    """
    from modelport._uri import is_registry_uri
    from modelport.bundle import archive
    from modelport.bundle.core import Bundle as BundleType

    if is_registry_uri(bundle):
        raise InputError(
            f"cannot sign {bundle}: registry versions are stored as pushed and are not changed in place.",
            hint=f"modelport pull {bundle} b.mpk && modelport sign b.mpk --key ec.key && modelport push b.mpk",
        )
    source: Path | None = None
    if isinstance(bundle, BundleType):
        b = bundle
    else:
        source = Path(os.fspath(bundle))
        b = BundleType.read(source)
    pw = password.encode() if isinstance(password, str) else password
    key_path = Path(os.fspath(key))
    private = _private_key(key_path, pw)
    chain_paths = [Path(os.fspath(p)) for p in certificate_chain]
    cert_path = None if certificate is None else Path(os.fspath(certificate))
    if cert_path is None and chain_paths:
        raise InputError("a certificate chain was given without the signing certificate.",
                         hint="add --certificate cert.pem (the certificate of --key)")
    if cert_path is not None:
        _check_certificate_of(cert_path, private, key_path)
        if not chain_paths:
            raise InputError(
                f"{cert_path} needs its chain: the CA certificates that issued it, up to the root.",
                hint="add --certificate-chain intermediate.pem (or root.pem when the root issued it directly)",
            )
        for p in chain_paths:
            _certificates(p, what="certificate chain")
        if pw is not None:
            raise InputError(
                f"{key_path} is encrypted; model-signing signs with a certificate only from an unencrypted key.",
                hint="sign with --key alone, or decrypt a copy kept private: openssl pkey -in ec.key -out plain.key",
            )
    ms = _model_signing()
    with tempfile.TemporaryDirectory(prefix="modelport-sign-") as tmp:
        root = Path(tmp)
        model_dir = _materialise(b, root)
        sig_path = root / SIGNATURE_FILE
        try:
            config = ms.signing.Config()
            if cert_path is None:
                # model-signing hands the password to cryptography, which wants bytes
                config.use_elliptic_key_signer(private_key=key_path, password=pw)
            else:
                config.use_certificate_signer(private_key=key_path, signing_certificate=cert_path,
                                              certificate_chain=chain_paths)
            config.set_hashing_config(_hashing(ms)).sign(model_dir, sig_path)
        except Exception as exc:  # translate the library's errors at the boundary
            raise SignatureError(f"signing {b.origin} failed: {type(exc).__name__}: {exc}") from exc
        raw = sig_path.read_bytes()
    files = {name: data for name, data in b.files.items() if name != SIGNATURE_FILE}
    check_covers(parse(raw, origin=b.origin), files, origin=b.origin)  # what we write is what we would accept
    files[SIGNATURE_FILE] = raw
    signed = BundleType(files, origin=b.origin)
    if output is not None:
        signed.save(output)
    elif source is not None:
        if source.is_dir():
            from modelport._fs import atomic_file

            with atomic_file(source / SIGNATURE_FILE) as fh:
                fh.write(raw)
        else:
            archive.write(source, files)
    return signed


def verify_signature(bundle: Bundle | PathLike, *, public_keys: Iterable[KeySource] = (),
                     cas: Iterable[KeySource] = (), certificates: Iterable[KeySource] = (),
                     policy: SignaturePolicy | None = None) -> SignatureReport:
    """Check ``bundle``'s signature against trusted ``public_keys`` and/or ``cas`` (or a ``policy``).

    Returns who signed, whom that was trusted through and which files the signature covers;
    raises SignatureError (naming ``manifest.sig`` and the reason) for an unsigned bundle, a
    malformed signature, an untrusted signer, a signature over other files, or an invalid one.
    """
    from modelport._uri import load

    if policy is None:
        policy = SignaturePolicy(trusted_keys=public_keys, cas=cas, certificates=certificates)
    elif list(public_keys) or list(cas) or list(certificates):
        raise InputError("give either a policy or keys/CAs to verify_signature, not both.")
    return policy.check(load(bundle))


def status(bundle: Bundle) -> dict[str, Any]:
    """What ``bundle``'s signature claims, without checking who made it (for inspect and verify)."""
    files = bundle.files
    raw = files.get(SIGNATURE_FILE)
    base: dict[str, Any] = {"file": SIGNATURE_FILE, "covers": COVERS, "verified": False}
    if raw is None:
        return {**base, "present": False, "signer": None, "files_covered": [], "matches_files": None,
                "problems": [], "reason": "the bundle is not signed"}
    sig = parse(raw, origin=bundle.origin)
    problems = mismatches(sig, files)
    return {**base, "present": True, "signer": signer_of(sig, origin=bundle.origin).to_dict(),
            "files_covered": sig.covers, "matches_files": not problems,
            "problems": [f"{name} {reason}" for name, reason in problems],
            "reason": "not checked: no trusted key or CA was given (modelport verify --public-key KEY or --ca ROOT)"}


def check_consistent(bundle: Bundle) -> None:
    """SignatureError when ``bundle`` carries a signature that does not list its files as they are.

    Needs no key and proves nothing about who signed (anyone can write or strip a signature):
    it only refuses a bundle that says it was signed and has been edited since.
    """
    raw = bundle.files.get(SIGNATURE_FILE)
    if raw is not None:
        check_covers(parse(raw, origin=bundle.origin), bundle.files, origin=bundle.origin)


def coverage(bundle: Bundle) -> dict[str, Any]:
    """What the identity digest covers and what it leaves out (the signature's side is :func:`status`)."""
    m = bundle.manifest
    return {
        "digest": bundle.digest,
        "fields": list(mf.IDENTITY_FIELDS),
        "files": len(m["files"]),
        "text": f"the files table ({len(m['files'])} files: sha256 and size of each, all but manifest.json and "
                f"{SIGNATURE_FILE}), the format, the input/output signature, the task and the class labels",
        "not_covered": sorted(set(m) - set(mf.IDENTITY_FIELDS)),
    }


def signer_of(sig: SignatureFile, *, origin: str) -> Signer:
    """The signer a parsed signature names (a certificate's details need ``cryptography``)."""
    if sig.kind == "key":
        return Signer(kind="key", key_fingerprint=f"sha256:{sig.key_hint}")
    der = sig.certificates[0]
    fingerprint = f"sha256:{hashlib.sha256(der).hexdigest()}"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        return Signer(kind="certificate", certificate_fingerprint=fingerprint)
    try:
        cert = x509.load_der_x509_certificate(der)
        pem = cert.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    except ValueError as exc:
        raise SignatureError(f"{origin}: {SIGNATURE_FILE} holds a signing certificate that is not valid DER "
                             f"({exc}).", hint="sign the bundle again") from exc
    return Signer(
        kind="certificate", key_fingerprint=f"sha256:{hashlib.sha256(pem).hexdigest()}",
        subject=_printable(subject), issuer=_printable(issuer), serial=f"{cert.serial_number:x}",
        certificate_fingerprint=fingerprint, not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
    )


# ----------------------------------------------------------------------------- internals
def _model_signing() -> Any:
    require("OpenSSL", purpose="signing and verifying bundles")  # model-signing imports it without declaring it
    ms = require("model_signing", purpose="signing and verifying bundles")
    import model_signing.hashing
    import model_signing.signing
    import model_signing.verifying  # noqa: F401  (the public submodules this module calls)

    return ms


def _hashing(ms: ModuleType) -> Any:
    # whole files, sha256, nothing left out but the signature itself (and no git files exempted): a
    # directory bundle signed here verifies with model-signing's own CLI unchanged
    return (ms.hashing.Config().use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)
            .set_ignored_paths(paths=[SIGNATURE_FILE], ignore_git_paths=False))


def _materialise(bundle: Bundle, root: Path) -> Path:
    """The bundle's files (as loaded, without the signature) in a private directory for model-signing."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", bundle.name)[:64].strip(".") or "bundle"
    model_dir = root / safe
    model_dir.mkdir()
    for name, data in bundle.files.items():
        if name == SIGNATURE_FILE:
            continue
        path = model_dir / name  # names were checked by the loader: relative, no '..', no links
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return model_dir


def _crypto(purpose: str) -> tuple[Any, Any, Any]:
    require("cryptography", purpose=purpose)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return x509, serialization, ec


def _read(source: KeySource, what: str) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        return source, f"the {what} given as bytes"
    path = Path(os.fspath(source))
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror or exc}.") from exc


def _public_key(source: KeySource) -> tuple[bytes, str]:
    """PEM (SubjectPublicKeyInfo) of a trusted EC public key, and its fingerprint (hex)."""
    _x509, serialization, ec = _crypto("reading public keys")
    data, name = _read(source, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        private = b"PRIVATE KEY" in data
        raise InputError(
            f"{name} is not a PEM public key" + (" (it is a private key)" if private else "") + ".",
            hint="pass the public half: openssl ec -in ec.key -pubout -out ec.pub" if private
            else f"make a key pair with: {_KEYGEN}",
        ) from exc
    _check_curve(key, name, ec)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, hashlib.sha256(pem).hexdigest()


def _private_key(path: Path, password: bytes | None) -> Any:
    _x509, serialization, ec = _crypto("signing bundles")
    data, name = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise InputError(f"{name}: {exc}.", hint="pass the key's password (--password-env VAR) only if it has one"
                         ) from exc
    except ValueError as exc:
        raise InputError(f"{name} is not a PEM private key, or its password is wrong ({exc}).",
                         hint=f"make a key pair with: {_KEYGEN}") from exc
    _check_curve(key, name, ec)
    return key


def _check_curve(key: Any, name: str, ec: Any) -> None:
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        raise InputError(f"{name} is a {type(key).__name__.lstrip('_')}; bundles are signed with EC keys "
                         "(P-256, P-384 or P-521).", hint=f"make one with: {_KEYGEN}")
    if key.curve.name not in CURVES:
        raise InputError(f"{name} is on curve {key.curve.name}; model-signing accepts {', '.join(CURVES)}.",
                         hint=f"make one with: {_KEYGEN}")


def _certificates(source: KeySource, *, what: str) -> list[tuple[bytes, str]]:
    """(PEM, subject) of every certificate in a PEM file."""
    x509, serialization, _ec = _crypto("checking certificates")
    data, name = _read(source, what)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InputError(f"{name} holds no PEM certificate ({exc}).",
                         hint="pass certificates in PEM (-----BEGIN CERTIFICATE-----)") from exc
    return [(c.public_bytes(serialization.Encoding.PEM), _printable(c.subject.rfc4514_string())) for c in certs]


def _check_certificate_of(cert_path: Path, private: Any, key_path: Path) -> None:
    x509, serialization, _ec = _crypto("signing with a certificate")
    pems = _certificates(cert_path, what="signing certificate")
    cert = x509.load_pem_x509_certificate(pems[0][0])
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.PEM, spki) != private.public_key().public_bytes(
            serialization.Encoding.PEM, spki):
        raise InputError(f"{cert_path} is not the certificate of {key_path} (their public keys differ).",
                         hint="pass the certificate issued for this key")


def _pem_fingerprint(pem: bytes) -> str:
    x509, serialization, _ec = _crypto("checking certificates")
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _crypto_reason(exc: BaseException, signer: Signer) -> str:
    name = type(exc).__name__
    text = " ".join(str(exc).split())[:300]
    if name == "InvalidSignature":
        return (f"the signature is not valid for {signer.describe()}: the signed statement was altered, or "
                "another key made the signature")
    if name == "X509StoreContextError":
        return f"the signing certificate does not chain to a trusted CA ({text or 'verification failed'})"
    if "cannot be used for signing" in text:
        return "the signing certificate may not sign (it has neither digitalSignature key usage nor code signing)"
    if "Signature mismatch" in text:
        return "the files do not match the digests that were signed"
    return f"{name}: {text}" if text else name


def _printable(text: str) -> str:
    """Names from a bundle's certificate are untrusted text: no control characters reach a terminal."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
