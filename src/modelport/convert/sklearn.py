"""scikit-learn estimators and pipelines -> ONNX graphs with modelport's output names.

How a model is converted
------------------------
A Pipeline is split into its preprocessing prefix and its final estimator. The prefix
(imputers, scalers, encoders, ColumnTransformer ...) is converted by skl2onnx in double
precision, as scikit-learn computes it; its output is cast to the precision the final estimator
needs and fed to the estimator's own graph. A bare estimator is converted alone.

Precision of the final estimator (chosen so that pack() passes the default 1e-5 tolerance):

* trees: float32, because scikit-learn itself casts inputs to float32 before walking its trees.
  DecisionTree*, RandomForest* and ExtraTrees* are built from the ``tree_`` arrays by our own
  vectorised builder (``_sklearn_forest``; skl2onnx's per-node Python loop is too slow for big
  forests); GradientBoosting* and IsolationForest go through skl2onnx and are then repaired
  (``_sklearn_trees``). Either way thresholds and missing-value routing are exact.
* HistGradientBoosting*: our own graph with float64 thresholds (``_sklearn_hgb``); skl2onnx fails
  on these models with scikit-learn >= 1.7 and scikit-learn compares in float64 anyway.
* linear classifiers without probabilities (LinearSVC, SGDClassifier with a hinge-type loss,
  Perceptron, RidgeClassifier ...) and SGDClassifier with probabilities: our own float64 graph
  (``_sklearn_linear``).
* SVR / NuSVR: our own float64 kernel graph (``_sklearn_svm``); ONNX Runtime's SVMRegressor is
  float32 only.
* everything else (linear models, SVC, KNN, GaussianNB, MLP, KMeans, PCA, ...): skl2onnx in
  float64; where skl2onnx or ONNX Runtime has no float64 kernel (SVC's ``SVMClassifier``
  computes in float32 whatever its input; Bagging / AdaBoost ensembles), float32 with a note in
  the manifest when the whole estimator had to fall back.

Outputs, per task
-----------------
* classification: ``label`` (N,) and ``probabilities`` (N, n_classes, in ``classes_`` order;
  binary models give two columns). Models without ``predict_proba`` (LinearSVC, SVC without
  ``probability=True``, SGDClassifier with hinge loss, ...) are *hard* classifiers: their
  ``probabilities`` is the one-hot matrix of the predicted label (all mass on the answer, which
  is exactly what such a model claims and keeps every consumer of ``probabilities`` working), and
  a third output ``decision_function`` carries scikit-learn's decision values ((N,) for two
  classes, (N, n_classes) otherwise) for users who need scores. Parity covers all three.
* regression: ``prediction`` (N,), or (N, k) for k targets.
* clustering (KMeans, MiniBatchKMeans): ``label`` (N,) int64 cluster index and ``distances``
  (N, k), the Euclidean distance to each centre (scikit-learn's ``transform``).
* anomaly (IsolationForest): ``label`` (1 inlier, -1 outlier) and ``score``
  (``decision_function``; negative means outlier).
* transform (PCA, scalers, any pipeline ending in a transformer): ``transformed``.

Inputs
------
An all-numeric sample (array or DataFrame) becomes one matrix input ``X`` with a column per slot.
A DataFrame with string columns, or any model containing a ColumnTransformer fitted on a
DataFrame, gets one ``[N, 1]`` input per column (string, int64 or double), so the
ColumnTransformer finds its columns by name.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from modelport._deps import require
from modelport.bundle.signature import Column
from modelport.convert import _sklearn_fixes
from modelport.convert import _sklearn_graph as sg
from modelport.convert._graph import flatten_output, keep_outputs, output_rank, rename_tensors
from modelport.convert._sample import column_kinds, head, is_dataframe
from modelport.convert.base import Converted, Converter
from modelport.errors import ConversionError, UnsupportedModelError

_TREE_CLASSES = (
    "DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor",
    "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
    "GradientBoostingClassifier", "GradientBoostingRegressor", "IsolationForest",
)
_HGB_CLASSES = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
_INT_DTYPES = ("int64", "int32", "bool")


@dataclass(frozen=True)
class _Plan:
    """What the bundle of a model outputs, decided from the fitted model alone."""

    task: str
    outputs: tuple[str, ...]
    hard: bool = False  # a classifier without predict_proba


class SklearnConverter(Converter):
    name = "sklearn"
    framework = "scikit-learn"
    modules = ("sklearn", "imblearn")

    def _convert(self, model: Any, sample: Any, options: dict[str, Any]) -> Converted:
        sklearn = require("sklearn", purpose="converting scikit-learn models")
        skl2onnx = require("skl2onnx", purpose="converting scikit-learn models")
        _check_fitted(model)
        _sklearn_fixes.install()
        prefix, final = _split(model)
        plan = _plan(model, final)
        kinds = column_kinds(sample)
        per_column = _needs_per_column(model, sample, kinds)
        notes: list[str] = []
        est_dtype = _estimator_dtype(final)

        if per_column and prefix is None and not _is_column_consumer(final):
            raise UnsupportedModelError(
                f"a bare {type(final).__name__} cannot read string columns; "
                f"the sample has string column(s) {[n for n, k, _ in kinds if k == 'str']}.",
                hint="put the encoders and the estimator in a Pipeline with a ColumnTransformer",
            )
        if per_column:
            initial_types, columns = _column_inputs(kinds)
        else:
            matrix_dtype = TensorProto.DOUBLE if prefix is not None else est_dtype
            initial_types = [("X", _tensor_type(matrix_dtype, [None, len(kinds)]))]
            columns = tuple(Column(n, k, "X", i) for i, (n, k, _) in enumerate(kinds))

        if prefix is None and per_column:
            # a bare ColumnTransformer / encoder: skl2onnx converts it whole
            onx = _skl2onnx(final, initial_types, plan)
            onx = _finish_estimator(onx, final, plan, notes)
        elif prefix is None:
            # the matrix input takes the estimator graph's own element type (float32 for trees)
            est, _ = _estimator_graph(final, len(kinds), est_dtype, plan, notes)
            onx = rename_tensors(est, {_only_input(est): "X"})
        else:
            width = _transformed_width(prefix, sample)
            pre = _skl2onnx(prefix, initial_types, _Plan("transform", ("transformed",)))
            est, est_type = _estimator_graph(final, width, est_dtype, plan, notes)
            onx = sg.join(pre, pre.graph.output[0].name, est, est_type)
            rename_tensors(onx, {f"est_{n}": n for n in plan.outputs})

        if per_column:
            _int64_inputs(onx, [c.name for c in columns if c.dtype in _INT_DTYPES])
            columns = _with_string_categories(model, columns)
            _onehot_unknown_as_zeros(model, onx)
        keep_outputs(onx, list(plan.outputs))
        _fix_output_shapes(onx, final, plan)
        sg.canonical_names(onx)
        onx.graph.name = _graph_name(model)
        onx.doc_string = ""
        thresholds = _hgb_thresholds(final, columns) if prefix is None and not per_column else {}
        # an int64 graph input cannot carry NaN, whatever the original does with it
        nullable = {c.name: False for c in columns if c.index is None and c.dtype in _INT_DTYPES}
        if prefix is None and not per_column:
            # a bare estimator takes NaN in all columns or in none: ask once, not once per column
            takes_nan = _takes_nan(self, model, sample)
            nullable = {c.name: takes_nan for c in columns}
        return Converted(
            onnx_model=onx,
            task=plan.task,
            columns=columns,
            classes=[_py(c) for c in final.classes_] if plan.task == "classification" else None,
            source={
                "framework": "scikit-learn",
                "framework_version": sklearn.__version__,
                "estimator": _estimator_name(model),
                "converter": "skl2onnx",
                "converter_version": skl2onnx.__version__,
                # which part of the graph modelport wrote itself rather than skl2onnx
                "estimator_graph": _builder_name(final),
            },
            thresholds=thresholds,
            nullable=nullable or None,
            notes=notes,
        )

    def reference(self, model: Any, data: Any) -> dict[str, np.ndarray]:
        _, final = _split(model)
        plan = _plan(model, final)
        if plan.task == "classification":
            if not plan.hard and _label_is_argmax(final):
                # one pass instead of two: predict() of these models is exactly argmax(predict_proba)
                proba = np.asarray(model.predict_proba(data))
                return {"label": np.asarray(final.classes_).take(np.argmax(proba, axis=1)), "probabilities": proba}
            label = np.asarray(model.predict(data))
            out = {"label": label}
            if plan.hard:
                classes = np.asarray(final.classes_)
                out["probabilities"] = (label.reshape(-1, 1) == classes.reshape(1, -1)).astype(np.float64)
                if "decision_function" in plan.outputs:
                    out["decision_function"] = np.asarray(model.decision_function(data))
            else:
                out["probabilities"] = np.asarray(model.predict_proba(data))
            return out
        if plan.task == "regression":
            pred = np.asarray(model.predict(data))
            return {"prediction": pred.ravel() if pred.ndim == 2 and pred.shape[1] == 1 else pred}
        if plan.task == "clustering":
            return {"label": np.asarray(model.predict(data)).astype(np.int64), "distances": _dense(model.transform(data))}
        if plan.task == "anomaly":
            return {"label": np.asarray(model.predict(data)).astype(np.int64), "score": np.asarray(model.decision_function(data))}
        return {"transformed": _dense(model.transform(data))}


# --- what the model is -------------------------------------------------------------------------


def _check_fitted(model: Any) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise UnsupportedModelError(
            f"the {type(model).__name__} is not fitted; modelport packs trained models only.",
            hint="call fit() on the model (or the whole pipeline) before packing it",
        ) from exc
    except TypeError as exc:  # not an estimator at all (check_is_fitted refuses it)
        raise UnsupportedModelError(f"a {type(model).__name__} is not a scikit-learn estimator: {exc}") from exc


def _split(model: Any) -> tuple[Any | None, Any]:
    """(preprocessing prefix or None, final estimator) of a model; nested pipelines are flattened."""
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline):
        return None, model
    steps = _flat_steps(model)
    if not steps:
        raise UnsupportedModelError("the Pipeline has no estimator step (every step is 'passthrough').")
    final = steps[-1][1]
    if len(steps) == 1:
        return None, final
    return Pipeline(steps[:-1]), final


def _flat_steps(pipe: Any) -> list[tuple[str, Any]]:
    from sklearn.pipeline import Pipeline

    out: list[tuple[str, Any]] = []
    for name, step in pipe.steps:
        if step is None or step == "passthrough":
            continue
        if isinstance(step, Pipeline):
            out.extend((f"{name}__{n}", s) for n, s in _flat_steps(step))
        else:
            out.append((name, step))
    return out


def _plan(model: Any, final: Any) -> _Plan:
    from sklearn.base import is_classifier, is_outlier_detector, is_regressor

    if is_classifier(final):
        if hasattr(model, "predict_proba"):
            return _Plan("classification", ("label", "probabilities"))
        decision = hasattr(final, "decision_function") and _decision_shape_ok(final)
        outs = ("label", "probabilities", "decision_function") if decision else ("label", "probabilities")
        return _Plan("classification", outs, hard=True)
    if is_regressor(final):
        return _Plan("regression", ("prediction",))
    if is_outlier_detector(final):
        if type(final).__name__ != "IsolationForest":
            raise UnsupportedModelError(
                f"outlier detector {type(final).__name__} is not supported; IsolationForest is.",
            )
        return _Plan("anomaly", ("label", "score"))
    if hasattr(final, "cluster_centers_") and hasattr(final, "predict") and hasattr(final, "transform"):
        return _Plan("clustering", ("label", "distances"))
    if hasattr(final, "transform"):
        return _Plan("transform", ("transformed",))
    raise UnsupportedModelError(
        f"a {type(final).__name__} is neither a classifier, a regressor, a clusterer, an outlier detector "
        "nor a transformer; modelport does not know what its bundle should output."
    )


def _decision_shape_ok(final: Any) -> bool:
    # SVC(decision_function_shape="ovo") gives K(K-1)/2 pairwise columns, which ONNX's SVMClassifier
    # does not reproduce; such a model keeps label + probabilities only
    n = len(getattr(final, "classes_", ()))
    return not (getattr(final, "decision_function_shape", "ovr") == "ovo" and n > 2)


def _estimator_dtype(final: Any) -> int:
    name = type(final).__name__
    if name in _TREE_CLASSES or (hasattr(final, "tree_") and name not in _HGB_CLASSES):
        return TensorProto.FLOAT
    return TensorProto.DOUBLE


def _needs_per_column(model: Any, sample: Any, kinds: list[tuple[str, str, Any]]) -> bool:
    if not is_dataframe(sample):
        return False
    for n, k, _ in kinds:
        if k == "category":
            raise UnsupportedModelError(
                f"column {n!r} has pandas 'category' dtype; the scikit-learn converter reads string columns.",
                hint=f"cast it before fitting and packing: df[{n!r}] = df[{n!r}].astype(str)",
            )
    if any(k == "str" for _, k, _ in kinds):
        return True
    return _contains_column_transformer(model)


def _contains_column_transformer(model: Any) -> bool:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    if isinstance(model, ColumnTransformer):
        return True
    if isinstance(model, Pipeline):
        return any(_contains_column_transformer(s) for _, s in model.steps if s not in (None, "passthrough"))
    if isinstance(model, FeatureUnion):
        return any(_contains_column_transformer(s) for _, s in model.transformer_list)
    return False


def _is_column_consumer(final: Any) -> bool:
    from sklearn.compose import ColumnTransformer

    return isinstance(final, ColumnTransformer) or _plan_is_transform(final)


def _plan_is_transform(final: Any) -> bool:
    from sklearn.base import is_classifier, is_regressor

    return hasattr(final, "transform") and not (is_classifier(final) or is_regressor(final))


def _column_inputs(kinds: list[tuple[str, str, Any]]) -> tuple[list[tuple[str, Any]], tuple[Column, ...]]:
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    types: list[tuple[str, Any]] = []
    cols: list[Column] = []
    for n, k, cats in kinds:
        # integer columns are converted as float64 (skl2onnx would scale an int64 input in
        # float32); _int64_inputs() gives the graph its int64 inputs back, cast to double inside
        t: Any = StringTensorType([None, 1]) if k == "str" else DoubleTensorType([None, 1])
        types.append((n, t))
        cols.append(Column(n, k, n, None, cats))
    return types, tuple(cols)


_ENCODERS = ("OneHotEncoder", "OrdinalEncoder")


def _with_string_categories(model: Any, columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """String columns that only OneHotEncoder / OrdinalEncoder read get the values those encoders
    know as ``categories``, so that a value outside them is seen (and follows the bundle's
    unknown-category policy) before the graph encodes it."""
    known = _encoder_categories(model)
    out = []
    for c in columns:
        cats = known.get(c.name) if c.dtype == "str" else None
        out.append(Column(c.name, c.dtype, c.input, c.index, cats, c.nullable) if cats is not None else c)
    return tuple(out)


def _encoder_categories(model: Any) -> dict[str, tuple[str, ...]]:
    """Column name -> the string categories every encoder reading it knows (columns that anything
    else reads, or that an imputer fills first, are left out: their unknown values are not ours to see)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    cts: list[Any] = []
    if isinstance(model, ColumnTransformer):
        cts.append(model)
    elif isinstance(model, Pipeline):
        steps = _flat_steps(model)
        if steps and isinstance(steps[0][1], ColumnTransformer):
            cts.append(steps[0][1])
    if len(cts) != 1:
        return {}
    ct = cts[0]
    names_in = [str(n) for n in getattr(ct, "feature_names_in_", [])]
    per_column: dict[str, list[tuple[str, ...] | None]] = {}
    for _, trans, cols in ct.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        names = _ct_columns(cols, names_in)
        if names is None:
            return {}
        enc = trans
        if isinstance(trans, Pipeline):
            steps = _flat_steps(trans)
            enc = steps[0][1] if steps else None
        ok = type(enc).__name__ in _ENCODERS and hasattr(enc, "categories_") and len(enc.categories_) == len(names)
        for j, n in enumerate(names):
            cats: tuple[str, ...] | None = None
            if ok:
                values = [v for v in enc.categories_[j].tolist() if v is not None and v == v]
                if values and all(isinstance(v, str) for v in values) and len(set(values)) == len(values):
                    cats = tuple(values)
            per_column.setdefault(n, []).append(cats)
    out: dict[str, tuple[str, ...]] = {}
    for n, lists in per_column.items():
        if any(c is None for c in lists):
            continue
        common = set.intersection(*(set(c) for c in lists if c is not None))
        first = next(c for c in lists if c is not None)
        out[n] = tuple(v for v in first if v in common)
    return out


