"""``modelport inspect``: rich text without a terminal, --json, --graph."""

from __future__ import annotations

import json

import onnx.parser
import pytest
from click.testing import CliRunner

from modelport.cli.main import cli
from modelport.errors import BundleError
from modelport.inspect import describe


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "160"})


@pytest.fixture(scope="module")
def mpk(iris_bundle, tmp_path_factory):
    return iris_bundle.save(tmp_path_factory.mktemp("cli-inspect") / "iris.mpk")


def test_text_output(runner, mpk, iris_bundle):
    result = runner.invoke(cli, ["inspect", str(mpk)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b[" not in out
    info = describe(mpk)
    tree_op = next(op for op in info["operators"] if "TreeEnsemble" in op)
    for needle in ("iris  version 1", iris_bundle.digest, "classification", "scikit-learn", "RandomForestClassifier",
                   "Input columns", "f0", "X[:, 3]", "[N, 4]", "probabilities",
                   f"ai.onnx.ml {info['onnx']['opsets']['ai.onnx.ml']}", f"{tree_op} x{info['operators'][tree_op]}",
                   "15 trees", "model.onnx", "on disk: ", "accuracy", "0.97"):
        assert needle in out, needle


def test_json_output_is_describe(runner, mpk):
    result = runner.invoke(cli, ["inspect", str(mpk), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data == json.loads(json.dumps(describe(mpk)))
    assert data["trees"]["trees"] == 15 and data["size"]["on_disk"] == mpk.stat().st_size


def test_directory_bundle(runner, iris_bundle, tmp_path):
    d = iris_bundle.save(tmp_path / "dir")
    data = json.loads(runner.invoke(cli, ["inspect", str(d), "--json"]).stdout)
    assert data["digest"] == iris_bundle.digest and data["size"]["path"] == str(d)


def test_graph_text(runner, mpk, iris_bundle):
    result = runner.invoke(cli, ["inspect", str(mpk), "--graph"])
    assert result.exit_code == 0
    text = result.stdout
    assert text.lstrip().startswith("<") and "ai.onnx.ml.TreeEnsemble" in text
    graph = onnx.parser.parse_graph(text[text.index("\n", text.index(">")) + 1:])
    assert [o.name for o in graph.output] == [o.name for o in iris_bundle.onnx_model.graph.output]
    both = json.loads(runner.invoke(cli, ["inspect", str(mpk), "--json", "--graph"]).stdout)
    assert both["graph"] == text.rstrip("\n") and both["name"] == "iris"


def test_errors_exit_with_the_bundle_error_code(runner, tmp_path):
    result = runner.invoke(cli, ["inspect", str(tmp_path / "missing.mpk")])
    assert result.exit_code == BundleError.exit_code
    assert "missing.mpk: no such bundle" in result.stderr and result.stdout == ""
    junk = tmp_path / "junk.mpk"
    junk.write_bytes(b"not a zip")
    result = runner.invoke(cli, ["inspect", str(junk)])
    assert result.exit_code == 5 and "not a modelport bundle" in result.stderr


def test_usage_error(runner):
    result = runner.invoke(cli, ["inspect"])
    assert result.exit_code == 2 and "Missing argument 'BUNDLE'" in result.output


def test_registry_uri(runner, mpk, iris_bundle):
    from modelport.registry import open_registry

    info = open_registry().push(str(mpk))
    data = json.loads(runner.invoke(cli, ["inspect", f"models:/iris/{info.version}", "--json"]).stdout)
    assert data["digest"] == iris_bundle.digest
    missing = runner.invoke(cli, ["inspect", "models:/iris/99"])
    assert missing.exit_code == 7 and "no version 99" in missing.stderr
