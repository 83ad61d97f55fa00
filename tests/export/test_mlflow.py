"""--target mlflow: MLflow itself loads the exported directory, and its pyfunc gives the bundle's answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import modelport as mp
from modelport.cli.main import cli
from modelport.export import export

from .conftest import CHURN_ROWS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def exported(bundles, tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    return {name: export(getattr(bundles, name), "mlflow", root / name).path for name in ("churn", "iris", "lin")}


def test_pyfunc_predicts_what_the_bundle_predicts(exported, bundles):
    import mlflow.pyfunc

    rng = np.random.default_rng(0)
    frames = {
        "churn": pd.DataFrame(CHURN_ROWS * 5),
        "iris": pd.DataFrame(rng.normal(5, 2, size=(12, 4)), columns=["f0", "f1", "f2", "f3"]),
        "lin": pd.DataFrame(rng.normal(size=(12, 3)), columns=["f0", "f1", "f2"]),
    }
    for name, df in frames.items():
        model = mlflow.pyfunc.load_model(str(exported[name]))
        got = model.predict(df)
        want = mp.load(getattr(bundles, name)).predict_frame(df)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    assert list(mlflow.pyfunc.load_model(str(exported["churn"])).predict(frames["churn"]).columns) == \
        ["label", "proba_0", "proba_1"]


def test_mlflow_reads_the_model_directory(exported, bundles):
    import mlflow.onnx
    from mlflow.models import Model

    m = Model.load(str(exported["churn"]))
    assert set(m.flavors) == {"onnx", "python_function"}
    assert m.flavors["python_function"]["loader_module"] == "modelport.export.mlflow"
    schema = m.get_input_schema()
    assert [(c.name, c.type.name) for c in schema.inputs] == [("age", "long"), ("plan", "string"),
                                                              ("spend", "double")]
    example = m.load_input_example(str(exported["churn"]))
    assert list(example.columns) == ["age", "plan", "spend"] and len(example) == 5
    onx = mlflow.onnx.load_model(str(exported["churn"]))
    assert onx.SerializeToString() == mp.load(bundles.churn).model_bytes
    assert m.metadata["modelport_digest"] == mp.load(bundles.churn).digest
    reqs = (exported["churn"] / "requirements.txt").read_text().splitlines()
    assert reqs[0] == f"modelport=={mp.__version__}" and any(r.startswith("onnxruntime==") for r in reqs)
    assert not list(exported["churn"].rglob("*.pkl"))  # nothing in it is a pickle


def test_mlflow_schema_check_then_the_bundles_rules(exported):
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(str(exported["churn"]))
    with pytest.raises(MlflowException, match="spend"):
        model.predict(pd.DataFrame([{"age": 40, "plan": "pro"}]))


def test_round_trip_through_pack(exported, bundles, tmp_path):
    """modelport pack reads the exported directory back (its onnx flavor, MLmodel's input example)."""
    out = tmp_path / "back.mpk"
    r = CliRunner().invoke(cli, ["pack", str(exported["iris"]), "-o", str(out), "--name", "iris"])
    assert r.exit_code == 0, r.output
    back = mp.load(out)
    original = mp.load(bundles.iris)
    rows = np.random.default_rng(1).normal(5, 2, size=(20, 4))
    assert back.signature.column_names == original.signature.column_names
    a, b = back.predict(rows), original.predict(rows)
    np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], rtol=1e-12)


def test_mlmodel_is_plain_yaml(exported):
    doc = yaml.safe_load((exported["iris"] / "MLmodel").read_text())
    assert doc["flavors"]["onnx"]["data"] == "bundle/model.onnx"
    assert json.loads(doc["signature"]["outputs"])[0]["name"] == "label"
    assert (exported["iris"] / "bundle" / "manifest.json").is_file()
