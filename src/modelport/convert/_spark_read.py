"""Reading a saved Spark ML ``PipelineModel`` directory without a JVM: each stage's JSON metadata
(``metadata/part-00000*``) and Parquet data (``data/``, ``treesMetadata/``), with pyarrow.

Spark writes a pipeline as ``metadata/`` (class, ``sparkVersion``, ``stageUids``) plus one
directory per stage under ``stages/`` named ``<index>_<uid>`` (the index zero-padded to the width
of the stage count). Every stage records the Spark version that wrote it; the layouts read here
are those of Spark 3.0 up to 4.x (:data:`SUPPORTED_SPARK`), and anything else is refused before
a byte of its data is interpreted. Each data file is checked against the columns this module
expects, so a layout that differs is an error naming the file, never a misread model.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from modelport._deps import require
from modelport.errors import ConversionError, InputError, UnsupportedModelError

#: Spark versions whose on-disk layout this module reads: [first, last) as (major, minor)
SUPPORTED_SPARK = ((3, 0), (5, 0))
_ML = "org.apache.spark.ml."
#: class name -> short kind; the stages modelport converts
STAGE_KINDS: dict[str, str] = {
    _ML + "PipelineModel": "pipeline",
    _ML + "feature.StringIndexerModel": "string_indexer",
    _ML + "feature.OneHotEncoderModel": "one_hot",
    _ML + "feature.VectorAssembler": "assembler",
    _ML + "feature.StandardScalerModel": "standard_scaler",
    _ML + "feature.MinMaxScalerModel": "min_max_scaler",
    _ML + "feature.ImputerModel": "imputer",
    _ML + "feature.Bucketizer": "bucketizer",
    _ML + "feature.IndexToString": "index_to_string",
    _ML + "classification.LogisticRegressionModel": "logistic",
    _ML + "regression.LinearRegressionModel": "linear",
    _ML + "classification.DecisionTreeClassificationModel": "tree",
    _ML + "regression.DecisionTreeRegressionModel": "tree",
    _ML + "classification.RandomForestClassificationModel": "forest",
    _ML + "regression.RandomForestRegressionModel": "forest",
    _ML + "classification.GBTClassificationModel": "gbt",
    _ML + "regression.GBTRegressionModel": "gbt",
}
#: the class PySpark writes for a PipelineModel it saves itself (one holding Python-side stages,
#: such as a nested PipelineModel built in Python); its layout is the JVM's
_PYTHON_PIPELINE = "pyspark.ml.pipeline.PipelineModel"
#: estimators (unfitted) whose fitted model modelport would convert: their names help the error
_ESTIMATORS = {
    "Pipeline", "StringIndexer", "OneHotEncoder", "StandardScaler", "MinMaxScaler", "Imputer",
    "LogisticRegression", "LinearRegression", "DecisionTreeClassifier", "DecisionTreeRegressor",
    "RandomForestClassifier", "RandomForestRegressor", "GBTClassifier", "GBTRegressor",
}
_MISSING = object()


# ------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class Tree:
    """One decision tree as Spark stores it: node arrays indexed by position, children by node id."""

    ids: np.ndarray  # int
    prediction: np.ndarray  # float64
    left: np.ndarray  # child ids, -1 at leaves
    right: np.ndarray
    feature: np.ndarray  # split feature index (unused at leaves)
    num_categories: np.ndarray  # -1: continuous split (threshold); > 0: categorical (left categories)
    split_values: tuple[np.ndarray, ...]  # threshold (one value) or the categories that go left
    stats: tuple[np.ndarray, ...]  # impurity statistics (class counts for classifiers)


@dataclass(frozen=True)
class Stage:
    """One fitted stage: its class, effective parameters (set over default) and data."""

    index: int
    uid: str
    cls: str
    params: Mapping[str, Any]
    spark_version: str
    path: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return STAGE_KINDS[self.cls]

    @property
    def name(self) -> str:
        return self.cls.rsplit(".", 1)[-1]

    @property
    def label(self) -> str:
        """How errors name the stage: ``stage 3 (Bucketizer 'Bucketizer_1f2e')``."""
        return f"stage {self.index} ({self.name} {self.uid!r})"

    def param(self, key: str, default: Any = _MISSING) -> Any:
        if key in self.params:
            return self.params[key]
        if default is _MISSING:
            raise ConversionError(
                f"{self.label} has no value for its parameter {key!r} in {self.path}/metadata.",
                hint="the metadata was edited or written by a Spark version modelport does not read; save the model again",
            )
        return default

    def columns(self, single: str, multi: str) -> list[str]:
        """The stage's column list: ``inputCols`` when set, else ``[inputCol]``."""
        if multi in self.params:
            value = self.params[multi]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConversionError(f"{self.label}: parameter {multi!r} is not a list of column names.")
            return list(value)
        value = self.param(single)
        if not isinstance(value, str):
            raise ConversionError(f"{self.label}: parameter {single!r} is not a column name.")
        return [value]


