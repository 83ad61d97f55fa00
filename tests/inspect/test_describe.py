"""describe(): every fact comes from the bundle (and agrees with the original model); render and graph text."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter

import numpy as np
import onnx
import onnx.parser
import pytest

import modelport as mp
from modelport.inspect import describe, graph_text
from modelport.inspect.describe import render


@pytest.fixture(scope="module")
def described(iris_bundle, tmp_path_factory):
    path = tmp_path_factory.mktemp("describe") / "iris.mpk"
    iris_bundle.save(path)
    return describe(path), path


def test_identity_source_and_task(described, iris_bundle):
    info, _ = described
    assert info["name"] == "iris" and info["version"] == "1"
    assert info["digest"] == iris_bundle.digest
    assert info["format"] == "modelport/1"
    assert info["task"] == "classification"
    assert info["classes"] == [0, 1, 2]
    src = info["source"]
    assert src["framework"] == "scikit-learn" and src["estimator"] == "RandomForestClassifier"
    import sklearn

    assert src["framework_version"] == sklearn.__version__
    assert info["metrics"] == {"accuracy": 0.97}


def test_signature_table(described, iris_bundle, iris):
    info, _ = described
    cols = info["signature"]["columns"]
    assert [c["name"] for c in cols] == ["f0", "f1", "f2", "f3"]
    assert [c["index"] for c in cols] == [0, 1, 2, 3] and {c["input"] for c in cols} == {"X"}
    assert [c["nullable"] for c in cols] == [c.nullable for c in iris_bundle.signature.columns]
    # the training sample's range per column, from the manifest's reference statistics
    X, _ = iris
    assert [(c["training"]["min"], c["training"]["max"]) for c in cols] == list(zip(X.min(0), X.max(0), strict=True))
    assert info["signature"]["inputs"] == [{"name": "X", "dtype": "float32", "shape": [None, 4]}]
    outs = {t["name"]: t for t in info["signature"]["outputs"]}
    assert outs["probabilities"]["shape"] == [None, 3] and outs["label"]["dtype"] == "int64"


def test_tree_statistics_match_the_sklearn_forest(described, iris_forest, iris_bundle):
    info, _ = described
    graph = iris_bundle.onnx_model.graph
    ops = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in graph.node)
    assert info["operators"] == dict(ops) and info["nodes"] == len(graph.node)
    assert any(op.startswith("ai.onnx.ml.TreeEnsemble") for op in info["operators"])
    trees = info["trees"]
    assert trees["trees"] == len(iris_forest.estimators_)
    assert trees["nodes"] == sum(est.tree_.node_count for est in iris_forest.estimators_)
    assert trees["max_depth"] == max(est.get_depth() for est in iris_forest.estimators_)
    assert info["onnx"]["opsets"]["ai.onnx.ml"] >= 1


def test_parameter_count_of_a_linear_model(iris):
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    model = LogisticRegression(max_iter=2000).fit(X, y)
    info = describe(mp.pack(model, X, name="lr"))
    assert info["trees"] is None
    # coefficients and intercepts are in the graph; a few small constants may come with them
    expected = model.coef_.size + model.intercept_.size
    assert expected <= info["parameters"] <= expected + 16


def test_sizes_per_file_and_on_disk(described, iris_bundle):
    info, path = described
    size = info["size"]
    assert set(size["files"]) == set(iris_bundle.files)
    for name, entry in size["files"].items():
        assert entry["bytes"] == len(iris_bundle.files[name])
    with zipfile.ZipFile(path) as zf:
        assert {i.filename: i.compress_size for i in zf.infolist()} == {
            k: v["compressed"] for k, v in size["files"].items()
        }
    assert size["total"] == sum(len(v) for v in iris_bundle.files.values())
    assert size["mpk"] == size["on_disk"] == path.stat().st_size


def test_directory_size_on_disk(iris_bundle, tmp_path):
    d = iris_bundle.save(tmp_path / "iris_dir")
    info = describe(d)
    assert info["size"]["on_disk"] == sum(len(v) for v in iris_bundle.files.values())
    assert describe(iris_bundle)["size"]["on_disk"] is None  # packed in memory, never saved


def test_parity_reference_and_lineage(iris, iris_forest):
    X, _ = iris
    parent = "sha256:" + "ab" * 32
    b = mp.pack(iris_forest, X, name="iris", description="three species", tags={"team": "bio"}, parent=parent)
    info = describe(b)
    assert info["parity"] == b.manifest["parity"] and info["parity"]["pass"] is True
    assert info["description"] == "three species" and info["tags"] == {"team": "bio"}
    assert info["lineage"] == {"parent": parent}
    assert info["reference"]["stored_rows"] == len(b.reference_outputs["label"])
    assert info["reference"]["training_rows"] == len(X)


def test_json_ready(described):
    info, _ = described
    assert json.loads(json.dumps(info, allow_nan=False)) == info


def test_render_shows_the_facts_without_a_terminal(described):
    from rich.console import Console

    info, _ = described
    buf = io.StringIO()
    Console(file=buf, width=100, force_terminal=False, color_system=None).print(render(info))
    text = buf.getvalue()
    assert "\x1b[" not in text  # no escape codes when not writing to a terminal
    for needle in ("iris", "version 1", "RandomForestClassifier", "ai.onnx.ml.TreeEnsemble", "f3", "float32",
                   "[N, 4]", "accuracy", "pass", "model.onnx", info["digest"][:30]):
        assert needle in text, needle


def test_render_lists_categories_of_categorical_columns(iris_bundle, rewrite):
    def edit(m):
        m["signature"]["columns"][0]["dtype"] = "category"
        m["signature"]["columns"][0]["categories"] = ["low", "mid", "high"]

    from rich.console import Console

    buf = io.StringIO()
    info = describe(rewrite(iris_bundle, edit))
    assert info["signature"]["columns"][0]["categories"] == ["low", "mid", "high"]
    Console(file=buf, width=120).print(render(info))
    assert "low, mid, high" in buf.getvalue()


def test_graph_text_is_onnx_textual_syntax(iris_bundle):
    text = graph_text(iris_bundle)
    assert "ai.onnx.ml.TreeEnsemble" in text and "float[?,4] X" in text
    # the text parses back into a model with the same graph interface
    graph_start = text.index("\n", text.index(">")) + 1
    g = onnx.parser.parse_graph(text[graph_start:])
    assert [i.name for i in g.input] == ["X"]
    assert [o.name for o in g.output] == ["label", "probabilities"]
    assert len(g.node) == len(iris_bundle.onnx_model.graph.node)


def test_describe_accepts_paths_and_rejects_missing(tmp_path):
    with pytest.raises(mp.BundleError, match="no such bundle"):
        describe(tmp_path / "nope.mpk")



def test_tensor_bundle_without_columns(tensor_bundle):
    b = tensor_bundle(np.ones((3, 4), dtype=np.float32))
    info = describe(b)
    assert info["signature"]["columns"] is None and info["classes"] is None
    assert info["signature"]["inputs"] == [{"name": "x", "dtype": "float32", "shape": [None, 2, 3]}]
    assert info["parameters"] == 12 and info["trees"] is None and info["operators"] == {"MatMul": 1}
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=100).print(render(info))
    assert "Input columns" not in buf.getvalue() and "[N, 2, 3]" in buf.getvalue()


def test_string_columns_show_the_values_seen_in_training(pipeline_bundle):
    b, _, df = pipeline_bundle({"age": "num", "city": "str"})
    city = next(c for c in describe(b)["signature"]["columns"] if c["name"] == "city")
    # the values its OneHotEncoder knows (modelport reads them from the fitted encoder)
    assert city["dtype"] == "str" and city["categories"] == sorted(df["city"].unique())
    assert city["training"]["distinct"] == df["city"].nunique()
    assert set(city["training"]["top"]) == set(df["city"].unique())
