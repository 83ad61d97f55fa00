"""``modelport verify``: digests and a re-run of the stored reference data; exit 0 only when both hold."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from modelport.bundle import manifest as mf
from modelport.bundle import npz
from modelport.bundle.core import Bundle
from modelport.cli.main import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def saved(iris_bundle, tmp_path):
    return iris_bundle.save(tmp_path / "iris.mpk"), iris_bundle.save(tmp_path / "iris_dir")


def _json(result) -> dict:
    return json.loads(result.stdout)


@pytest.mark.parametrize("which", [0, 1])
def test_intact_bundle_passes(runner, saved, iris_bundle, which):
    path = saved[which]
    result = runner.invoke(cli, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    assert "digests: ok (3 files match the manifest)" in result.stdout
    assert "verdict: PASS" in result.stdout
    assert "\x1b[" not in result.stdout  # plain text when not on a terminal
    data = _json(runner.invoke(cli, ["verify", str(path), "--json"]))
    assert data["pass"] is True and data["digests_ok"] is True and data["error"] is None
    assert data["digest"] == iris_bundle.digest
    assert data["rows"] == len(iris_bundle.reference_outputs["label"])
    assert data["parity"]["max_abs_error"] <= data["parity"]["tolerance"]["probability_abs"]
    assert {f["path"] for f in data["files"]} == set(iris_bundle.manifest["files"])


@pytest.mark.parametrize("victim", ["model.onnx", "reference/outputs.npz"])
def test_tampered_file_is_named(runner, saved, victim):
    d = saved[1]
    data = bytearray((d / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / victim).write_bytes(bytes(data))
    result = runner.invoke(cli, ["verify", str(d)])
    assert result.exit_code == 5, result.output
    assert f"digests: FAILED: {victim} (digest)" in result.stdout
    assert "verdict: FAIL: damaged files" in result.stdout
    report = _json(runner.invoke(cli, ["verify", str(d), "--json"]))
    status = {f["path"]: f["status"] for f in report["files"]}
    assert status.pop(victim) == "digest"
    assert set(status.values()) == {"ok"}
    assert report["pass"] is False and report["digests_ok"] is False
    assert victim in report["error"]


def test_missing_and_unlisted_files_are_each_reported(runner, saved):
    d = saved[1]
    (d / "reference" / "inputs.npz").unlink()
    (d / "notes.txt").write_text("hello")
    report = _json(runner.invoke(cli, ["verify", str(d), "--json"]))
    status = {f["path"]: f["status"] for f in report["files"]}
    assert status == {"model.onnx": "ok", "reference/inputs.npz": "missing", "reference/outputs.npz": "ok",
                      "notes.txt": "unlisted"}


def test_truncated_file_reports_sizes(runner, saved):
    d = saved[1]
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[:100])
    report = _json(runner.invoke(cli, ["verify", str(d), "--json"]))
    entry = next(f for f in report["files"] if f["path"] == "model.onnx")
    assert (entry["status"], entry["size"], entry["expected_size"]) == ("size", 100, len(data))


def test_truncated_mpk(runner, saved):
    path = saved[0]
    path.write_bytes(path.read_bytes()[:-40])
    result = runner.invoke(cli, ["verify", str(path), "--json"])
    assert result.exit_code == 5
    report = _json(result)
    assert "corrupt or truncated archive" in report["error"] and report["files"] == []


def test_intact_files_but_other_answers_here_fail_parity(runner, iris_bundle, tmp_path):
    # recorded answers that this machine cannot reproduce: probabilities shifted by 0.01
    files = dict(iris_bundle.files)
    outputs = dict(iris_bundle.reference_outputs)
    outputs["probabilities"] = outputs["probabilities"] + np.float32(0.01)
    files["reference/outputs.npz"] = npz.dumps(outputs)
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = mf.files_table({k: v for k, v in files.items() if k != "manifest.json"})
    files["manifest.json"] = mf.dumps(manifest)
    path = Bundle(files).save(tmp_path / "shifted.mpk")
    result = runner.invoke(cli, ["verify", str(path)])
    assert result.exit_code == 6, result.output
    assert "digests: ok" in result.stdout and "verdict: FAIL: the files are intact" in result.stdout
    report = _json(runner.invoke(cli, ["verify", str(path), "--json"]))
    assert report["digests_ok"] is True and report["pass"] is False
    assert report["parity"]["max_abs_error"] == pytest.approx(0.01, rel=1e-3)


def test_unsafe_archive_names_the_entry(runner, iris_bundle, tmp_path):
    import zipfile

    path = tmp_path / "evil.mpk"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in iris_bundle.files.items():
            zf.writestr(name, data)
        zf.writestr("../outside.txt", b"x")
    result = runner.invoke(cli, ["verify", str(path), "--json"])
    assert result.exit_code == 5
    report = _json(result)
    assert "'../outside.txt' leaves the bundle" in report["error"] and report["files"] == []
    assert not (tmp_path.parent / "outside.txt").exists()


def test_newer_format_is_refused(runner, iris_bundle, tmp_path):
    d = iris_bundle.save(tmp_path / "b")
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["format"] = "modelport/7"
    (d / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(cli, ["verify", str(d)])
    assert result.exit_code == 5
    assert "newer than this modelport reads" in result.stdout
    assert "cannot be loaded safely" in result.stdout


def test_nonexistent_bundle(runner, tmp_path):
    result = runner.invoke(cli, ["verify", str(tmp_path / "nope.mpk"), "--json"])
    assert result.exit_code == 5
    assert "no such bundle" in _json(result)["error"]


def test_help_documents_exit_codes(runner):
    result = runner.invoke(cli, ["verify", "--help"])
    assert result.exit_code == 0
    assert "0  every digest matches" in result.stdout and "5  the bundle is damaged" in result.stdout


def test_python_dash_m_exit_codes(saved):
    path, d = saved
    ok = subprocess.run([sys.executable, "-m", "modelport", "verify", str(path)], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "verdict: PASS" in ok.stdout
    data = bytearray((d / "model.onnx").read_bytes())
    data[10] ^= 0x01
    (d / "model.onnx").write_bytes(bytes(data))
    bad = subprocess.run([sys.executable, "-m", "modelport", "verify", str(d)], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 5
    assert "model.onnx" in bad.stdout and "DIGEST" in bad.stdout


# ------------------------------------------------------------------ --original MODEL_FILE --data FILE


@pytest.fixture(scope="module")
def original(iris, tmp_path_factory):
    """A logistic regression bundle, the model as a joblib file, fresh rows as CSV, and a different model."""
    import joblib
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import modelport as mp

    X, y = iris
    root = tmp_path_factory.mktemp("original")
    model = LogisticRegression(max_iter=2000).fit(X, y)
    other = LogisticRegression(C=0.01, max_iter=2000).fit(X, y)
    bundle = mp.pack(model, X, name="lr").save(root / "lr.mpk")
    joblib.dump(model, root / "lr.joblib")
    joblib.dump(other, root / "other.joblib")
    rng = np.random.default_rng(5)
    fresh = X[rng.integers(0, len(X), 80)] + rng.normal(scale=0.2, size=(80, 4))
    # columns in another order than the bundle's: they are matched by name
    pd.DataFrame(fresh, columns=["f0", "f1", "f2", "f3"])[["f3", "f1", "f0", "f2"]].to_csv(root / "new.csv", index=False)
    pd.DataFrame(fresh[:, :3], columns=["f0", "f1", "f2"]).to_csv(root / "short.csv", index=False)
    return root, bundle


def test_against_the_original_model(runner, original):
    root, bundle = original
    args = ["verify", str(bundle), "--original", str(root / "lr.joblib"), "--data", str(root / "new.csv"),
            "--trust-pickle"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Against the original model" in result.stdout and "80 rows from" in result.stdout
    report = _json(runner.invoke(cli, [*args, "--json"]))
    assert report["pass"] is True
    assert report["original"]["parity"]["samples"] == 80
    assert report["original"]["parity"]["label_agreement"] == 1.0


def test_a_different_original_fails(runner, original):
    root, bundle = original
    result = runner.invoke(cli, ["verify", str(bundle), "--original", str(root / "other.joblib"), "--data",
                                 str(root / "new.csv"), "--trust-pickle", "--json"])
    assert result.exit_code == 6
    report = _json(result)
    assert report["digests_ok"] is True and report["parity"]["pass"] is True
    assert report["original"]["parity"]["pass"] is False and report["pass"] is False


def test_pickles_need_trust(runner, original):
    root, bundle = original
    result = runner.invoke(cli, ["verify", str(bundle), "--original", str(root / "lr.joblib"), "--data",
                                 str(root / "new.csv")])
    assert result.exit_code == 4
    assert "is a pickle" in result.stderr and "--trust-pickle" in result.stderr


def test_original_needs_data_and_fitting_rows(runner, original):
    root, bundle = original
    result = runner.invoke(cli, ["verify", str(bundle), "--original", str(root / "lr.joblib")])
    assert result.exit_code == 2 and "--original and --data go together" in result.output
    result = runner.invoke(cli, ["verify", str(bundle), "--original", str(root / "lr.joblib"), "--data",
                                 str(root / "short.csv"), "--trust-pickle"])
    assert result.exit_code == 2
    assert "short.csv lacks column(s) the model reads: f3." in result.stderr