@dataclass(frozen=True)
class PipelineModel:
    """A fitted Spark ML pipeline read from its directory; the stages of nested pipelines are
    flattened into ``stages``. ``schema`` (column name -> Spark type: string, double, float,
    integer, boolean) is the schema of the data it is packed with; see :func:`with_schema`."""

    path: str
    uid: str
    spark_version: str
    stages: tuple[Stage, ...]
    schema: Mapping[str, str] | None = None

    def with_schema(self, schema: Mapping[str, str]) -> PipelineModel:
        return replace(self, schema=dict(schema))

    def __repr__(self) -> str:
        kinds = ", ".join(s.name for s in self.stages)
        return f"PipelineModel({self.path!r}: {kinds})"


# ------------------------------------------------------------------------------------ reading
def looks_like_spark_model(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory Spark's ML writer made (``metadata/`` with a part file)."""
    meta = Path(path) / "metadata"
    return meta.is_dir() and any(p.name.startswith("part-") for p in meta.iterdir())


def read_pipeline(path: str | os.PathLike[str]) -> PipelineModel:
    """Read a saved ``PipelineModel`` directory (see the module docstring); never starts a JVM."""
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: no such directory.")
    if not root.is_dir():
        raise InputError(f"{root} is not a directory; a saved Spark PipelineModel is a directory (model.write().save(path)).")
    meta = _metadata(root)
    cls = meta["class"]
    if cls not in (_ML + "PipelineModel", _PYTHON_PIPELINE):
        short = cls.rsplit(".", 1)[-1]
        if short in _ESTIMATORS or cls in (_ML + "Pipeline", "pyspark.ml.pipeline.Pipeline"):
            raise UnsupportedModelError(
                f"{root} holds an unfitted Spark {short} ({cls}); modelport packs fitted pipelines.",
                hint="fit it first and save the PipelineModel: pipeline.fit(df).write().save(path)",
            )
        raise UnsupportedModelError(
            f"{root} holds a Spark {short} ({cls}), not a PipelineModel.",
            hint="save the fitted pipeline that makes the model's features from named columns "
            "(PipelineModel with its VectorAssembler); a bare model reads one vector column, which a bundle cannot name",
        )
    stages = _pipeline_stages(root, meta, start=0)
    return PipelineModel(path=str(root), uid=str(meta.get("uid", "")), spark_version=str(meta["sparkVersion"]),
                         stages=tuple(stages))


def _pipeline_stages(root: Path, meta: Mapping[str, Any], start: int) -> list[Stage]:
    uids = (meta.get("paramMap") or {}).get("stageUids")
    if not isinstance(uids, list) or not all(isinstance(u, str) for u in uids):
        raise ConversionError(f"{root}/metadata: a PipelineModel's metadata lists no stageUids.",
                              hint="the directory is incomplete or was edited; save the model again")
    stages_dir = root / "stages"
    width = len(str(len(uids)))
    out: list[Stage] = []
    for i, uid in enumerate(uids):
        stage_dir = stages_dir / f"{i:0{width}d}_{uid}"
        if not stage_dir.is_dir():
            found = sorted(stages_dir.glob(f"*_{uid}")) if stages_dir.is_dir() else []
            if len(found) != 1:
                raise ConversionError(
                    f"{root}: stage {i} ({uid}) has no directory {stage_dir.relative_to(root)}.",
                    hint="the directory is incomplete (copied in part?); save the model again",
                )
            stage_dir = found[0]
        stage_meta = _metadata(stage_dir)
        cls = stage_meta["class"]
        if cls in (_ML + "PipelineModel", _PYTHON_PIPELINE):
            out.extend(_pipeline_stages(stage_dir, stage_meta, start=start + len(out)))
            continue
        out.append(_stage(stage_dir, stage_meta, start + len(out)))
    return out


def _metadata(directory: Path) -> dict[str, Any]:
    meta_dir = directory / "metadata"
    if not meta_dir.is_dir():
        raise ConversionError(
            f"{directory}: no metadata/ directory; this is not a saved Spark ML model (or it is incomplete).",
            hint="save the fitted pipeline with pipeline_model.write().save(path) and pass that directory",
        )
    parts = sorted(p for p in meta_dir.iterdir() if p.name.startswith("part-") and p.is_file())
    if not parts:
        raise ConversionError(f"{meta_dir}: no part file; the model directory is incomplete.")
    try:
        text = parts[0].read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{parts[0]}: cannot read the stage metadata: {exc}") from exc
    line = text.strip().splitlines()[0] if text.strip() else ""
    try:
        meta = json.loads(line)
    except ValueError as exc:
        raise ConversionError(f"{parts[0]}: the stage metadata is not valid JSON ({exc}).",
                              hint="the file was cut off or edited; save the model again") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("class"), str):
        raise ConversionError(f"{parts[0]}: the stage metadata has no 'class'; this is not Spark ML metadata.")
    version = meta.get("sparkVersion")
    if not isinstance(version, str):
        raise ConversionError(f"{parts[0]}: the stage metadata has no 'sparkVersion'.")
    _check_version(version, parts[0], meta["class"])
    for key in ("paramMap", "defaultParamMap"):
        if not isinstance(meta.get(key, {}), dict):
            raise ConversionError(f"{parts[0]}: {key!r} in the stage metadata is not an object.")
    return meta


