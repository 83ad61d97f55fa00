"""``modelport verify BUNDLE``: are the files intact, and does the bundle give its recorded answers here?"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from modelport.errors import BundleError, ModelportError, VerificationError


@click.command("verify")
@click.argument("bundle")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.pass_context
def verify(ctx: click.Context, bundle: str, as_json: bool) -> None:
    """Check BUNDLE's file digests and re-run its stored reference data on this machine.

    BUNDLE is a bundle directory, an .mpk file or a registry URI (models:/NAME@ALIAS).

    \b
    Exit codes:
      0  every digest matches and the bundle reproduces its recorded answers here
      5  the bundle is damaged: a file is missing, modified, unlisted or unsafe
      6  the files are intact but the answers here differ beyond the recorded tolerance
    """
    from modelport import check, load
    from modelport.inspect.integrity import file_report

    result: dict[str, Any] = {"bundle": bundle, "pass": False, "digests_ok": False, "files": [], "parity": None,
                              "rows": 0, "error": None}
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
    )
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
    result["pass"] = report.passed
    _finish(ctx, result, as_json, exit_code=0 if report.passed else VerificationError.exit_code)


def _finish(ctx: click.Context, result: dict[str, Any], as_json: bool, *, exit_code: int) -> None:
    if as_json:
        from modelport.inspect._json import dumps

        click.echo(dumps(result))
    else:
        _render(result)
    ctx.exit(exit_code)


def _render(result: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)  # messages stay on one line for grep
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
    if result.get("error"):
        console.print(Text(f"error: {result['error']}", style="red"))
    if result["pass"]:
        console.print(Text("verdict: PASS: digests match and the bundle gives its recorded answers on this "
                           "machine.", style="bold green"))
    elif bad:
        console.print(Text(f"verdict: FAIL: damaged files ({', '.join(f['path'] for f in bad)}); do not use "
                           "this bundle.", style="bold red"))
    elif not result["digests_ok"]:
        console.print(Text("verdict: FAIL: the bundle cannot be loaded safely (see the error above); do not use "
                           "it.", style="bold red"))
    else:
        console.print(Text("verdict: FAIL: the files are intact but the bundle does not give its recorded "
                           "answers on this machine.", style="bold red"))