def _ct_columns(cols: Any, names_in: list[str]) -> list[str] | None:
    """The column names a ColumnTransformer entry reads (None when not given by name or position)."""
    if isinstance(cols, str):
        return [cols]
    if isinstance(cols, (int, np.integer)) and not isinstance(cols, bool):
        return [names_in[int(cols)]] if 0 <= int(cols) < len(names_in) else None
    try:
        items = list(cols)
    except TypeError:
        return None
    out = []
    for c in items:
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) and 0 <= int(c) < len(names_in):
            out.append(names_in[int(c)])
        else:
            return None
    return out


def _onehot_unknown_as_zeros(model: Any, onx: onnx.ModelProto) -> None:
    """skl2onnx writes ``zeros=0`` (fail on an unknown value) for OneHotEncoder(handle_unknown="warn")
    and ("infrequent_if_exist") without infrequent categories, which scikit-learn encodes as all
    zeros: give those graphs ``zeros=1``. Encoders with handle_unknown="error" keep failing, and the
    bundle refuses their unknown values before the graph sees them."""
    encoders = [e for e in _all_estimators(model) if type(e).__name__ == "OneHotEncoder"]
    if not encoders or any(getattr(e, "handle_unknown", "error") == "error" for e in encoders):
        return
    for node in onx.graph.node:
        if node.op_type == "OneHotEncoder" and node.domain == "ai.onnx.ml":
            for a in node.attribute:
                if a.name == "zeros":
                    a.i = 1


