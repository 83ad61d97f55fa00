"""Spark ML pipelines (a saved ``PipelineModel`` directory, or an in-memory one) -> ONNX, without a JVM.

The pipeline is read from its directory by ``_spark_read`` (JSON metadata and Parquet data, with
pyarrow; an in-memory ``pyspark.ml.PipelineModel`` is first saved to a temporary directory), planned
by ``_spark_plan``, lowered to one double-precision ONNX graph by ``_spark_graph`` and verified
against ``_spark_eval``, a numpy re-statement of Spark's ``transform`` that the test suite holds
to Spark itself. pyspark is needed only to save an in-memory model (or a Spark DataFrame sample):
packing a directory gives the same bundle with or without it.

The pipeline's input columns become the bundle's columns: strings for StringIndexer inputs,
numbers otherwise (numeric columns a StringIndexer or an erroring OneHotEncoder reads are category
columns). A missing value in a bundle column is scored as Spark scores null. Rows Spark refuses
(``handleInvalid='error'``) or drops (``'skip'``) are refused by the bundle, with the reason: a
bundle answers each row it is given or says why not, and dropping rows would break the row order
batch scoring and serving keep.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport._deps import require
from modelport.bundle.signature import Column
from modelport.convert._sample import is_dataframe, with_categories
from modelport.convert._spark_eval import evaluate, refusal
from modelport.convert._spark_graph import build
from modelport.convert._spark_plan import Plan, plan, spark_type_of
from modelport.convert._spark_read import PipelineModel, read_pipeline
from modelport.convert.base import Converted, Converter
from modelport.errors import ConversionError, InputError, UnsupportedModelError

#: rows collected from a Spark DataFrame given as the sample
SAMPLE_ROWS = 10_000
_COLUMN_DTYPES = {"double": "float64", "float": "float32", "integer": "int64", "boolean": "bool"}
_DROPPED = "modelport_spark_dropped_rows"
_SPARK_TYPES = {
    "string": "string", "varchar": "string", "char": "string", "double": "double", "float": "float",
    "integer": "integer", "long": "integer", "short": "integer", "byte": "integer", "boolean": "boolean",
    "decimal": "double",
}


class SparkConverter(Converter):
    name = "spark"
    framework = "Spark ML"
    modules = ("pyspark", "modelport.convert._spark_read")

    # ------------------------------------------------------------------ before converting
    def prepare_model(self, model: Any, sample: Any) -> PipelineModel:
        """The pipeline read from its directory (an in-memory one saved first), bound to the
        schema of ``sample`` (the types of its columns decide how Spark reads them)."""
        return load(model).with_schema(schema_of(sample))

    def prepare_sample(self, model: Any, sample: Any) -> Any:
        """The sample as a pandas DataFrame of the columns the pipeline reads (a Spark DataFrame is
        collected, up to SAMPLE_ROWS rows), typed as the bundle reads them; rows Spark drops
        (``handleInvalid='skip'``) are left out, as Spark's ``transform`` leaves them out."""
        pipeline = _bound(model, sample)
        p = _plan(pipeline)
        frame = _frame(sample, [c.name for c in p.inputs])
        out = frame.copy()
        for c in p.inputs:
            if c.kind == "number":
                out[c.name] = _numbers(frame[c.name], c.name, np.float32 if c.spark_type == "float" else np.float64)
            else:  # text, and category values (codes columns): objects, None where missing
                out[c.name] = frame[c.name].astype(object).where(frame[c.name].notna(), None)
        codes = {c.name: tuple(c.categories or ()) for c in p.inputs if c.kind == "codes"}
        if codes:
            out = with_categories(out, codes, source="the Spark pipeline")
        outcome = evaluate(p, _columns(out, p))
        if outcome.failed:  # before dropping rows, so that the row numbers are the sample's own
            first = sorted(outcome.failed)[:3]
            more = f" (and {len(outcome.failed) - len(first)} more)" if len(outcome.failed) > len(first) else ""
            raise InputError(
                f"the data holds {len(outcome.failed)} row(s) on which the Spark pipeline fails, as Spark's own "
                f"transform would{more}: " + "; ".join(f"row {i}: {outcome.failed[i]}" for i in first),
                hint="pass rows the pipeline takes (its training data); a bundle refuses the others, with the reason",
            )
        if outcome.dropped:
            keep = np.ones(len(out), dtype=bool)
            keep[sorted(outcome.dropped)] = False
            out = out[keep].reset_index(drop=True)
        out.attrs[_DROPPED] = len(outcome.dropped)
        if len(out) == 0:
            raise InputError("the Spark pipeline drops every row of the sample (handleInvalid='skip').",
                             hint="pass rows of the data the pipeline was fitted on")
        return out

    # ------------------------------------------------------------------ converting
    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted:
        from modelport import __version__

        pipeline = _bound(model, sample)
        p = _plan(pipeline)
        onx, split_values = build(p, doc=f"Spark {pipeline.spark_version} PipelineModel")
        columns = tuple(_column(c) for c in p.inputs)
        notes = list(p.notes) + _skip_notes(p)
        dropped = int(getattr(sample, "attrs", {}).get(_DROPPED, 0) or 0)
        if dropped:
            notes.append(f"{dropped} sample row(s) that the pipeline drops (handleInvalid='skip') were left out of the sample.")
        names = [s.stage.name for s in p.steps] + [p.predictor.name]
        return Converted(
            onnx_model=onx,
            task=p.task,
            columns=columns,
            classes=list(p.classes) if p.classes is not None else None,
            source={
                "framework": "spark",
                "framework_version": pipeline.spark_version,
                "estimator": f"PipelineModel({', '.join(names)})",
                "converter": "modelport",
                "converter_version": __version__,
            },
            thresholds={**{c.name: [] for c in p.inputs if c.kind != "number"}, **split_values},
            notes=notes,
        )

    def reference(self, model: Any, data: Any) -> dict[str, np.ndarray]:
        """What Spark's ``transform`` gives on ``data`` (a missing value read as null); rows Spark
        refuses or drops raise InputError naming them."""
        pipeline = _bound(model, data)
        p = _plan(pipeline)
        outcome = evaluate(p, _columns(_frame(data, [c.name for c in p.inputs]), p))
        error = refusal(outcome)
        if error is not None:
            raise error
        return outcome.outputs


