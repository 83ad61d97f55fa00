"""Operator semantics that sklearn/xgboost/lightgbm bundles rarely reach, on hand-built graphs:
TreeEnsemble v5 (every node mode incl. MEMBER, missing tracks, aggregates), the binary and
post-transform special cases of TreeEnsembleClassifier (PROBIT, SOFTMAX_ZERO, LOGISTIC with
mixed-sign weights), unsupported operators, and the float32 threshold arithmetic of SQL."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelport.bundle import npz
from modelport.bundle.core import MODEL_FILE, REFERENCE_INPUTS
from modelport.bundle.signature import Column
from modelport.codegen import compile_bundle, lower
from modelport.codegen.check import check
from modelport.convert.base import Converted
from modelport.errors import CodegenError

ML = helper.make_opsetid("ai.onnx.ml", 3)


def make_bundle(nodes, outputs, *, n_features=3, task="regression", classes=None, ml_opset=3, rows=None, initializers=()):
    from modelport._pack import _assemble, _signature

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n_features])], outputs,
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", ml_opset)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    cols = tuple(Column(f"f{i}", "float64", "X", i) for i in range(n_features))
    conv = Converted(model, task, cols, classes, {
        "framework": "onnx", "framework_version": onnx.__version__, "estimator": "hand-built",
        "converter": "test", "converter_version": "0",
    })
    rng = np.random.default_rng(0)
    X = rows if rows is not None else rng.choice([0.0, 0.5, 1.0, 1.25, 2.0, 3.0, -1.0, np.nan], size=(300, n_features))
    ref = {f"f{i}": X[:, i].astype(np.float64) for i in range(n_features)}
    meta = {"name": "hand", "version": None, "description": None, "created": None, "metrics": {}, "tags": {},
            "lineage": {"parent": None}, "source": conv.source}
    files = {MODEL_FILE: model.SerializeToString(), REFERENCE_INPUTS: npz.dumps(ref)}
    return _assemble(meta, conv, _signature(conv), files, parity=None, reference=None)


def v5_node(aggregate: int, post: int, n_targets: int = 2):
    # tree 0: node0 f0 LEQ 0.5 -> node1 / leaf0 ; node1 f1 MEMBER {1,3} -> leaf1 / node2 ;
    #         node2 f2 EQ 1.25 (missing true) -> leaf2 / leaf3
    # tree 1: node3 f2 GTE 1.0 (missing true) -> node4 / node5 ; node4 f0 NEQ 2.0 -> leaf4 / leaf5 ;
    #         node5 f1 GT -1.0 -> leaf6 / node6 ; node6 f0 LT 0.5 -> leaf7 / leaf8
    return helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml",
        n_targets=n_targets, aggregate_function=aggregate, post_transform=post,
        tree_roots=[0, 3],
        nodes_featureids=[0, 1, 2, 2, 0, 1, 0],
        nodes_modes=numpy_helper.from_array(np.array([0, 6, 4, 2, 5, 3, 1], dtype=np.uint8), "m"),
        nodes_splits=numpy_helper.from_array(np.array([0.5, 0.0, 1.25, 1.0, 2.0, -1.0, 0.5], dtype=np.float32), "s"),
        nodes_truenodeids=[1, 1, 2, 4, 4, 6, 7],
        nodes_trueleafs=[0, 1, 1, 0, 1, 1, 1],
        nodes_falsenodeids=[0, 2, 3, 5, 5, 6, 8],
        nodes_falseleafs=[1, 0, 1, 0, 1, 0, 1],
        nodes_missing_value_tracks_true=[0, 0, 1, 1, 0, 1, 0],
        membership_values=numpy_helper.from_array(np.array([1.0, 3.0, np.nan], dtype=np.float32), "mv"),
        leaf_targetids=[0, 1, 0, 1, 0, 1, 0, 1, 0],
        leaf_weights=numpy_helper.from_array(np.array([0.1, 0.2, 0.3, 0.15, 0.05, 0.25, 0.35, 0.12, 0.22], dtype=np.float32), "w"),
    )


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3], ids=["AVERAGE", "SUM", "MIN", "MAX"])
@pytest.mark.parametrize("post", [0, 2, 1], ids=["NONE", "LOGISTIC", "SOFTMAX"])
def test_tree_ensemble_v5_every_mode(aggregate: int, post: int) -> None:
    out = helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 2])
    node = v5_node(aggregate, post)
    node.output[0] = "prediction"
    b = make_bundle([node], [out], ml_opset=5)
    program = lower(b)
    assert program.ensembles[0].trees[0].true.mode == "MEMBER"
    report = check(b, targets=("c", "python", "sql"), dialects=("sqlite", "duckdb"))
    assert report.passed, report.summary()


def test_v5_with_member_splits_uses_nested_ifs_in_c() -> None:
    out = helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 2])
    node = v5_node(1, 0)
    node.output[0] = "prediction"
    src = compile_bundle(make_bundle([node], [out], ml_opset=5), "c").files["model.c"]
    assert "model_e0_nodes" not in src and "if (" in src


def _classifier(post: str, weights, class_ids, labels, base=None):
    attrs = dict(
        nodes_treeids=[0, 0, 0, 1, 1, 1], nodes_nodeids=[0, 1, 2, 0, 1, 2], nodes_featureids=[0, 0, 0, 1, 0, 0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_GT", "LEAF", "LEAF"],
        nodes_values=[0.5, 0, 0, 1.0, 0, 0], nodes_truenodeids=[1, 0, 0, 1, 0, 0], nodes_falsenodeids=[2, 0, 0, 2, 0, 0],
        nodes_missing_value_tracks_true=[1, 0, 0, 0, 0, 0], post_transform=post, classlabels_int64s=labels,
    )
    leaves = [(0, 1), (0, 2), (1, 1), (1, 2)]
    tids, nids, cids, ws = [], [], [], []
    for (t, n), w in zip(leaves, weights):
        for c, v in zip(class_ids, w):
            tids.append(t), nids.append(n), cids.append(c), ws.append(v)
    attrs.update(class_treeids=tids, class_nodeids=nids, class_ids=cids, class_weights=ws)
    if base is not None:
        attrs["base_values"] = base
    node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml", **attrs)
    outs = [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(labels)])]
    return make_bundle([node], outs, task="classification", classes=list(labels))


@pytest.mark.parametrize(
    "case",
    [
        ("SOFTMAX_ZERO", [[0.0, 1.2, -0.5], [0.3, 0.0, 0.0], [0.0, 0.0, 2.0], [-1.0, 0.4, 0.0]], [0, 1, 2], [0, 1, 2], None),
        ("PROBIT", [[0.1, 0.2, 0.05], [0.3, 0.1, 0.2], [0.2, 0.25, 0.1], [0.15, 0.05, 0.3]], [0, 1, 2], [0, 1, 2], None),
        ("LOGISTIC", [[0.7], [-1.3], [0.2], [-0.4]], [1], [0, 1], None),
        ("NONE", [[0.3], [0.6], [0.1], [0.25]], [1], [0, 1], None),
        ("LOGISTIC", [[0.7, -0.7], [-1.3, 1.3], [0.2, -0.2], [-0.4, 0.4]], [0, 1], [0, 1], [0.1, -0.1]),
    ],
    ids=["softmax-zero", "probit", "binary-mixed-logistic", "binary-positive", "binary-base-values"],
)
def test_tree_classifier_special_cases(case) -> None:
    post, weights, class_ids, labels, base = case
    b = _classifier(post, weights, class_ids, labels, base)
    report = check(b, targets=("c", "python", "sql"), dialects=("sqlite", "duckdb"))
    assert report.passed, report.summary()


def test_boolean_elementwise_operators_match_onnx_runtime() -> None:
    """IsNaN, IsInf (both signs, and one sign) and Not, turned back into numbers with Where."""
    one = numpy_helper.from_array(np.ones(1, dtype=np.float32), "one")
    zero = numpy_helper.from_array(np.zeros(1, dtype=np.float32), "zero")
    nodes = [
        helper.make_node("IsNaN", ["X"], ["nan"]),
        helper.make_node("IsInf", ["X"], ["inf"]),
        helper.make_node("IsInf", ["X"], ["neg_inf"], detect_positive=0),
        helper.make_node("Not", ["nan"], ["not_nan"]),
        helper.make_node("Where", ["nan", "one", "zero"], ["a"]),
        helper.make_node("Where", ["inf", "one", "zero"], ["b"]),
        helper.make_node("Where", ["neg_inf", "one", "zero"], ["c"]),
        helper.make_node("Where", ["not_nan", "one", "zero"], ["d"]),
        helper.make_node("Concat", ["a", "b", "c", "d"], ["prediction"], axis=1),
    ]
    rows = np.array([[0.0, np.nan, np.inf], [-np.inf, 1.5, np.nan], [2.0, -3.0, 0.0], [np.inf, -np.inf, np.nan]])
    b = make_bundle(nodes, [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 12])],
                    task="transform", rows=rows, initializers=[one, zero])
    report = check(b, targets=("c", "python", "sql"), dialects=("sqlite", "duckdb"))
    assert report.passed, report.summary()


def test_unsupported_operator_is_named_with_its_node() -> None:
    node = helper.make_node("Erf", ["X"], ["prediction"], name="my_erf")
    b = make_bundle([node], [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 3])], task="transform")
    with pytest.raises(CodegenError, match=r"ai\.onnx\.Erf.*my_erf") as info:
        lower(b)
    assert info.value.exit_code == 9
    assert "supported operators" in (info.value.hint or "")


def test_bad_prefix_is_refused() -> None:
    node = helper.make_node("Relu", ["X"], ["prediction"])
    b = make_bundle([node], [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 3])], task="transform")
    with pytest.raises(CodegenError, match="identifier"):
        compile_bundle(b, "c", prefix="9lives")


def test_sql_float32_boundaries_match_numpy() -> None:
    """f32(x) <= t in SQL's double arithmetic, for x at and around every rounding midpoint."""
    import sqlite3

    from modelport.codegen.ir import Col, InputColumn, Num, Program
    from modelport.codegen.sql import _Dialect, _SqlWriter

    rng = np.random.default_rng(1)
    ts = [float(np.float32(v)) for v in rng.normal(0, 10, 40)] + [0.0, 1.0, 2.0**-126, float(np.finfo(np.float32).max)]
    con = sqlite3.connect(":memory:")
    prog = Program("p", "regression", [InputColumn("x", "f", True)], [Num(0.0)], ["y"])
    w = _SqlWriter(prog, _Dialect("sqlite"))
    x = Col(0)
    for t in ts:
        with np.errstate(over="ignore"):
            up = float(np.nextafter(np.float32(t), np.float32(np.inf)))
        mid = (t + up) / 2 if math.isfinite(up) else 2.0**128 - 2.0**103
        probes = [t, mid, np.nextafter(mid, -np.inf), np.nextafter(mid, np.inf), up]
        for op in ("<=", "<", ">", ">=", "==", "!="):
            cond = w.cmp(op, x, Num(t)).replace('"__mp_c0"', "?")
            for v in probes:
                got = bool(con.execute(f"SELECT {cond}", [float(v)] * cond.count("?")).fetchone()[0])
                with np.errstate(over="ignore"):
                    x32 = np.float32(v)
                want = {"<=": x32 <= t, "<": x32 < t, ">": x32 > t, ">=": x32 >= t, "==": x32 == t, "!=": x32 != t}[op]
                assert got == bool(want), (op, t, v)
