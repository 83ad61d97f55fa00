"""``modelport export BUNDLE --target T -o DIR``: a deployment artifact for a bundle.

The targets and the options each takes live in :data:`modelport.export.TARGETS`; this command
only parses options, hands them over, and prints what was written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from modelport.export import TARGETS

_EPILOG = "\b\nTargets:\n" + "\n".join(f"  {t.name:<10} {t.summary}" for t in TARGETS.values())


@click.command("export", epilog=_EPILOG)
@click.argument("bundle")
@click.option("--target", "-t", "target", required=True, type=click.Choice(list(TARGETS)),
              help="Where the bundle is going (see the list below).")
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A new (or empty) directory for the artifact.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists and is not empty.")
@click.option("--deps", type=click.Choice(["env", "pip", "none"]), default=None,
              help="Functions: copy the runtime dependencies from this environment (env), install wheels for "
              "the platform with pip (pip), or list them in requirements.txt for the platform to install (none). "
              "Default: env for lambda, none for gcf and azure.")
@click.option("--python", "python", default=None, metavar="X.Y",
              help="Functions: the platform's Python version (default: this interpreter's).")
@click.option("--arch", default=None, type=click.Choice(["x86_64", "arm64"]),
              help="Functions: the platform's CPU architecture (default: this machine's).")
@click.option("--wheelhouse", default=None, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Functions with --deps pip: install from this directory of wheels, offline.")
@click.option("--no-check", "no_check", is_flag=True,
              help="Functions: skip running the artifact in a clean interpreter before keeping it.")
@click.option("--build", "build", default=None, metavar="TAG",
              help="Container: also build the image with podman or buildah, tagged TAG.")
@click.option("--base", default=None, metavar="IMAGE",
              help="Container: the base image, with python3 of this interpreter's version (default "
              "python:X.Y-slim); 'debootstrap' builds a Debian one locally, with no registry.")
@click.option("--builder", default=None, type=click.Choice(["podman", "buildah"]),
              help="Container: which tool builds the image (default: podman, else buildah).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Container / kserve: the HTTP port (8080).")
@click.option("--image", default=None, metavar="IMAGE", help="kserve: the image the pods run (from --target container).")
@click.option("--replicas", default=None, type=click.IntRange(1), help="kserve: the minimum number of replicas (1).")
@click.option("--max-replicas", default=None, type=click.IntRange(1), help="kserve: the autoscaler's maximum (5).")
@click.option("--namespace", default=None, help="kserve: the Kubernetes namespace of the manifests.")
@click.option("--cpu", default=None, metavar="QUANTITY", help="kserve: the CPU request per pod (e.g. 500m).")
@click.option("--memory", default=None, metavar="QUANTITY", help="kserve: the memory request per pod (e.g. 512Mi).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export(bundle: str, target: str, output: Path, overwrite: bool, no_check: bool, as_json: bool,
           **options: Any) -> None:
    """Export BUNDLE (a .mpk file, a bundle directory or models:/NAME@ALIAS) for a deployment TARGET.

    \b
      modelport export churn.mpk --target lambda    -o dist/lambda/
      modelport export churn.mpk --target container -o dist/image/ --build localhost/churn:1
      modelport export churn.mpk --target kserve    -o dist/k8s/ --image registry.example/churn:1
      modelport export churn.mpk --target mlflow    -o dist/mlflow/

    Nothing is written unless the whole artifact is made (and checked, where it can be run here).
    """
    from modelport.export import export as run

    if no_check:
        options["check"] = False
    result = run(bundle, target, output, overwrite=overwrite, **options)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    click.echo(f"exported {result.bundle} for {target} -> {result.path}")
    for role, rel in result.files.items():
        click.echo(f"  {role:<10} {rel if role == 'image' else result.path / rel}")
    for key, value in result.sizes.items():
        click.echo(f"  {key.replace('_', ' '):<10} {_size(value)}")
    for lim in result.limits:
        click.echo(f"  limit      {lim['text']}{'' if lim['hard'] else ' (advisory)'}")
    for key in ("runtime", "deps", "image", "base", "builder"):
        if key in result.details:
            click.echo(f"  {key:<10} {result.details[key]}")
    if result.details.get("checked_in_clean_interpreter"):
        click.echo("  checked    ran in a clean interpreter here: health, metadata and predictions as the bundle's")
    for note in result.notes:
        click.echo(f"  note       {note}")
    if (result.path / "DEPLOY.md").exists():
        click.echo(f"  next       see {result.path / 'DEPLOY.md'}")


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:,.1f} MB"
    return f"{n / 1e3:,.1f} kB"