def _check_version(version: str, where: Path, cls: str) -> None:
    found = re.match(r"^(\d+)\.(\d+)", version)
    lo, hi = SUPPORTED_SPARK
    span = f"{lo[0]}.{lo[1]} to {hi[0] - 1}.x"
    if not found:
        raise ConversionError(f"{where}: sparkVersion {version!r} is not a version number.")
    major_minor = (int(found.group(1)), int(found.group(2)))
    if not lo <= major_minor < hi:
        raise UnsupportedModelError(
            f"{where}: {cls.rsplit('.', 1)[-1]} was written by Spark {version}, whose on-disk layout modelport "
            f"does not read (it reads Spark {span}: StringIndexer's labelsArray, OneHotEncoderModel's "
            "categorySizes and the tree NodeData of those versions).",
            hint=f"load the model with Spark {span} and save it again (PipelineModel.load(path).write().overwrite().save(new_path))",
        )


def _stage(directory: Path, meta: Mapping[str, Any], index: int) -> Stage:
    cls = meta["class"]
    uid = str(meta.get("uid", directory.name))
    if cls not in STAGE_KINDS:
        supported = sorted({c.rsplit(".", 1)[-1] for c in STAGE_KINDS} - {"PipelineModel"})
        raise UnsupportedModelError(
            f"stage {index} ({cls.rsplit('.', 1)[-1]} {uid!r}, class {cls}) is not supported by modelport's Spark converter.",
            hint=f"supported stages: {', '.join(supported)}",
        )
    params = {**_params(meta.get("defaultParamMap") or {}), **_params(meta.get("paramMap") or {})}
    # the model's own fields beside the params (numFeatures, numClasses, numTrees)
    extra = {k: meta[k] for k in ("numFeatures", "numClasses", "numTrees") if k in meta}
    stage = Stage(index=index, uid=uid, cls=cls, params=params, spark_version=str(meta["sparkVersion"]),
                  path=str(directory), data=extra)
    reader = _DATA_READERS.get(STAGE_KINDS[cls])
    if reader is None:
        return stage
    return replace(stage, data={**extra, **reader(stage, directory)})


