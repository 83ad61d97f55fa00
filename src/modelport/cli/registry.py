"""Registry commands: ``push``, ``pull``, ``models``, ``versions``, ``show``, ``alias``, ``tag``,
``search``, ``delete`` and ``lineage``. Each only calls :mod:`modelport.registry`.

The registry is ``--registry URL`` when given, else ``MODELPORT_REGISTRY``, else the SQLite
registry under ``MODELPORT_HOME``. Errors print ``error: ...`` and exit with the error's code
(7 for registry errors, 2 for bad input ...), also when run in-process by click's CliRunner.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from modelport.cli.sign import policy_options
from modelport.errors import InputError, ModelportError

if TYPE_CHECKING:
    from modelport.registry import LineageEntry, Registry, VersionInfo

F = TypeVar("F", bound=Callable[..., Any])

registry_option = click.option(
    "--registry", "registry_url", metavar="URL", default=None,
    help="Registry database (sqlite:///path.db or postgresql://...); default MODELPORT_REGISTRY, else "
    "SQLite under MODELPORT_HOME.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _errors(fn: F) -> F:
    """Print a library error as ``error: ...`` and exit with its code (in main() and under CliRunner)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ModelportError as exc:
            from modelport.inspect._text import clean_error

            click.echo(f"error: {clean_error(exc)}", err=True)
            click.get_current_context().exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def _open(url: str | None) -> Registry:
    from modelport.registry import open_registry

    return open_registry(url)


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


def _when(info_created: Any) -> str:
    return info_created.strftime("%Y-%m-%d %H:%M:%S")


