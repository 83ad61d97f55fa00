"""What changed between two bundles, and whether the change breaks the people who call the model.

:func:`diff` compares two bundles in four sections:

* **metadata**: name, version, description, metrics, tags, source, lineage, recorded parity ...
  (never breaking);
* **signature**: columns, graph inputs and outputs, task and classes; a change that makes a call
  which worked against A fail or mean something else against B is *breaking* (a column or input
  removed, renamed or added, a dtype changed, the class set or order changed, an output removed);
* **graph**: operators added or removed, tree counts and depth, initializers whose shape or values
  changed (never breaking by itself);
* **behaviour**: both bundles score the union of their stored reference inputs (the rows both can
  score) and the outputs are compared: label agreement and the largest difference per output.

:class:`DiffReport.level` is ``identical``, ``compatible`` or ``breaking``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper

from modelport.bundle.core import MODEL_FILE, Bundle
from modelport.bundle.graph import iter_nodes, operator_counts, parameter_count, tree_stats
from modelport.bundle.reference import decode_columns
from modelport.errors import ModelportError
from modelport.inspect._json import jsonable as _jsonable

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["Change", "DiffReport", "Level", "diff", "render"]

Level = Literal["identical", "compatible", "breaking"]

#: process exit codes of ``modelport diff`` for each level
EXIT_CODES: dict[str, int] = {"identical": 0, "compatible": 10, "breaking": 11}


@dataclass(frozen=True)
class Change:
    """One difference between bundle A and bundle B."""

    section: str  # "metadata" | "signature" | "graph" | "files"
    path: str  # what changed, e.g. "columns.age.dtype", "metrics.auc", "operators.Add"
    kind: str  # "added" | "removed" | "changed" | "renamed" | "reordered"
    old: Any = None
    new: Any = None
    breaking: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "path": self.path,
            "kind": self.kind,
            "old": _jsonable(self.old),
            "new": _jsonable(self.new),
            "breaking": self.breaking,
            "reason": self.reason,
        }


@dataclass
class DiffReport:
    """The result of :func:`diff`; ``level`` sums it up, ``to_dict()`` is JSON-ready."""

    a: dict[str, Any]
    b: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    graph: dict[str, Any] = field(default_factory=dict)
    behaviour: dict[str, Any] | None = None

    @property
    def level(self) -> Level:
        if any(c.breaking for c in self.changes):
            return "breaking"
        return "compatible" if self.changes else "identical"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.level]

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if c.breaking]

    def section(self, name: str) -> list[Change]:
        return [c for c in self.changes if c.section == name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "a": _jsonable(self.a),
            "b": _jsonable(self.b),
            "changes": [c.to_dict() for c in self.changes],
            "breaking": [c.path for c in self.breaking],
            "graph": _jsonable(self.graph),
            "behaviour": _jsonable(self.behaviour),
        }

    def summary(self) -> str:
        n_break = len(self.breaking)
        text = f"{self.level}: {len(self.changes)} change(s)"
        if n_break:
            text += f", {n_break} breaking ({', '.join(c.path for c in self.breaking[:5])}"
            text += ", ...)" if n_break > 5 else ")"
        if self.behaviour and self.behaviour.get("rows"):
            beh = self.behaviour
            text += f"; on {beh['rows']} reference rows"
            if beh.get("label_agreement") is not None:
                text += f" labels agree {beh['label_agreement']:.2%}"
            if beh.get("max_abs_difference") is not None:
                text += f", max output difference {beh['max_abs_difference']:.3g}"
        return text


def _load(x: Bundle | str | os.PathLike[str]) -> Bundle:
    if isinstance(x, Bundle):
        return x
    from modelport._uri import load

    return load(x)


def diff(
    a: Bundle | str | os.PathLike[str],
    b: Bundle | str | os.PathLike[str],
    *,
    behaviour: bool = True,
    max_rows: int = 5000,
) -> DiffReport:
    """Compare bundle ``a`` (the old one) with bundle ``b`` (the new one).

    ``a`` and ``b`` are Bundles, bundle paths, ``.mpk`` files or ``models:/`` URIs. With
    ``behaviour=True`` both bundles score the union of their reference inputs (at most
    ``max_rows`` rows from each), restricted to the rows both can score.
    """
    ba, bb = _load(a), _load(b)
    report = DiffReport(a=_identity(ba), b=_identity(bb))
    report.changes.extend(_metadata_changes(ba.manifest, bb.manifest))
    report.changes.extend(_signature_changes(ba, bb))
    report.changes.extend(_file_changes(ba.manifest.get("files") or {}, bb.manifest.get("files") or {}))
    graph_summary, graph_changes = _graph_diff(ba.onnx_model, bb.onnx_model, same_bytes=ba.model_bytes == bb.model_bytes)
    report.graph = graph_summary
    report.changes.extend(graph_changes)
    if behaviour:
        # a renamed column is still the same data: feed A's rows to B under the new name, and back
        renames = list(dict.fromkeys(
            (c.old, c.new) for c in report.changes if c.section == "signature" and c.kind == "renamed"
        ))
        report.behaviour = _behaviour(ba, bb, max_rows=max_rows, renames=renames)
    return report


def _identity(b: Bundle) -> dict[str, Any]:
    return {"name": b.name, "version": b.version, "digest": b.digest, "origin": b.origin}


# ------------------------------------------------------------------------------------- metadata

_SIMPLE_FIELDS = ("format", "name", "version", "created", "description")
_PARITY_FIELDS = ("pass", "accepted_mismatch", "samples", "max_abs_error", "max_rel_error", "label_agreement")
# handled in their own sections, or summarised below instead of compared leaf by leaf
_SPECIAL = {"signature", "files", "task", "classes", "parity", "reference", "metrics", "tags", "source",
            "lineage", "onnx", *_SIMPLE_FIELDS}


def _metadata_changes(ma: Mapping[str, Any], mb: Mapping[str, Any]) -> list[Change]:
    out: list[Change] = []
    for key in _SIMPLE_FIELDS:
        if ma.get(key) != mb.get(key):
            out.append(_changed("metadata", key, ma.get(key), mb.get(key)))
    for key in ("metrics", "tags", "source", "lineage", "onnx"):
        out.extend(_dict_changes("metadata", key, ma.get(key) or {}, mb.get(key) or {}))
    pa, pb = ma.get("parity") or {}, mb.get("parity") or {}
    for key in _PARITY_FIELDS:
        if pa.get(key) != pb.get(key):
            out.append(_changed("metadata", f"parity.{key}", pa.get(key), pb.get(key)))
    out.extend(_dict_changes("metadata", "parity.tolerance", pa.get("tolerance") or {}, pb.get("tolerance") or {}))
    if (pa.get("notes") or []) != (pb.get("notes") or []):
        out.append(_changed("metadata", "parity.notes", pa.get("notes"), pb.get("notes")))
    ra, rb = ma.get("reference") or {}, mb.get("reference") or {}
    for key in ("rows", "stored_rows", "probes"):
        if ra.get(key) != rb.get(key):
            out.append(_changed("metadata", f"reference.{key}", ra.get(key), rb.get(key)))
    if ra.get("columns") != rb.get("columns"):
        out.append(Change("metadata", "reference.statistics", "changed", reason="training-sample statistics differ"))
    # anything else a future manifest carries is still reported, never silently ignored
    for key in sorted((set(ma) | set(mb)) - _SPECIAL):
        if ma.get(key) != mb.get(key):
            out.append(_changed("metadata", key, ma.get(key), mb.get(key)))
    return out


def _dict_changes(section: str, prefix: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    out: list[Change] = []
    for key in sorted(set(a) | set(b), key=str):
        path = f"{prefix}.{key}"
        if key not in a:
            out.append(Change(section, path, "added", None, b[key]))
        elif key not in b:
            out.append(Change(section, path, "removed", a[key], None))
        elif isinstance(a[key], Mapping) and isinstance(b[key], Mapping):
            out.extend(_dict_changes(section, path, a[key], b[key]))
        elif not _same(a[key], b[key]):
            out.append(Change(section, path, "changed", a[key], b[key]))
    return out


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return bool(x == y)


def _changed(section: str, path: str, old: Any, new: Any, *, breaking: bool = False, reason: str = "") -> Change:
    kind = "added" if old is None else "removed" if new is None else "changed"
    return Change(section, path, kind, old, new, breaking, reason)


def _file_changes(fa: Mapping[str, Any], fb: Mapping[str, Any]) -> list[Change]:
    out: list[Change] = []
    for path in sorted(set(fa) | set(fb)):
        if path not in fa:
            out.append(Change("files", path, "added", None, fb[path].get("size")))
        elif path not in fb:
            out.append(Change("files", path, "removed", fa[path].get("size"), None))
        elif fa[path].get("sha256") != fb[path].get("sha256"):
            out.append(Change("files", path, "changed", fa[path].get("size"), fb[path].get("size"),
                              reason="content differs (sizes shown)"))
    return out


# ------------------------------------------------------------------------------------ signature


def _signature_changes(a: Bundle, b: Bundle) -> list[Change]:
    out: list[Change] = []
    if a.task != b.task:
        out.append(Change("signature", "task", "changed", a.task, b.task, True,
                          "the kind of answer the model gives changed"))
    out.extend(_class_changes(a.classes, b.classes))
    sa, sb = a.signature, b.signature
    if sa.columns is not None and sb.columns is not None:
        out.extend(_column_changes(sa.columns, sb.columns))
    elif (sa.columns is None) != (sb.columns is None):
        out.append(Change("signature", "columns", "changed",
                          "tabular" if sa.columns is not None else "tensors",
                          "tabular" if sb.columns is not None else "tensors", True,
                          "one bundle reads named columns, the other raw tensors"))
    out.extend(_tensor_changes("inputs", [t.to_dict() for t in sa.inputs], [t.to_dict() for t in sb.inputs]))
    out.extend(_tensor_changes("outputs", [t.to_dict() for t in sa.outputs], [t.to_dict() for t in sb.outputs]))
    return out


def _class_changes(ca: list[Any] | None, cb: list[Any] | None) -> list[Change]:
    if ca == cb:
        return []
    if ca is None or cb is None:
        return [Change("signature", "classes", "changed", ca, cb, True, "one bundle has class labels, the other none")]
    added = [c for c in cb if c not in ca]
    removed = [c for c in ca if c not in cb]
    if added or removed:
        parts = []
        if removed:
            parts.append(f"removed {removed}")
        if added:
            parts.append(f"added {added}")
        return [Change("signature", "classes", "changed", ca, cb, True, "class set changed: " + ", ".join(parts))]
    return [Change("signature", "classes", "reordered", ca, cb, True,
                   "class order changed, so the columns of 'probabilities' mean other classes")]


def _column_changes(ca: Sequence[Any], cb: Sequence[Any]) -> list[Change]:
    out: list[Change] = []
    by_a = {c.name: c for c in ca}
    by_b = {c.name: c for c in cb}
    removed = [c for c in ca if c.name not in by_b]
    added = [c for c in cb if c.name not in by_a]
    # a column that vanished where a new one of the same dtype appeared at the same position was renamed
    pos_a = {c.name: i for i, c in enumerate(ca)}
    pos_b = {c.name: i for i, c in enumerate(cb)}
    renamed: list[tuple[Any, Any]] = []
    for old in list(removed):
        for new in added:
            if pos_a[old.name] == pos_b[new.name] and old.dtype == new.dtype:
                renamed.append((old, new))
                removed.remove(old)
                added.remove(new)
                break
    for old, new in renamed:
        out.append(Change("signature", f"columns.{old.name}", "renamed", old.name, new.name, True,
                          f"column {old.name!r} is now called {new.name!r}; callers must rename it"))
    for c in removed:
        out.append(Change("signature", f"columns.{c.name}", "removed", c.dtype, None, True,
                          f"column {c.name!r} is gone; input that carries it is refused"))
    for c in added:
        out.append(Change("signature", f"columns.{c.name}", "added", None, c.dtype, True,
                          f"new required column {c.name!r} ({c.dtype}); input without it is refused"))
    for name, old in by_a.items():
        new = by_b.get(name)
        if new is None:
            continue
        if old.dtype != new.dtype:
            out.append(Change("signature", f"columns.{name}.dtype", "changed", old.dtype, new.dtype, True,
                              "the column's type changed"))
        if old.nullable != new.nullable:
            out.append(Change("signature", f"columns.{name}.nullable", "changed", old.nullable, new.nullable,
                              old.nullable and not new.nullable,
                              "missing values are now refused" if old.nullable else "missing values are now accepted"))
        if old.categories != new.categories:
            old_c, new_c = list(old.categories or ()), list(new.categories or ())
            gone = [x for x in old_c if x not in new_c]
            out.append(Change("signature", f"columns.{name}.categories", "changed", old_c, new_c, bool(gone),
                              f"categories no longer known: {gone}" if gone else "categories added"))
        if old.categories is not None and new.categories is not None:
            before, after = old.unknown_treatment, new.unknown_treatment
            if before != after:
                out.append(Change("signature", f"columns.{name}.unknown", "changed", before, after, after == "error",
                                  "values outside the categories are now refused" if after == "error"
                                  else f"values outside the categories are now {after}"))
    common_a = [c.name for c in ca if c.name in by_b]
    common_b = [c.name for c in cb if c.name in by_a]
    if common_a != common_b:
        out.append(Change("signature", "columns", "reordered", common_a, common_b, True,
                          "column order changed; unnamed array input is read by position"))
    return out


def _shape_relaxed(old: Sequence[Any], new: Sequence[Any]) -> bool:
    """True when every value of shape ``old`` also fits ``new`` (fixed dims only became dynamic)."""
    return len(old) == len(new) and all(n is None or n == o for o, n in zip(old, new, strict=True))


def _tensor_changes(kind: str, ta: list[dict[str, Any]], tb: list[dict[str, Any]]) -> list[Change]:
    out: list[Change] = []
    by_a = {t["name"]: t for t in ta}
    by_b = {t["name"]: t for t in tb}
    removed = [t for t in ta if t["name"] not in by_b]
    added = [t for t in tb if t["name"] not in by_a]
    is_input = kind == "inputs"
    for old in list(removed):
        for new in added:
            if ta.index(old) == tb.index(new) and old["dtype"] == new["dtype"] and old["shape"] == new["shape"]:
                removed.remove(old)
                added.remove(new)
                out.append(Change("signature", f"{kind}.{old['name']}", "renamed", old["name"], new["name"], True,
                                  f"graph {kind[:-1]} {old['name']!r} is now called {new['name']!r}"))
                break
    for t in removed:
        out.append(Change("signature", f"{kind}.{t['name']}", "removed", _tensor_text(t), None, True,
                          f"graph {kind[:-1]} {t['name']!r} is gone"))
    for t in added:
        # every graph input must be fed, so a new one breaks callers; a new output is just more answers
        out.append(Change("signature", f"{kind}.{t['name']}", "added", None, _tensor_text(t), is_input,
                          "new required graph input" if is_input else "new output"))
    for name, before in by_a.items():
        after = by_b.get(name)
        if after is None:
            continue
        if before["dtype"] != after["dtype"]:
            out.append(Change("signature", f"{kind}.{name}.dtype", "changed", before["dtype"], after["dtype"], True,
                              f"the {kind[:-1]}'s element type changed"))
        if before["shape"] != after["shape"]:
            relaxed = _shape_relaxed(before["shape"], after["shape"]) if is_input else False
            out.append(Change("signature", f"{kind}.{name}.shape", "changed", _shape_text(before["shape"]),
                              _shape_text(after["shape"]), not relaxed,
                              "accepts more shapes than before" if relaxed else "the tensor's shape changed"))
    return out


def _tensor_text(t: Mapping[str, Any]) -> str:
    return f"{t['dtype']}{_shape_text(t['shape'])}"


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


# ---------------------------------------------------------------------------------------- graph


def _graph_diff(ga: onnx.ModelProto, gb: onnx.ModelProto, *, same_bytes: bool) -> tuple[dict[str, Any], list[Change]]:
    ops_a, ops_b = operator_counts(ga), operator_counts(gb)
    trees_a, trees_b = tree_stats(ga), tree_stats(gb)
    params_a, params_b = parameter_count(ga), parameter_count(gb)
    summary: dict[str, Any] = {
        "operators": {
            "a": ops_a,
            "b": ops_b,
            "added": {op: n for op, n in ops_b.items() if op not in ops_a},
            "removed": {op: n for op, n in ops_a.items() if op not in ops_b},
            "count_changed": {op: [ops_a[op], ops_b[op]] for op in ops_a if op in ops_b and ops_a[op] != ops_b[op]},
        },
        "trees": {"a": trees_a, "b": trees_b},
        "parameters": {"a": params_a, "b": params_b},
        "initializers": {"added": {}, "removed": {}, "reshaped": {}, "changed": {}},
        "attributes": {},
    }
    changes: list[Change] = []
    if same_bytes:
        return summary, changes
    for op, n in summary["operators"]["added"].items():
        changes.append(Change("graph", f"operators.{op}", "added", 0, n, reason=f"{n} {op} node(s) added"))
    for op, n in summary["operators"]["removed"].items():
        changes.append(Change("graph", f"operators.{op}", "removed", n, 0, reason=f"{n} {op} node(s) removed"))
    for op, (na, nb) in summary["operators"]["count_changed"].items():
        changes.append(Change("graph", f"operators.{op}", "changed", na, nb, reason=f"{nb - na:+d} {op} node(s)"))
    if trees_a != trees_b:
        for key in ("trees", "nodes", "max_depth"):
            va = None if trees_a is None else trees_a[key]
            vb = None if trees_b is None else trees_b[key]
            if va != vb:
                changes.append(_changed("graph", f"trees.{key}", va, vb))
    if params_a != params_b:
        changes.append(Change("graph", "parameters", "changed", params_a, params_b))
    init = summary["initializers"]
    ia = {t.name: t for t in _initializers(ga)}
    ib = {t.name: t for t in _initializers(gb)}
    for name in sorted(set(ia) | set(ib)):
        if name not in ia:
            init["added"][name] = list(ib[name].dims)
            changes.append(Change("graph", f"initializers.{name}", "added", None, list(ib[name].dims)))
        elif name not in ib:
            init["removed"][name] = list(ia[name].dims)
            changes.append(Change("graph", f"initializers.{name}", "removed", list(ia[name].dims), None))
        elif list(ia[name].dims) != list(ib[name].dims):
            init["reshaped"][name] = [list(ia[name].dims), list(ib[name].dims)]
            changes.append(Change("graph", f"initializers.{name}.shape", "changed", list(ia[name].dims),
                                  list(ib[name].dims)))
        else:
            delta = _max_abs_change(numpy_helper.to_array(ia[name]), numpy_helper.to_array(ib[name]))
            if delta:
                init["changed"][name] = delta
                changes.append(Change("graph", f"initializers.{name}", "changed", reason=f"max abs change {delta:.3g}",
                                      new=delta))
    # tree ensembles keep their weights in node attributes, not initializers: compare those per node
    by_node: dict[str, dict[str, Any]] = {}
    for (node_key, attr), (aa, ab) in _matched_attributes(ga, gb).items():
        if len(aa) != len(ab):
            by_node.setdefault(node_key, {})[attr] = {"length": [len(aa), len(ab)]}
            continue
        delta = _max_abs_change(np.asarray(aa), np.asarray(ab))
        if delta:
            by_node.setdefault(node_key, {})[attr] = {"max_abs_change": delta}
    summary["attributes"] = by_node
    for node_key, attrs in by_node.items():
        resized = {k: v["length"] for k, v in attrs.items() if "length" in v}
        moved = {k: v["max_abs_change"] for k, v in attrs.items() if "max_abs_change" in v}
        notes = []
        if resized:
            lengths = sorted({tuple(v) for v in resized.values()})
            notes.append(f"{len(resized)} attribute(s) changed length ("
                         + ", ".join(f"{x} -> {y}" for x, y in lengths[:3]) + ")")
        if moved:
            worst = max(moved, key=lambda k: moved[k])
            notes.append(f"{len(moved)} attribute(s) changed values (max abs change {moved[worst]:.3g} in {worst})")
        changes.append(Change("graph", f"nodes.{node_key}", "changed", reason="; ".join(notes)))
    if not changes:
        # bytes differ but nothing above explains it (node names, doc strings, attribute order ...)
        changes.append(Change("graph", MODEL_FILE, "changed", reason="the graph differs in details not summarised"))
    return summary, changes


def _initializers(model: onnx.ModelProto) -> Iterable[onnx.TensorProto]:
    yield from model.graph.initializer


def _max_abs_change(x: np.ndarray, y: np.ndarray) -> float | None:
    """Largest absolute difference of two same-shaped arrays (None when equal, inf when not numbers)."""
    if x.shape != y.shape:
        return math.inf
    if x.dtype.kind in "biuf" and y.dtype.kind in "biuf":
        xf, yf = x.astype(np.float64), y.astype(np.float64)
        both_nan = np.isnan(xf) & np.isnan(yf)
        d = np.where(both_nan, 0.0, np.abs(xf - yf))
        d = np.where(np.isnan(d), np.inf, d)
        m = float(d.max()) if d.size else 0.0
        return m or None
    return None if np.array_equal(x, y) else math.inf


def _matched_attributes(
    ga: onnx.ModelProto, gb: onnx.ModelProto
) -> dict[tuple[str, str], tuple[list[Any], list[Any]]]:
    """Numeric list attributes of nodes present in both graphs (matched by name, else by op and order)."""

    def keyed(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
        out: dict[str, onnx.NodeProto] = {}
        seen: dict[str, int] = {}
        for node in iter_nodes(model.graph):
            i = seen.get(node.op_type, 0)
            seen[node.op_type] = i + 1
            key = node.name if node.name and node.name not in out else f"{node.op_type}#{i}"
            out[key] = node
        return out

    na, nb = keyed(ga), keyed(gb)
    result: dict[tuple[str, str], tuple[list[Any], list[Any]]] = {}
    for key in na.keys() & nb.keys():
        if na[key].op_type != nb[key].op_type:
            continue
        attrs_a = {a.name: a for a in na[key].attribute}
        attrs_b = {a.name: a for a in nb[key].attribute}
        for name in sorted(attrs_a.keys() & attrs_b.keys()):
            a, b = attrs_a[name], attrs_b[name]
            if a.type != b.type or a.type not in (onnx.AttributeProto.FLOATS, onnx.AttributeProto.INTS,
                                                    onnx.AttributeProto.TENSOR):
                continue
            va, vb = helper.get_attribute_value(a), helper.get_attribute_value(b)
            if a.type == onnx.AttributeProto.TENSOR:
                va, vb = numpy_helper.to_array(va).reshape(-1).tolist(), numpy_helper.to_array(vb).reshape(-1).tolist()
            if list(va) != list(vb):
                result[(key, name)] = (list(va), list(vb))
    return dict(sorted(result.items()))


# ------------------------------------------------------------------------------------ behaviour


def _reference_rows(b: Bundle) -> dict[str, np.ndarray]:
    ref = b.reference_inputs
    return decode_columns(ref) if b.signature.is_tabular else dict(ref)


def _needed(b: Bundle) -> list[str]:
    return b.signature.column_names if b.signature.is_tabular else [t.name for t in b.signature.inputs]


def _score(b: Bundle, data: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Score what ``b`` accepts of ``n`` rows: the runtime's input rules say which rows it refuses
    (:meth:`Runtime.check`), and rows ONNX Runtime still refuses are found by bisection
    (:meth:`Runtime.run_rows`).

    Returns the mask of accepted rows and the outputs for all ``n`` rows (rows it refused hold
    zeros; use the mask).
    """
    ok = np.zeros(n, dtype=bool)
    outputs: dict[str, np.ndarray] = {}
    if not n:
        return ok, outputs
    runtime = b.runtime
    try:
        checked = runtime.check(dict(data))
    except ModelportError:  # the rows as a whole do not fit this bundle (a column it lacks ...)
        return ok, outputs
    passed = np.flatnonzero(checked.ok)
    if not passed.size:
        return ok, outputs
    result, ran, _ = runtime.run_rows(checked.feeds)
    rows = passed[ran]
    ok[rows] = True
    for name, arr in result.items():
        full = np.zeros((n, *arr.shape[1:]), dtype=arr.dtype)
        full[rows] = arr
        outputs[name] = full
    return ok, outputs