def _params(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Spark writes doubles NaN / Inf / -Inf as strings."""
    return {k: _decode(v) for k, v in raw.items()}


def _decode(v: Any) -> Any:
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if v == "NaN":
        return math.nan
    if v == "Inf":
        return math.inf
    if v == "-Inf":
        return -math.inf
    return v


# ------------------------------------------------------------------------------------ parquet
def _table(directory: Path, sub: str, stage: Stage, columns: Mapping[str, str]) -> Any:
    """The Parquet table under ``directory/sub`` (all part files, in name order), checked to have
    ``columns`` (name -> a word for its expected type, for the error)."""
    pq = require("pyarrow.parquet", purpose="reading saved Spark ML models")
    import pyarrow as pa

    where = directory / sub
    if not where.is_dir():
        raise ConversionError(f"{stage.label}: {where} is missing; the model directory is incomplete.",
                              hint="save the model again")
    files = sorted(p for p in where.iterdir() if p.is_file() and p.suffix == ".parquet" and not p.name.startswith((".", "_")))
    if not files:
        raise ConversionError(f"{stage.label}: {where} holds no Parquet file; the model directory is incomplete.")
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise ConversionError(f"{stage.label}: cannot read {f}: {exc}",
                                  hint="the file is truncated or corrupt; save the model again") from exc
    try:
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except (pa.ArrowException, ValueError) as exc:
        raise ConversionError(f"{stage.label}: the part files under {where} do not share one schema ({exc}).") from exc
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        expected = ", ".join(f"{c} ({t})" for c, t in columns.items())
        raise ConversionError(
            f"{stage.label}: {where} lacks the column(s) {', '.join(missing)} (it has {', '.join(table.column_names)}; "
            f"expected {expected}), so it is not the layout Spark {stage.spark_version} writes for a {stage.name}.",
            hint="modelport refuses to guess at an unknown layout; save the model again with Spark 3.x or 4.x",
        )
    return table


def _one_row(table: Any, stage: Stage, what: str) -> dict[str, Any]:
    if table.num_rows != 1:
        raise ConversionError(f"{stage.label}: the {what} data has {table.num_rows} rows; Spark writes one.")
    return {name: table.column(name)[0].as_py() for name in table.column_names}


def _vector(value: Any, stage: Stage, what: str) -> np.ndarray:
    """An ML Vector as Spark stores it in Parquet (type 1 dense: values; type 0 sparse: size, indices, values)."""
    if not isinstance(value, dict) or "type" not in value or "values" not in value:
        raise ConversionError(f"{stage.label}: {what} is not a Spark ML vector.")
    values = np.asarray(value.get("values") or [], dtype=np.float64)
    if value["type"] == 1:
        return values
    if value["type"] == 0:
        size = value.get("size")
        indices = np.asarray(value.get("indices") or [], dtype=np.int64)
        if not isinstance(size, int) or size < 0 or indices.shape != values.shape or (indices.size and (
                indices.min() < 0 or indices.max() >= size)):
            raise ConversionError(f"{stage.label}: {what} is a malformed sparse vector.")
        out = np.zeros(size, dtype=np.float64)
        out[indices] = values
        return out
    raise ConversionError(f"{stage.label}: {what} has vector type {value['type']!r}; Spark writes 0 or 1.")


def _matrix(value: Any, stage: Stage, what: str) -> np.ndarray:
    """An ML Matrix (type 1 dense, column-major unless isTransposed; type 0 sparse CSC, CSR when transposed)."""
    if not isinstance(value, dict) or not {"type", "numRows", "numCols", "values"} <= set(value):
        raise ConversionError(f"{stage.label}: {what} is not a Spark ML matrix.")
    rows, cols = int(value["numRows"]), int(value["numCols"])
    values = np.asarray(value.get("values") or [], dtype=np.float64)
    transposed = bool(value.get("isTransposed"))
    if value["type"] == 1:
        if values.size != rows * cols:
            raise ConversionError(f"{stage.label}: {what} holds {values.size} values for a {rows}x{cols} matrix.")
        return values.reshape(rows, cols) if transposed else values.reshape(cols, rows).T
    if value["type"] == 0:
        ptrs = np.asarray(value.get("colPtrs") or [], dtype=np.int64)
        idx = np.asarray(value.get("rowIndices") or [], dtype=np.int64)
        major, minor = (rows, cols) if transposed else (cols, rows)
        if ptrs.size != major + 1 or idx.size != values.size or (idx.size and (idx.min() < 0 or idx.max() >= minor)):
            raise ConversionError(f"{stage.label}: {what} is a malformed sparse matrix.")
        out = np.zeros((major, minor), dtype=np.float64)
        for m in range(major):
            out[m, idx[ptrs[m]:ptrs[m + 1]]] = values[ptrs[m]:ptrs[m + 1]]
        return out if transposed else out.T
    raise ConversionError(f"{stage.label}: {what} has matrix type {value['type']!r}; Spark writes 0 or 1.")


def _floats(values: Any, stage: Stage, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ConversionError(f"{stage.label}: {what} is not a list of numbers.")
    return arr


# ------------------------------------------------------------------------------------ per stage
def _string_indexer(stage: Stage, d: Path) -> dict[str, Any]:
    row = _one_row(_table(d, "data", stage, {"labelsArray": "array<array<string>>"}), stage, "StringIndexer")
    labels = row["labelsArray"]
    if not isinstance(labels, list) or not all(isinstance(ls, list) and all(isinstance(s, str) for s in ls) for ls in labels):
        raise ConversionError(f"{stage.label}: labelsArray is not a list of string lists.")
    return {"labels": [list(ls) for ls in labels]}


def _one_hot(stage: Stage, d: Path) -> dict[str, Any]:
    row = _one_row(_table(d, "data", stage, {"categorySizes": "array<int>"}), stage, "OneHotEncoder")
    sizes = row["categorySizes"]
    if not isinstance(sizes, list) or not all(isinstance(s, int) and s >= 0 for s in sizes):
        raise ConversionError(f"{stage.label}: categorySizes is not a list of counts.")
    return {"sizes": list(sizes)}


def _imputer(stage: Stage, d: Path) -> dict[str, Any]:
    inputs = stage.columns("inputCol", "inputCols")
    table = _table(d, "data", stage, {c: "double" for c in inputs})
    row = _one_row(table, stage, "Imputer surrogate")
    surrogates = {}
    for c in inputs:
        v = row[c]
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ConversionError(f"{stage.label}: the surrogate of column {c!r} is not a number ({v!r}).")
        surrogates[c] = float(v)
    return {"surrogates": surrogates}


def _standard_scaler(stage: Stage, d: Path) -> dict[str, Any]:
    row = _one_row(_table(d, "data", stage, {"std": "vector", "mean": "vector"}), stage, "StandardScaler")
    std, mean = _vector(row["std"], stage, "std"), _vector(row["mean"], stage, "mean")
    if std.shape != mean.shape:
        raise ConversionError(f"{stage.label}: std has {std.size} values but mean has {mean.size}.")
    return {"std": std, "mean": mean}


def _min_max_scaler(stage: Stage, d: Path) -> dict[str, Any]:
    row = _one_row(_table(d, "data", stage, {"originalMin": "vector", "originalMax": "vector"}), stage, "MinMaxScaler")
    lo, hi = _vector(row["originalMin"], stage, "originalMin"), _vector(row["originalMax"], stage, "originalMax")
    if lo.shape != hi.shape:
        raise ConversionError(f"{stage.label}: originalMin has {lo.size} values but originalMax has {hi.size}.")
    return {"original_min": lo, "original_max": hi}


def _logistic(stage: Stage, d: Path) -> dict[str, Any]:
    cols = {"numClasses": "int", "numFeatures": "int", "interceptVector": "vector", "coefficientMatrix": "matrix",
            "isMultinomial": "boolean"}
    row = _one_row(_table(d, "data", stage, cols), stage, "LogisticRegression")
    coef = _matrix(row["coefficientMatrix"], stage, "coefficientMatrix")
    intercept = _vector(row["interceptVector"], stage, "interceptVector")
    n_classes, n_features = int(row["numClasses"]), int(row["numFeatures"])
    multinomial = bool(row["isMultinomial"])
    rows = n_classes if multinomial else 1
    if coef.shape != (rows, n_features) or intercept.shape != (rows,):
        raise ConversionError(
            f"{stage.label}: coefficients {coef.shape} and intercepts {intercept.shape} do not fit "
            f"{n_classes} classes and {n_features} features."
        )
    return {"num_classes": n_classes, "num_features": n_features, "coefficients": coef, "intercepts": intercept,
            "multinomial": multinomial}


def _linear(stage: Stage, d: Path) -> dict[str, Any]:
    row = _one_row(_table(d, "data", stage, {"intercept": "double", "coefficients": "vector"}), stage, "LinearRegression")
    coef = _vector(row["coefficients"], stage, "coefficients")
    return {"num_features": int(coef.size), "coefficients": coef, "intercept": float(row["intercept"])}


_NODE_FIELDS = {
    "id": "int", "prediction": "double", "impurityStats": "array<double>", "leftChild": "int",
    "rightChild": "int", "split": "struct<featureIndex, leftCategoriesOrThreshold, numCategories>",
}


def _single_tree(stage: Stage, d: Path) -> dict[str, Any]:
    table = _table(d, "data", stage, _NODE_FIELDS)
    return {"trees": [_tree(stage, {n: table.column(n).combine_chunks() for n in table.column_names})],
            "weights": np.ones(1)}


def _ensemble(stage: Stage, d: Path) -> dict[str, Any]:
    import pyarrow as pa

    table = _table(d, "data", stage, {"treeID": "int", "nodeData": "struct<NodeData>"})
    meta = _table(d, "treesMetadata", stage, {"_1": "int (treeID)", "_2": "string (tree metadata)", "_3": "double (weight)"})
    node_data = table.column("nodeData").combine_chunks()
    if not pa.types.is_struct(node_data.type):
        raise ConversionError(f"{stage.label}: nodeData is not a struct column.")
    fields = {node_data.type.field(i).name: node_data.field(i) for i in range(node_data.type.num_fields)}
    missing = [f for f in _NODE_FIELDS if f not in fields]
    if missing:
        raise ConversionError(
            f"{stage.label}: the tree nodes lack {', '.join(missing)}, so they are not the layout Spark "
            f"{stage.spark_version} writes.",
            hint="save the model again with Spark 3.x or 4.x",
        )
    tree_ids = np.asarray(table.column("treeID").to_numpy(), dtype=np.int64)
    meta_ids = np.asarray(meta.column("_1").to_numpy(), dtype=np.int64)
    weights_by_id = dict(zip(meta_ids.tolist(), np.asarray(meta.column("_3").to_numpy(), dtype=np.float64).tolist()))
    n_trees = int(stage.data.get("numTrees", len(weights_by_id)))
    if sorted(weights_by_id) != list(range(n_trees)) or sorted(set(tree_ids.tolist())) != list(range(n_trees)):
        raise ConversionError(
            f"{stage.label}: the saved trees are numbered {sorted(set(tree_ids.tolist()))[:5]}... and their metadata "
            f"{sorted(weights_by_id)[:5]}...; expected trees 0..{n_trees - 1} in both.",
            hint="the model directory is incomplete or corrupt; save the model again",
        )
    order = np.argsort(tree_ids, kind="stable")
    bounds = np.searchsorted(tree_ids[order], np.arange(n_trees + 1))
    trees = []
    for t in range(n_trees):
        take = pa.array(order[bounds[t]:bounds[t + 1]])
        trees.append(_tree(stage, {k: v.take(take) for k, v in fields.items()}, t))
    return {"trees": trees, "weights": np.array([weights_by_id[t] for t in range(n_trees)])}


def _tree(stage: Stage, cols: Mapping[str, Any], tree: int = 0) -> Tree:
    import pyarrow as pa

    split = cols["split"]
    if not pa.types.is_struct(split.type):
        raise ConversionError(f"{stage.label}: a tree node's split is not a struct.")
    sfields = {split.type.field(i).name: split.field(i) for i in range(split.type.num_fields)}
    for f in ("featureIndex", "leftCategoriesOrThreshold", "numCategories"):
        if f not in sfields:
            raise ConversionError(f"{stage.label}: a tree node's split lacks {f!r}; not a layout modelport reads.")

    def ints(a: Any) -> np.ndarray:
        return np.asarray(a.to_numpy(zero_copy_only=False), dtype=np.int64)

    def lists(a: Any) -> tuple[np.ndarray, ...]:
        offsets = np.asarray(a.offsets.to_numpy(), dtype=np.int64)
        flat = np.asarray(a.values.to_numpy(zero_copy_only=False), dtype=np.float64)
        return tuple(flat[offsets[i]:offsets[i + 1]] for i in range(len(a)))

    ids = ints(cols["id"])
    t = Tree(
        ids=ids,
        prediction=np.asarray(cols["prediction"].to_numpy(zero_copy_only=False), dtype=np.float64),
        left=ints(cols["leftChild"]),
        right=ints(cols["rightChild"]),
        feature=ints(sfields["featureIndex"]),
        num_categories=ints(sfields["numCategories"]),
        split_values=lists(sfields["leftCategoriesOrThreshold"]),
        stats=lists(cols["impurityStats"]),
    )
    _check_tree(stage, t, tree)
    return t


def _check_tree(stage: Stage, t: Tree, tree: int) -> None:
    where = f"{stage.label}: tree {tree}"
    if t.ids.size == 0:
        raise ConversionError(f"{where} has no nodes.")
    if sorted(t.ids.tolist()) != list(range(t.ids.size)):
        raise ConversionError(f"{where}: node ids are not 0..{t.ids.size - 1}; the data is corrupt.")
    inner = t.left >= 0
    if np.any(inner != (t.right >= 0)) or np.any(t.left[inner] >= t.ids.size) or np.any(t.right[inner] >= t.ids.size):
        raise ConversionError(f"{where}: a node's children are not nodes of the tree; the data is corrupt.")
    for i in np.flatnonzero(inner).tolist():
        n = int(t.num_categories[i])
        vals = t.split_values[i]
        if n == -1 and vals.size != 1:
            raise ConversionError(f"{where}: node {int(t.ids[i])} is a continuous split with {vals.size} thresholds.")
        if n == 0 or n < -1:
            raise ConversionError(f"{where}: node {int(t.ids[i])} has numCategories {n}.")


_DATA_READERS = {
    "string_indexer": _string_indexer,
    "one_hot": _one_hot,
    "imputer": _imputer,
    "standard_scaler": _standard_scaler,
    "min_max_scaler": _min_max_scaler,
    "logistic": _logistic,
    "linear": _linear,
    "tree": _single_tree,
    "forest": _ensemble,
    "gbt": _ensemble,
}
