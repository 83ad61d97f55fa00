"""diff(): levels, breaking-change rules, graph changes and behaviour on the union of reference rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelport as mp
from modelport.bundle import npz
from modelport.bundle.reference import decode_columns, encode_columns
from modelport.inspect import DiffReport, describe, diff


def paths(report: DiffReport, *, breaking: bool | None = None) -> set[str]:
    return {c.path for c in report.changes if breaking is None or c.breaking == breaking}


# ------------------------------------------------------------------------------------ levels


def test_identical_bundles(iris_bundle, tmp_path):
    iris_bundle.save(tmp_path / "a.mpk")
    report = diff(iris_bundle, tmp_path / "a.mpk")
    assert report.level == "identical" and report.exit_code == 0
    assert report.changes == []
    beh = report.behaviour
    # the union holds every distinct row once (iris has repeated rows; B's copies are all repeats)
    assert beh["rows"] + beh["duplicates"] == 2 * len(iris_bundle.reference_outputs["label"])
    assert beh["rows_from_b"] == 0
    assert beh["label_agreement"] == 1.0 and beh["max_abs_difference"] == 0.0


def test_metadata_only_change_is_compatible(iris, iris_forest, iris_bundle):
    X, _ = iris
    other = mp.pack(iris_forest, X, name="iris", version="1", metrics={"accuracy": 0.99}, description="new text")
    report = diff(iris_bundle, other)
    assert report.level == "compatible" and report.exit_code == 10
    assert paths(report) == {"metrics.accuracy", "description"}
    change = next(c for c in report.changes if c.path == "metrics.accuracy")
    assert (change.old, change.new, change.kind) == (0.97, 0.99, "changed")
    assert report.graph["initializers"]["changed"] == {}
    assert report.behaviour["label_agreement"] == 1.0 and report.behaviour["max_abs_difference"] == 0.0


def test_retrained_linear_model_is_compatible_with_initializer_changes(lr_bundles, lr_models):
    a, b = lr_bundles
    report = diff(a, b)
    assert report.level == "compatible", [c.to_dict() for c in report.breaking]
    assert report.section("signature") == []
    changed = report.graph["initializers"]["changed"]
    m_a, m_b = lr_models
    # the graph stores the coefficients in float32: compare with the models' own difference
    coef = np.abs(m_a.coef_.astype(np.float32).astype(np.float64) - m_b.coef_.astype(np.float32)).max()
    inter = np.abs(m_a.intercept_.astype(np.float32).astype(np.float64) - m_b.intercept_.astype(np.float32)).max()
    assert max(changed.values()) == pytest.approx(max(coef, inter), rel=1e-6)
    assert report.graph["initializers"]["reshaped"] == {}
    assert {"metrics.accuracy", "version"} <= paths(report)


def test_behaviour_matches_scoring_the_union_by_hand(lr_bundles):
    a, b = lr_bundles
    report = diff(a, b)
    # independent computation: union of both reference sets, duplicates dropped, scored by both
    rows_a = decode_columns(a.reference_inputs)
    rows_b = decode_columns(b.reference_inputs)
    names = a.signature.column_names
    seen, union = set(), []
    for rows in (rows_a, rows_b):
        for i in range(len(rows[names[0]])):
            key = tuple(float(rows[n][i]) for n in names)
            if key not in seen:
                seen.add(key)
                union.append(key)
    data = np.array(union)
    pa, pb = a.predict(data), b.predict(data)
    beh = report.behaviour
    assert beh["rows"] == len(union)
    assert beh["duplicates"] == len(rows_a[names[0]]) + len(rows_b[names[0]]) - len(union)
    assert beh["label_agreement"] == pytest.approx(float(np.mean(pa["label"] == pb["label"])))
    diff_p = np.abs(pa["probabilities"].astype(np.float64) - pb["probabilities"])
    assert beh["outputs"]["probabilities"]["max_abs_difference"] == pytest.approx(float(diff_p.max()))
    assert beh["outputs"]["label"]["disagreements"] == int(np.sum(pa["label"] != pb["label"]))
    assert 0 < beh["max_abs_difference"] < 1


# ---------------------------------------------------------------------------- breaking rules


def test_removed_column_is_breaking_and_scores_only_rows_both_can_take(iris, lr_bundles):
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    a, _ = lr_bundles
    b = mp.pack(LogisticRegression(max_iter=2000).fit(X[:, :3], y), X[:, :3], name="iris-lr")
    report = diff(a, b)
    assert report.level == "breaking" and report.exit_code == 11
    removed = next(c for c in report.changes if c.path == "columns.f3")
    assert removed.kind == "removed" and removed.breaking
    shape = next(c for c in report.changes if c.path == "inputs.X.shape")
    assert (shape.old, shape.new, shape.breaking) == ("[N, 4]", "[N, 3]", True)
    beh = report.behaviour
    # B's rows lack f3, so A cannot score them; A's rows carry everything B needs
    assert beh["rows_from_b"] == 0 and beh["skipped"]["b"] == len(b.reference_outputs["label"])
    assert beh["rows_from_a"] + beh["duplicates"] == len(a.reference_outputs["label"])
    assert any("lack f3" in n for n in beh["notes"])


def test_added_column_is_breaking(pipeline_bundle):
    a, _, _ = pipeline_bundle({"age": "num", "city": "str"})
    b, _, _ = pipeline_bundle({"age": "num", "city": "str", "income": "num"})
    report = diff(a, b)
    assert report.level == "breaking"
    assert {"columns.income", "inputs.income"} <= paths(report, breaking=True)
    assert next(c for c in report.changes if c.path == "columns.income").kind == "added"
    # A's rows lack income, B's rows can be scored by both
    assert report.behaviour["rows_from_a"] == 0 and report.behaviour["rows_from_b"] > 0


def test_renamed_column_is_breaking_and_still_compared(pipeline_bundle):
    a, _, _ = pipeline_bundle({"age": "num", "income": "num", "city": "str"})
    b, _, _ = pipeline_bundle({"age": "num", "wage": "num", "city": "str"})
    report = diff(a, b)
    renamed = next(c for c in report.changes if c.path == "columns.income")
    assert (renamed.kind, renamed.old, renamed.new, renamed.breaking) == ("renamed", "income", "wage", True)
    # same data under another name: identical answers on every row
    beh = report.behaviour
    assert beh["rows"] > 0 and beh["label_agreement"] == 1.0 and beh["max_abs_difference"] == 0.0


def test_class_set_change_is_breaking_and_probabilities_compare_on_common_classes(iris, lr_bundles):
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    a, _ = lr_bundles
    keep = y < 2
    b = mp.pack(LogisticRegression(max_iter=2000).fit(X[keep], y[keep]), X[keep], name="iris-lr")
    report = diff(a, b)
    change = next(c for c in report.changes if c.path == "classes")
    assert change.breaking and "removed [2]" in change.reason
    probs = report.behaviour["outputs"]["probabilities"]
    assert probs["classes_compared"] == [0, 1]
    assert "outputs.probabilities.shape" in paths(report, breaking=True)


def test_class_reorder_is_breaking(lr_bundles, rewrite):
    a, _ = lr_bundles
    b = rewrite(a, lambda m: m.update(classes=[2, 1, 0]))
    report = diff(a, b, behaviour=False)
    change = next(c for c in report.changes if c.path == "classes")
    assert change.kind == "reordered" and change.breaking
    assert report.behaviour is None


@pytest.mark.parametrize(
    ("edit", "path", "breaking"),
    [
        (lambda m: m["signature"]["columns"][1].update(dtype="float32"), "columns.f1.dtype", True),
        (lambda m: m["signature"]["inputs"][0].update(dtype="int64"), "inputs.X.dtype", True),
        (lambda m: m["signature"]["inputs"][0].update(shape=[None, None]), "inputs.X.shape", False),
        (lambda m: m["signature"]["outputs"].pop(), "outputs.probabilities", True),
        (lambda m: m["signature"]["outputs"][0].update(dtype="int32"), "outputs.label.dtype", True),
        (lambda m: m["signature"]["columns"][2].update(nullable=True), "columns.f2.nullable", False),
        (lambda m: m.update(task="regression"), "task", True),
        (lambda m: m["signature"]["columns"].reverse(), "columns", True),
        (lambda m: m["lineage"].update(parent="sha256:" + "0" * 64), "lineage.parent", False),
        (lambda m: m["source"].update(framework_version="0.0"), "source.framework_version", False),
    ],
)
def test_signature_and_metadata_rules(lr_bundles, rewrite, edit, path, breaking):
    a, _ = lr_bundles
    b = rewrite(a, edit)
    report = diff(a, b, behaviour=False)
    change = next(c for c in report.changes if c.path == path)
    assert change.breaking is breaking
    assert report.level == ("breaking" if breaking else "compatible")


def test_added_output_is_compatible_and_nullable_dropped_is_breaking(lr_bundles, rewrite):
    a, _ = lr_bundles
    fewer = rewrite(a, lambda m: m["signature"]["outputs"].pop())
    report = diff(fewer, a, behaviour=False)
    added = next(c for c in report.changes if c.path == "outputs.probabilities")
    assert added.kind == "added" and not added.breaking and report.level == "compatible"
    nullable = rewrite(a, lambda m: m["signature"]["columns"][0].update(nullable=True))
    assert diff(nullable, a, behaviour=False).breaking[0].path == "columns.f0.nullable"


def test_category_changes(lr_bundles, rewrite):
    a, _ = lr_bundles

    def cats(values):
        def edit(m):
            m["signature"]["columns"][0].update(dtype="category", categories=values)
        return edit

    base = rewrite(a, cats(["x", "y"]))
    grown = diff(base, rewrite(a, cats(["x", "y", "z"])), behaviour=False)
    assert grown.level == "compatible"
    shrunk = diff(base, rewrite(a, cats(["x"])), behaviour=False)
    change = shrunk.breaking[0]
    assert change.path == "columns.f0.categories" and "'y'" in change.reason


def test_rows_one_bundle_refuses_are_left_out(lr_bundles, rewrite):
    a, b = lr_bundles
    # A accepts NaN in every column and stores 5 rows with NaN; B (plain logistic regression) refuses them
    rows = decode_columns(a.reference_inputs)
    extra = {k: v[:5].astype(np.float64) for k, v in rows.items()}
    for i in range(5):  # five distinct rows, each with one missing value
        extra[f"f{i % 4}"][i] = np.nan
    with_nan = {k: np.concatenate([v, extra[k]]) for k, v in rows.items()}

    def nullable(m):
        for c in m["signature"]["columns"]:
            c["nullable"] = True

    a_nan = rewrite(a, nullable, replace={"reference/inputs.npz": npz.dumps(encode_columns(with_nan))})
    report = diff(a_nan, b)
    beh = report.behaviour
    assert beh["skipped"]["a"] == 5
    assert beh["rows_from_a"] == len(set(zip(*(rows[k].tolist() for k in sorted(rows)), strict=True)))
    assert any("B refuses 5" in n for n in beh["notes"])


def test_graph_changes_of_tree_ensembles(iris, iris_bundle):
    from sklearn.ensemble import RandomForestClassifier

    X, y = iris
    bigger = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=1).fit(X, y)
    b = mp.pack(bigger, X, name="iris", version="2")
    report = diff(iris_bundle, b)
    trees = {c.path: c for c in report.section("graph")}
    assert trees["trees.trees"].old == 15 and trees["trees.trees"].new == 20
    assert trees["trees.max_depth"].new == max(e.get_depth() for e in bigger.estimators_)
    assert any(p.startswith("nodes.") for p in trees)
    assert report.graph["trees"]["b"]["nodes"] == sum(e.tree_.node_count for e in bigger.estimators_)


def test_operator_changes_between_model_families(iris_bundle, lr_bundles):
    a, _ = lr_bundles
    report = diff(iris_bundle, a)
    ops = report.graph["operators"]
    forest_ops, lr_ops = describe(iris_bundle)["operators"], describe(a)["operators"]
    assert ops["removed"] == {op: n for op, n in forest_ops.items() if op not in lr_ops}
    assert ops["added"] == {op: n for op, n in lr_ops.items() if op not in forest_ops}
    assert any(op.startswith("ai.onnx.ml.TreeEnsemble") for op in ops["removed"])
    assert {c.path for c in report.section("graph")} >= {f"operators.{op}" for op in ops["added"]}
    assert not any(c.breaking for c in report.section("graph"))  # graph changes alone never break callers


def test_report_is_strict_json(lr_bundles):
    a, b = lr_bundles
    d = diff(a, b).to_dict()
    again = json.loads(json.dumps(d, allow_nan=False))
    assert again["level"] == "compatible" and again["a"]["digest"] == a.digest
    assert {c["section"] for c in again["changes"]} >= {"metadata", "graph", "files"}


def test_diff_of_unloadable_bundle_raises(tmp_path, iris_bundle):
    bad = tmp_path / "bad.mpk"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(mp.BundleError):
        diff(iris_bundle, bad)


def test_tensor_bundles_union_and_initializer_change(tensor_bundle):
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    a = tensor_bundle(w, rows=8, seed=0)
    b = tensor_bundle(w + np.float32(0.25), rows=5, seed=1)
    report = diff(a, b)
    assert report.level == "compatible"
    assert report.graph["initializers"]["changed"]["W"] == pytest.approx(0.25)
    beh = report.behaviour
    assert (beh["rows"], beh["rows_from_a"], beh["rows_from_b"]) == (13, 8, 5)
    # scoring the union by hand: y = x @ w, so the difference is x @ 0.25
    x = np.concatenate([a.reference_inputs["x"], b.reference_inputs["x"]])
    expected = np.abs(x @ np.full((3, 4), 0.25, dtype=np.float32)).max()
    assert beh["outputs"]["y"]["max_abs_difference"] == pytest.approx(float(expected), rel=1e-5)
    assert beh["label_agreement"] is None


def test_tensor_shape_change_is_breaking(tensor_bundle):
    w = np.ones((3, 4), dtype=np.float32)
    a, b = tensor_bundle(w), tensor_bundle(np.ones((3, 5), dtype=np.float32))
    report = diff(a, b)
    change = next(c for c in report.changes if c.path == "outputs.y.shape")
    assert (change.old, change.new, change.breaking) == ("[N, 2, 4]", "[N, 2, 5]", True)
    assert report.graph["initializers"]["reshaped"] == {"W": [[3, 4], [3, 5]]}
    assert report.behaviour["outputs"]["y"]["error"].startswith("shapes differ")