def _all_estimators(model: Any) -> list[Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    if isinstance(model, Pipeline):
        return [e for _, s in model.steps if s not in (None, "passthrough") for e in _all_estimators(s)]
    if isinstance(model, ColumnTransformer):
        items = [t for _, t, _ in getattr(model, "transformers_", model.transformers) if not isinstance(t, str)]
        return [e for t in items for e in _all_estimators(t)]
    if isinstance(model, FeatureUnion):
        return [e for _, t in model.transformer_list for e in _all_estimators(t)]
    return [model]


def _tensor_type(elem: int, shape: list[int | None]) -> Any:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    return DoubleTensorType(shape) if elem == TensorProto.DOUBLE else FloatTensorType(shape)


def _transformed_width(prefix: Any, sample: Any) -> int:
    out = prefix.transform(head(sample, 1))
    if len(getattr(out, "shape", ())) != 2:
        raise UnsupportedModelError(
            f"the pipeline's preprocessing produces {type(out).__name__} of shape {getattr(out, 'shape', '?')}, "
            "not a 2-D matrix; modelport cannot connect it to the final estimator."
        )
    return int(out.shape[1])


def _builder_name(final: Any) -> str:
    from modelport.convert import _sklearn_forest, _sklearn_linear, _sklearn_svm

    if type(final).__name__ in _HGB_CLASSES:
        return "modelport.hgb"
    for name, module in (("forest", _sklearn_forest), ("linear", _sklearn_linear), ("svm", _sklearn_svm)):
        if module.supports(final):
            return f"modelport.{name}"
    return "skl2onnx"


def _label_is_argmax(final: Any) -> bool:
    """Whether ``predict`` is by definition ``classes_[argmax(predict_proba)]`` for this model."""
    from modelport.convert import _sklearn_forest

    name = type(final).__name__
    return (_sklearn_forest.supports(final) and int(getattr(final, "n_outputs_", 1)) == 1) or name in _HGB_CLASSES


def _takes_nan(conv: Converter, model: Any, sample: Any) -> bool:
    """Whether the original model scores a row of NaN (scikit-learn checks NaN per estimator, not per column)."""
    from modelport.convert._sample import like, to_columns

    first = {k: np.asarray(v[:1], dtype=np.float64) for k, v in to_columns(head(sample, 1)).items()}
    row = like(sample, {k: np.full_like(v, np.nan) for k, v in first.items()})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conv.reference(model, row)
    except Exception:  # the original refusing NaN is the answer we are asking for
        return False
    return True


# --- building graphs ---------------------------------------------------------------------------


def _skl2onnx(model: Any, initial_types: list[tuple[str, Any]], plan: _Plan) -> onnx.ModelProto:
    from skl2onnx import convert_sklearn
    from sklearn.base import is_classifier

    options = {id(model): {"zipmap": False}} if is_classifier(model) else None
    try:
        with warnings.catch_warnings():
            # skl2onnx reads fitted attributes scikit-learn has deprecated (SVC.probA_ in 1.9 ...);
            # that is skl2onnx's business, not something the user can act on
            warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="sklearn")
            return convert_sklearn(
                model, initial_types=initial_types, options=options, target_opset=dict(sg.TARGET_OPSET)
            )
    except RuntimeError as exc:
        if "Unable to find a shape calculator" in str(exc) or "is not supported" in str(exc):
            raise UnsupportedModelError(
                f"scikit-learn's {_unknown_name(exc) or type(model).__name__} cannot be converted to ONNX "
                f"(skl2onnx has no converter for it): {str(exc).splitlines()[0]}",
                hint="replace that step with a supported one, or register a converter with skl2onnx",
            ) from exc
        raise