# ---------------------------------------------------------------------- the model
def load(model: Any) -> PipelineModel:
    """A read pipeline from a :class:`PipelineModel`, a directory, or an in-memory pyspark model."""
    if isinstance(model, PipelineModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return read_pipeline(model)
    module = type(model).__module__ or ""
    if not module.startswith("pyspark"):
        raise UnsupportedModelError(f"modelport's Spark converter takes a PipelineModel; got a {type(model).__name__}.")
    if not hasattr(model, "write"):
        raise UnsupportedModelError(
            f"a {module}.{type(model).__name__} is not a Spark ML model; modelport packs a fitted PipelineModel.",
        )
    require("pyspark", purpose="saving an in-memory Spark model")
    with tempfile.TemporaryDirectory(prefix="modelport-spark-") as tmp:
        target = Path(tmp) / "model"
        try:
            model.write().overwrite().save(target.resolve().as_uri())
        except Exception as exc:  # py4j and Spark's own errors
            raise ConversionError(
                f"Spark could not save the {type(model).__name__} to a temporary directory: "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                hint="save it yourself (model.write().save(path)) and pack the directory",
            ) from exc
        if not (target / "metadata").is_dir():
            raise ConversionError(
                "Spark saved the model somewhere this process cannot read (a cluster's executors wrote it "
                "to their own disks).",
                hint="save it to storage the driver can read (model.write().save(path)) and pack that directory",
            )
        pipeline = read_pipeline(target)
    return PipelineModel(path=f"<in-memory {type(model).__name__}>", uid=pipeline.uid,
                         spark_version=pipeline.spark_version, stages=pipeline.stages)


def schema_of(sample: Any) -> dict[str, str]:
    """Column name -> Spark type (string, double, float, integer, boolean) of a sample."""
    if _is_spark_frame(sample):
        out = {}
        for f in sample.schema.fields:
            name = f.dataType.typeName()
            out[f.name] = _SPARK_TYPES.get(name, name)
        return out
    if is_dataframe(sample):
        out = {}
        for name in sample.columns:
            s = sample[name]
            kind = spark_type_of(s.dtype)
            if kind == "string" and str(s.dtype) == "category":
                kind = spark_type_of(s.cat.categories.dtype) or "string"
            elif kind == "string" and s.dtype == object:
                kind = _object_type(s)
            out[str(name)] = kind or str(s.dtype)
        return out
    if isinstance(sample, Mapping):
        return {str(k): spark_type_of(np.asarray(v).dtype) or "string" for k, v in sample.items()}
    raise InputError(
        f"the sample of a Spark pipeline must be a pandas or Spark DataFrame (or a dict of columns); "
        f"got a {type(sample).__name__}.",
        hint="pass rows with the pipeline's input columns by name",
    )


def _object_type(series: Any) -> str:
    """The Spark type of a pandas object column from its values (booleans or numbers with None
    beside them are object columns in pandas)."""
    values = [v for v in series.tolist() if v is not None and not (isinstance(v, float) and v != v)
              and type(v).__name__ != "NAType"]
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        return "boolean"
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
        return "integer"
    if values and all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in values):
        return "double"
    return "string"


