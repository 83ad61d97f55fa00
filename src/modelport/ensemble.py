"""Ensembles as one bundle: several bundles that take the same requests fused into one ONNX graph.

    >>> ens = fuse([mp.load("fraud-a.mpk"), mp.load("fraud-b.mpk")], method="mean")

Each member's graph is copied in under a prefix (``m0/``, ``m1/``, ...), all reading the same
graph inputs, and a few standard operators combine their answers:

* classifiers: ``mean`` (or ``weighted``) of the probabilities; ``vote``: the (weighted) share of
  members whose most probable class is each class, as probabilities; ``stack``: a linear
  meta-model given as weights, ``softmax(intercept + sum_i w_i * p_i)``. ``label`` is the class
  of the highest combined probability (the first one on a tie, as NumPy's argmax);
* regressors: ``mean`` / ``weighted`` of the predictions; ``stack``: ``intercept + sum_i w_i * y_i``.

The ensemble is verified against the members' own answers: every member is run by ONNX Runtime on
the first member's reference rows, the answers are combined in float64 by NumPy, and the fused
graph must give the same within the members' tolerance (else VerificationError). Those combined
answers become the ensemble's reference outputs, so ``modelport verify`` re-checks it anywhere.
The manifest's ``lineage`` lists the members' digests and ``source`` the method and weights.
Only the operators the code generators know are used, so ``modelport compile`` compiles it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelport import __version__
from modelport.bundle import compat, npz
from modelport.bundle import manifest as mf
from modelport.bundle.core import MODEL_FILE, REFERENCE_INPUTS, REFERENCE_OUTPUTS, Bundle
from modelport.bundle.graph import opsets
from modelport.bundle.reference import decode_columns
from modelport.errors import InputError, ModelportError, VerificationError
from modelport.verification.check import tolerance_of
from modelport.verification.parity import compare

Method = Literal["mean", "weighted", "vote", "stack"]
METHODS: tuple[str, ...] = ("mean", "weighted", "vote", "stack")
MAX_MEMBERS = 64
_OUTPUTS = {"classification": ("label", "probabilities"), "regression": ("prediction",)}
_FLOAT = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64}


def fuse(
    members: Sequence[Bundle],
    *,
    method: Method = "mean",
    weights: Sequence[float] | None = None,
    intercept: float | Sequence[float] | None = None,
    name: str | None = None,
    version: str | None = None,
    description: str | None = None,
) -> Bundle:
    """One verified bundle that combines ``members`` (bundles with the same signature and task).

    ``weights`` (one per member) are required for ``weighted`` and ``stack``, optional for
    ``vote``; ``mean`` takes none. ``intercept`` (``stack`` only) is a number, or for a classifier
    one number per class. ``name`` defaults to the first member's name + ``-ensemble``.
    """
    members = list(members)
    if len(members) < 2:
        raise InputError(f"an ensemble needs at least two bundles; got {len(members)}.",
                         hint="name every member: modelport ensemble a.mpk b.mpk --method mean -o ens.mpk")
    if len(members) > MAX_MEMBERS:
        raise InputError(f"an ensemble takes at most {MAX_MEMBERS} bundles; got {len(members)}.")
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}; got {method!r} instead.")
    first = members[0]
    for i, other in enumerate(members[1:], start=1):
        diff = compat.difference(first, other)
        if diff is not None:
            raise InputError(f"member {i} ({_label(other)}) does not take the same requests as member 0 "
                             f"({_label(first)}): {diff}.",
                             hint="an ensemble's members must share task, classes, inputs, outputs and columns")
    task = first.task
    if task not in _OUTPUTS:
        raise InputError(f"an ensemble combines classifiers or regressors; these bundles' task is {task!r}.")
    want = _OUTPUTS[task]
    have = tuple(first.signature.output_names)
    if sorted(have) != sorted(want):
        raise InputError(f"an ensemble of {task} bundles needs exactly the outputs {', '.join(want)}; "
                         f"these have {', '.join(have)}.")
    if method == "vote" and task != "classification":
        raise InputError("method 'vote' combines classifiers; for regressors use mean, weighted or stack.")
    w = _weights(method, weights, len(members))
    classes = list(first.classes or [])
    b = _intercept(method, intercept, task, len(classes))
    if len({m.digest for m in members}) < len(members):
        raise InputError("the same bundle is named twice among the members; name each member once "
                         "(use --method weighted to give one more weight).")

    model = _graph(members, task, method, w, b, classes)
    inputs = first.reference_inputs
    if not inputs:
        raise InputError(f"member 0 ({first.name}) has no reference rows to verify the ensemble on.",
                         hint="repack it with modelport pack, which stores them")
    signature = _strictest(members)
    inputs = _accepted_rows(members, inputs)
    feeds = decode_columns(inputs) if first.signature.is_tabular else inputs
    answers = [m.predict(feeds) for m in members]
    expected = _combine(answers, task, method, w, b, classes)
    # the reference label dtype is the members' (npz keeps text as fixed-width strings)
    ref_out = {k: v.astype(str) if v.dtype == object else v for k, v in expected.items()}
    src = first.manifest
    tol = tolerance_of(first)
    meta = {
        "format": mf.FORMAT,
        "name": name or f"{first.name}-ensemble",
        "version": version,
        "description": description,
        "created": None,
        "metrics": {},
        "tags": {},
        "lineage": {"parent": None, "members": [m.digest for m in members]},
        "source": {"framework": "modelport-ensemble", "framework_version": __version__, "estimator": f"ensemble:{method}",
                   "converter": "modelport.ensemble", "modelport_version": __version__, "method": method,
                   "weights": w, "intercept": b,
                   "members": [{"name": m.name, "version": m.version, "digest": m.digest} for m in members]},
        "task": task,
        "classes": src.get("classes"),
        "signature": signature,
        "onnx": {"ir_version": int(model.ir_version), "opsets": opsets(model), "producer": f"modelport {__version__}"},
        "reference": src.get("reference"),
    }
    data = model.SerializeToString()
    files = {MODEL_FILE: data, REFERENCE_INPUTS: npz.dumps(inputs),
             REFERENCE_OUTPUTS: npz.dumps(ref_out)}
    provisional = _assemble(meta, files, parity=None)
    actual = provisional.predict(feeds, outputs=list(want))
    report = compare(expected, actual, task=task, tolerance=tol)
    if not report.passed:
        raise VerificationError(f"the fused graph does not reproduce its members' combined answers: {report.summary()}; "
                                f"worst rows: {report.worst_rows[:10]}.",
                                hint="check that every member verifies on its own (modelport verify)")
    parity = report.to_dict()
    parity["notes"] = [f"verified against the {len(members)} members' own answers, combined by {method}"]
    return _assemble(meta, files, parity=parity)


def _assemble(meta: dict[str, Any], files: dict[str, bytes], *, parity: dict[str, Any] | None) -> Bundle:
    manifest = {**meta, "parity": parity, "files": mf.files_table(files)}
    return Bundle({**files, "manifest.json": mf.dumps(manifest)}, origin=f"<ensemble {meta['name']}>")


def _label(b: Bundle) -> str:
    return b.name if b.version is None else f"{b.name} v{b.version}"


def _strictest(members: Sequence[Bundle]) -> dict[str, Any]:
    """Member 0's signature, where a column takes missing values only if every member takes them
    (else the ensemble would pass NaN to a member that refuses it); members that treat values
    outside a column's categories differently are refused."""
    sig = json.loads(json.dumps(members[0].manifest["signature"]))
    cols = members[0].signature.columns
    if cols is None:
        return sig
    for i, m in enumerate(members[1:], start=1):
        for c0, c in zip(cols, m.signature.columns or ()):
            if c0.categories is not None and c0.unknown_policy != c.unknown_policy:
                raise InputError(f"member {i} ({_label(m)}) treats values outside column {c0.name!r}'s categories "
                                 f"as {c.unknown_policy!r}, member 0 ({_label(members[0])}) as {c0.unknown_policy!r}.",
                                 hint="repack them with the same --unknown-categories")
    for j, entry in enumerate(sig["columns"]):
        entry["nullable"] = all(m.signature.columns[j].nullable for m in members)  # type: ignore[index]
    return sig