def _unknown_name(exc: Exception) -> str | None:
    found = re.search(r"<class '([\w.]+)'>", str(exc))
    return found.group(1).rsplit(".", 1)[-1] if found else None


def _estimator_graph(final: Any, n_features: int, dtype: int, plan: _Plan, notes: list[str]) -> tuple[onnx.ModelProto, int]:
    """The final estimator's graph with one (N, n_features) input, outputs named as ``plan`` says,
    and the element type that input ended up with."""
    from modelport.convert import _sklearn_forest, _sklearn_hgb, _sklearn_linear, _sklearn_svm, _sklearn_trees

    name = type(final).__name__
    if name in _HGB_CLASSES:
        onx, _ = _sklearn_hgb.build(final, n_features)
        return onx, TensorProto.DOUBLE
    if _sklearn_linear.supports(final):
        onx, _ = _sklearn_linear.build(final, n_features)
        return onx, TensorProto.DOUBLE
    if _sklearn_forest.supports(final):
        onx, _ = _sklearn_forest.build(final, n_features)
        return onx, TensorProto.FLOAT
    if _sklearn_svm.supports(final):
        onx, _ = _sklearn_svm.build(final, n_features)
        return onx, TensorProto.DOUBLE
    attempts = [dtype] if dtype == TensorProto.FLOAT else [TensorProto.DOUBLE, TensorProto.FLOAT]
    last: Exception | None = None
    for elem in attempts:
        try:
            onx = _skl2onnx(final, [("features", _tensor_type(elem, [None, n_features]))], plan)
            if elem != attempts[-1]:
                _load_check(onx)
        except UnsupportedModelError:
            raise
        except Exception as exc:  # skl2onnx or ONNX Runtime lacks a kernel for this dtype
            last = exc
            continue
        trees = _sklearn_trees.sklearn_trees(final)
        if trees and elem == TensorProto.FLOAT:
            _sklearn_trees.fix(onx, trees)
        if elem != dtype:
            notes.append(
                f"{name}: no float64 ONNX kernel exists for this estimator; it computes in float32 "
                "(parity is still checked against the tolerance)."
            )
        return _finish_estimator(onx, final, plan, notes), elem
    assert last is not None
    raise last


