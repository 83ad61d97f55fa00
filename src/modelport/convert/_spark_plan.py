"""What a Spark pipeline computes, worked out once from its stages: which stages the prediction
needs, which columns it reads (and as what), vector widths, task and classes.

Both the reference evaluator (``_spark_eval``) and the ONNX lowering (``_spark_graph``) follow
this plan, so they agree on every choice made here:

* the **output** is the predictor's ``predictionCol``, or an ``IndexToString`` of it that ends the
  pipeline (its labels are then the classes); any other final column is refused;
* only the stages (and, of multi-column stages, only the column pairs) that the prediction
  depends on are kept; a ``StringIndexer`` of the label is left out, as Spark itself skips it
  when the label column is absent;
* each **input column** is read as text (a StringIndexer of strings), as category *codes* (a
  StringIndexer of numbers, whose labels are the category values; a OneHotEncoder with
  ``handleInvalid='error'`` reading the column itself, whose codes are the values 0..k-1), or as a
  number.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelport.convert._spark_read import PipelineModel, Stage
from modelport.errors import ConversionError, UnsupportedModelError

PREDICTORS = ("logistic", "linear", "tree", "forest", "gbt")
#: Spark types a sample column can have, as modelport names them (see ``spark_type_of``)
SPARK_TYPES = ("string", "double", "float", "integer", "boolean")
_INT_LABEL = re.compile(r"^-?\d+$")
# what Java's Double.toString writes: 1.5, 1.0E10, -3.0E-5 (never a bare integer)
_DOUBLE_LABEL = re.compile(r"^-?(\d+\.\d+(E-?\d+)?|Infinity)$")


@dataclass(frozen=True)
class InputColumn:
    """A column the pipeline reads from its input DataFrame."""

    name: str
    #: "text" (strings for a StringIndexer), "codes" (numbers read as categories), "number"
    kind: str
    spark_type: str
    #: text: the StringIndexer's labels; codes: the category values, in code order
    categories: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Step:
    """One needed stage and, for multi-column stages, the (input, output) pairs that are needed."""

    stage: Stage
    pairs: tuple[tuple[int, str, str], ...]  # (position in the stage's lists, input column, output column)


@dataclass(frozen=True)
class Plan:
    pipeline: PipelineModel
    steps: tuple[Step, ...]
    predictor: Stage
    inputs: tuple[InputColumn, ...]
    task: str
    classes: tuple[Any, ...] | None
    #: vector columns -> width (scalar columns are absent)
    widths: Mapping[str, int]
    notes: tuple[str, ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return len(self.classes or ())

    def input(self, name: str) -> InputColumn:
        for c in self.inputs:
            if c.name == name:
                return c
        raise KeyError(name)


def spark_type_of(dtype: Any) -> str | None:
    """A pandas / numpy dtype as a Spark type (string, double, float, integer, boolean), or None."""
    text = str(dtype)
    if text in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32"):
        return "integer"
    if text == "boolean":
        return "boolean"
    if text in ("Float32",):
        return "float"
    if text in ("Float64",):
        return "double"
    kind = getattr(dtype, "kind", "O")
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return "integer"
    if kind == "f":
        return "float" if getattr(dtype, "itemsize", 8) < 8 else "double"
    if text in ("object", "string", "str", "category") or kind in "OUS" or text.startswith("string"):
        return "string"
    return None


def plan(pipeline: PipelineModel, schema: Mapping[str, str]) -> Plan:
    """The plan of ``pipeline`` for input data of ``schema`` (column -> Spark type)."""
    stages = list(pipeline.stages)
    if not stages:
        raise UnsupportedModelError(f"{pipeline.path}: the PipelineModel has no stages.")
    predictors = [s for s in stages if s.kind in PREDICTORS]
    last = stages[-1]
    if not predictors:
        raise UnsupportedModelError(
            f"the pipeline has no predictor: its last stage, {last.label}, outputs {_outputs_text(last)}, "
            "not a prediction.",
            hint="modelport packs pipelines that end in a classifier or regressor (LogisticRegression, "
            "LinearRegression, DecisionTree*, RandomForest*, GBT*), optionally followed by IndexToString",
        )
    predictor = predictors[-1]
    prediction = str(predictor.param("predictionCol", "prediction"))
    after = stages[predictor.index + 1:]
    index_to_string: Stage | None = None
    if after:
        final = after[-1]
        ok = (final.kind == "index_to_string" and final.param("inputCol", None) == prediction
              and all(s.kind == "index_to_string" for s in after))
        if not ok:
            raise UnsupportedModelError(
                f"the pipeline's output is not a prediction: its last stage, {final.label}, outputs "
                f"{_outputs_text(final)}, after the predictor {predictor.label}.",
                hint="pack the pipeline that ends in the predictor (or in IndexToString of its prediction): "
                "PipelineModel(stages=model.stages[:k])",
            )
        index_to_string = final
    features = str(predictor.param("featuresCol", "features"))
    producers = _producers(stages[:predictor.index])
    needed: dict[int, set[int]] = {}  # stage index -> needed pair positions
    inputs: list[str] = []
    consumers: dict[str, list[tuple[Stage, int]]] = {}
    queue = [(features, predictor, 0)]
    seen: set[str] = set()
    while queue:
        col, consumer, pos = queue.pop(0)
        consumers.setdefault(col, []).append((consumer, pos))
        if col in seen:
            continue
        seen.add(col)
        made = producers.get(col)
        if made is None or made[0].index >= consumer.index:
            if col not in inputs:
                inputs.append(col)
            continue
        stage, position = made
        if stage.kind in PREDICTORS:
            raise UnsupportedModelError(
                f"the output {col!r} of {stage.label} feeds {consumer.label}; modelport converts pipelines "
                "with one predictor.",
                hint="pack each model as its own bundle",
            )
        needed.setdefault(stage.index, set()).add(position)
        for in_col, in_pos in _stage_inputs(stage, position):
            queue.append((in_col, stage, in_pos))
    steps = []
    for s in stages[:predictor.index]:
        if s.index in needed:
            steps.append(Step(s, tuple(p for p in _pairs(s) if p[0] in needed[s.index])))
            if s.kind == "string_indexer":
                derived = [src for _, src, _ in steps[-1].pairs if src not in inputs]
                if derived:
                    raise UnsupportedModelError(
                        f"{s.label} indexes {', '.join(map(repr, derived))}, which an earlier stage makes; modelport "
                        "converts StringIndexers of the pipeline's input columns.",
                        hint="index the input column itself",
                    )
    notes = _left_out(stages[:predictor.index], needed, predictor, set(inputs))
    # inputs in the order the pipeline first reads them
    order = {c: i for i, c in enumerate(_read_order(steps, features))}
    inputs.sort(key=lambda c: order.get(c, len(order)))
    missing = [c for c in inputs if c not in schema]
    if missing:
        raise ConversionError(
            f"the sample lacks the column(s) {', '.join(map(repr, missing))} that the pipeline reads "
            f"(it reads {', '.join(map(repr, inputs))}).",
            hint="pass a sample of the data the pipeline was fitted on, with those columns",
        )
    columns = tuple(_input_column(c, schema[c], consumers.get(c, []), steps) for c in inputs)
    widths = _widths(steps, predictor, {c.name: c for c in columns})
    task, classes = _task(predictor, index_to_string)
    _check_steps(steps, widths)
    return Plan(pipeline=pipeline, steps=tuple(steps), predictor=predictor, inputs=columns, task=task,
                classes=classes, widths=widths, notes=tuple(notes))


def _outputs_text(stage: Stage) -> str:
    outs = _stage_outputs(stage)
    return ", ".join(repr(o) for o in outs) if outs else "nothing"


def _stage_outputs(stage: Stage) -> list[str]:
    if stage.kind in PREDICTORS:
        return [str(stage.param("predictionCol", "prediction"))]
    if "outputCols" in stage.params:
        return [str(c) for c in stage.params["outputCols"]]
    out = stage.params.get("outputCol")
    return [str(out)] if out is not None else []


def _pairs(stage: Stage) -> list[tuple[int, str, str]]:
    """(position, input, output) of a feature stage; VectorAssembler is one pair at position 0, a
    predictor one pair per output column."""
    if stage.kind in PREDICTORS:
        features = str(stage.param("featuresCol", "features"))
        outs = [str(stage.params[k]) for k in ("predictionCol", "probabilityCol", "rawPredictionCol")
                if stage.params.get(k)]
        return [(i, features, o) for i, o in enumerate(outs)]
    if stage.kind == "assembler":
        return [(0, "", str(stage.param("outputCol")))]
    if stage.kind in ("standard_scaler", "min_max_scaler", "index_to_string"):
        return [(0, str(stage.param("inputCol")), str(stage.param("outputCol")))]
    ins = stage.columns("inputCol", "inputCols")
    outs = stage.columns("outputCol", "outputCols")
    if len(ins) != len(outs):
        raise ConversionError(f"{stage.label} has {len(ins)} input columns but {len(outs)} output columns.")
    return [(i, a, b) for i, (a, b) in enumerate(zip(ins, outs))]


def _producers(stages: Sequence[Stage]) -> dict[str, tuple[Stage, int]]:
    out: dict[str, tuple[Stage, int]] = {}
    for s in stages:
        if s.kind == "index_to_string":
            continue
        for pos, _, col in _pairs(s):
            out[col] = (s, pos)
    return out


def _stage_inputs(stage: Stage, position: int) -> list[tuple[str, int]]:
    if stage.kind == "assembler":
        cols = stage.param("inputCols")
        if not isinstance(cols, list) or not cols:
            raise ConversionError(f"{stage.label} assembles no input columns.")
        return [(str(c), i) for i, c in enumerate(cols)]
    for pos, col, _ in _pairs(stage):
        if pos == position:
            return [(col, pos)]
    raise ConversionError(f"{stage.label} has no column pair {position}.")


def _read_order(steps: Sequence[Step], features: str) -> list[str]:
    order: list[str] = []
    for step in steps:
        if step.stage.kind == "assembler":
            order.extend(str(c) for c in step.stage.param("inputCols"))
        else:
            order.extend(col for _, col, _ in step.pairs)
    order.append(features)
    return list(dict.fromkeys(order))


def _left_out(stages: Sequence[Stage], needed: Mapping[int, set[int]], predictor: Stage, inputs: set[str]) -> list[str]:
    label = predictor.param("labelCol", "label")
    notes = []
    for s in stages:
        if s.index in needed:
            continue
        outs = _stage_outputs(s)
        ins = [c for _, c, _ in _pairs(s) if c] if s.kind != "assembler" else [str(c) for c in s.param("inputCols", [])]
        if str(s.params.get("handleInvalid", "")) == "skip" and any(c in inputs for c in ins):
            raise UnsupportedModelError(
                f"{s.label} does not feed the prediction, but with handleInvalid='skip' Spark drops rows by "
                f"its column(s) {', '.join(repr(c) for c in ins if c in inputs)}, which the prediction reads too.",
                hint="remove the stage from the pipeline, or set its handleInvalid to 'keep' or 'error'",
            )
        if s.kind == "string_indexer" and label in outs:
            continue  # the label's indexer: Spark skips it when the label column is absent
        notes.append(f"{s.label} outputs {', '.join(map(repr, outs))}, which the prediction does not use; "
                     "the bundle leaves it out.")
    return notes


def _input_column(name: str, spark_type: str, readers: list[tuple[Stage, int]], steps: Sequence[Step]) -> InputColumn:
    if spark_type not in SPARK_TYPES:
        raise ConversionError(f"column {name!r} of the sample has a type modelport cannot give Spark ({spark_type}).")
    kinds = {"index" if stage.kind == "string_indexer" else "number" for stage, _ in readers}
    indexers = [(stage, pos) for stage, pos in readers if stage.kind == "string_indexer"]
    what = ", ".join(sorted({f"{s.name}" for s, _ in readers}))
    if indexers:
        if len(kinds) > 1:
            raise UnsupportedModelError(
                f"column {name!r} is read both by a StringIndexer and as a number ({what}); a bundle column "
                "is one or the other.",
                hint="index a copy of the column for the StringIndexer",
            )
        labels = {tuple(s.data["labels"][pos]) for s, pos in indexers}
        if len(labels) > 1:
            raise UnsupportedModelError(f"column {name!r} is indexed by several StringIndexers with different labels.")
        known = next(iter(labels))
        if spark_type == "string":
            return InputColumn(name, "text", spark_type, known)
        return InputColumn(name, "codes", spark_type, _numeric_labels(name, spark_type, known))
    if spark_type == "string":
        raise ConversionError(
            f"column {name!r} holds strings in the sample, but {what} read it as numbers.",
            hint="pass the column with its training type (numbers)",
        )
    if spark_type == "boolean" and any(s.kind != "assembler" for s, _ in readers):
        raise UnsupportedModelError(f"column {name!r} is boolean; Spark's {what} take numbers (only VectorAssembler takes booleans).")
    codes = [_ohe_size(s, pos) for s, pos in readers if s.kind == "one_hot" and s.param("handleInvalid") == "error"]
    if codes:
        size = min(codes)
        cats: tuple[Any, ...] = tuple(range(size)) if spark_type == "integer" else tuple(float(i) for i in range(size))
        return InputColumn(name, "codes", spark_type, cats)
    return InputColumn(name, "number", spark_type)


def _ohe_size(stage: Stage, pos: int) -> int:
    return int(stage.data["sizes"][pos])


def _numeric_labels(name: str, spark_type: str, labels: tuple[str, ...]) -> tuple[Any, ...]:
    """The values of a StringIndexer's labels for a numeric column (Spark casts the numbers to text)."""
    pattern = _INT_LABEL if spark_type == "integer" else _DOUBLE_LABEL
    bad = [lab for lab in labels if not pattern.match(lab)]
    if bad:
        as_what = "integers" if spark_type == "integer" else "doubles"
        raise ConversionError(
            f"column {name!r} is {spark_type} in the sample, but the StringIndexer's labels ({', '.join(map(repr, bad[:5]))}) "
            f"are not {as_what} as Spark writes them, so the column had another type when it was fitted.",
            hint="pass the sample with the column's training type (strings, integers or doubles)",
        )
    if spark_type == "integer":
        return tuple(int(lab) for lab in labels)
    return tuple(float(lab.replace("Infinity", "inf")) for lab in labels)