def _row_keys(data: Mapping[str, np.ndarray], names: Sequence[str], n: int) -> list[Any]:
    cols = []
    for name in names:
        arr = np.asarray(data[name])
        if arr.dtype.kind in "biufc":
            flat = np.ascontiguousarray(arr.reshape(n, -1))
            cols.append([flat[i].tobytes() for i in range(n)])
        else:
            cols.append([repr(v) for v in arr.reshape(n, -1).tolist()])
    return list(zip(*cols, strict=True)) if cols else [() for _ in range(n)]


def _behaviour(
    a: Bundle, b: Bundle, *, max_rows: int, renames: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    need_a, need_b = _needed(a), _needed(b)
    alias: dict[str, str] = {}
    for old, new in renames:
        alias[old], alias[new] = new, old
    # rows are keyed by A's names; a column B renamed is looked up under its old name
    b_to_a = {n: (n if n in need_a or n not in alias else alias[n]) for n in need_b}
    union_names = list(dict.fromkeys([*need_a, *b_to_a.values()]))
    notes: list[str] = []
    seen: set[Any] = set()
    parts_a: list[dict[str, np.ndarray]] = []
    parts_b: list[dict[str, np.ndarray]] = []
    taken = {"a": 0, "b": 0}
    skipped = {"a": 0, "b": 0}
    duplicates = 0
    for label, owner in (("a", a), ("b", b)):
        raw = _reference_rows(owner)
        if not raw:
            notes.append(f"bundle {label.upper()} stores no reference inputs")
            continue
        n = min(int(np.asarray(next(iter(raw.values()))).shape[0]), max_rows)
        rows = {k: np.asarray(v)[:n] for k, v in raw.items()}
        for name in union_names:
            if name not in rows and alias.get(name) in rows:
                rows[name] = rows[alias[name]]
        missing = [c for c in union_names if c not in rows]
        if missing:
            skipped[label] = n
            notes.append(f"{label.upper()}'s reference rows lack {', '.join(missing[:10])}; the other bundle "
                         "cannot score them")
            continue
        rows = {k: rows[k] for k in union_names}
        keys = _row_keys(rows, union_names, n)
        fresh = np.zeros(n, dtype=bool)
        for i, key in enumerate(keys):  # the union holds each distinct row once
            if key not in seen:
                seen.add(key)
                fresh[i] = True
        duplicates += int((~fresh).sum())
        idx = np.flatnonzero(fresh)
        sub = {k: v[idx] for k, v in rows.items()}
        ok_a, scored_a = _score(a, {k: sub[k] for k in need_a}, idx.size)
        ok_b, scored_b = _score(b, {k: sub[b_to_a[k]] for k in need_b}, idx.size)
        both = ok_a & ok_b
        skipped[label] = int(idx.size - both.sum())
        if skipped[label]:
            notes.append(f"{skipped[label]} of {label.upper()}'s reference rows left out: A refuses "
                         f"{int((~ok_a).sum())} of them, B refuses {int((~ok_b).sum())}")
        taken[label] = int(both.sum())
        if both.any():
            parts_a.append({k: v[both] for k, v in scored_a.items()})
            parts_b.append({k: v[both] for k, v in scored_b.items()})
    if renames:
        notes.append("renamed columns were matched by position: " + ", ".join(f"{o} -> {n}" for o, n in renames))
    result: dict[str, Any] = {
        "rows": taken["a"] + taken["b"],
        "rows_from_a": taken["a"],
        "rows_from_b": taken["b"],
        "skipped": skipped,
        "duplicates": duplicates,
        "label_agreement": None,
        "max_abs_difference": None,
        "outputs": {},
        "only_in_a": [n for n in a.signature.output_names if n not in b.signature.output_names],
        "only_in_b": [n for n in b.signature.output_names if n not in a.signature.output_names],
        "notes": notes,
    }
    if not parts_a:
        return result
    out_a = _concat(parts_a)
    out_b = _concat(parts_b)
    worst = 0.0
    for name in [n for n in a.signature.output_names if n in out_b]:
        entry = _compare_output(name, out_a[name], out_b[name], a.classes, b.classes)
        result["outputs"][name] = entry
        if "agreement" in entry and (name == "label" or result["label_agreement"] is None):
            result["label_agreement"] = entry["agreement"]
        if entry.get("max_abs_difference") is not None:
            worst = max(worst, entry["max_abs_difference"])
            result["max_abs_difference"] = worst
    return result


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def _compare_output(
    name: str, x: np.ndarray, y: np.ndarray, classes_a: list[Any] | None, classes_b: list[Any] | None
) -> dict[str, Any]:
    x, y = np.asarray(x), np.asarray(y)
    if name == "label" or x.dtype.kind in "OUSb" or y.dtype.kind in "OUSb":
        if x.shape[0] != y.shape[0]:
            return {"error": f"row counts differ ({x.shape[0]} vs {y.shape[0]})"}
        if x.dtype.kind in "biuf" and y.dtype.kind in "biuf":
            same = (x.reshape(x.shape[0], -1) == y.reshape(y.shape[0], -1)).all(axis=1)
        else:  # labels as text: 1 and "1" are the same class name
            same = (x.astype(str).reshape(x.shape[0], -1) == y.astype(str).reshape(y.shape[0], -1)).all(axis=1)
        return {"agreement": float(same.mean()) if same.size else 1.0, "disagreements": int((~same).sum())}
    if name == "probabilities" and classes_a is not None and classes_b is not None and classes_a != classes_b:
        common = [c for c in classes_a if c in classes_b]
        if not common:
            return {"error": "the bundles share no class", "classes_compared": []}
        ia = [classes_a.index(c) for c in common]
        ib = [classes_b.index(c) for c in common]
        x, y = x[:, ia], y[:, ib]
        entry = _numeric_difference(x, y)
        entry["classes_compared"] = common
        return entry
    if x.shape != y.shape:
        return {"error": f"shapes differ ({list(x.shape)} vs {list(y.shape)})"}
    return _numeric_difference(x, y)


def _numeric_difference(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    both_nan = np.isnan(xf) & np.isnan(yf)
    d = np.where(both_nan, 0.0, np.abs(xf - yf))
    d = np.where(np.isnan(d), np.inf, d)
    if not d.size:
        return {"max_abs_difference": 0.0, "mean_abs_difference": 0.0, "rows_differing": 0}
    per_row = d.reshape(d.shape[0], -1).max(axis=1)
    return {
        "max_abs_difference": float(d.max()),
        "mean_abs_difference": float(d.mean()),
        "rows_differing": int((per_row > 0).sum()),
    }


# ------------------------------------------------------------------------------------ rendering


def _short(x: Any, limit: int = 48) -> str:
    if x is None:
        return "-"
    text = f"{x:.4g}" if isinstance(x, float) else str(x)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(report: DiffReport) -> RenderableType:
    """A rich renderable of ``report``: who is compared, the verdict, the changes, the behaviour.

    Text from the bundles is cleaned of terminal controls (``inspect._text``); print it with
    ``inspect._text.console()`` (no markup).
    """
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from modelport.inspect._text import clean, clean_data

    parts: list[Any] = []
    for label, ident in (("A", clean_data(report.a)), ("B", clean_data(report.b))):
        line = Text(f"{label}: ", style="bold")
        line.append(f"{ident['name']}")
        if ident.get("version"):
            line.append(f" version {ident['version']}", style="cyan")
        line.append(f"  {ident['digest'][:19]}…  {ident['origin']}", style="dim")
        parts.append(line)
    style = {"identical": "green", "compatible": "yellow", "breaking": "bold red"}[report.level]
    parts.append(Text(f"verdict: {report.summary()}", style=style))

    if report.changes:
        t = Table(title="Changes", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD)
        t.add_column("", no_wrap=True)
        t.add_column("section", no_wrap=True)
        t.add_column("what", overflow="fold", min_width=14, ratio=3)
        t.add_column("change", no_wrap=True)
        t.add_column("A", overflow="fold", min_width=8, max_width=28, ratio=2)
        t.add_column("B", overflow="fold", min_width=8, max_width=28, ratio=2)
        t.add_column("note", overflow="fold", min_width=12, ratio=3)
        order = {"signature": 0, "metadata": 1, "files": 2, "graph": 3}
        for c in sorted(report.changes, key=lambda c: (not c.breaking, order.get(c.section, 9))):
            t.add_row(Text("BREAK", style="bold red") if c.breaking else "", c.section, clean(c.path), c.kind,
                      clean(_short(c.old)), clean(_short(c.new)), clean(c.reason))
        parts.append(t)

    beh = clean_data(report.behaviour)
    if beh is not None:
        t = Table(title=f"Behaviour on {beh['rows']} reference rows ({beh['rows_from_a']} from A, "
                        f"{beh['rows_from_b']} from B)", title_justify="left", title_style="bold",
                  box=box.SIMPLE_HEAD)
        for col in ("output", "label agreement", "max abs difference", "mean abs difference", "rows differing"):
            t.add_column(col, overflow="fold")
        for name, entry in beh["outputs"].items():
            if "error" in entry:
                t.add_row(name, entry["error"], "", "", "")
                continue
            t.add_row(
                name,
                f"{entry['agreement']:.4%}" if "agreement" in entry else "",
                _short(entry.get("max_abs_difference")) if "max_abs_difference" in entry else "",
                _short(entry.get("mean_abs_difference")) if "mean_abs_difference" in entry else "",
                str(entry.get("rows_differing", entry.get("disagreements", ""))),
            )
        for name in beh["only_in_a"]:
            t.add_row(name, "only in A", "", "", "")
        for name in beh["only_in_b"]:
            t.add_row(name, "only in B", "", "", "")
        parts.append(t)
        for note in beh["notes"]:
            parts.append(Text(f"note: {note}", style="dim"))
    return Group(*parts)