def _load_check(onx: onnx.ModelProto) -> None:
    """Refuse a graph ONNX Runtime cannot build kernels for (so that float32 can be tried instead)."""
    from modelport.runtime.sandbox import create_session

    create_session(onx.SerializeToString(), origin="the converted graph", model=onx, error=ConversionError, hint=None)


def _finish_estimator(onx: onnx.ModelProto, final: Any, plan: _Plan, notes: list[str]) -> onnx.ModelProto:
    """Rename skl2onnx's outputs to modelport's and add what the plan needs (one-hot, decision)."""
    outs = [o.name for o in onx.graph.output]
    if plan.task == "classification":
        if plan.hard:
            _hard_outputs(onx, final, outs, plan)
        else:
            rename_tensors(onx, {outs[0]: "label", outs[1]: "probabilities"})
    elif plan.task == "regression":
        rename_tensors(onx, {outs[0]: "prediction"})
        if output_rank(onx, "prediction") == 2 and int(getattr(final, "n_outputs_", 1)) == 1 and _coef_targets(final) == 1:
            flatten_output(onx, "prediction")
    elif plan.task == "clustering":
        rename_tensors(onx, {outs[0]: "label", outs[1]: "distances"})
    elif plan.task == "anomaly":
        rename_tensors(onx, {outs[0]: "label", outs[1]: "score"})
        if output_rank(onx, "score") == 2:
            flatten_output(onx, "score")
        if output_rank(onx, "label") == 2:
            flatten_output(onx, "label")
    else:
        rename_tensors(onx, {outs[0]: "transformed"})
    return onx