def _accepted_rows(members: Sequence[Bundle], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference rows (member 0's) that every member accepts; a member may refuse some of
    them, e.g. NaN probes that member 0 takes."""
    tabular = members[0].signature.is_tabular
    n = int(next(iter(inputs.values())).shape[0])
    keep = np.ones(n, dtype=bool)
    for m in members:
        feeds = decode_columns(inputs) if tabular else inputs
        try:
            m.predict(feeds)
            continue
        except InputError:
            pass
        for r in np.flatnonzero(keep):
            row = {k: v[r:r + 1] for k, v in inputs.items()}
            try:
                m.predict(decode_columns(row) if tabular else row)
            except InputError:
                keep[r] = False
    if not keep.any():
        raise InputError("no reference row of member 0 is accepted by every member; the ensemble cannot be verified.")
    return {k: v[keep] for k, v in inputs.items()}


# ----------------------------------------------------------------------------- options
def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{what} must be a finite number; got {v!r} instead.")
    return float(v)


def _weights(method: str, weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        if method in ("weighted", "stack"):
            raise InputError(f"method {method!r} needs one weight per member ({n}); got none.",
                             hint="e.g. --weights " + ",".join(["1"] * n))
        return [1.0 / n] * n
    if method == "mean":
        raise InputError("method 'mean' takes no weights; use --method weighted to weight the members.")
    w = [_number(x, f"weight {i}") for i, x in enumerate(weights)]
    if len(w) != n:
        raise InputError(f"there must be one weight per member: {n} members, {len(w)} weight(s).")
    if method == "stack":
        return w  # a meta-model's coefficients: any sign, any sum
    if any(x < 0 for x in w) or sum(w) <= 0:
        raise InputError(f"the weights of method {method!r} must be >= 0 with a positive sum; got {w}.")
    total = sum(w)
    return [x / total for x in w]


def _intercept(method: str, intercept: Any, task: str, n_classes: int) -> list[float]:
    size = n_classes if task == "classification" else 1
    if intercept is None:
        return [0.0] * size
    if method != "stack":
        raise InputError(f"an intercept belongs to method 'stack' only; got one with method {method!r}.")
    if isinstance(intercept, (int, float)) and not isinstance(intercept, bool):
        return [_number(intercept, "the intercept")] * size
    values = [_number(x, f"intercept {i}") for i, x in enumerate(intercept)]
    if len(values) not in (1, size):
        raise InputError(f"the intercept must be one number or one per class ({size}); got {len(values)}.")
    return values * size if len(values) == 1 else values


# ----------------------------------------------------------------------------- the graph
def _aligned(members: Sequence[Bundle]) -> list[onnx.ModelProto]:
    """The members' models with one default-domain opset (the highest), converted where needed."""
    models = [m.onnx_model for m in members]
    default = [next((o.version for o in mo.opset_import if o.domain in ("", "ai.onnx")), None) for mo in models]
    target = max((v for v in default if v is not None), default=None)
    out = []
    for i, (mo, v) in enumerate(zip(models, default)):
        if target is not None and v is not None and v != target:
            from onnx import version_converter

            try:
                mo = version_converter.convert_version(mo, target)
            except Exception as exc:
                raise ModelportError(f"member {i} ({members[i].name}) uses ONNX opset {v} and cannot be converted to "
                                     f"opset {target}, which another member uses ({type(exc).__name__}).",
                                     hint="repack the members with the same modelport version") from None
        out.append(mo)
    return out


def _graph(members: Sequence[Bundle], task: str, method: str, w: list[float], b: list[float],
           classes: list[Any]) -> onnx.ModelProto:
    models = _aligned(members)
    g0 = models[0].graph
    inputs = [i.name for i in g0.input if i.name not in {t.name for t in g0.initializer}]
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    vinfo: list[onnx.ValueInfoProto] = []
    outs: list[dict[str, str]] = []
    for i, mo in enumerate(models):
        g = onnx.GraphProto()
        g.CopyFrom(mo.graph)
        mapping = {n: n for n in inputs}
        g = onnx.compose.add_prefix_graph(g, f"m{i}/", rename_inputs=False, name_map=mapping)
        nodes.extend(g.node)
        inits.extend(g.initializer)
        vinfo.extend(g.value_info)
        outs.append({o.name[len(f"m{i}/"):]: o.name for o in g.output})
    out_vi = {o.name: o for o in g0.output}
    key = "probabilities" if task == "classification" else "prediction"
    elem = out_vi[key].type.tensor_type.elem_type
    if elem not in _FLOAT:
        raise InputError(f"the members' {key!r} output is not float32 or float64 (ONNX type {elem}).")
    ftype = _FLOAT[elem]

    def const(name: str, value: Any, dtype: Any = None) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype or ftype), name))
        return name

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    parts = []
    for i, o in enumerate(outs):
        x = o[key]
        if method == "vote":
            idx = node("ArgMax", [x], f"ens/m{i}/argmax", axis=1, keepdims=1)
            hit = node("Equal", [idx, const("ens/class_index", np.arange(len(classes))[None, :], np.int64)
                                 if i == 0 else "ens/class_index"], f"ens/m{i}/hit")
            x = node("Cast", [hit], f"ens/m{i}/onehot", to=elem)
        parts.append(node("Mul", [x, const(f"ens/w{i}", [w[i]])], f"ens/m{i}/weighted"))
    acc = parts[0]
    for i, p in enumerate(parts[1:], start=1):
        acc = node("Add", [acc, p], f"ens/sum{i}")
    if method == "stack":
        bias = const("ens/intercept", [b] if task == "classification" else b[0])
        acc = node("Add", [acc, bias], "ens/logits")
        if task == "classification":
            acc = node("Softmax", [acc], "ens/softmax", axis=1)
    node("Identity", [acc], key)
    graph_outputs = [out_vi[key]]
    if task == "classification":
        idx = node("ArgMax", [key], "ens/label_index", axis=1, keepdims=0)
        label_vi = out_vi["label"]
        ltype = label_vi.type.tensor_type.elem_type
        if ltype == TensorProto.STRING:
            inits.append(helper.make_tensor("ens/classes", TensorProto.STRING, [len(classes)],
                                            [str(c).encode() for c in classes]))  # type: ignore[misc]
        else:
            const("ens/classes", classes, onnx.helper.tensor_dtype_to_np_dtype(ltype))
        node("Gather", ["ens/classes", idx], "label", axis=0)
        graph_outputs = [out_vi[n] for n in (o.name for o in g0.output)]
    graph = helper.make_graph(nodes, "model", [i for i in g0.input if i.name in inputs], graph_outputs,
                              initializer=inits, value_info=vinfo)
    domains: dict[str, int] = {}
    for mo in models:
        for op in mo.opset_import:
            d = "" if op.domain == "ai.onnx" else op.domain
            domains[d] = max(domains.get(d, 0), op.version)
    domains.setdefault("", 13)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(domains.items())],
                              producer_name="modelport", producer_version=__version__)
    model.ir_version = max(mo.ir_version for mo in models)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ModelportError(f"the fused graph does not pass the ONNX checker: {str(exc).splitlines()[0][:300]}") from None
    return model


def _combine(answers: list[dict[str, np.ndarray]], task: str, method: str, w: list[float], b: list[float],
             classes: list[Any]) -> dict[str, np.ndarray]:
    """The members' answers combined by ``method`` in float64, the reference the graph must match."""
    key = "probabilities" if task == "classification" else "prediction"
    dtype = answers[0][key].dtype
    total = None
    for a, wi in zip(answers, w):
        x = np.asarray(a[key], dtype=np.float64)
        if method == "vote":
            x = (np.argmax(x, axis=1)[:, None] == np.arange(x.shape[1])[None, :]).astype(np.float64)
        total = wi * x if total is None else total + wi * x
    assert total is not None
    if method == "stack":
        total = total + (np.asarray(b)[None, :] if task == "classification" else b[0])
        if task == "classification":
            e = np.exp(total - total.max(axis=1, keepdims=True))
            total = e / e.sum(axis=1, keepdims=True)
    out = {key: total.astype(dtype)}
    if task == "classification":
        label_dtype = answers[0]["label"].dtype
        out["label"] = np.asarray(classes, dtype=label_dtype)[np.argmax(total, axis=1)]
    return out