def _short(digest: str | None) -> str:
    return "-" if not digest else digest[: len("sha256:") + 12]


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from modelport.inspect._text import clean

    # tags, descriptions and digests come from bundles: shown, never obeyed by the terminal
    cells = [[str(h) for h in headers], *[["-" if c is None or c == "" else clean(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _kv(pairs: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise InputError(f"{what} {p!r} is not KEY=VALUE.", hint="write it like team=risk")
        out[key] = value
    return out


def _fmt_map(m: Any) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())


def _version_rows(infos: Sequence[VersionInfo], *, with_name: bool) -> None:
    headers = (["model"] if with_name else []) + ["version", "created (UTC)", "digest", "aliases", "tags", "metrics"]
    rows: list[list[Any]] = []
    for v in infos:
        version: Any = f"{v.version} (deleted)" if v.deleted else v.version
        rows.append(([v.name] if with_name else []) + [
            version, _when(v.created), _short(v.digest), ", ".join(v.aliases), _fmt_map(v.tags), _fmt_map(v.metrics),
        ])
    _table(headers, rows)


# --------------------------------------------------------------------------------- commands
@click.command("push")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=True))
@click.option("--name", default=None, help="Model name to store it under (default: the bundle's name).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag the version (repeatable).")
@click.option("--alias", "aliases", multiple=True, metavar="ALIAS", help="Point ALIAS at the version (repeatable).")
@policy_options
@registry_option
@json_option
@_errors
def push(bundle: str, name: str | None, tags: tuple[str, ...], aliases: tuple[str, ...], require_signature: bool,
         trusted_keys: tuple[Path, ...], trusted_cas: tuple[Path, ...], trusted_certificates: tuple[Path, ...],
         registry_url: str | None, as_json: bool) -> None:
    """Store BUNDLE (an .mpk file or bundle directory) as the next version of its model.

    Pushing a bundle whose digest the model already holds stores nothing and prints that version
    (a signature it brings is added to a version stored unsigned). A bundle that does not
    reproduce its own reference answers here is refused; with --require-signature, so is one
    that is not signed by a --trusted-key or a certificate from a --ca, or whose signature does
    not cover it as it is (an edited metric, say).
    """
    from modelport.signing import SignaturePolicy

    policy = SignaturePolicy.from_options(require=require_signature, trusted_keys=trusted_keys, cas=trusted_cas,
                                          certificates=trusted_certificates)
    reg = _open(registry_url)
    info = reg.push(bundle, name=name, tags=_kv(tags, "tag"), signature_policy=policy)
    new = info.is_new
    for alias in aliases:
        info = reg.set_alias(info.name, alias, info.version)
    if as_json:
        _dump({**info.to_dict(), "new": new})
    elif new:
        click.echo(f"pushed {info.name} version {info.version} ({info.digest})")
    else:
        click.echo(f"{info.name} version {info.version} already holds {info.digest}; nothing new stored")


@click.command("pull")
@click.argument("uri")
@click.option("-o", "--output", default=None, type=click.Path(),
              help="Where to write it: NAME.mpk file or a directory (default ./NAME-vVERSION.mpk).")
@registry_option
@_errors
def pull(uri: str, output: str | None, registry_url: str | None) -> None:
    """Fetch the bundle URI points at (models:/NAME, models:/NAME/VERSION, models:/NAME@ALIAS).

    The blob's sha256 and the bundle's digest are verified before anything is written.
    """
    reg = _open(registry_url)
    info = reg.resolve(uri)
    target = output or f"{info.name}-v{info.version}.mpk"
    reg.pull(info.uri, target)
    click.echo(f"wrote {info.uri} ({info.digest}) to {target}")


@click.command("models")
@registry_option
@json_option
@_errors
def models(registry_url: str | None, as_json: bool) -> None:
    """List the models: name, latest version, number of versions, aliases."""
    found = _open(registry_url).models()
    if as_json:
        _dump([m.to_dict() for m in found])
        return
    if not found:
        click.echo("no models yet; store one with: modelport push BUNDLE")
        return
    _table(["model", "latest", "versions", "aliases"],
           [[m.name, m.latest, m.versions, ", ".join(f"{a}->{v}" for a, v in m.aliases.items())] for m in found])


@click.command("versions")
@click.argument("name")
@click.option("--all", "include_deleted", is_flag=True, help="Include soft-deleted versions.")
@registry_option
@json_option
@_errors
def versions(name: str, include_deleted: bool, registry_url: str | None, as_json: bool) -> None:
    """List the versions of model NAME with digest, creation time, aliases, tags and metrics."""
    found = _open(registry_url).versions(name, include_deleted=include_deleted)
    if as_json:
        _dump([v.to_dict() for v in found])
        return
    if not found:
        click.echo(f"{name} has no live versions" + ("" if include_deleted else " (--all shows deleted ones)"))
        return
    _version_rows(found, with_name=False)


@click.command("show")
@click.argument("uri")
@click.option("--manifest", "with_manifest", is_flag=True, help="Include the bundle's manifest.")
@registry_option
@json_option
@_errors
def show(uri: str, with_manifest: bool, registry_url: str | None, as_json: bool) -> None:
    """Show one version: models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME (latest)."""
    reg = _open(registry_url)
    info = reg.resolve(uri)
    manifest = reg.manifest(info.uri) if with_manifest else None
    if as_json:
        _dump({**info.to_dict(), **({"manifest": manifest} if manifest is not None else {})})
        return
    rows = [
        ("model", info.name), ("version", info.version), ("uri", info.uri), ("digest", info.digest),
        ("created", f"{_when(info.created)} UTC"), ("task", info.task), ("size", f"{info.size} bytes"),
        ("aliases", ", ".join(info.aliases)), ("tags", _fmt_map(info.tags)), ("metrics", _fmt_map(info.metrics)),
        ("parent", info.parent), ("description", info.description),
    ]
    if info.deleted:
        rows.append(("deleted", f"{_when(info.deleted)} UTC"))
    _table(["field", "value"], rows)
    if manifest is not None:
        click.echo(json.dumps(manifest, indent=2, sort_keys=True))


@click.command("alias")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", required=False)
@click.option("--unset", is_flag=True, help="Remove the alias instead of setting it.")
@registry_option
@_errors
def alias(name: str, alias_name: str, version: str | None, unset: bool, registry_url: str | None) -> None:
    """Point ALIAS of model NAME at VERSION (e.g. `modelport alias churn production 3`), or --unset it."""
    reg = _open(registry_url)
    if unset:
        if version is not None:
            raise InputError("--unset takes no VERSION.", hint=f"run: modelport alias {name} {alias_name} --unset")
        reg.remove_alias(name, alias_name)
        click.echo(f"removed alias {alias_name} of {name}")
        return
    if version is None:
        raise InputError(f"which version should {alias_name} point at?",
                         hint=f"run: modelport alias {name} {alias_name} VERSION (or --unset)")
    info = reg.set_alias(name, alias_name, version)
    click.echo(f"models:/{name}@{alias_name} -> version {info.version} ({info.digest})")


@click.command("tag")
@click.argument("uri")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--remove", "remove", multiple=True, metavar="KEY", help="Remove a tag (repeatable).")
@registry_option
@_errors
def tag(uri: str, pairs: tuple[str, ...], remove: tuple[str, ...], registry_url: str | None) -> None:
    """Set tags KEY=VALUE on a version, or --remove KEY; prints the version's tags."""
    if not pairs and not remove:
        raise InputError("nothing to do: give KEY=VALUE pairs to set or --remove KEY.",
                         hint=f"e.g. modelport tag {uri} stage=candidate")
    reg = _open(registry_url)
    info = reg.resolve(uri)
    if pairs:
        info = reg.set_tags(info.uri, _kv(pairs, "tag"))
    if remove:
        info = reg.remove_tags(info.uri, list(remove))
    click.echo(f"{info.uri}: {_say(_fmt_map(info.tags)) or 'no tags'}")


@click.command("search")
@click.option("--name", default=None, help="Model name; * and ? are wildcards.")
@click.option("--tag", "tags", multiple=True, metavar="KEY[=VALUE]", help="Has this tag (with this value).")
@click.option("--where", default=None, metavar="QUERY",
              help="e.g. \"metrics.auc > 0.9 and tags.team = 'risk'\" (fields: metrics.KEY, tags.KEY, name, "
              "version, task, digest).")
@click.option("--all", "include_deleted", is_flag=True, help="Include soft-deleted versions.")
@registry_option
@json_option
@_errors
def search(name: str | None, tags: tuple[str, ...], where: str | None, include_deleted: bool,
           registry_url: str | None, as_json: bool) -> None:
    """Find versions by name, tag and metric."""
    wanted: dict[str, str | None] = {}
    for t in tags:
        key, sep, value = t.partition("=")
        wanted[key] = value if sep else None
    found = _open(registry_url).search(name=name, tags=wanted, where=where, include_deleted=include_deleted)
    if as_json:
        _dump([v.to_dict() for v in found])
        return
    if not found:
        click.echo("no versions match")
        return
    _version_rows(found, with_name=True)


@click.command("delete")
@click.argument("uri")
@click.option("--force", is_flag=True, help="Delete even if aliases point at it (the aliases are removed).")
@registry_option
@_errors
def delete(uri: str, force: bool, registry_url: str | None) -> None:
    """Soft-delete a version (models:/NAME/VERSION or models:/NAME@ALIAS); pushing it again restores it."""
    info = _open(registry_url).delete(uri, force=force)
    click.echo(f"deleted {info.uri} ({info.digest})")


@click.command("lineage")
@click.argument("uri")
@registry_option
@json_option
@_errors
def lineage(uri: str, registry_url: str | None, as_json: bool) -> None:
    """Show the chain of parent bundles of a version (parent digests recorded at pack time)."""
    chain = _open(registry_url).lineage(uri)
    if as_json:
        _dump([e.to_dict() for e in chain])
        return
    for depth, entry in enumerate(chain):
        click.echo(("   " * (depth - 1) + "└─ " if depth else "") + _link(entry))


def _link(entry: LineageEntry) -> str:
    v = entry.version
    if v is None:
        return f"{_say(entry.digest)} (not in this registry)"
    gone = " (deleted)" if v.deleted else ""
    return f"{v.uri}{gone}  {_say(entry.digest)}  {_when(v.created)}"


def _say(text: Any) -> str:
    from modelport.inspect._text import clean

    return clean(text)