def _hard_outputs(onx: onnx.ModelProto, final: Any, outs: list[str], plan: _Plan) -> None:
    """label + one-hot probabilities (+ decision values) for a classifier skl2onnx converted."""
    classes = np.asarray(final.classes_)
    # skl2onnx may call its score output "probabilities"; move it out of the way first
    rename_tensors(onx, {outs[0]: "label", **({outs[1]: "hard_scores"} if len(outs) > 1 else {})})
    b = sg.GraphBuilder("hard_")
    unsq = b.op1("Unsqueeze", ["label", b.const([1], "axis1", np.int64)])
    label_type = next(o.type.tensor_type.elem_type for o in onx.graph.output if o.name == "label")
    if label_type == TensorProto.STRING:
        row = np.array([str(c) for c in classes], dtype=object)
    elif label_type == TensorProto.INT64:  # skl2onnx gives bool classes as 0/1
        row = classes.astype(np.int64)
    else:
        row = sg.label_constant(classes)
    hit = b.op1("Equal", [unsq, b.const(row.reshape(1, -1), "classes")])
    b.rename(b.op1("Cast", [hit], to=TensorProto.DOUBLE), "probabilities")
    new_outputs = [sg.value_info("probabilities", TensorProto.DOUBLE, [None, len(classes)])]
    if "decision_function" in plan.outputs:
        scores = "hard_scores"
        if len(classes) == 2:
            # ONNX's SVMClassifier gives two columns [d, -d] where scikit-learn gives d
            col = b.op1("Gather", [scores, b.const(np.array(0, dtype=np.int64), "col0")], axis=1)
            b.rename(b.op1("Cast", [col], to=TensorProto.DOUBLE), "decision_function")
            new_outputs.append(sg.value_info("decision_function", TensorProto.DOUBLE, [None]))
        else:
            b.rename(b.op1("Cast", [scores], to=TensorProto.DOUBLE), "decision_function")
            new_outputs.append(sg.value_info("decision_function", TensorProto.DOUBLE, [None, len(classes)]))
    onx.graph.node.extend(b.nodes)
    onx.graph.initializer.extend(b.initializers)
    onx.graph.output.extend(new_outputs)
    # skl2onnx declares the lowest opset its own nodes need (9 for a lone SVMClassifier); the nodes
    # added here need opset 13 (Unsqueeze with an axes input), 19 for Equal on strings
    needed = 19 if label_type == TensorProto.STRING else 13
    for imp in onx.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version < needed:
            imp.version = needed