def _widths(steps: Sequence[Step], predictor: Stage, inputs: Mapping[str, InputColumn]) -> dict[str, int]:
    widths: dict[str, int] = {}
    for step in steps:
        s = step.stage
        if s.kind == "one_hot":
            keep = s.param("handleInvalid") == "keep"
            drop = bool(s.param("dropLast"))
            for pos, _, out in step.pairs:
                size = int(s.data["sizes"][pos])
                widths[out] = size + 1 if keep and not drop else size - 1 if drop and not keep else size
        elif s.kind == "assembler":
            widths[step.pairs[0][2]] = sum(widths.get(str(c), 1) for c in s.param("inputCols"))
        elif s.kind in ("standard_scaler", "min_max_scaler"):
            _, src, out = step.pairs[0]
            if src not in widths:
                raise UnsupportedModelError(f"{s.label} reads {src!r}, which is not a vector the pipeline makes.")
            size = int((s.data["mean"] if s.kind == "standard_scaler" else s.data["original_min"]).size)
            if size != widths[src]:
                raise ConversionError(f"{s.label} was fitted on vectors of {size} values, but {src!r} has {widths[src]}.")
            widths[out] = size
    features = str(predictor.param("featuresCol", "features"))
    if features in inputs:
        raise UnsupportedModelError(
            f"the predictor {predictor.label} reads {features!r} straight from the input data; a bundle's columns "
            "are numbers and strings, not vectors.",
            hint="include the VectorAssembler that makes the features column in the pipeline",
        )
    if features not in widths:
        raise UnsupportedModelError(f"the predictor {predictor.label} reads {features!r}, which is not a vector the pipeline makes.")
    n = _num_features(predictor)
    if n is not None and n != widths[features]:
        raise ConversionError(
            f"the predictor {predictor.label} was trained on {n} features, but the pipeline's {features!r} vector "
            f"has {widths[features]}."
        )
    return widths


