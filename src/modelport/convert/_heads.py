"""Classifier and regressor heads on a network's graph, and the same arithmetic on the original's outputs.

A network ends in scores (logits or probabilities, ``[N, C]``, or one column for the positive class
of two); modelport's classifiers output ``label`` and ``probabilities``, regressors ``prediction``.
:func:`classifier_head` / :func:`regression_head` add the nodes that turn the network's output into
those, and :func:`classify` / :func:`regress` compute the same from the original model's outputs,
so that both sides of a parity check are shaped alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from modelport.convert._graph import keep_outputs, rename_tensors
from modelport.errors import ConversionError

BATCH = "N"
SCORES = ("logits", "probabilities")


def check_classes(classes: Sequence[Any] | None) -> list[Any] | None:
    """Class labels as plain Python values: at least two, distinct, all integers or all strings."""
    if classes is None:
        return None
    if isinstance(classes, str):
        raise ConversionError(f"classes must be a list of labels; got the string {classes!r}.")
    labels = [c.item() if hasattr(c, "item") else c for c in classes]
    if len(labels) < 2 or len(set(map(repr, labels))) != len(labels):
        raise ConversionError(f"classes must be at least two distinct labels; got {labels!r}.")
    kinds = {type(c) for c in labels}
    if not (kinds <= {int} or kinds <= {str}):
        raise ConversionError(f"classes must be all integers or all strings; got {labels!r}.")
    return labels


def class_count(width: int | None) -> int:
    """How many classes a score output of ``width`` columns (None: a 1-D output) stands for."""
    return 2 if width in (None, 1) else int(width)


def output_info(onx: onnx.ModelProto, name: str) -> tuple[int, list[int | None]]:
    for o in onx.graph.output:
        if o.name == name:
            tt = o.type.tensor_type
            return tt.elem_type, [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    raise ConversionError(f"the graph has no output {name!r}.")


def classifier_head(
    onx: onnx.ModelProto, source: str, *, width: int | None, classes: Sequence[Any], scores: str
) -> None:
    """Replace the graph's outputs with ``label`` and ``probabilities`` read from output ``source``.

    ``width`` is the number of score columns (None for a 1-D output); one column is the positive
    class of two. ``scores`` says whether the output holds ``"logits"`` or ``"probabilities"``.
    """
    elem, shape = output_info(onx, source)
    if elem not in (TensorProto.FLOAT, TensorProto.DOUBLE):
        raise ConversionError(f"a classifier's scores must be floats; output {source!r} has ONNX type {elem}.")
    if len(shape) not in (1, 2):
        raise ConversionError(f"a classifier's scores must have shape [N, classes] or [N]; {source!r} has rank {len(shape)}.")
    binary = width in (None, 1)
    if class_count(width) != len(classes):
        raise ConversionError(
            f"the model gives {width or 1} score column(s) but {len(classes)} classes were named: {list(classes)!r}.",
            hint="a single column is read as the score of the second (positive) class of two",
        )
    g = onx.graph
    nodes: list[onnx.NodeProto] = []
    src = source
    if binary:
        if len(shape) == 1:
            g.initializer.append(helper.make_tensor("mp_axes_1", TensorProto.INT64, [1], [1]))
            nodes.append(helper.make_node("Unsqueeze", [source, "mp_axes_1"], ["mp_score_2d"], name="mp_unsqueeze"))
            src = "mp_score_2d"
        positive = src
        if scores == "logits":
            nodes.append(helper.make_node("Sigmoid", [src], ["mp_positive"], name="mp_sigmoid"))
            positive = "mp_positive"
        one = np.ones((), dtype=np.float32 if elem == TensorProto.FLOAT else np.float64)
        g.initializer.append(onnx.numpy_helper.from_array(one, "mp_one"))
        nodes.append(helper.make_node("Sub", ["mp_one", positive], ["mp_negative"], name="mp_negative"))
        nodes.append(helper.make_node("Concat", ["mp_negative", positive], ["probabilities"], axis=1, name="mp_concat"))
    elif scores == "logits":
        nodes.append(helper.make_node("Softmax", [source], ["probabilities"], axis=-1, name="mp_softmax"))
    else:
        nodes.append(helper.make_node("Identity", [source], ["probabilities"], name="mp_probabilities"))
    nodes.append(helper.make_node("ArgMax", ["probabilities"], ["mp_argmax"], axis=1, keepdims=0, name="mp_argmax"))
    if isinstance(classes[0], str):
        encoded: Any = [str(c).encode() for c in classes]
        labels = helper.make_tensor("mp_classes", TensorProto.STRING, [len(classes)], encoded)
        label_type = TensorProto.STRING
    else:
        labels = helper.make_tensor("mp_classes", TensorProto.INT64, [len(classes)], list(classes))
        label_type = TensorProto.INT64
    g.initializer.append(labels)
    nodes.append(helper.make_node("Gather", ["mp_classes", "mp_argmax"], ["label"], axis=0, name="mp_label"))
    g.node.extend(nodes)
    g.output.append(helper.make_tensor_value_info("label", label_type, [BATCH]))
    g.output.append(helper.make_tensor_value_info("probabilities", elem, [BATCH, len(classes)]))
    keep_outputs(onx, ["label", "probabilities"])


def regression_head(onx: onnx.ModelProto, source: str, *, width: int | None) -> None:
    """Replace the graph's outputs with ``prediction``: ``[N]`` for one target, ``[N, k]`` for k."""
    elem, shape = output_info(onx, source)
    if elem not in (TensorProto.FLOAT, TensorProto.DOUBLE):
        raise ConversionError(f"a regressor's output must be floats; {source!r} has ONNX type {elem}.")
    if len(shape) == 2 and width == 1:
        g = onx.graph
        g.initializer.append(helper.make_tensor("mp_flat_shape", TensorProto.INT64, [1], [-1]))
        g.node.append(helper.make_node("Reshape", [source, "mp_flat_shape"], ["prediction"], name="mp_flatten"))
        g.output.append(helper.make_tensor_value_info("prediction", elem, [BATCH]))
    elif len(shape) in (1, 2):
        rename_tensors(onx, {source: "prediction"})
    else:
        raise ConversionError(
            f"a regressor's output must have shape [N] or [N, targets]; {source!r} has rank {len(shape)}."
        )
    keep_outputs(onx, ["prediction"])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def classify(values: np.ndarray, *, classes: Sequence[Any], scores: str) -> dict[str, np.ndarray]:
    """``label`` and ``probabilities`` from the original's score output, as :func:`classifier_head` computes them."""
    s = np.asarray(values)
    s2 = s.reshape(-1, 1) if s.ndim == 1 else s
    dtype = s2.dtype if s2.dtype.kind == "f" else np.dtype(np.float64)
    s2 = s2.astype(dtype, copy=False)
    if s2.shape[1] == 1:
        positive = _sigmoid(s2).astype(dtype) if scores == "logits" else s2
        probs = np.concatenate([1 - positive, positive], axis=1)
    elif scores == "logits":
        shifted = s2 - s2.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        probs = (e / e.sum(axis=1, keepdims=True)).astype(dtype)
    else:
        probs = s2
    idx = probs.argmax(axis=1) if probs.shape[0] else np.zeros(0, dtype=np.int64)
    label_dtype = object if isinstance(classes[0], str) else np.int64
    return {"label": np.asarray(list(classes), dtype=label_dtype)[idx], "probabilities": probs}


def regress(values: np.ndarray) -> dict[str, np.ndarray]:
    """``prediction`` from the original's output, as :func:`regression_head` shapes it."""
    v = np.asarray(values)
    return {"prediction": v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v}