def _fix_output_shapes(onx: onnx.ModelProto, final: Any, plan: _Plan) -> None:
    """Declare the width of a multi-target prediction (skl2onnx declares [N, 1] for some)."""
    if plan.task != "regression":
        return
    k = max(int(getattr(final, "n_outputs_", 1)), _coef_targets(final))
    for o in onx.graph.output:
        dims = o.type.tensor_type.shape.dim
        if o.name == "prediction" and len(dims) == 2 and k > 1:
            dims[1].ClearField("dim_param")
            dims[1].dim_value = k


def _coef_targets(final: Any) -> int:
    coef = getattr(final, "coef_", None)
    if coef is not None and np.ndim(coef) == 2:
        return int(coef.shape[0])
    return 1


def _only_input(onx: onnx.ModelProto) -> str:
    inits = {t.name for t in onx.graph.initializer}
    names = [i.name for i in onx.graph.input if i.name not in inits]
    if len(names) != 1:
        raise ConversionError(f"expected the estimator graph to have one input; it has {names}.")
    return names[0]


def _int64_inputs(onx: onnx.ModelProto, names: list[str]) -> None:
    """Make the named double inputs int64 inputs, cast to double as the graph's first nodes."""
    from onnx import helper

    casts = []
    for name in names:
        inner = f"{name}__as_double"
        for node in onx.graph.node:
            for i, used in enumerate(node.input):
                if used == name:
                    node.input[i] = inner
        for vi in onx.graph.input:
            if vi.name == name:
                vi.type.tensor_type.elem_type = TensorProto.INT64
        casts.append(helper.make_node("Cast", [name], [inner], name=f"{name}__cast", to=TensorProto.DOUBLE))
    for i, node in enumerate(casts):
        onx.graph.node.insert(i, node)