def _num_features(predictor: Stage) -> int | None:
    n = predictor.data.get("num_features", predictor.data.get("numFeatures"))
    return int(n) if n is not None else None


def _task(predictor: Stage, index_to_string: Stage | None) -> tuple[str, tuple[Any, ...] | None]:
    classifier = ".classification." in predictor.cls
    if not classifier:
        if index_to_string is not None:
            raise UnsupportedModelError(f"{index_to_string.label} maps the prediction of a regressor to labels.")
        return "regression", None
    if predictor.kind == "logistic":
        n = max(2, int(predictor.data["num_classes"]))
    elif predictor.kind == "gbt":
        n = 2
    else:
        n = int(predictor.data.get("numClasses", 0))
        if n < 2 and predictor.data.get("trees"):
            n = max(2, max(int(t.stats[0].size) for t in predictor.data["trees"]))
    if index_to_string is None:
        return "classification", tuple(range(n))
    labels = index_to_string.params.get("labels")
    if not labels:
        raise UnsupportedModelError(
            f"{index_to_string.label} has no labels; Spark then reads them from the prediction column's "
            "metadata, which holds none, and fails (None.get).",
            hint="set its labels from the label indexer: IndexToString(..., labels=label_indexer_model.labels)",
        )
    if len(labels) < n:
        raise ConversionError(
            f"{index_to_string.label} has {len(labels)} labels for a classifier of {n} classes; Spark fails on the others."
        )
    return "classification", tuple(str(v) for v in labels[:n])


