"""The TensorFlow SavedModel converter: the serving signature through tf2onnx, parity with the
signature itself on fresh data (and with the Keras model it was exported from), classifier and
regressor heads, several named inputs and outputs, batches of one and of none; SavedModels that
lack the signature, run file or Python operations, hold links or take strings; the installed
console script."""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport as mp
from modelport.convert.files import detect, load_model_file
from modelport.convert.tensorflow import SavedModelDir
from modelport.errors import ConversionError, InputError

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
keras = pytest.importorskip("keras")
L = keras.layers

BIN = Path(sysconfig.get_path("scripts"))
MEAN = np.array([5.0, -300.0, 50.0, 2.0])
SCALE = np.array([1.0, 100.0, 30.0, 0.01])


def features(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, 4)) * SCALE + MEAN).astype(np.float32)


class Scorer(tf.Module):
    """A hand-written TensorFlow model: two named inputs, two named outputs."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.normal(size=(3, 2)).astype("float32"))
        self.table = tf.Variable(rng.normal(size=(10, 2)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="dense"),
                                  tf.TensorSpec([None], tf.int64, name="bucket")])
    def serve(self, dense, bucket):
        z = tf.matmul(dense, self.w) + tf.gather(self.table, bucket)
        return {"score": tf.reduce_sum(z, axis=1), "logits": z}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def leaky(self, x):
        tf.io.write_file(tf.constant(self.leak_path), tf.strings.as_string(x[0, 0]))
        return {"y": tf.matmul(x, self.w)}

    leak_path = ""


@pytest.fixture(scope="module")
def keras_export(tmp_path_factory):
    """A Keras classifier with an adapted Normalization, exported as a SavedModel (model.export)."""
    keras.utils.set_random_seed(0)
    norm = L.Normalization()
    norm.adapt(features(400, 0))
    model = keras.Sequential([keras.Input((4,), name="x"), norm, L.Dense(16, activation="relu"),
                              L.BatchNormalization(), L.Dense(3, activation="softmax")])
    model.predict(features(2, 9), verbose=0)
    path = tmp_path_factory.mktemp("sm") / "classifier"
    model.export(str(path), verbose=False)
    return model, path


@pytest.fixture(scope="module")
def scorer_dir(tmp_path_factory):
    module = Scorer()
    path = tmp_path_factory.mktemp("sm") / "scorer"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve, "other": module.serve})
    return module, path


def scorer_data(n: int, seed: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    return {"dense": r.normal(size=(n, 3)).astype("float32"), "bucket": r.integers(0, 10, n).astype("int64")}


def test_a_keras_export_is_a_classifier_matching_keras_and_the_signature(keras_export, tmp_path):
    model, path = keras_export
    assert detect(path) == "tf-saved-model"
    sm = load_model_file(path)
    b = mp.load(mp.pack(sm, features(100, 1), name="clf").save(tmp_path / "clf.mpk"))
    assert b.task == "classification" and b.classes == [0, 1, 2] and b.manifest["parity"]["pass"]
    assert [t.name for t in b.signature.inputs] == ["x"] and b.signature.column_names == ["f0", "f1", "f2", "f3"]
    assert b.manifest["source"]["framework"] == "tensorflow" and b.manifest["source"]["signature"] == "serving_default"
    fresh = features(150, 2)
    want = model.predict(fresh, verbose=0)
    np.testing.assert_allclose(b.predict(fresh)["probabilities"], want, atol=1e-5)
    assert b.predict(fresh)["label"].tolist() == want.argmax(1).tolist()
    np.testing.assert_allclose(b.predict(fresh[:1])["probabilities"], want[:1], atol=1e-5)
    assert b.predict(fresh[:0])["probabilities"].shape == (0, 3)
    # the adapted statistics are constants of the graph: one input, not three
    assert len(b.onnx_model.graph.input) == 1
    # classes by name
    named = mp.pack(sm, features(100, 1), options={"classes": ["a", "b", "c"]})
    assert named.predict(fresh[:5])["label"].tolist() == [["a", "b", "c"][i] for i in want[:5].argmax(1)]


def test_named_inputs_and_outputs_of_a_tf_module(scorer_dir):
    module, path = scorer_dir
    sample = scorer_data(50, 0)
    b = mp.pack(SavedModelDir.read(path), sample)
    assert b.task == "tensor"  # two outputs stay tensors under the signature's names
    assert sorted(t.name for t in b.signature.inputs) == ["bucket", "dense"]
    assert [o.name for o in b.signature.outputs] == ["logits", "score"]
    fresh = scorer_data(80, 1)
    want = module.serve(tf.constant(fresh["dense"]), tf.constant(fresh["bucket"]))
    got = b.predict(fresh)
    np.testing.assert_allclose(got["score"], want["score"].numpy(), atol=1e-5)
    np.testing.assert_allclose(got["logits"], want["logits"].numpy(), atol=1e-5)
    one = b.predict({k: v[:1] for k, v in fresh.items()})
    np.testing.assert_allclose(one["score"], want["score"].numpy()[:1], atol=1e-5)
    empty = b.predict({k: v[:0] for k, v in fresh.items()})
    assert empty["logits"].shape == (0, 2) and empty["score"].shape == (0,)
    # the first output as a regressor, or the logits as a classifier (a softmax is added)
    reg = mp.pack(SavedModelDir.read(path), sample, options={"task": "regression"})
    np.testing.assert_allclose(reg.predict(fresh)["prediction"], want["logits"].numpy(), atol=1e-5)


def test_a_loaded_savedmodel_in_memory(keras_export):
    model, path = keras_export
    loaded = tf.saved_model.load(str(path))
    b = mp.pack(loaded, features(50, 7))
    fresh = features(30, 8)
    np.testing.assert_allclose(b.predict(fresh)["probabilities"], model.predict(fresh, verbose=0), atol=1e-5)
    with pytest.raises(ConversionError, match=r"tf\.Module objects with a serving signature"):
        mp.pack(tf.Module(), features(5, 0))


def test_a_dataframe_feeds_per_column_inputs(tmp_path):
    class PerColumn(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="age"),
                                      tf.TensorSpec([None, 1], tf.float32, name="income")])
        def serve(self, age, income):
            return {"risk": tf.sigmoid(0.05 * (age - 40.0) - 0.3 * income)}

    module = PerColumn()
    tf.saved_model.save(module, str(tmp_path / "pc"), signatures={"serving_default": module.serve})
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.uniform(18, 90, 60), "income": rng.normal(3, 1, 60)})
    b = mp.pack(SavedModelDir.read(tmp_path / "pc"), frame)
    assert b.task == "classification" and b.classes == [0, 1]  # one sigmoid column
    assert [c.name for c in b.signature.columns] == ["age", "income"]
    want = 1 / (1 + np.exp(-(0.05 * (frame.age - 40) - 0.3 * frame.income)))
    np.testing.assert_allclose(b.predict(frame)["probabilities"][:, 1], want, atol=1e-5)


def test_verify_in_a_session_that_did_not_pack(keras_export, tmp_path):
    _, path = keras_export
    b = mp.load(mp.pack(SavedModelDir.read(path), features(60, 3)).save(tmp_path / "v.mpk"))
    assert mp.verify(b, SavedModelDir.read(path), features(90, 4)).passed


def test_a_savedmodel_without_the_serving_signature(scorer_dir, tmp_path):
    module, _ = scorer_dir
    tf.saved_model.save(module, str(tmp_path / "nosig"), signatures={"predict": module.serve})
    sample = scorer_data(20, 0)
    with pytest.raises(ConversionError, match=r"no signature 'serving_default'; it has 'predict'"):
        mp.pack(SavedModelDir.read(tmp_path / "nosig"), sample)
    b = mp.pack(SavedModelDir.read(tmp_path / "nosig"), sample, options={"signature": "predict"})
    assert b.manifest["source"]["signature"] == "predict"
    empty = tmp_path / "empty"
    tf.saved_model.save(tf.Module(), str(empty))
    with pytest.raises(ConversionError, match="it has none"):
        mp.pack(SavedModelDir.read(empty), sample)


def test_file_operations_are_refused_unless_trusted(tmp_path):
    module = Scorer()
    module.leak_path = str(tmp_path / "written-by-the-model.txt")
    tf.saved_model.save(module, str(tmp_path / "leaky"), signatures={"serving_default": module.leaky})
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    with pytest.raises(ConversionError, match=r"runs the operation WriteFile \(node ") as info:
        mp.pack(SavedModelDir.read(tmp_path / "leaky"), x)
    assert "--trust-code" in str(info.value)
    assert not (tmp_path / "written-by-the-model.txt").exists()
    # trusted, TensorFlow runs it (the reference answers write the file); the bundle holds no file operation
    b = mp.pack(SavedModelDir.read(tmp_path / "leaky", trust_code=True), x)
    assert (tmp_path / "written-by-the-model.txt").exists()
    assert not any("File" in n.op_type for n in b.onnx_model.graph.node)


UNSAFE_OPS = ["ReadFile", "WriteFile", "MatchingFiles", "PyFunc", "EagerPyFunc", "SaveV2", "RestoreV2",
              "LoadAndRemapMatrix", "PrintV2", "WriteScalarSummary", "TFRecordDataset", "FixedLengthRecordReaderV2",
              "InitializeTableFromTextFileV2", "ImmutableConst", "DecodeProtoV2", "EncodeProto", "RpcCall",
              "GcsConfigureCredentials", "CollectiveReduceV2", "_Send", "_Recv", "DebugIdentityV3", "CheckpointV2"]
SAFE_OPS = ["MatMul", "BiasAdd", "Relu", "Softmax", "Sigmoid", "ReadVariableOp", "VarHandleOp", "Identity",
            "StatefulPartitionedCall", "PartitionedCall", "ConcatV2", "GatherV2", "Reshape", "If", "While",
            "Placeholder", "Const", "NoOp", "Conv2D", "FusedBatchNormV3", "ResourceGather", "Cast", "Select"]


@pytest.mark.parametrize("op", UNSAFE_OPS)
def test_operations_that_reach_outside_the_process_are_unsafe(op):
    from modelport.convert.tensorflow import is_unsafe_op

    assert is_unsafe_op(op)


@pytest.mark.parametrize("op", SAFE_OPS)
def test_operations_of_ordinary_networks_are_safe(op):
    from modelport.convert.tensorflow import is_unsafe_op

    assert not is_unsafe_op(op)


def test_links_strings_and_non_savedmodels_are_refused(scorer_dir, tmp_path):
    _, path = scorer_dir
    import shutil

    copy = tmp_path / "linked"
    shutil.copytree(path, copy)
    os.symlink("/etc/passwd", copy / "variables" / "extra")
    with pytest.raises(ConversionError, match="symbolic link"):
        SavedModelDir.read(copy)

    class Text(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            return {"n": tf.strings.length(examples)}

    module = Text()
    tf.saved_model.save(module, str(tmp_path / "text"), signatures={"serving_default": module.serve})
    with pytest.raises(ConversionError, match="takes 'examples' as str"):
        mp.pack(SavedModelDir.read(tmp_path / "text"), np.array(["a", "b"]))
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        detect(tmp_path / "plain")
    with pytest.raises(ConversionError, match=r"must have shape"):
        mp.pack(SavedModelDir.read(path), {"dense": np.zeros((3, 5), "float32"), "bucket": np.zeros(3, "int64")})


def _modelport(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(cwd), "LANG": "C.UTF-8",
           "MODELPORT_HOME": str(cwd / "home")}
    return subprocess.run([str(BIN / "modelport"), *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600, check=False)


def test_console_script_packs_a_savedmodel_directory(keras_export, scorer_dir, tmp_path):
    model, path = keras_export
    names = ["a", "b", "c", "d"]
    pd.DataFrame(features(80, 5), columns=names).to_parquet(tmp_path / "sample.parquet")
    r = _modelport("pack", path, "sample.parquet", "-o", "tf.mpk", "--classes", "x,y,z", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["parity"]["pass"] and summary["classes"] == ["x", "y", "z"]
    fresh = features(40, 6)
    b = mp.load(tmp_path / "tf.mpk")
    np.testing.assert_allclose(b.predict(pd.DataFrame(fresh, columns=names))["probabilities"],
                               model.predict(fresh, verbose=0), atol=1e-5)
    # verified against the directory on fresh rows, by the installed script too
    pd.DataFrame(fresh, columns=names).to_parquet(tmp_path / "fresh.parquet")
    r = _modelport("verify", "tf.mpk", "--original", path, "--data", "fresh.parquet", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert json.loads(r.stdout)["original"]["parity"]["pass"]
    # another signature, by name; a missing one is a clear error and writes nothing
    _, scorer = scorer_dir
    np.savez(tmp_path / "inputs.npz", **scorer_data(30, 0))
    r = _modelport("pack", scorer, "inputs.npz", "-o", "other.mpk", "--signature", "nope", cwd=tmp_path)
    assert r.returncode == ConversionError.exit_code and "no signature 'nope'" in r.stderr
    assert not (tmp_path / "other.mpk").exists()
    r = _modelport("pack", scorer, "inputs.npz", "-o", "other.mpk", "--signature", "other", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
