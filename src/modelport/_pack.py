"""``pack``: convert a model, verify the result against the original, and assemble the bundle."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from modelport import __version__
from modelport.bundle import manifest as mf
from modelport.bundle import npz
from modelport.bundle.core import MODEL_FILE, REFERENCE_INPUTS, REFERENCE_OUTPUTS, Bundle
from modelport.bundle.graph import opsets
from modelport.bundle.reference import encode_columns, missing_mask, statistics
from modelport.bundle.signature import UNKNOWN_POLICIES, Column, Signature, TensorSpec
from modelport.convert import registry
from modelport.convert._sample import concat_columns, head, like, n_rows, to_columns
from modelport.convert.base import Converted, Converter
from modelport.errors import InputError, ModelportError, VerificationError
from modelport.runtime.coerce import FeedBuilder
from modelport.verification.parity import ParityReport, Tolerance, compare
from modelport.verification.probes import UNSEEN_LAST, make_probes, tree_thresholds

_ONNX_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT8: "int8", onnx.TensorProto.INT16: "int16", onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.UINT16: "uint16",
    onnx.TensorProto.UINT32: "uint32", onnx.TensorProto.UINT64: "uint64", onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.STRING: "str",
}


def pack(
    model: Any,
    sample: Any,
    *,
    name: str | None = None,
    version: str | None = None,
    description: str | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    parent: str | None = None,
    created: str | None = None,
    tolerance: Tolerance | None = None,
    accept_mismatch: bool = False,
    reference_rows: int = 1000,
    probe_rows: int = 2000,
    converter: str | None = None,
    options: Mapping[str, Any] | None = None,
    unknown_categories: str | None = None,
) -> Bundle:
    """Convert ``model`` into a verified bundle.

    ``sample`` is data the model was trained on (a DataFrame keeps column names, dtypes and
    categories; an array gives columns ``f0 .. f{n-1}``; for torch, an example input). The
    bundle is checked against the original on the sample and on edge-case probes; outside
    ``tolerance`` packing fails with VerificationError unless ``accept_mismatch=True``, which is
    recorded in the manifest. Same model and sample give a byte-identical bundle.

    ``unknown_categories`` says what the bundle does with a value outside a column's categories:
    ``"native"`` (the default) what the original library does (LightGBM scores it as missing,
    XGBoost refuses it, a scikit-learn encoder encodes it as it was told to: all zeros for
    ``handle_unknown="ignore"``), ``"missing"`` scores it as a missing value, ``"error"`` refuses
    it. Values that are scored are counted when serving and in batch summaries.
    """
    conv = registry.get(converter) if converter else registry.find(model)
    if sample is None:
        raise InputError("pack needs sample data (rows like the training data, or an example input for torch).")
    if unknown_categories is not None and unknown_categories not in UNKNOWN_POLICIES:
        raise InputError(
            f"unknown_categories must be one of {', '.join(UNKNOWN_POLICIES)}; got {unknown_categories!r}."
        )
    tol = tolerance or Tolerance()
    # a sample read from a file (CSV: text columns) is given the model file's own categories
    prepare = getattr(conv, "prepare_sample", None)
    if prepare is not None:
        sample = prepare(model, sample)
    converted = conv.convert(model, sample, options or {})
    signature = _signature(converted)
    meta = {
        "name": name or type(model).__name__.lower(),
        "version": version,
        "description": description,
        "created": created,
        "metrics": {str(k): float(v) for k, v in (metrics or {}).items()},
        "tags": {str(k): str(v) for k, v in (tags or {}).items()},
        "lineage": {"parent": parent},
        "source": {**converted.source, "modelport_version": __version__},
    }
    model_bytes = _deterministic(converted.onnx_model).SerializeToString()
    provisional = _assemble(meta, converted, signature, {MODEL_FILE: model_bytes}, parity=None, reference=None)

    if signature.columns is not None:
        report, ref_in, ref_out, stats, notes, signature = _verify_tabular(
            conv, model, sample, converted, signature, provisional, tol, reference_rows, probe_rows,
            unknown_categories or "native",
        )
        if notes:
            provisional = _assemble(meta, converted, signature, {MODEL_FILE: model_bytes}, parity=None, reference=None)
    else:
        report, ref_in, ref_out, stats, notes = _verify_tensor(conv, model, sample, provisional, tol)
    if not report.passed:
        if not accept_mismatch:
            raise VerificationError(
                f"the converted model does not reproduce the original: {report.summary()} "
                f"(tolerance: {tol.probability_abs:g} abs on probabilities, {tol.regression_rel:g} rel on regression); "
                f"worst rows: {report.worst_rows[:10]}.",
                hint="fix the model or the sample, loosen the tolerance, or pass accept_mismatch=True "
                "(--accept-mismatch), which the manifest records",
            )
        report.accepted = True
    files = {
        MODEL_FILE: model_bytes,
        REFERENCE_INPUTS: npz.dumps(ref_in),
        # string labels come out of ONNX Runtime as object arrays; npz stores them as fixed-width text
        REFERENCE_OUTPUTS: npz.dumps({k: v.astype(str) if v.dtype == object else v for k, v in ref_out.items()}),
    }
    parity = report.to_dict()
    parity["notes"] = [*converted.notes, *notes]
    return _assemble(meta, converted, signature, files, parity=parity, reference=stats)


def _deterministic(model: onnx.ModelProto) -> onnx.ModelProto:
    # converters stamp random graph names (uuid4) and dates; a bundle must be reproducible
    model.graph.name = "model"
    model.graph.doc_string = ""
    model.doc_string = ""
    del model.metadata_props[:]
    return model


def _signature(converted: Converted) -> Signature:
    g = converted.onnx_model.graph
    init = {t.name for t in g.initializer}
    return Signature(
        inputs=tuple(_spec(v) for v in g.input if v.name not in init),
        outputs=tuple(_spec(v) for v in g.output),
        columns=converted.columns,
    )


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise ModelportError(f"graph value {vi.name!r} is not a tensor (sequences and maps are not supported).")
    dtype = _ONNX_DTYPES.get(tt.elem_type)
    if dtype is None:
        raise ModelportError(f"graph value {vi.name!r} has an unsupported element type {tt.elem_type}.")
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
    return TensorSpec(vi.name, dtype, shape)


def _assemble(
    meta: dict[str, Any],
    converted: Converted,
    signature: Signature,
    files: dict[str, bytes],
    *,
    parity: dict[str, Any] | None,
    reference: dict[str, Any] | None,
) -> Bundle:
    m = converted.onnx_model
    manifest = {
        "format": mf.FORMAT,
        **meta,
        "task": converted.task,
        "classes": converted.classes,
        "signature": signature.to_dict(),
        "onnx": {
            "ir_version": int(m.ir_version),
            "opsets": opsets(m),
            "producer": f"{m.producer_name} {m.producer_version}".strip(),
        },
        "parity": parity,
        "reference": reference,
        "files": mf.files_table(files),
    }
    return Bundle({**files, "manifest.json": mf.dumps(manifest)}, origin=f"<pack {meta['name']}>")


def _try(conv: Converter, model: Any, data: Any) -> dict[str, np.ndarray] | None:
    try:
        with warnings.catch_warnings():
            # a warning is not a refusal (scikit-learn warns as it encodes an unknown category as zeros)
            warnings.simplefilter("ignore")
            return conv.reference(model, data)
    except Exception:  # the original refusing a value is the answer we are asking for
        return None


def _verify_tabular(
    conv: Converter,
    model: Any,
    sample: Any,
    converted: Converted,
    signature: Signature,
    bundle: Bundle,
    tol: Tolerance,
    reference_rows: int,
    probe_rows: int,
    policy: str = "native",
) -> tuple[ParityReport, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any], list[str], Signature]:
    assert signature.columns is not None
    if n_rows(sample) == 0:
        raise InputError("the sample has no rows; pack needs at least one row of training-like data.")
    all_cols = to_columns(sample)
    cols = to_columns(head(sample, reference_rows))
    columns = list(signature.columns)
    first = {k: v[:1] for k, v in cols.items()}
    notes: list[str] = []
    framework = getattr(conv, "framework", "the original model")

    def with_value(col: str, value: Any) -> dict[str, np.ndarray]:
        r = {k: v.copy() for k, v in first.items()}
        if r[col].dtype.kind in "iub" and isinstance(value, float):
            r[col] = r[col].astype(np.float64)
        if r[col].dtype.kind in "iubf" and not isinstance(value, (int, float)):
            r[col] = r[col].astype(object)
        r[col][0] = value
        return r

    # which columns the original model takes NaN / unseen categories in
    nullable: dict[str, bool] = dict(converted.nullable or {})
    unseen_ok: dict[str, bool] = {}
    for c in columns:
        if c.name not in nullable:
            if c.dtype in ("str",):
                nullable[c.name] = False
            else:
                nullable[c.name] = _try(conv, model, like(sample, with_value(c.name, None if c.dtype == "category" else np.nan))) is not None
        if c.dtype in ("str", "category"):
            unseen_ok[c.name] = _try(conv, model, like(sample, with_value(c.name, UNSEEN_LAST))) is not None
    # values outside the categories: what the library does (native), what the bundle will do (policy)
    native: dict[str, str] = {}
    verify_unseen: dict[str, bool] = {}
    for c in columns:
        if c.categories is None:
            verify_unseen[c.name] = unseen_ok.get(c.name, False)
            continue
        native[c.name] = ("missing" if c.dtype == "category" else "encoder") if unseen_ok.get(c.name) else "error"
        if c.dtype == "str" and policy == "missing":
            raise InputError(
                f"unknown_categories='missing' is not possible for column {c.name!r}: it holds strings for "
                "the model's encoder, which has no missing value.",
                hint="use 'native' (what the original model does) or 'error'",
            )
        effective = native[c.name] if policy == "native" else policy
        # unseen values are compared with the original only where the bundle treats them its way
        verify_unseen[c.name] = native[c.name] != "error" and effective == native[c.name]
        if c.dtype == "str" and native[c.name] == "encoder" and effective == "encoder":
            # the encoder sees None as one more unknown value: score it so, where the original does
            nullable[c.name] = _try(conv, model, like(sample, with_value(c.name, None))) is not None
        if effective != native[c.name]:
            notes.append(
                f"column {c.name!r}: values outside its categories are {_UNKNOWN_WORDS[effective]} "
                f"(unknown_categories={policy!r}); {framework} {_NATIVE_WORDS[native[c.name]]}, so they are not "
                "compared with it."
            )

    def finish(cols_: list[Column]) -> Signature:
        return Signature(signature.inputs, signature.outputs, tuple(
            Column(c.name, c.dtype, c.input, c.index, c.categories, nullable=bool(nullable.get(c.name, False)),
                   unknown=policy if c.categories is not None else None, native=native.get(c.name))
            for c in cols_
        ))

    thresholds = {**tree_thresholds(converted.onnx_model, columns), **converted.thresholds}
    probes = make_probes(cols, columns, thresholds=thresholds, nullable=nullable, unseen_ok=verify_unseen,
                         max_rows=probe_rows)
    # NaN probes the bundle cannot reproduce make the column non-nullable instead of failing the pack
    trial = FeedBuilder(finish(columns))
    nan_rows = {c.name: np.flatnonzero(missing_mask(probes[c.name])) for c in columns if nullable.get(c.name)}
    nan_notes = []
    for cname, idx in nan_rows.items():
        if idx.size == 0:
            continue
        sub = {k: v[idx] for k, v in probes.items()}
        exp = _try(conv, model, like(sample, sub))
        got = bundle.runtime.run(trial(sub)) if exp is not None else None
        if exp is None or got is None or not compare(exp, {k: got[k] for k in exp}, task=converted.task, tolerance=tol).passed:
            nullable[cname] = False
            nan_notes.append(
                f"column {cname!r}: the bundle cannot reproduce the original's handling of missing values; "
                "it refuses NaN in this column."
            )
    if nan_notes:
        notes.extend(nan_notes)
        keep = np.ones(len(next(iter(probes.values()))), dtype=bool)
        for cname, idx in nan_rows.items():
            if not nullable[cname]:
                keep[idx] = False
        probes = {k: v[keep] for k, v in probes.items()}
    signature = finish(columns)
    evaluation = concat_columns([cols, probes])
    with warnings.catch_warnings():
        if any(verify_unseen.values()):  # scikit-learn warns as it encodes the unseen probes
            warnings.filterwarnings("ignore", message="Found unknown categories", category=UserWarning)
        expected = conv.reference(model, like(sample, evaluation))
    actual = bundle.runtime.run(FeedBuilder(signature)(evaluation))
    report = compare(expected, {k: actual[k] for k in expected if k in actual}, task=converted.task, tolerance=tol)
    stats = statistics(all_cols)
    stats["probes"] = len(next(iter(probes.values())))
    stats["stored_rows"] = len(next(iter(evaluation.values())))
    return report, encode_columns(evaluation), actual, stats, notes, signature


_UNKNOWN_WORDS = {"missing": "scored as missing values", "error": "refused", "encoder": "handed to the encoder"}
_NATIVE_WORDS = {
    "missing": "scores them as missing values",
    "error": "refuses them",
    "encoder": "encodes them as its encoder was told to (handle_unknown)",
}


def _verify_tensor(
    conv: Converter, model: Any, sample: Any, bundle: Bundle, tol: Tolerance
) -> tuple[ParityReport, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any], list[str]]:
    feeds = conv.tensor_inputs(sample, bundle.signature)
    expected = conv.reference(model, sample)
    actual = bundle.runtime.run(bundle.runtime.feeds(feeds))
    report = compare(expected, {k: actual[k] for k in expected if k in actual}, task=bundle.task, tolerance=tol)
    # a batch of one must give the first row of the full batch
    one = {k: v[:1] for k, v in feeds.items()}
    single = bundle.runtime.run(bundle.runtime.feeds(one))
    first = {k: v[:1] for k, v in actual.items()}
    single_report = compare(first, single, task=bundle.task, tolerance=tol)
    notes = [] if single_report.passed else ["a batch of one gives other answers than the same row in a batch"]
    if not single_report.passed:
        report.passed = False
    stats = statistics({k: v for k, v in feeds.items() if v.ndim <= 2 and (v.ndim < 2 or v.shape[1] == 1)})
    return report, feeds, actual, stats, notes
