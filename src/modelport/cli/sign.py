"""``modelport sign BUNDLE --key ec.key``: write a signature over every file into the bundle."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from modelport.errors import InputError

_PEM = click.Path(exists=True, dir_okay=False, path_type=Path)
F = TypeVar("F", bound=Callable[..., object])


def policy_options(fn: F) -> F:
    """``--require-signature --trusted-key K --ca C --trusted-certificate P`` for push and serve
    (turned into a :class:`modelport.signing.SignaturePolicy` by ``SignaturePolicy.from_options``)."""
    for option in reversed((
        click.option("--require-signature", is_flag=True,
                     help="Refuse bundles unless signed (modelport sign) by a --trusted-key or a --ca certificate."),
        click.option("--trusted-key", "trusted_keys", multiple=True, type=_PEM,
                     help="EC public key (PEM) whose signatures are accepted (repeatable)."),
        click.option("--ca", "trusted_cas", multiple=True, type=_PEM,
                     help="Private CA root (PEM); signatures by certificates that chain to it are accepted (repeatable)."),
        click.option("--trusted-certificate", "trusted_certificates", multiple=True, type=_PEM,
                     help="With --ca: accept only these signing certificates (PEM; repeatable)."),
    )):
        fn = option(fn)
    return fn


@click.command("sign")
@click.argument("bundle")
@click.option("--key", "key", required=True, type=_PEM,
              help="EC private key (PEM; P-256, P-384 or P-521) to sign with.")
@click.option("--certificate", type=_PEM, default=None,
              help="The key's certificate (PEM) from a private CA; the signature then verifies with --ca ROOT.")
@click.option("--certificate-chain", "chain", multiple=True, type=_PEM,
              help="CA certificates between --certificate and the root (PEM; repeatable).")
@click.option("--password-env", metavar="VAR", default=None,
              help="Read the password of an encrypted --key from this environment variable.")
@click.option("-o", "--output", default=None,
              help="Write the signed bundle here (.mpk or a directory) instead of signing BUNDLE in place.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sign(bundle: str, key: Path, certificate: Path | None, chain: tuple[Path, ...], password_env: str | None,
         output: str | None, as_json: bool) -> None:
    """Sign BUNDLE (an .mpk file or a bundle directory): write manifest.sig into it.

    The signature (OpenSSF model-signing, a Sigstore bundle made offline) covers every file of
    the bundle, manifest.json included, so metrics, tags and description are covered too. The
    bundle's digest does not change; signing again replaces the signature. Check it with
    `modelport verify BUNDLE --public-key ec.pub` (or `--ca root.pem` for a certificate).

    \b
      openssl ecparam -name prime256v1 -genkey -noout -out ec.key
      openssl ec -in ec.key -pubout -out ec.pub
      modelport sign churn.mpk --key ec.key
    """
    from modelport.signing import sign as sign_bundle
    from modelport.signing import status

    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            raise InputError(f"--password-env {password_env}: the variable is not set.",
                             hint=f"export {password_env}=... (the key's password), or drop --password-env")
    signed = sign_bundle(bundle, key=key, certificate=certificate, certificate_chain=chain, password=password,
                         output=output)
    info = status(signed)
    where = output or bundle
    if as_json:
        from modelport.inspect._json import dumps

        click.echo(dumps({"bundle": bundle, "written": where, "digest": signed.digest, "signing": info}))
        return
    click.echo(f"signed {where} ({signed.digest}, unchanged by signing)")
    click.echo(f"  signer:  {info['signer']['description']}")
    click.echo(f"  covers:  {info['covers']}: {', '.join(info['files_covered'])}")
    click.echo(f"  file:    {info['file']}")
