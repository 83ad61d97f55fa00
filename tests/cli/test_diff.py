"""``modelport diff``: exit codes 0 / 10 / 11, breaking changes flagged, --json, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import modelport as mp
from modelport.cli.main import cli
from modelport.errors import BundleError


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def bundles(iris, iris_forest, iris_bundle, tmp_path_factory):
    from sklearn.ensemble import RandomForestClassifier

    X, y = iris
    root = tmp_path_factory.mktemp("cli-diff")
    a = iris_bundle.save(root / "a.mpk")
    same = iris_bundle.save(root / "same")  # same bundle as a directory
    meta = mp.pack(iris_forest, X, name="iris", version="1", metrics={"accuracy": 0.5}).save(root / "meta.mpk")
    three = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X[:, :3], y)
    fewer = mp.pack(three, X[:, :3], name="iris", version="2").save(root / "fewer.mpk")
    return {"a": a, "same": same, "meta": meta, "fewer": fewer}


def test_identical_exits_0(runner, bundles):
    result = runner.invoke(cli, ["diff", str(bundles["a"]), str(bundles["same"])])
    assert result.exit_code == 0, result.output
    assert "verdict: identical: 0 change(s)" in result.stdout
    assert "labels agree 100.00%" in result.stdout


def test_compatible_exits_10(runner, bundles):
    result = runner.invoke(cli, ["diff", str(bundles["a"]), str(bundles["meta"])])
    assert result.exit_code == 10, result.output
    assert "verdict: compatible: 1 change(s)" in result.stdout
    assert "metrics.accuracy" in result.stdout and "BREAK" not in result.stdout


def test_breaking_exits_11_and_flags_the_change(runner, bundles):
    result = runner.invoke(cli, ["diff", str(bundles["a"]), str(bundles["fewer"])])
    assert result.exit_code == 11, result.output
    assert "verdict: breaking" in result.stdout
    line = next(ln for ln in result.stdout.splitlines() if "columns.f3" in ln and "signature" in ln)
    assert "BREAK" in line and "removed" in line
    assert "Behaviour on" in result.stdout


def test_json_report(runner, bundles):
    result = runner.invoke(cli, ["diff", str(bundles["a"]), str(bundles["fewer"]), "--json"])
    assert result.exit_code == 11
    report = json.loads(result.stdout)
    assert report["level"] == "breaking"
    assert "columns.f3" in report["breaking"]
    assert report["graph"]["trees"]["a"]["trees"] == 15 and report["graph"]["trees"]["b"]["trees"] == 5
    beh = report["behaviour"]
    assert beh["rows_from_a"] > 0 and beh["rows_from_b"] == 0
    assert 0 <= beh["label_agreement"] <= 1


def test_no_behaviour(runner, bundles):
    result = runner.invoke(cli, ["diff", str(bundles["a"]), str(bundles["meta"]), "--json", "--no-behaviour"])
    assert result.exit_code == 10
    assert json.loads(result.stdout)["behaviour"] is None


def test_help_documents_exit_codes(runner):
    out = runner.invoke(cli, ["diff", "--help"]).stdout
    assert "0   identical" in out and "10  compatible change" in out and "11  breaking change" in out


def test_unloadable_bundle_is_an_error(runner, bundles, tmp_path):
    result = runner.invoke(cli, ["diff", str(bundles["a"]), str(tmp_path / "nope.mpk")])
    assert result.exit_code == BundleError.exit_code == 5  # not one of the diff levels 0 / 10 / 11
    assert "error: " in result.stderr and "nope.mpk: no such bundle" in result.stderr


def test_python_dash_m_maps_levels_and_errors_to_exit_codes(bundles, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "modelport", "diff", *args], capture_output=True, text=True,
                              timeout=120)

    assert run(str(bundles["a"]), str(bundles["fewer"]), "--no-behaviour").returncode == 11
    missing = run(str(bundles["a"]), str(tmp_path / "nope.mpk"))
    assert missing.returncode == 5
    assert missing.stderr.startswith("error: ") and "no such bundle" in missing.stderr


def test_registry_uris(runner, bundles):
    from modelport.registry import open_registry

    reg = open_registry()
    v1 = reg.push(str(bundles["a"])).version
    v2 = reg.push(str(bundles["fewer"])).version
    assert v1 != v2
    result = runner.invoke(cli, ["diff", f"models:/iris/{v1}", f"models:/iris/{v2}", "--json"])
    assert result.exit_code == 11, result.output
    report = json.loads(result.stdout)
    assert report["a"]["version"] == "1" and report["b"]["version"] == "2"
    assert "columns.f3" in report["breaking"]
