"""``modelport pack`` and ``modelport predict``: model files of every supported format packed and
scored end to end (in-process with CliRunner, and once through ``python -m modelport``), checked
against each library's own predictions on fresh rows, and the errors users can cause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import modelport as mp
from modelport.cli.main import cli
from modelport.tables import read_table

COLUMNS = ["a", "b", "c", "d"]


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def frame(n: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n, 4)), columns=COLUMNS)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("packcli")
    train = frame(300, 0)
    train.to_csv(d / "sample.csv", index=False)
    fresh = frame(64, 1)
    fresh.loc[0, :] = 0.0  # a row of zeros, and one of large values: edge cases on fresh data
    fresh.loc[1, :] = [50.0, -50.0, 1e3, -1e3]
    fresh.assign(id=np.arange(100, 164)).to_csv(d / "fresh.csv", index=False)
    return d


@pytest.fixture(scope="module")
def xgb_file(work) -> Path:
    xgb = pytest.importorskip("xgboost")
    train = read_table(work / "sample.csv")
    xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(train, (train.a + train.b > 0).astype(int)).save_model(
        work / "xgb.json"
    )
    return work / "xgb.json"


@pytest.fixture(scope="module")
def xgb_bundle(work, xgb_file) -> Path:
    r = run("pack", xgb_file, work / "sample.csv", "-o", work / "xgb.mpk", "--name", "churn", "--version", "3")
    assert r.exit_code == 0, r.output
    return work / "xgb.mpk"


def expected_xgb_ubj(work, fresh):
    import xgboost as xgb

    train = read_table(work / "sample.csv")
    model = xgb.XGBRegressor(n_estimators=6).fit(train, train.a * 2 - train.c)
    model.save_model(work / "xgbreg.ubj")
    return work / "xgbreg.ubj", [], {"prediction": model.predict(fresh)}


def expected_lightgbm(work, fresh):
    lgb = pytest.importorskip("lightgbm")
    train = read_table(work / "sample.csv")
    model = lgb.LGBMClassifier(n_estimators=6, verbose=-1).fit(train, (train.b > 0).astype(int))
    model.booster_.save_model(work / "lgb.txt")
    booster = lgb.Booster(model_file=work / "lgb.txt")
    return work / "lgb.txt", [], {"proba_1": booster.predict(fresh)}


def expected_catboost(work, fresh):
    cb = pytest.importorskip("catboost")
    train = read_table(work / "sample.csv")
    model = cb.CatBoostClassifier(iterations=6, verbose=0, random_seed=0).fit(train, (train.c > 0).astype(int))
    model.save_model(work / "cat.cbm")
    loaded = cb.CatBoostClassifier().load_model(work / "cat.cbm")
    return work / "cat.cbm", [], {"proba_1": loaded.predict_proba(fresh)[:, 1]}


def expected_joblib(work, fresh):
    joblib = pytest.importorskip("joblib")
    from sklearn.ensemble import RandomForestRegressor

    train = read_table(work / "sample.csv")
    model = RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0).fit(train, train.d)
    joblib.dump(model, work / "rf.joblib")
    return work / "rf.joblib", ["--trust-pickle"], {"prediction": model.predict(fresh)}


def expected_torch_pt2(work, fresh):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).eval()
    x = torch.randn(5, 4)
    ep = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, work / "net.pt2")
    # the sample names the columns the bundle will read
    read_table(work / "sample.csv").to_csv(work / "net_sample.csv", index=False)
    with torch.no_grad():
        probs = torch.softmax(module(torch.tensor(fresh.to_numpy(), dtype=torch.float32)), 1).numpy()
    return work / "net.pt2", ["--classes", "x,y,z"], {f"proba_{c}": probs[:, i] for i, c in enumerate("xyz")}


def expected_onnx(work, fresh):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    w = np.array([[0.5], [-1.0], [2.0], [0.25]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "w"], ["y"]), helper.make_node("Relu", ["y"], ["out"])],
        "relu_linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 1])],
        [onnx.numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, work / "linear.onnx")
    out = ort.InferenceSession(str(work / "linear.onnx")).run(None, {"X": fresh.to_numpy(dtype=np.float32)})[0]
    return work / "linear.onnx", [], {"out": out[:, 0]}


@pytest.mark.parametrize(
    "make", [expected_xgb_ubj, expected_lightgbm, expected_catboost, expected_joblib, expected_torch_pt2, expected_onnx]
)
def test_pack_and_predict_every_format_matches_the_library(work, make):
    fresh = read_table(work / "fresh.csv")[COLUMNS]
    model_file, extra, expected = make(work, fresh)
    out = work / f"{model_file.stem}.mpk"
    r = run("pack", model_file, work / "sample.csv", "-o", out, "--overwrite", *extra)
    assert r.exit_code == 0, r.output
    assert f"packed {model_file.stem}" in r.output and "PASS" in r.output and "sha256:" in r.output
    b = mp.load(out)
    assert b.name == model_file.stem and mp.check(b).passed
    r = run("predict", out, work / "fresh.csv", "-o", work / f"{model_file.stem}.csv", "--keep", "id")
    assert r.exit_code == 0, r.output
    got = read_table(work / f"{model_file.stem}.csv")
    assert got.columns[0] == "id" and got["id"].tolist() == list(range(100, 164))
    for column, values in expected.items():
        np.testing.assert_allclose(got[column].to_numpy(dtype=float), values, rtol=1e-5, atol=1e-5, err_msg=column)


def test_xgboost_json_classifier_and_output_formats(work, xgb_bundle, xgb_file):
    import xgboost as xgb

    model = xgb.XGBClassifier()
    model.load_model(xgb_file)
    fresh = read_table(work / "fresh.csv")
    proba = model.predict_proba(fresh[COLUMNS])[:, 1]

    r = run("predict", xgb_bundle, work / "fresh.csv")  # CSV on stdout by default
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "label,proba_0,proba_1" and len(lines) == 65
    r = run("predict", xgb_bundle, work / "fresh.csv", "--format", "jsonl", "--keep-all")
    records = [json.loads(line) for line in r.output.splitlines()]
    assert list(records[0]) == [*COLUMNS, "id", "label", "proba_0", "proba_1"]
    np.testing.assert_allclose([rec["proba_1"] for rec in records], proba, atol=1e-6)
    assert [rec["label"] for rec in records] == model.predict(fresh[COLUMNS]).tolist()

    r = run("predict", xgb_bundle, work / "fresh.csv", "-o", work / "p.parquet")
    assert r.exit_code == 0 and r.output == ""
    np.testing.assert_allclose(read_table(work / "p.parquet")["proba_1"], proba, atol=1e-6)
    r = run("predict", xgb_bundle, work / "fresh.csv", "-o", work / "p.out", "--format", "json")
    assert r.exit_code == 0
    assert len(json.loads((work / "p.out").read_text())) == 64

    # an input column named like a prediction column is kept under another name
    fresh.assign(label="truth").to_csv(work / "with_label.csv", index=False)
    r = run("predict", xgb_bundle, work / "with_label.csv", "--keep", "label", "--format", "jsonl")
    assert r.exit_code == 0, r.output
    assert list(json.loads(r.output.splitlines()[0])) == ["input_label", "label", "proba_0", "proba_1"]


def test_pack_records_metadata(work, xgb_file):
    parent = "sha256:" + "ab" * 32
    r = run(
        "pack", xgb_file, work / "sample.csv", "-o", work / "meta", "--name", "churn", "--version", "7",
        "--description", "weekly churn", "--metric", "auc=0.91", "--metric", "f1=0.5", "--tag", "team=growth",
        "--parent", parent, "--reference-rows", "20", "--json",
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    b = mp.load(work / "meta")  # a directory bundle
    assert summary["digest"] == b.digest and summary["parity"]["pass"] is True
    m = b.manifest
    assert (m["name"], m["version"], m["description"]) == ("churn", "7", "weekly churn")
    assert m["metrics"] == {"auc": 0.91, "f1": 0.5} and m["tags"] == {"team": "growth"}
    assert m["lineage"]["parent"] == parent
    assert m["source"]["framework"] == "xgboost"


def test_overwrite_tolerance_and_nothing_written_on_failure(work, xgb_bundle, xgb_file):
    before = xgb_bundle.read_bytes()
    r = run("pack", xgb_file, work / "sample.csv", "-o", xgb_bundle)
    assert r.exit_code == 2 and "already exists" in r.output and "--overwrite" in r.output
    assert xgb_bundle.read_bytes() == before

    strict = work / "strict.mpk"
    r = run("pack", xgb_file, work / "sample.csv", "-o", strict, "--tolerance-abs", "0")
    assert r.exit_code == 6, r.output
    assert "does not reproduce" in r.output and not strict.exists()
    assert not [p for p in work.iterdir() if p.name.startswith(".strict")]  # no temporary leftovers
    r = run("pack", xgb_file, work / "sample.csv", "-o", strict, "--tolerance-abs", "0", "--accept-mismatch")
    assert r.exit_code == 0 and "ACCEPTED MISMATCH" in r.output
    assert mp.load(strict).manifest["parity"]["accepted_mismatch"] is True

    r = run("pack", xgb_file, work / "sample.csv", "-o", xgb_bundle, "--overwrite", "--version", "4")
    assert r.exit_code == 0 and mp.load(xgb_bundle).version == "4"


def test_pickles_need_trust(work):
    from sklearn.linear_model import LogisticRegression

    joblib = pytest.importorskip("joblib")
    train = read_table(work / "sample.csv")
    joblib.dump(LogisticRegression().fit(train, train.a > 0), work / "lr.pkl")
    marker = work / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    joblib.dump(Evil(), work / "evil.joblib")
    for name in ("lr.pkl", "evil.joblib"):
        r = run("pack", work / name, work / "sample.csv", "-o", work / f"{name}.mpk")
        assert r.exit_code == 4, r.output
        assert "runs code" in r.output and "--trust-pickle" in r.output
        assert not (work / f"{name}.mpk").exists()
    assert not marker.exists()
    r = run("pack", work / "lr.pkl", work / "sample.csv", "-o", work / "lr.mpk", "--trust-pickle")
    assert r.exit_code == 0, r.output


def test_pt2_with_pickled_payload_is_refused_unless_trusted(work):
    torch = pytest.importorskip("torch")
    import pickle
    import zipfile

    module = torch.nn.Linear(4, 2)
    ep = torch.export.export(module, (torch.randn(3, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, work / "ok.pt2")
    marker = work / "pt2-pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with zipfile.ZipFile(work / "ok.pt2") as src, zipfile.ZipFile(work / "evil.pt2", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if "sample_inputs" in info.filename:
                data = pickle.dumps(Evil())  # torch falls back to the full unpickler for this entry
            dst.writestr(info, data)
    np.save(work / "x4.npy", np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
    r = run("pack", work / "evil.pt2", work / "x4.npy", "-o", work / "evil.mpk")
    assert r.exit_code == 4, r.output
    assert "pickled code" in r.output and "--trust-pickle" in r.output and not marker.exists()
    # the intact archive packs, with its example input given by name in an .npz file
    np.savez(work / "x4.npz", input=np.load(work / "x4.npy"))  # Linear.forward(input)
    r = run("pack", work / "ok.pt2", work / "x4.npz", "-o", work / "ok.mpk", "--task", "regression")
    assert r.exit_code == 0, r.output
    x = np.random.default_rng(9).normal(size=(7, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(mp.load(work / "ok.mpk").predict(x)["prediction"], module(torch.from_numpy(x)).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--metric", "auc=high"], 2, "--metric auc must be a number"),
        (["--metric", "auc"], 2, "takes KEY=VALUE"),
        (["--parent", "abc"], 2, "--parent must be a bundle digest"),
        (["--task", "classification"], 2, "apply to torch and ONNX models"),
        (["--tolerance-rel", "-1"], 2, "must be a number >= 0"),
    ],
)
def test_pack_option_errors(work, xgb_file, args, code, needle):
    r = run("pack", xgb_file, work / "sample.csv", "-o", work / "never.mpk", *args)
    assert r.exit_code == code, r.output
    assert needle in r.output and r.output.startswith("error: ")
    assert not (work / "never.mpk").exists()


def test_pack_bad_files(work, xgb_file):
    data = xgb_file.read_bytes()
    (work / "cut.json").write_bytes(data[: len(data) // 2])
    r = run("pack", work / "cut.json", work / "sample.csv", "-o", work / "cut.mpk")
    assert r.exit_code == 4 and "XGBoost cannot load" in r.output
    (work / "mystery.bin").write_bytes(b"\x00\x01 what is this")
    r = run("pack", work / "mystery.bin", work / "sample.csv", "-o", work / "m.mpk")
    assert r.exit_code == 4 and "cannot tell which kind of model file" in r.output
    r = run("pack", work / "nope.json", work / "sample.csv", "-o", work / "m.mpk")
    assert r.exit_code == 2 and "no such model file" in r.output
    np.save(work / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = run("pack", xgb_file, work / "objects.npy", "-o", work / "m.mpk")
    assert r.exit_code == 2 and "never unpickles" in r.output
    (work / "cut.csv").write_text("a,b,c,d\n1,2,3,4\n5,6")
    r = run("pack", xgb_file, work / "cut.csv", "-o", work / "m.mpk")
    assert r.exit_code == 2 and "truncated" in r.output
    assert not (work / "m.mpk").exists() and not (work / "cut.mpk").exists()


def test_predict_errors(work, xgb_bundle):
    fresh = read_table(work / "fresh.csv")
    fresh.drop(columns=["b", "d"]).to_csv(work / "missing.csv", index=False)
    r = run("predict", xgb_bundle, work / "missing.csv")
    assert r.exit_code == 2
    assert "missing column(s): b, d" in r.output and "unexpected column(s): id" in r.output

    wrong = fresh.astype({"c": str})
    wrong.loc[3, "c"] = "lots"
    wrong.to_csv(work / "wrong.csv", index=False)
    r = run("predict", xgb_bundle, work / "wrong.csv")
    assert r.exit_code == 2 and "column 'c' must be numeric" in r.output

    r = run("predict", xgb_bundle, work / "fresh.csv", "--keep", "customer")
    assert r.exit_code == 2 and "--keep names column(s)" in r.output and "customer" in r.output
    r = run("predict", work / "no-such.mpk", work / "fresh.csv")
    assert r.exit_code == 5 and "no such bundle" in r.output
    damaged = work / "damaged.mpk"
    data = bytearray(xgb_bundle.read_bytes())
    damaged.write_bytes(bytes(data[: len(data) - 40]))
    r = run("predict", damaged, work / "fresh.csv")
    assert r.exit_code == 5, r.output
    (work / "existing.csv").write_text("keep me")
    r = run("predict", xgb_bundle, work / "fresh.csv", "-o", work / "existing.csv", "--no-overwrite")
    assert r.exit_code == 2 and (work / "existing.csv").read_text() == "keep me"


def test_predict_from_registry_uri(work, xgb_bundle):
    r = run("push", xgb_bundle, "--name", "churn")
    assert r.exit_code == 0, r.output
    r = run("predict", "models:/churn/1", work / "fresh.csv", "--format", "jsonl")
    assert r.exit_code == 0, r.output
    assert len(r.output.splitlines()) == 64 and "proba_1" in r.output


def test_python_dash_m(work, xgb_file, tmp_path):
    env = {**os.environ, "MODELPORT_HOME": str(tmp_path / "home")}
    out = tmp_path / "sub.mpk"
    cmd = [sys.executable, "-m", "modelport"]
    p = subprocess.run([*cmd, "pack", xgb_file, work / "sample.csv", "-o", out], capture_output=True, text=True,
                       env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "PASS" in p.stdout and out.exists()
    p = subprocess.run([*cmd, "predict", out, work / "fresh.csv", "--keep", "id"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "id,label,proba_0,proba_1"
    p = subprocess.run([*cmd, "predict", out, work / "sample.csv", "--keep", "nope"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 2 and p.stderr.startswith("error: --keep names column(s)")


# ---------------------------------------------------------------------- model files, loaded directly
def test_load_model_file_returns_the_library_objects(work, xgb_file):
    import xgboost as xgb

    from modelport.convert.files import detect, load_model_file

    clf = load_model_file(xgb_file)
    assert isinstance(clf, xgb.XGBClassifier) and detect(xgb_file) == "xgboost-json"
    train = read_table(work / "sample.csv")
    ranker = xgb.train({"objective": "rank:pairwise"}, xgb.DMatrix(train, label=train.a > 0, group=[300]), 2)
    ranker.save_model(work / "rank.ubj")
    assert type(load_model_file(work / "rank.ubj")) is xgb.Booster
    reference = clf.predict_proba(train)
    np.testing.assert_array_equal(load_model_file(xgb_file).predict_proba(train), reference)

    cb = pytest.importorskip("catboost")
    cb.CatBoostRegressor(iterations=3, verbose=0).fit(train, train.a).save_model(work / "reg.cbm")
    assert isinstance(load_model_file(work / "reg.cbm"), cb.CatBoostRegressor)


def test_load_model_file_onnx_by_content_and_passthrough_classifier(work, xgb_bundle):
    from modelport.convert.files import detect, load_model_file
    from modelport.convert.passthrough import OnnxModel

    b = mp.load(xgb_bundle)
    (work / "graph.bin").write_bytes(b.model_bytes)  # ONNX without the extension
    assert detect(work / "graph.bin") == "onnx"
    model = load_model_file(work / "graph.bin")
    assert isinstance(model, OnnxModel)
    train = read_table(work / "sample.csv")
    again = mp.pack(model, train, options={"task": "classification", "classes": [0, 1]})
    assert again.manifest["source"]["converter"] == "passthrough" and again.signature.column_names == COLUMNS
    fresh = read_table(work / "fresh.csv")[COLUMNS]
    np.testing.assert_array_equal(again.predict(fresh)["probabilities"], b.predict(fresh)["probabilities"])
    # verify() in a session that did not pack it: a model object the converter has never seen
    assert mp.verify(mp.load(again.save(work / "again.mpk")), load_model_file(work / "graph.bin"), fresh).passed


@pytest.mark.parametrize(
    ("name", "make"),
    [("lgb.txt", expected_lightgbm), ("cat.cbm", expected_catboost), ("net.pt2", expected_torch_pt2),
     ("xgbreg.ubj", expected_xgb_ubj)],
)
def test_truncated_model_files_fail_cleanly(work, name, make):
    from modelport.convert.files import load_model_file
    from modelport.errors import ConversionError

    source = work / name
    if not source.exists():
        make(work, read_table(work / "fresh.csv")[COLUMNS])
    data = source.read_bytes()
    for fraction in (0.1, 0.5, 0.9, 0.99):
        cut = work / f"cut-{fraction}-{name}"
        cut.write_bytes(data[: int(len(data) * fraction)])
        # LightGBM and CatBoost crash the process on some cut-off files; the loader must refuse them first
        with pytest.raises(ConversionError):
            load_model_file(cut)


def test_torch_save_files_are_pickles(work):
    torch = pytest.importorskip("torch")
    from modelport.convert.files import load_model_file
    from modelport.errors import ConversionError, UnsupportedModelError

    module = torch.nn.Linear(4, 2)
    torch.save(module.state_dict(), work / "weights.pt")
    with pytest.raises(ConversionError, match="trust-pickle"):
        load_model_file(work / "weights.pt")
    with pytest.raises(UnsupportedModelError, match="state dict"):
        load_model_file(work / "weights.pt", trust_pickle=True)
