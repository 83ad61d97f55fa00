"""modelport pack of MLflow model directories written by MLflow itself: the onnx flavor directly,
the sklearn / xgboost / lightgbm flavors only with --trust-pickle, MLmodel's input example as the
sample, and malformed directories refused with a clear error and nothing written."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import modelport as mp
from modelport.cli.main import cli
from modelport.convert import mlflow as mlf
from modelport.errors import ConversionError, InputError, UnsupportedModelError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """MLflow model directories of real models, saved by mlflow's own save_model."""
    import lightgbm as lgb
    import mlflow.lightgbm
    import mlflow.onnx
    import mlflow.sklearn
    import mlflow.xgboost
    import xgboost as xgb
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    root = tmp_path_factory.mktemp("mlflow-models")
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sl", "sw", "pl", "pw"]
    forest = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(X, y)
    booster = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(X, y)
    gbm = lgb.LGBMClassifier(n_estimators=8, verbose=-1).fit(X, y)
    example = X.sample(25, random_state=1)
    # pip_requirements given: MLflow would otherwise infer them by importing the model in a subprocess
    mlflow.sklearn.save_model(forest, root / "sklearn", input_example=example, serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    mlflow.sklearn.save_model(forest, root / "sklearn-skops", input_example=example,
                              skops_trusted_types=["sklearn.tree._tree.Tree"], pip_requirements=["scikit-learn"])
    mlflow.xgboost.save_model(booster, root / "xgboost", input_example=example, pip_requirements=["xgboost"])
    mlflow.lightgbm.save_model(gbm, root / "lightgbm", input_example=example, pip_requirements=["lightgbm"])
    onx = to_onnx(forest, X.values[:1].astype(np.float32), options={"zipmap": False})
    mlflow.onnx.save_model(onx, root / "onnx", input_example=X.values[:25].astype(np.float32),
                           pip_requirements=["onnxruntime"])
    mlflow.sklearn.save_model(forest, root / "no-example", serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    return {"root": root, "X": X, "models": {"sklearn": forest, "sklearn-skops": forest, "xgboost": booster,
                                              "lightgbm": gbm}}


def pack(args):
    return CliRunner().invoke(cli, ["pack", *map(str, args)])


@pytest.mark.parametrize("flavor", ["sklearn", "sklearn-skops", "xgboost", "lightgbm"])
def test_pickle_flavors_with_trust(saved, flavor, tmp_path):
    out = tmp_path / "b.mpk"
    r = pack([saved["root"] / flavor, "-o", out, "--trust-pickle", "--name", "iris"])
    assert r.exit_code == 0, r.output
    b = mp.load(out)
    X = saved["X"]
    want = saved["models"][flavor].predict_proba(X)
    got = b.predict(X)
    np.testing.assert_allclose(got["probabilities"], want, atol=1e-5)
    assert b.manifest["parity"]["pass"]
    assert b.signature.column_names == ["sl", "sw", "pl", "pw"]


@pytest.mark.parametrize("flavor", ["sklearn", "sklearn-skops", "xgboost", "lightgbm"])
def test_pickle_flavors_refused_without_trust(saved, flavor, tmp_path):
    out = tmp_path / "b.mpk"
    r = pack([saved["root"] / flavor, "-o", out])
    assert r.exit_code == 4, r.output
    name = flavor.split("-")[0]
    assert f"the {name} flavor" in r.output and "--trust-pickle" in r.output and "mlflow.onnx" in r.output
    assert not out.exists()


def test_onnx_flavor_needs_no_trust(saved, tmp_path):
    out = tmp_path / "b.mpk"
    r = pack([saved["root"] / "onnx", "-o", out, "--name", "iris-onnx"])
    assert r.exit_code == 0, r.output
    b = mp.load(out)
    X = saved["X"].values.astype(np.float32)
    np.testing.assert_allclose(b.predict(X)["probabilities"], saved["models"]["sklearn"].predict_proba(X), atol=1e-5)


def test_input_example_is_cast_to_the_signature(saved):
    m = mlf.read(saved["root"] / "sklearn", trust_pickle=True)
    assert m.flavor == "sklearn" and len(m.sample) == 25
    assert [str(t) for t in m.sample.dtypes] == ["float64"] * 4
    assert {c["name"] for c in m.signature["inputs"]} == {"sl", "sw", "pl", "pw"}


def test_a_sample_file_when_there_is_no_input_example(saved, tmp_path):
    out = tmp_path / "b.mpk"
    r = pack([saved["root"] / "no-example", "-o", out, "--trust-pickle"])
    assert r.exit_code == 2 and "no input example" in r.output and "sample" in r.output
    assert not out.exists()
    sample = tmp_path / "sample.csv"
    saved["X"].to_csv(sample, index=False)
    r = pack([saved["root"] / "no-example", sample, "-o", out, "--trust-pickle"])
    assert r.exit_code == 0, r.output


def test_a_model_file_still_needs_its_sample(tmp_path):
    r = pack([tmp_path / "model.json", "-o", tmp_path / "x.mpk"])
    assert r.exit_code == 2


# ----------------------------------------------------------------------------- malformed directories
def _copy(saved, flavor, tmp_path):
    dst = tmp_path / flavor
    shutil.copytree(saved["root"] / flavor, dst)
    return dst


def _edit(path, fn):
    doc = yaml.safe_load((path / "MLmodel").read_text())
    fn(doc)
    (path / "MLmodel").write_text(yaml.safe_dump(doc))


def test_malformed_mlmodel_files(saved, tmp_path):
    d = _copy(saved, "onnx", tmp_path)
    (d / "MLmodel").write_text("flavors: [unclosed\n  - x: {")
    with pytest.raises(ConversionError, match="not valid YAML"):
        mlf.read(d)
    (d / "MLmodel").write_text("artifact_path: model\n")
    with pytest.raises(ConversionError, match="no 'flavors'"):
        mlf.read(d)
    (d / "MLmodel").write_text("- just\n- a list\n")
    with pytest.raises(ConversionError, match="YAML mapping"):
        mlf.read(d)
    (d / "MLmodel").write_bytes(b"x" * (2 << 20))
    with pytest.raises(ConversionError, match="far larger"):
        mlf.read(d)


def test_paths_must_stay_inside_the_model_directory(saved, tmp_path):
    secret = tmp_path / "secret.onnx"
    shutil.copy(saved["root"] / "onnx" / "model.onnx", secret)
    d = _copy(saved, "onnx", tmp_path)
    _edit(d, lambda doc: doc["flavors"]["onnx"].update(data="../secret.onnx"))
    with pytest.raises(ConversionError, match="points outside the model directory"):
        mlf.read(d)
    _edit(d, lambda doc: doc["flavors"]["onnx"].update(data=str(secret)))
    with pytest.raises(ConversionError, match="points outside"):
        mlf.read(d)
    os.symlink(secret, d / "link.onnx")
    _edit(d, lambda doc: doc["flavors"]["onnx"].update(data="link.onnx"))
    with pytest.raises(ConversionError, match="link leading outside"):
        mlf.read(d)
    _edit(d, lambda doc: doc["flavors"]["onnx"].update(data="gone.onnx"))
    with pytest.raises(ConversionError, match="not there"):
        mlf.read(d)
    _edit(d, lambda doc: doc["flavors"]["onnx"].update(data=["model.onnx"]))
    with pytest.raises(ConversionError, match="relative path string"):
        mlf.read(d)


def test_flavors_modelport_does_not_read(saved, tmp_path):
    d = _copy(saved, "sklearn", tmp_path)
    _edit(d, lambda doc: doc["flavors"].pop("sklearn"))
    with pytest.raises(UnsupportedModelError, match=r"python_function loader mlflow\.sklearn"):
        mlf.read(d, trust_pickle=True)
    x = _copy(saved, "xgboost", tmp_path)
    _edit(x, lambda doc: doc["flavors"]["xgboost"].update(model_class="os.system"))
    with pytest.raises(UnsupportedModelError, match="imports nothing MLmodel names"):
        mlf.read(x, trust_pickle=True)
    s = _copy(saved, "sklearn-skops", tmp_path)
    _edit(s, lambda doc: doc["flavors"]["sklearn"].update(serialization_format="dill"))
    with pytest.raises(UnsupportedModelError, match="serialized as 'dill'"):
        mlf.read(s, trust_pickle=True)


def test_damaged_artifacts(saved, tmp_path):
    d = _copy(saved, "onnx", tmp_path)
    (d / "model.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ConversionError):
        mlf.read(d)
    e = _copy(saved, "xgboost", tmp_path)
    (e / "input_example.json").write_text("{not json")
    with pytest.raises(ConversionError, match="input example is not valid JSON"):
        mlf.read(e, trust_pickle=True)
    k = _copy(saved, "sklearn", tmp_path / "k")
    (k / "model.pkl").write_bytes(b"\x80\x04truncated")
    with pytest.raises(ConversionError, match="cannot unpickle"):
        mlf.read(k, trust_pickle=True)


def test_cli_error_for_a_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "d").mkdir()
    r = pack([tmp_path / "d", "-o", tmp_path / "x.mpk"])
    assert r.exit_code == 2 and "without an MLmodel file" in r.output


def test_read_returns_the_model_for_the_python_api(saved):
    m = mlf.read(saved["root"] / "onnx")
    assert m.flavor == "onnx" and m.sample.shape == (25, 4) and "python_function" in m.flavors
    b = mp.pack(m.model, m.sample, name="iris")
    assert b.task == "tensor"
    with pytest.raises(InputError):
        raise mlf.describe_missing_sample(m)
    # mlflow.onnx.save_model with an ndarray example records no signature; a tensor one when it does
    assert m.signature is None or json.loads(json.dumps(m.signature))["inputs"][0]["type"] == "tensor"
