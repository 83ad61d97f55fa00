"""``modelport verify BUNDLE``: are the files intact, and does the bundle give its recorded answers here?"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from modelport.errors import BundleError, ModelportError, SignatureError, VerificationError

_PEM = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("verify")
@click.argument("bundle")
@click.option("--original", "original", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Also compare with the original model in this file (XGBoost .json/.ubj, LightGBM .txt, "
                   "CatBoost .cbm, torch .pt2; pickles only with --trust-pickle). Needs --data.")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Fresh rows for --original: CSV, Parquet or JSON lines (or .npy/.npz for tensor models).")
@click.option("--trust-pickle", is_flag=True, help="Allow --original to be a pickle/joblib file (runs its code).")
@click.option("--public-key", "public_keys", multiple=True, type=_PEM,
              help="Require a signature by this EC public key (PEM; repeatable: any of them).")
@click.option("--ca", "cas", multiple=True, type=_PEM,
              help="Require a signature by a certificate that chains to this CA root (PEM; repeatable).")
@click.option("--certificate", "certificates", multiple=True, type=_PEM,
              help="With --ca: the signing certificate must also be this one (PEM; repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.pass_context
def verify(ctx: click.Context, bundle: str, original: Path | None, data_file: Path | None, trust_pickle: bool,
           public_keys: tuple[Path, ...], cas: tuple[Path, ...], certificates: tuple[Path, ...],
           as_json: bool) -> None:
    """Check BUNDLE's file digests and re-run its stored reference data on this machine.

    BUNDLE is a bundle directory, an .mpk file or a registry URI (models:/NAME@ALIAS).
    With --original MODEL_FILE --data FILE the bundle is also compared with the original
    model on fresh rows.

    The digest covers the files table, the format, the input/output signature, the task and the
    classes, not descriptive fields (metrics, tags, description). A signature (manifest.sig,
    made by `modelport sign`) covers every file, manifest.json included. With --public-key or
    --ca the bundle must carry a signature by that signer which covers it as it is; without
    them a signature is reported (who it names) but not trusted, and one that no longer matches
    the files fails.

    \b
    Exit codes:
      0  every digest matches and the bundle reproduces its recorded answers here
         (and, with --original, the original model's answers on --data; with --public-key
         or --ca, a trusted signature covers every file)
      2  bad arguments (an unreadable key or CA file)
      5  the bundle is damaged: a file is missing, modified, unlisted or unsafe; or its
         signature is missing (when required), malformed, untrusted or not over these files
      6  the files are intact but the answers here differ beyond the recorded tolerance
    """
    if (original is None) != (data_file is None):
        raise click.UsageError("--original and --data go together: the original model and the rows to compare on.")
    from modelport import check, load
    from modelport.bundle.signing import SIGNATURE_FILE
    from modelport.inspect.integrity import file_report
    from modelport.signing import SignaturePolicy, check_consistent, coverage, status

    # key files are read before the bundle: a bad --public-key is the caller's error (exit 2), whatever the bundle
    policy = (SignaturePolicy(trusted_keys=public_keys, cas=cas, certificates=certificates)
              if public_keys or cas or certificates else None)
    result: dict[str, Any] = {"bundle": bundle, "pass": False, "digests_ok": False, "files": [], "parity": None,
                              "rows": 0, "error": None, "digest_covers": None, "signing": None}
    try:
        b = load(bundle)
    except BundleError as exc:
        result["error"] = str(exc)
        if Path(bundle).exists():
            # when the archive itself is unreadable there is no table; the load error says where and why
            with contextlib.suppress(BundleError):
                result["files"] = file_report(bundle)
        _finish(ctx, result, as_json, exit_code=exc.exit_code)
        return
    result.update(
        name=b.name,
        version=b.version,
        digest=b.digest,
        digests_ok=True,
        files=[{"path": p, "status": "ok", "size": e["size"], "sha256": e["sha256"]}
               for p, e in sorted(b.manifest["files"].items())],
        digest_covers=coverage(b),
        signing={"file": SIGNATURE_FILE, "present": SIGNATURE_FILE in b.files, "verified": False},
    )
    # the signature before the reference data: a bundle nobody trusted should not be run at all
    try:
        result["signing"] = status(b)
        if policy is not None:
            result["signing"] = policy.check(b).to_dict()
        else:
            check_consistent(b)
    except SignatureError as exc:
        result["signing"].update(verified=False, error=exc.message)
        result["error"] = str(exc)
        _finish(ctx, result, as_json, exit_code=exc.exit_code)
        return
    try:
        report = check(b)
    except ModelportError as exc:
        result["error"] = f"re-running the reference data failed: {exc}"
        _finish(ctx, result, as_json, exit_code=VerificationError.exit_code)
        return
    result["rows"] = report.rows
    result["parity"] = None if report.parity is None else report.parity.to_dict()
    if report.parity is None:
        result["error"] = "the bundle stores no reference data, so its answers cannot be checked."
        _finish(ctx, result, as_json, exit_code=VerificationError.exit_code)
        return
    passed = report.passed
    if original is not None and data_file is not None:
        parity = _against_original(b, original, data_file, trust_pickle=trust_pickle)
        result["original"] = {"model": str(original), "data": str(data_file), "parity": parity.to_dict()}
        passed = passed and parity.passed
    result["pass"] = passed
    _finish(ctx, result, as_json, exit_code=0 if passed else VerificationError.exit_code)


def _against_original(b: Any, original: Path, data_file: Path, *, trust_pickle: bool) -> Any:
    """Parity of bundle ``b`` with the model in ``original`` on the rows in ``data_file``."""
    from modelport import verify as verify_parity
    from modelport.cli.pack import read_sample
    from modelport.convert.files import load_model_file
    from modelport.errors import InputError

    model = load_model_file(original, trust_pickle=trust_pickle)
    data = read_sample(data_file)
    cols = b.signature.columns
    if cols is not None and hasattr(data, "columns"):
        missing = [c.name for c in cols if c.name not in set(map(str, data.columns))]
        if missing:
            raise InputError(
                f"{data_file} lacks column(s) the model reads: {', '.join(missing)}.",
                hint=f"the bundle's columns are: {', '.join(c.name for c in cols)}",
            )
    # a model fitted on a bare array has columns f0..f{n-1}: hand it the array, in that order, as it was
    # trained (scikit-learn warns, and other libraries refuse, when given names it never saw)
    if cols is not None and hasattr(data, "columns") and all(c.name == f"f{i}" for i, c in enumerate(cols)):
        names = [c.name for c in cols]
        if sorted(map(str, data.columns)) == sorted(names):
            data = data[names].to_numpy()
    try:
        return verify_parity(b, model, data)
    except ModelportError:
        raise
    except Exception as exc:  # the original library refusing the rows: say so in our terms
        raise InputError(
            f"the original model could not score {data_file}: {type(exc).__name__}: {exc}",
            hint="pass rows with the columns and types the model was trained on",
        ) from exc


def _finish(ctx: click.Context, result: dict[str, Any], as_json: bool, *, exit_code: int) -> None:
    if as_json:
        from modelport.inspect._json import dumps

        click.echo(dumps(result))
    else:
        _render(result)
    ctx.exit(exit_code)


def _render(result: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from modelport.inspect._text import clean_data
    from modelport.inspect._text import console as literal_console

    result = clean_data(result)  # bundle text is shown, never obeyed (a fake PASS cannot be printed)
    console = literal_console(soft_wrap=True)  # messages stay on one line for grep
    head = Text(result.get("name") or result["bundle"], style="bold")
    if result.get("version"):
        head.append(f"  version {result['version']}", style="cyan")
    if result.get("digest"):
        head.append(f"  {result['digest']}", style="dim")
    console.print(head)

    bad = [f for f in result["files"] if f["status"] != "ok"]
    files = Table(box=box.SIMPLE_HEAD, title="Files", title_justify="left", title_style="bold")
    for col in ("file", "bytes", "status", "reason"):
        files.add_column(col, overflow="fold")
    for f in result["files"]:
        ok = f["status"] == "ok"
        files.add_row(f["path"], str(f.get("size") if f.get("size") is not None else "-"),
                      Text("ok" if ok else f["status"].upper(), style="green" if ok else "bold red"),
                      f.get("reason", ""))
    if result["files"]:
        console.print(files)
    if result["digests_ok"]:
        console.print(Text(f"digests: ok ({len(result['files'])} files match the manifest)", style="green"))
    else:
        which = ", ".join(f"{f['path']} ({f['status']})" for f in bad) or "see the error below"
        console.print(Text(f"digests: FAILED: {which}", style="bold red"))
    covers = result.get("digest_covers")
    if covers:
        console.print(Text(f"digest covers: {covers['text']}; not: {', '.join(covers['not_covered'])}", style="dim"))
    signing = result.get("signing")
    if signing is not None:
        console.print(_signing_line(signing))

    parity = result.get("parity")
    if parity is not None:
        t = Table(box=box.SIMPLE, show_header=False, title="Reference data re-run here", title_justify="left",
                  title_style="bold")
        t.add_column("field", style="dim")
        t.add_column("value", overflow="fold")
        t.add_row("rows", str(result["rows"]))
        t.add_row("max abs error", f"{parity['max_abs_error']:.3g}")
        t.add_row("max rel error", f"{parity['max_rel_error']:.3g}")
        if parity.get("label_agreement") is not None:
            t.add_row("label agreement", f"{parity['label_agreement']:.4%}")
        tol = parity.get("tolerance") or {}
        t.add_row("tolerance", ", ".join(f"{k} {v:g}" for k, v in sorted(tol.items())))
        for name, entry in (parity.get("outputs") or {}).items():
            if "error" in entry:
                t.add_row(f"output {name}", entry["error"])
        if parity.get("worst_rows"):
            t.add_row("worst rows", ", ".join(map(str, parity["worst_rows"][:10])))
        console.print(t)
    against = result.get("original")
    if against is not None:
        op = against["parity"]
        t = Table(box=box.SIMPLE, show_header=False, title=f"Against the original model ({against['model']})",
                  title_justify="left", title_style="bold")
        t.add_column("field", style="dim")
        t.add_column("value", overflow="fold")
        t.add_row("data", f"{op['samples']} rows from {against['data']}")
        t.add_row("max abs error", f"{op['max_abs_error']:.3g}")
        t.add_row("max rel error", f"{op['max_rel_error']:.3g}")
        if op.get("label_agreement") is not None:
            t.add_row("label agreement", f"{op['label_agreement']:.4%}")
        if op.get("worst_rows"):
            t.add_row("worst rows", ", ".join(map(str, op["worst_rows"][:10])))
        t.add_row("verdict", Text("pass" if op["pass"] else "FAIL", style="green" if op["pass"] else "bold red"))
        console.print(t)
    if result.get("error"):
        console.print(Text(f"error: {result['error']}", style="red"))
    if result["pass"]:
        extra = " and the original model's answers on the given data" if against is not None else ""
        signed = ""
        if signing is not None and signing.get("verified"):
            signed = f", a trusted signature ({signing['signer']['description']}) covers every file,"
        console.print(Text(f"verdict: PASS: digests match{signed} and the bundle gives its recorded answers on this "
                           f"machine{extra}.", style="bold green"))
    elif signing is not None and signing.get("error"):
        console.print(Text("verdict: FAIL: the signature does not hold (see the error above); do not use this "
                           "bundle.", style="bold red"))
    elif against is not None and not against["parity"]["pass"] and (parity or {}).get("pass"):
        console.print(Text("verdict: FAIL: the bundle does not give the original model's answers on "
                           f"{against['data']}.", style="bold red"))
    elif bad:
        console.print(Text(f"verdict: FAIL: damaged files ({', '.join(f['path'] for f in bad)}); do not use "
                           "this bundle.", style="bold red"))
    elif not result["digests_ok"]:
        console.print(Text("verdict: FAIL: the bundle cannot be loaded safely (see the error above); do not use "
                           "it.", style="bold red"))
    else:
        console.print(Text("verdict: FAIL: the files are intact but the bundle does not give its recorded "
                           "answers on this machine.", style="bold red"))


def _signing_line(signing: dict[str, Any]) -> Any:
    from rich.text import Text

    if signing.get("error"):
        return Text(f"signature: FAILED: {signing['file']} was refused (the error below says why)", style="bold red")
    if not signing["present"]:
        return Text(f"signature: none ({signing['file']} absent; sign with modelport sign)", style="dim")
    who = signing["signer"]["description"]
    n = len(signing["files_covered"])
    if signing["verified"]:
        through = "a trusted key" if signing["signer"]["kind"] == "key" else f"chains to {signing['trusted_by']}"
        return Text(f"signature: verified: {who} ({through}); covers "
                    f"{signing['covers']} ({n} files)", style="green")
    return Text(f"signature: present but not verified: names {who}; {signing['reason']}; covers "
                f"{signing['covers']} ({n} files, matching them)", style="yellow")