def _hgb_thresholds(final: Any, columns: tuple[Column, ...]) -> dict[str, list[float]]:
    """Split thresholds of a bare HistGradientBoosting model per input column, for the probes
    (its TreeEnsemble stores thresholds as a double tensor, which the generic reader skips)."""
    if type(final).__name__ not in _HGB_CLASSES:
        return {}
    found: dict[int, set[float]] = {}
    for per_iteration in final._predictors:
        for predictor in per_iteration:
            nodes = predictor.nodes
            split = nodes[nodes["is_leaf"] == 0]
            for f, t in zip(split["feature_idx"].tolist(), split["num_threshold"].tolist()):
                if np.isfinite(t):
                    found.setdefault(int(f), set()).add(float(t))
    by_index = {c.index: c.name for c in columns}
    return {by_index[f]: sorted(v) for f, v in found.items() if f in by_index}


# --- small helpers -----------------------------------------------------------------------------


def _dense(values: Any) -> np.ndarray:
    return np.asarray(values.toarray() if hasattr(values, "toarray") else values)


def _graph_name(model: Any) -> str:
    return f"modelport_sklearn_{type(model).__name__}"


def _estimator_name(model: Any) -> str:
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return "Pipeline(" + ", ".join(type(s).__name__ for _, s in _flat_steps(model)) + ")"
    return type(model).__name__


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