def _check_steps(steps: Sequence[Step], widths: Mapping[str, int]) -> None:
    """What Spark refuses by value in a way a bundle cannot express is refused here, once."""
    made: dict[str, tuple[Stage, int]] = {}  # scalar columns -> the stage and pair that made them
    for step in steps:
        s = step.stage
        if s.kind == "bucketizer":
            for pos, col, _ in step.pairs:
                splits = _splits(s, pos)
                if math.isfinite(splits[0]) or math.isfinite(splits[-1]):
                    raise UnsupportedModelError(
                        f"{s.label} splits {col!r} at {splits[0]:g} .. {splits[-1]:g}: Spark refuses values outside "
                        "them, and a bundle cannot refuse a number by its range.",
                        hint="fit the Bucketizer with splits from -inf to inf (QuantileDiscretizer does), "
                        "so that every number has a bucket",
                    )
        if s.kind == "one_hot" and s.param("handleInvalid") == "error":
            for pos, col, _ in step.pairs:
                src = made.get(col)
                if src is None:
                    continue  # read from the input: a codes column refuses what Spark refuses
                top = _largest_code(*src)
                size = int(s.data["sizes"][pos])
                if top is None or top >= size:
                    raise UnsupportedModelError(
                        f"{s.label} (handleInvalid='error') reads {col!r}, made by {src[0].label}, which can hold "
                        f"{'any number' if top is None else f'the index {top}'}; Spark refuses values from "
                        f"{size} up, and a bundle cannot refuse them there.",
                        hint="set the OneHotEncoder's handleInvalid to 'keep'",
                    )
        for pos, _, out in step.pairs:
            if s.kind in ("string_indexer", "bucketizer", "imputer"):
                made[out] = (s, pos)


