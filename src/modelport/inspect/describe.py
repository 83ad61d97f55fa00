"""A human-readable description of a bundle: what it is, what it reads and returns, what is inside.

:func:`describe` gathers everything into one plain dict (what ``modelport inspect --json``
prints); :func:`render` lays that dict out as rich tables for a terminal (and degrades to plain
text without one); :func:`graph_text` is the graph in ONNX's own textual syntax.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.bundle.core import Bundle
from modelport.bundle.graph import operator_counts, parameter_count, tree_stats
from modelport.signing import coverage
from modelport.signing import status as signing_status

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["describe", "graph_text", "render"]


def _as_bundle(bundle: Bundle | str | os.PathLike[str]) -> Bundle:
    if isinstance(bundle, Bundle):
        return bundle
    from modelport._uri import load

    return load(bundle)


def describe(bundle: Bundle | str | os.PathLike[str]) -> dict[str, Any]:
    """Everything a person (or a script) wants to know about ``bundle``, as JSON-ready data.

    ``bundle`` is a Bundle, a bundle directory, an ``.mpk`` file or a ``models:/`` URI.
    """
    b = _as_bundle(bundle)
    m = b.manifest
    sig = b.signature
    model = b.onnx_model
    onnx_meta = m.get("onnx") or {}
    columns = None
    stats = (m.get("reference") or {}).get("columns") or {}
    if sig.columns is not None:
        columns = [
            {
                "name": c.name,
                "dtype": c.dtype,
                "nullable": c.nullable,
                "categories": None if c.categories is None else list(c.categories),
                "unknown": c.unknown_treatment,
                "input": c.input,
                "index": c.index,
                "training": _training_summary(stats.get(c.name)),
            }
            for c in sig.columns
        ]
    reference = m.get("reference") or {}
    operators = operator_counts(model)
    return {
        "name": b.name,
        "version": b.version,
        "digest": b.digest,
        "format": m.get("format"),
        "created": m.get("created"),
        "description": m.get("description"),
        "source": dict(m.get("source") or {}),
        "task": b.task,
        "classes": b.classes,
        "signature": {
            "columns": columns,
            "inputs": [t.to_dict() for t in sig.inputs],
            "outputs": [t.to_dict() for t in sig.outputs],
        },
        "onnx": {
            "ir_version": onnx_meta.get("ir_version", int(model.ir_version)),
            "producer": onnx_meta.get("producer"),
            "opsets": onnx_meta.get("opsets") or {},
        },
        "operators": operators,
        "nodes": sum(operators.values()),
        "trees": tree_stats(model),
        "parameters": parameter_count(model),
        "size": _sizes(b),
        "parity": m.get("parity"),
        "reference": {
            "training_rows": reference.get("rows"),
            "stored_rows": reference.get("stored_rows"),
            "probes": reference.get("probes"),
            "columns_with_statistics": sorted((reference.get("columns") or {}).keys()),
        }
        if reference
        else None,
        "metrics": dict(m.get("metrics") or {}),
        "tags": dict(m.get("tags") or {}),
        "lineage": dict(m.get("lineage") or {}),
        "digest_covers": coverage(b),
        "signing": signing_status(b),
    }


def _training_summary(entry: Any) -> dict[str, Any] | None:
    """What the training sample held in one column (from the manifest's reference statistics)."""
    if not isinstance(entry, dict):
        return None
    out: dict[str, Any] = {"missing": entry.get("missing")}
    if entry.get("kind") == "numeric":
        out.update(min=entry.get("min"), max=entry.get("max"), mean=entry.get("mean"))
    elif entry.get("kind") == "categorical":
        out.update(distinct=entry.get("distinct"), top=list((entry.get("frequencies") or {}).keys())[:10])
    return out


def _sizes(b: Bundle) -> dict[str, Any]:
    """Bytes per file (raw and as compressed inside the .mpk) and where the bundle sits on disk."""
    origin = Path(b.origin)
    # origin is the path a bundle was read from, or a placeholder such as "<pack iris>"
    on_disk_path = origin if not b.origin.startswith("<") and origin.exists() else None
    compressed: dict[str, int] | None = None
    mpk_size: int | None = None
    if on_disk_path is not None and on_disk_path.is_file():
        # the archive it was read from: its own entry sizes, without compressing everything again
        with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(on_disk_path) as zf:
            compressed = {i.filename: i.compress_size for i in zf.infolist()}
            mpk_size = on_disk_path.stat().st_size
    if compressed is None or set(compressed) != set(b.files):
        mpk = b.to_bytes()  # deterministic, so this is exactly the .mpk that save() would write
        with zipfile.ZipFile(io.BytesIO(mpk)) as zf:
            compressed = {i.filename: i.compress_size for i in zf.infolist()}
        mpk_size = len(mpk)
    files = {
        name: {"bytes": len(data), "compressed": compressed.get(name)} for name, data in sorted(b.files.items())
    }
    on_disk = None
    if on_disk_path is not None:
        if on_disk_path.is_dir():
            on_disk = sum(p.stat().st_size for p in on_disk_path.rglob("*") if p.is_file() and not p.is_symlink())
        else:
            on_disk = on_disk_path.stat().st_size
    return {"total": b.size, "mpk": mpk_size, "on_disk": on_disk,
            "path": None if on_disk is None else str(on_disk_path), "files": files}


def graph_text(bundle: Bundle | str | os.PathLike[str]) -> str:
    """The bundle's ONNX graph in ONNX's textual syntax (``onnx.printer``), terminal controls in its names
    shown as escapes."""
    import onnx.printer

    from modelport.inspect._text import clean

    return clean(onnx.printer.to_text(_as_bundle(bundle).onnx_model), multiline=True)


# --------------------------------------------------------------------------------------- rendering


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable, keeps type checkers calm


def _shape(shape: list[Any]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def _categories(cats: list[Any] | None, limit: int = 8, unknown: str | None = None) -> str:
    if cats is None:
        return ""
    shown = ", ".join(map(str, cats[:limit]))
    shown += f", ... ({len(cats)} in all)" if len(cats) > limit else ""
    return shown + (f"; unknown values: {unknown}" if unknown else "")


def _training_text(t: dict[str, Any] | None) -> str:
    if not t:
        return ""
    if "min" in t and t["min"] is not None:
        text = f"{_num(t['min'])} .. {_num(t['max'])}"
    elif "distinct" in t:
        text = f"{t['distinct']} values: " + _categories(t.get("top"), limit=5)
        if t["distinct"] > len(t.get("top") or []) and len(t.get("top") or []) <= 5:
            text += ", ..."
    else:
        text = ""
    if t.get("missing"):
        text += f" ({t['missing']} missing)"
    return text


def render(info: dict[str, Any]) -> RenderableType:
    """A rich renderable (a group of tables) for the output of :func:`describe`.

    Every string of ``info`` is cleaned of terminal controls first (``inspect._text``): a manifest's
    text is shown, never obeyed. Print it with ``inspect._text.console()`` (no markup).
    """
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from modelport.inspect._text import clean_data

    info = clean_data(info)

    parts: list[Any] = []
    title = Text(info["name"], style="bold")
    if info.get("version"):
        title.append(f"  version {info['version']}", style="cyan")
    parts.append(title)

    def kv_table(heading: str) -> Table:
        t = Table(title=heading, title_justify="left", title_style="bold", box=box.SIMPLE, show_header=False,
                  pad_edge=False, min_width=len(heading) + 4)
        t.add_column("field", style="dim", no_wrap=True)
        t.add_column("value", overflow="fold")
        return t

    src = info.get("source") or {}
    overview = kv_table("Overview")
    overview.add_row("digest", info["digest"])
    overview.add_row("format", str(info.get("format")))
    overview.add_row("task", info["task"])
    if info.get("classes") is not None:
        overview.add_row("classes", f"{len(info['classes'])}: " + _categories(info["classes"], limit=20))
    framework = " ".join(str(x) for x in (src.get("framework"), src.get("framework_version")) if x)
    overview.add_row("source", f"{framework} {src.get('estimator') or ''}".strip() or "-")
    conv = " ".join(str(x) for x in (src.get("converter"), src.get("converter_version")) if x)
    if conv:
        overview.add_row("converter", conv)
    if src.get("modelport_version"):
        overview.add_row("modelport", str(src["modelport_version"]))
    if info.get("created"):
        overview.add_row("created", str(info["created"]))
    if info.get("description"):
        overview.add_row("description", str(info["description"]))
    lineage = info.get("lineage") or {}
    if lineage.get("parent"):
        overview.add_row("parent", str(lineage["parent"]))
    for k, v in sorted(lineage.items()):
        if k != "parent" and v is not None:
            overview.add_row(f"lineage.{k}", str(v))
    parts.append(overview)

    sig = info["signature"]
    if sig.get("columns") is not None:
        cols = Table(title="Input columns", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
        for name in ("#", "column", "dtype", "nullable", "categories", "training", "graph input"):
            cols.add_column(name, overflow="fold", no_wrap=name in ("#", "dtype"))
        for i, c in enumerate(sig["columns"]):
            where = c["input"] if c["index"] is None else f"{c['input']}[:, {c['index']}]"
            cols.add_row(str(i), c["name"], c["dtype"], "yes" if c["nullable"] else "no",
                         _categories(c.get("categories"), unknown=c.get("unknown")),
                         _training_text(c.get("training")), where)
        parts.append(cols)
    tensors = Table(title="Graph inputs and outputs", title_justify="left", title_style="bold",
                    box=box.SIMPLE_HEAD)
    for name in ("", "name", "dtype", "shape"):
        tensors.add_column(name, overflow="fold")
    for t in sig["inputs"]:
        tensors.add_row("in", t["name"], t["dtype"], _shape(t["shape"]))
    for t in sig["outputs"]:
        tensors.add_row("out", t["name"], t["dtype"], _shape(t["shape"]))
    parts.append(tensors)

    g = kv_table("Graph")
    onnx_info = info.get("onnx") or {}
    g.add_row("opsets", ", ".join(f"{d} {v}" for d, v in sorted((onnx_info.get("opsets") or {}).items())) or "-")
    g.add_row("ir version", str(onnx_info.get("ir_version")))
    if onnx_info.get("producer"):
        g.add_row("producer", str(onnx_info["producer"]))
    g.add_row("nodes", str(info.get("nodes")))
    ops = info.get("operators") or {}
    g.add_row("operators", ", ".join(f"{op} x{n}" for op, n in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))))
    trees = info.get("trees")
    if trees:
        g.add_row("trees", f"{trees['trees']} trees, {trees['nodes']} nodes, max depth {trees['max_depth']}")
    if not trees or info.get("parameters"):
        g.add_row("parameters", f"{info.get('parameters', 0):,} (initializer values)")
    parts.append(g)

    size = info["size"]
    files = Table(title="Files", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
    files.add_column("file", overflow="fold")
    files.add_column("bytes", justify="right")
    files.add_column("in .mpk", justify="right")
    for name, entry in size["files"].items():
        files.add_row(name, _human_bytes(entry["bytes"]), _human_bytes(entry["compressed"]))
    files.add_row("total", _human_bytes(size["total"]), _human_bytes(size["mpk"]), style="bold")
    if size.get("on_disk") is not None:
        files.caption = f"on disk: {_human_bytes(size['on_disk'])} at {size['path']}"
    parts.append(files)

    parity = info.get("parity")
    p = kv_table("Parity (recorded at pack time)")
    if parity:
        verdict = "pass" if parity.get("pass") else "FAIL"
        if parity.get("accepted_mismatch"):
            verdict += " (mismatch accepted by the packer)"
        p.add_row("verdict", Text(verdict, style="green" if parity.get("pass") else "red"))
        p.add_row("rows", _num(parity.get("samples")))
        p.add_row("max abs error", _num(parity.get("max_abs_error")))
        p.add_row("max rel error", _num(parity.get("max_rel_error")))
        if parity.get("label_agreement") is not None:
            p.add_row("label agreement", f"{parity['label_agreement']:.4%}")
        tol = parity.get("tolerance") or {}
        if tol:
            p.add_row("tolerance", ", ".join(f"{k} {_num(v)}" for k, v in sorted(tol.items())))
        for note in parity.get("notes") or []:
            p.add_row("note", str(note))
    else:
        p.add_row("verdict", "not recorded")
    ref = info.get("reference")
    if ref:
        p.add_row("reference", f"{_num(ref.get('stored_rows'))} stored rows ({_num(ref.get('probes'))} probes), "
                               f"statistics of {_num(ref.get('training_rows'))} training rows")
    parts.append(p)

    parts.append(_integrity_table(info, kv_table))

    if info.get("metrics") or info.get("tags"):
        mt = kv_table("Metrics and tags")
        for k, v in sorted((info.get("metrics") or {}).items()):
            mt.add_row(k, _num(v))
        for k, v in sorted((info.get("tags") or {}).items()):
            mt.add_row(f"tag {k}", str(v))
        parts.append(mt)
    return Group(*parts)


def _integrity_table(info: dict[str, Any], kv_table: Any) -> Any:
    """What the digest and the signature each cover, and who signed (never verified here)."""
    from rich.text import Text

    t = kv_table("Digest and signature")
    covers = info.get("digest_covers") or {}
    t.add_row("digest covers", str(covers.get("text", "-")))
    t.add_row("not in digest", ", ".join(covers.get("not_covered") or []) or "-")
    sig = info.get("signing") or {}
    if not sig.get("present"):
        t.add_row("signature", Text(f"none (no {sig.get('file', 'manifest.sig')}; sign with modelport sign)",
                                    style="dim"))
        return t
    signer = sig["signer"]
    t.add_row("signature", str(sig["file"]))
    t.add_row("signed by", str(signer["description"]))
    if signer.get("key_fingerprint") and signer["kind"] != "key":
        t.add_row("signer key", str(signer["key_fingerprint"]))
    t.add_row("signature covers", f"{sig['covers']} ({len(sig['files_covered'])} files)")
    if sig.get("matches_files"):
        t.add_row("matches files", Text("yes", style="green"))
    else:
        t.add_row("matches files", Text("NO: " + "; ".join(sig.get("problems") or []), style="bold red"))
    t.add_row("verified", Text("no: inspect does not check who signed; run modelport verify BUNDLE --public-key "
                               "KEY (or --ca ROOT)", style="yellow"))
    return t


def print_description(info: dict[str, Any], console: Console | None = None) -> None:
    """Print :func:`render` of ``info`` to ``console`` (stdout by default; markup never interpreted)."""
    from modelport.inspect._text import console as literal_console

    (console or literal_console()).print(render(info))
