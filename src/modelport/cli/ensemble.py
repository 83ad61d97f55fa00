"""``modelport ensemble A B [C ...] --method mean -o ENS.mpk``: several bundles fused into one verified bundle."""

from __future__ import annotations

import json
from pathlib import Path

import click

from modelport.errors import InputError


def _numbers(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what} must be numbers separated by commas, e.g. 0.5,0.3,0.2; got {text!r} instead.") from None


@click.command("ensemble")
@click.argument("bundles", nargs=-1, required=True)
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Where to write the ensemble: NAME.mpk for a single file, any other path for a directory.")
@click.option("--method", type=click.Choice(["mean", "weighted", "vote", "stack"]), default="mean", show_default=True,
              help="mean / weighted mean / vote of probabilities, mean of regressions, or a linear stack.")
@click.option("--weights", default=None, metavar="W1,W2,...",
              help="One weight per member (weighted, vote; the meta-model's coefficients for stack).")
@click.option("--intercept", default=None, metavar="B or B1,B2,...",
              help="stack: the meta-model's intercept (one number, or one per class).")
@click.option("--name", default=None, help="Model name (default: the first member's name + '-ensemble').")
@click.option("--version", "version", default=None, help="Version label stored in the manifest.")
@click.option("--description", default=None, help="Free text stored in the manifest.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def ensemble(bundles: tuple[str, ...], output: Path, method: str, weights: str | None, intercept: str | None,
             name: str | None, version: str | None, description: str | None, overwrite: bool, as_json: bool) -> None:
    """Fuse BUNDLES (paths, .mpk files or models:/ URIs with one signature) into one ONNX graph,
    verified against the members' own answers."""
    import modelport
    from modelport.ensemble import fuse

    w = _numbers(weights, "--weights")
    b = _numbers(intercept, "--intercept")
    members = [modelport.load(uri) for uri in bundles]
    ens = fuse(members, method=method, weights=w, intercept=b, name=name, version=version,  # type: ignore[arg-type]
               description=description)
    path = ens.save(output, overwrite=overwrite)
    parity = ens.manifest["parity"]
    if as_json:
        click.echo(json.dumps({"path": str(path), "name": ens.name, "version": ens.version, "digest": ens.digest,
                               "method": method, "members": ens.manifest["lineage"]["members"], "parity": parity},
                              indent=2))
        return
    click.echo(f"{path}: {ens.name} ({method} of {len(members)} members), {ens.digest}")
    click.echo(f"verified on {parity['samples']} rows against the members' answers: "
               f"max abs error {parity['max_abs_error']:.3g}")