def _largest_code(stage: Stage, pos: int) -> int | None:
    if stage.kind == "string_indexer":
        n = len(stage.data["labels"][pos])
        return n if stage.param("handleInvalid") == "keep" else n - 1
    if stage.kind == "bucketizer":
        n = len(_splits(stage, pos)) - 1
        return n if stage.param("handleInvalid") == "keep" else n - 1
    return None


def _splits(stage: Stage, pos: int) -> list[float]:
    if "splitsArray" in stage.params:
        arrays = stage.params["splitsArray"]
        if not isinstance(arrays, list) or pos >= len(arrays):
            raise ConversionError(f"{stage.label}: splitsArray has no splits for column {pos}.")
        splits = arrays[pos]
    else:
        splits = stage.param("splits")
    if not isinstance(splits, list) or len(splits) < 3 or not all(isinstance(v, (int, float)) for v in splits):
        raise ConversionError(f"{stage.label}: splits {splits!r} are not at least three numbers.")
    values = [float(v) for v in splits]
    if any(b <= a for a, b in itertools.pairwise(values)) or any(math.isnan(v) for v in values):
        raise ConversionError(f"{stage.label}: splits {values} are not strictly increasing.")
    return values


def splits(stage: Stage, pos: int) -> list[float]:
    """A Bucketizer's splits for its column ``pos`` (checked: increasing, at least three)."""
    return _splits(stage, pos)