def _bound(model: Any, data: Any) -> PipelineModel:
    pipeline = load(model)
    return pipeline if pipeline.schema is not None else pipeline.with_schema(schema_of(data))


def _plan(pipeline: PipelineModel) -> Plan:
    assert pipeline.schema is not None
    return plan(pipeline, pipeline.schema)


def _is_spark_frame(data: Any) -> bool:
    return (type(data).__module__ or "").startswith("pyspark.sql") and hasattr(data, "toPandas") and hasattr(data, "schema")


def _frame(data: Any, columns: list[str]) -> Any:
    """The named columns of ``data`` as a pandas DataFrame."""
    pd = require("pandas", purpose="packing Spark pipelines")
    if _is_spark_frame(data):
        missing = [c for c in columns if c not in data.columns]
        if missing:
            raise InputError(f"the Spark DataFrame lacks the column(s) {', '.join(map(repr, missing))} the pipeline reads.")
        try:
            return data.select(*columns).limit(SAMPLE_ROWS).toPandas()
        except Exception as exc:  # py4j / Spark errors
            raise InputError(f"collecting the Spark DataFrame sample failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(data, Mapping) and not is_dataframe(data):
        data = pd.DataFrame({k: list(v) if np.ndim(v) else v for k, v in data.items()})
    if not is_dataframe(data):
        raise InputError(
            f"a Spark pipeline reads named columns; got a {type(data).__name__}.",
            hint="pass a pandas or Spark DataFrame (or a dict of columns)",
        )
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise InputError(
            f"the data lacks the column(s) {', '.join(map(repr, missing))} that the Spark pipeline reads "
            f"(it reads {', '.join(map(repr, columns))}).",
        )
    return data[columns]


def _numbers(series: Any, name: str, dtype: type) -> np.ndarray:
    if getattr(series.dtype, "kind", "O") in "biuf":  # numpy and pandas' nullable dtypes (NA -> NaN)
        return series.to_numpy(dtype=np.float64, na_value=np.nan).astype(dtype)
    out = np.empty(len(series), dtype=np.float64)
    for i, v in enumerate(series.to_numpy(dtype=object).tolist()):
        if v is None or (isinstance(v, float) and v != v) or type(v).__name__ == "NAType":
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise InputError(f"column {name!r} must be numeric; got {v!r} in row {i}.") from None
    return out.astype(dtype)


def _columns(frame: Any, p: Plan) -> dict[str, np.ndarray]:
    out = {}
    for c in p.inputs:
        s = frame[c.name]
        if c.kind == "number" and s.dtype.kind in "biuf":
            out[c.name] = s.to_numpy()
        else:
            out[c.name] = s.to_numpy(dtype=object, na_value=None)
    return out


def _column(c: Any) -> Column:
    if c.kind == "text":
        return Column(c.name, "str", c.name, None, tuple(c.categories or ()))
    if c.kind == "codes":
        return Column(c.name, "category", c.name, None, tuple(c.categories or ()))
    return Column(c.name, _COLUMN_DTYPES[c.spark_type], c.name, None)


def _null_sources(p: Plan, column: str) -> list[str]:
    """The input columns whose null reaches ``column`` as a null (OneHotEncoder and Bucketizer pass
    null on; indexers and imputers never give null)."""
    if column in {c.name for c in p.inputs}:
        return [column]
    for step in p.steps:
        for _, src, out in step.pairs:
            if out == column and step.stage.kind in ("one_hot", "bucketizer"):
                return _null_sources(p, src)
    return []


def _skip_notes(p: Plan) -> list[str]:
    notes = []
    for step in p.steps:
        s = step.stage
        if s.params.get("handleInvalid") != "skip":
            continue
        what = {"string_indexer": "null or not one of its labels", "bucketizer": "null or NaN",
                "assembler": "null or NaN"}.get(s.kind, "invalid")
        cols = [str(c) for c in s.param("inputCols")] if s.kind == "assembler" else [src for _, src, _ in step.pairs]
        cols = list(dict.fromkeys(c for col in cols for c in _null_sources(p, col)))
        if not cols:
            continue
        notes.append(
            f"{s.label} (handleInvalid='skip') drops rows whose {' or '.join(map(repr, cols))} is {what}; the bundle "
            "refuses those rows with the reason instead (batch scoring writes them to its rejects file), so that "
            "every row it is given is answered or refused."
        )
    return notes
