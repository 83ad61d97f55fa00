"""The Keras converter: parity with the model's own ``predict`` on fresh data for every layer family
(Normalization, Embedding, Dense, Conv1D/2D, pooling, Dropout, BatchNormalization, LSTM, GRU), dict
inputs, classifier and regressor heads, batches of one and of none; ``.keras`` files exported
through the PyTorch backend (in a worker process: this process keeps its own backend) and models in
memory through their own backend; the adapted Normalization that Keras's own ONNX export gets
wrong; untrusted files (Lambda layers, custom objects, corrupt or hostile zips); the installed
console script."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport as mp
from modelport.bundle.graph import iter_nodes
from modelport.convert.files import detect, load_model_file
from modelport.convert.keras import KerasFile
from modelport.errors import ConversionError, InputError, UnsupportedModelError

keras = pytest.importorskip("keras")
pytest.importorskip("torch")
pytest.importorskip("onnxscript")
L = keras.layers

BIN = Path(sysconfig.get_path("scripts"))
# the adapted statistics are far from 0 / 1, so that a graph that lost them is far off
MEAN = np.array([5.0, -300.0, 50.0, 2.0])
SCALE = np.array([1.0, 100.0, 30.0, 0.01])


def features(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, 4)) * SCALE + MEAN).astype(np.float32)


def _randomise_batchnorm(model: keras.Model, seed: int) -> None:
    """Moving statistics and scales away from their initial 0 / 1, as after training."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 2.0, gamma.shape).astype("float32"),
                rng.normal(0, 0.5, beta.shape).astype("float32"),
                rng.normal(0, 1.0, mean.shape).astype("float32"),
                rng.uniform(0.2, 3.0, var.shape).astype("float32"),
            ])


def _families() -> dict[str, tuple[keras.Model, object, object]]:
    """name -> (model, sample, fresh data): one small network per layer family."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    out: dict[str, tuple[keras.Model, object, object]] = {}

    norm = L.Normalization()
    norm.adapt(features(500, 0))
    mlp = keras.Sequential([keras.Input((4,), name="x"), norm, L.Dense(16, activation="relu"), L.Dropout(0.5),
                            L.BatchNormalization(), L.Dense(3, activation="softmax", name="species")], name="mlp")
    out["mlp"] = (mlp, features(120, 1), features(200, 2))

    emb = keras.Sequential([keras.Input((6,), dtype="int32", name="tokens"), L.Embedding(20, 5),
                            L.GlobalAveragePooling1D(), L.Dense(1, activation="sigmoid")], name="embedding")
    out["embedding"] = (emb, rng.integers(0, 20, (80, 6)).astype("int32"), rng.integers(0, 20, (90, 6)).astype("int32"))

    c1 = keras.Sequential([keras.Input((12, 3), name="signal"), L.Conv1D(4, 3, activation="relu"), L.MaxPooling1D(2),
                           L.Flatten(), L.Dense(2)], name="conv1d")
    out["conv1d"] = (c1, rng.normal(size=(60, 12, 3)).astype("float32"), rng.normal(size=(70, 12, 3)).astype("float32"))

    c2 = keras.Sequential([keras.Input((8, 8, 2), name="image"), L.Conv2D(4, 3, padding="same"), L.BatchNormalization(),
                           L.Activation("relu"), L.AveragePooling2D(2), L.Conv2D(3, 3), L.GlobalMaxPooling2D(),
                           L.Dense(4, activation="softmax")], name="conv2d")
    _randomise_batchnorm(c2, 1)
    out["conv2d"] = (c2, rng.normal(size=(40, 8, 8, 2)).astype("float32"), rng.normal(size=(50, 8, 8, 2)).astype("float32"))

    lstm = keras.Sequential([keras.Input((7, 3), name="steps"), L.LSTM(5), L.Dense(1)], name="lstm")
    out["lstm"] = (lstm, rng.normal(size=(50, 7, 3)).astype("float32"), rng.normal(size=(60, 7, 3)).astype("float32"))

    gru = keras.Sequential([keras.Input((7, 3), name="steps"), L.GRU(5, return_sequences=True), L.GRU(4),
                            L.Dense(3, activation="softmax")], name="gru")
    out["gru"] = (gru, rng.normal(size=(50, 7, 3)).astype("float32"), rng.normal(size=(60, 7, 3)).astype("float32"))

    num = keras.Input((3,), name="num")
    cat = keras.Input((4,), dtype="int32", name="cat")
    joined = L.Concatenate()([num, L.Flatten()(L.Embedding(10, 2)(cat))])
    dict_model = keras.Model({"num": num, "cat": cat}, L.Dense(1, name="score")(L.Dense(8, activation="tanh")(joined)))

    def dict_data(n: int, seed: int) -> dict[str, np.ndarray]:
        r = np.random.default_rng(seed)
        return {"num": r.normal(size=(n, 3)).astype("float32"), "cat": r.integers(0, 10, (n, 4)).astype("int32")}

    out["dict"] = (dict_model, dict_data(50, 3), dict_data(60, 4))
    return out


TASKS = {"mlp": "classification", "embedding": "classification", "conv1d": "regression", "conv2d": "classification",
         "lstm": "regression", "gru": "classification", "dict": "regression"}


def expected(model: keras.Model, data: object, task: str, classes: list | None = None) -> dict[str, np.ndarray]:
    raw = np.asarray(model.predict(data, verbose=0))
    if task == "classification":
        probs = raw if raw.shape[1] > 1 else np.concatenate([1 - raw, raw], axis=1)
        labels = np.asarray(classes if classes is not None else list(range(probs.shape[1])))[probs.argmax(1)]
        return {"label": labels, "probabilities": probs}
    return {"prediction": raw[:, 0] if raw.shape[1] == 1 else raw}


def assert_matches(bundle: mp.Bundle, model: keras.Model, data: object, *, classes: list | None = None) -> None:
    got = bundle.predict(data)
    want = expected(model, data, bundle.task, classes)
    for name, value in want.items():
        if value.dtype.kind in "fc":
            np.testing.assert_allclose(got[name], value, atol=2e-5, rtol=1e-4, err_msg=name)
        else:
            assert got[name].tolist() == value.tolist(), name


def take(data: object, rows: slice) -> object:
    if isinstance(data, dict):
        return {k: v[rows] for k, v in data.items()}
    return data[rows]  # type: ignore[index]


@pytest.fixture(scope="module")
def families():
    return _families()


@pytest.fixture(scope="module")
def files(families, tmp_path_factory):
    d = tmp_path_factory.mktemp("keras-files")
    paths = {}
    for name, (model, _, _) in families.items():
        paths[name] = d / f"{name}.keras"
        model.save(paths[name])
    return paths


@pytest.fixture(scope="module")
def file_bundles(families, files):
    """Every family packed from its .keras file (all through one worker process)."""
    kfs = {name: KerasFile.read(path) for name, path in files.items()}
    bundles = {name: mp.pack(kfs[name], families[name][1], name=name) for name in files}
    yield bundles
    for kf in kfs.values():
        kf.close()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_layer_family_from_a_keras_file_matches_predict(name, families, file_bundles, tmp_path):
    model, _, fresh = families[name]
    b = mp.load(file_bundles[name].save(tmp_path / f"{name}.mpk"))
    assert b.task == TASKS[name]
    assert b.manifest["parity"]["pass"]
    # a .keras file goes through the PyTorch backend first, whatever this process's Keras has
    assert b.manifest["source"]["backend"] == "torch"
    assert b.manifest["source"]["framework"] == "keras"
    # the model's own predict, here, in this process's backend: a different backend than the export's
    assert_matches(b, model, fresh)
    assert_matches(b, model, take(fresh, slice(0, 1)))  # a batch of one
    empty = b.predict(take(fresh, slice(0, 0)))  # and of none
    for out in b.signature.outputs:
        assert empty[out.name].shape[0] == 0
    assert all(s.shape[0] is None for s in b.signature.inputs), "the batch dimension must stay dynamic"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_layer_family_in_memory_matches_predict(name, families):
    model, sample, fresh = families[name]
    b = mp.pack(model, sample, name=name)
    from keras import backend

    assert b.manifest["source"]["backend"] == backend.backend()  # a model in memory: its own backend first
    assert b.task == TASKS[name] and b.manifest["parity"]["pass"]
    assert_matches(b, model, fresh)
    assert_matches(b, model, take(fresh, slice(0, 1)))


def test_input_and_output_names_are_kept(families, file_bundles):
    assert [t.name for t in file_bundles["dict"].signature.inputs] == ["num", "cat"]
    assert [t.dtype for t in file_bundles["dict"].signature.inputs] == ["float32", "int32"]
    assert [t.name for t in file_bundles["conv2d"].signature.inputs] == ["image"]
    # a single 2-D input takes columns f0..f3; a sequence or an image stays a tensor
    assert file_bundles["mlp"].signature.column_names == ["f0", "f1", "f2", "f3"]
    assert file_bundles["lstm"].signature.columns is None


def test_adapted_normalization_statistics_are_constants_of_the_graph(families, files):
    """Keras's own ONNX export (TensorFlow backend) and tf2onnx.from_function make the adapted mean and
    variance graph inputs; a bundle from either would take three inputs, or answer as if
    unnormalised. Both routes here must keep them inside the graph."""
    model, sample, fresh = families["mlp"]
    norm = next(layer for layer in model.layers if isinstance(layer, L.Normalization))
    mean = np.asarray(norm.mean).reshape(-1)
    native = keras.backend.backend()
    routes = {"torch": mp.pack(KerasFile.read(files["mlp"]), sample, options={"backend": "torch"}),
              native: mp.pack(model, sample, options={"backend": native})}
    if "tensorflow" not in routes:
        routes["tensorflow"] = mp.pack(KerasFile.read(files["mlp"]), sample, options={"backend": "tensorflow"})
    for backend, bundle in routes.items():  # each route on its own: no fallback hides a wrong one
        assert bundle.manifest["source"]["backend"] == backend
        assert [t.name for t in bundle.signature.inputs] == ["x"]
        consts = [np.asarray(onnx_value(t)).reshape(-1) for t in bundle.onnx_model.graph.initializer]
        consts += [np.asarray(onnx_value(a.t)).reshape(-1) for n in iter_nodes(bundle.onnx_model.graph)
                   if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
        assert any(c.shape == mean.shape and np.allclose(c, mean, rtol=1e-5) for c in consts), \
            "the adapted mean must be a constant of the graph"
        assert_matches(bundle, model, fresh)
    # and the statistics matter: the same rows without them give other answers
    unnormalised = expected(model, ((fresh - MEAN) / SCALE).astype(np.float32), "classification")
    assert not np.allclose(unnormalised["probabilities"], expected(model, fresh, "classification")["probabilities"],
                           atol=1e-2)


def onnx_value(tensor):
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor)


def test_parity_decides_between_routes(families, monkeypatch):
    """A route whose graph does not reproduce the model is not used: the next route is, and the
    bundle says why; asked for that route alone, packing fails and names it."""
    import onnx
    from onnx import numpy_helper

    from modelport.convert import _keras_engine

    native = keras.backend.backend()
    other = "torch" if native == "tensorflow" else "tensorflow"
    name = "_export_tensorflow" if native == "tensorflow" else "_export_torch"
    real = getattr(_keras_engine, name)

    def off_by_half(*args, **kwargs):  # this process's route, with its largest weight matrix scaled
        blob, notes = real(*args, **kwargs)
        onx = onnx.load_model_from_string(blob)
        floats = [t for t in onx.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
        biggest = max(floats, key=lambda t: int(np.prod(t.dims)))
        biggest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(biggest) * np.float32(1.5), biggest.name))
        return onx.SerializeToString(), notes

    monkeypatch.setattr(_keras_engine, name, off_by_half)
    model, sample, fresh = families["mlp"]
    b = mp.pack(model, sample)
    assert b.manifest["source"]["backend"] == other
    assert any(n.startswith(f"not exported through {native}: ") and "does not match" in n
               for n in b.manifest["parity"]["notes"])
    assert_matches(b, model, fresh)
    with pytest.raises(ConversionError, match=rf"no export route reproduces the Keras model: {native}: .*does not match"):
        mp.pack(model, sample, options={"backend": native})


def test_a_free_sequence_length_stays_free(tmp_path):
    """torch.export unrolls a recurrent layer at the sample's length; the TensorFlow route keeps the
    length free, so it is chosen; asked for PyTorch only, the bundle says it fixed the length."""
    keras.utils.set_random_seed(9)
    model = keras.Sequential([keras.Input((None, 3), name="seq"), L.GRU(4), L.Dense(1)])
    model.save(tmp_path / "varlen.keras")
    rng = np.random.default_rng(10)
    sample = rng.normal(size=(20, 7, 3)).astype("float32")
    b = mp.pack(KerasFile.read(tmp_path / "varlen.keras"), sample)
    assert b.manifest["source"]["backend"] == "tensorflow" and b.signature.inputs[0].shape == (None, None, 3)
    assert any("fixes dimension 1 of input 'seq' at 7" in n for n in b.manifest["parity"]["notes"])
    for length in (3, 7, 12):
        x = rng.normal(size=(5, length, 3)).astype("float32")
        np.testing.assert_allclose(b.predict(x)["prediction"], model.predict(x, verbose=0)[:, 0], atol=1e-5)
    fixed = mp.pack(KerasFile.read(tmp_path / "varlen.keras"), sample, options={"backend": "torch"})
    assert fixed.signature.inputs[0].shape == (None, 7, 3)
    assert any("other values are refused" in n for n in fixed.manifest["parity"]["notes"])
    with pytest.raises(InputError, match=r"\[N, 7, 3\]"):
        fixed.predict(rng.normal(size=(2, 5, 3)).astype("float32"))


def test_edge_cases_match_on_both_routes(tmp_path):
    """A column that was constant when Normalization adapted (variance 0: Keras divides by its
    epsilon, so the column gives 0, not NaN, and a value off it a large number), rows far outside the
    sample, and a batch larger than the one Keras predicts at once: the same answers as Keras, through
    the PyTorch route (a .keras file) and through this process's own backend (the model in memory)."""
    keras.utils.set_random_seed(11)
    x = features(300, 11)
    x[:, 2] = 7.0
    norm = L.Normalization()
    norm.adapt(x)
    assert float(np.asarray(norm.variance).reshape(-1)[2]) == 0.0
    model = keras.Sequential([keras.Input((4,), name="x"), norm, L.Dense(8, activation="tanh"),
                              L.Dense(3, activation="softmax")])
    model.save(tmp_path / "const.keras")
    fresh = features(2500, 12)
    fresh[:, 2] = 7.0
    fresh[:5, 2] += np.float32(2e-6)  # off the constant: (x - 7) / epsilon
    far = ((features(40, 13) - MEAN) * 50 + MEAN).astype(np.float32)  # 50 standard deviations out
    far[:, 2] = 7.0
    data = np.concatenate([fresh, far])
    native = keras.backend.backend()
    routes = {"torch": mp.pack(KerasFile.read(tmp_path / "const.keras"), x, options={"backend": "torch"}),
              native: mp.pack(model, x, options={"backend": native})}
    want = model.predict(data, verbose=0)
    assert np.isfinite(want).all()
    for backend, b in routes.items():
        assert b.manifest["source"]["backend"] == backend
        got = b.predict(data)
        assert np.isfinite(got["probabilities"]).all(), backend
        np.testing.assert_allclose(got["probabilities"], want, atol=2e-5, err_msg=backend)
        agree = got["label"] == want.argmax(1)
        close = np.sort(want, axis=1)[:, -1] - np.sort(want, axis=1)[:, -2] < 1e-5  # ties may go either way
        assert (agree | close).all(), backend


def test_weights_that_read_a_host_file_are_refused(files, tmp_path):
    """An HDF5 dataset can keep its bytes in an external file (a path on the loading machine): such
    weights would copy that file into the bundle. Keras refuses them; the refusal is a ConversionError."""
    import h5py

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4096, dtype=np.float32).tobytes())
    weights = tmp_path / "model.weights.h5"
    weights.write_bytes(zipfile.ZipFile(files["mlp"]).read("model.weights.h5"))
    with h5py.File(weights, "r+") as h5:
        names: list[str] = []
        h5.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) and obj.size else None)
        target = next(n for n in names if "dense" in n)
        shape, dtype = h5[target].shape, h5[target].dtype
        del h5[target]
        h5.create_dataset(target, shape=shape, dtype=dtype,
                          external=[(str(secret), 0, int(np.prod(shape)) * dtype.itemsize)])
    path = _rewrite(files["mlp"], tmp_path / "external.keras", edit={"model.weights.h5": weights.read_bytes()})
    for trust in (False, True):  # trusting the code does not let the weights read files
        with pytest.raises(ConversionError, match=r"torch: .*Not allowed: H5 file with external Dataset"):
            mp.pack(load_model_file(path, trust_code=trust), features(20, 14))


# ---------------------------------------------------------------------- heads
def test_classifier_heads_take_classes_and_logits(families):
    model, sample, fresh = families["mlp"]
    b = mp.pack(model, sample, options={"classes": ["setosa", "versicolor", "virginica"]})
    assert b.classes == ["setosa", "versicolor", "virginica"]
    assert_matches(b, model, fresh, classes=["setosa", "versicolor", "virginica"])
    assert b.predict(fresh[:3])["label"].dtype.kind in "OU"

    # a Dense head without activation gives logits: a classifier only when asked, with a softmax added
    keras.utils.set_random_seed(3)
    logits = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    x = np.random.default_rng(5).normal(size=(40, 4)).astype("float32")
    auto = mp.pack(logits, x)
    assert auto.task == "regression" and auto.predict(x)["prediction"].shape == (40, 3)
    clf = mp.pack(logits, x, options={"task": "classification"})
    raw = logits.predict(x, verbose=0)
    soft = np.exp(raw - raw.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(clf.predict(x)["probabilities"], soft, atol=1e-5)
    assert clf.predict(x)["label"].tolist() == soft.argmax(1).tolist()
    ops = {n.op_type for n in iter_nodes(clf.onnx_model.graph)}
    assert "Softmax" in ops and "ArgMax" in ops


def test_binary_sigmoid_head_and_wrong_class_count(families):
    model, sample, fresh = families["embedding"]
    b = mp.pack(model, sample, options={"classes": ["no", "yes"]})
    p = model.predict(fresh, verbose=0)[:, 0]
    got = b.predict(fresh)
    np.testing.assert_allclose(got["probabilities"][:, 1], p, atol=1e-5)
    np.testing.assert_allclose(got["probabilities"].sum(1), 1.0, atol=1e-6)
    assert got["label"].tolist() == np.where(p > 0.5, "yes", "no").tolist()
    with pytest.raises(ConversionError, match="1 score column"):
        mp.pack(model, sample, options={"classes": ["a", "b", "c"]})
    with pytest.raises(ConversionError, match="distinct"):
        mp.pack(model, sample, options={"classes": ["a", "a"]})


def test_multi_label_sigmoid_and_several_outputs_stay_tensors():
    keras.utils.set_random_seed(4)
    x_in = keras.Input((5,), name="x")
    hidden = L.Dense(6, activation="relu")(x_in)
    tags = L.Dense(3, activation="sigmoid", name="tags")(hidden)
    value = L.Dense(1, name="value")(hidden)
    x = np.random.default_rng(6).normal(size=(30, 5)).astype("float32")
    multi = keras.Model(x_in, tags)
    b = mp.pack(multi, x)
    assert b.task == "tensor" and [o.name for o in b.signature.outputs] == ["tags"]
    np.testing.assert_allclose(b.predict(x)["tags"], multi.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(ConversionError, match="multi-label"):
        mp.pack(multi, x, options={"task": "classification"})

    two = keras.Model(x_in, [tags, value])
    b2 = mp.pack(two, x)
    assert b2.task == "tensor" and [o.name for o in b2.signature.outputs] == ["tags", "value"]
    got = b2.predict(x)
    want = two.predict(x, verbose=0)
    np.testing.assert_allclose(got["tags"], want[0], atol=1e-5)
    np.testing.assert_allclose(got["value"], want[1], atol=1e-5)
    renamed = mp.pack(two, x, options={"output_names": ["p", "v"]})
    assert [o.name for o in renamed.signature.outputs] == ["p", "v"]
    reg = mp.pack(two, x, options={"task": "regression"})  # the first output, as the notes say
    assert any("reads the first" in n for n in reg.manifest["parity"]["notes"])


# ---------------------------------------------------------------------- tables and dict inputs
@pytest.fixture(scope="module")
def per_column():
    """A functional model with one input per column (two numbers and an id for an Embedding)."""
    keras.utils.set_random_seed(5)
    age = keras.Input((1,), name="age")
    income = keras.Input((1,), name="income")
    city = keras.Input((1,), dtype="int32", name="city")
    z = L.Concatenate()([age, income, L.Flatten()(L.Embedding(5, 2)(city))])
    model = keras.Model({"age": age, "income": income, "city": city}, L.Dense(2, activation="softmax")(z))

    def frame(n: int, seed: int) -> pd.DataFrame:
        r = np.random.default_rng(seed)
        return pd.DataFrame({"age": r.uniform(18, 90, n), "income": r.normal(3, 1, n), "city": r.integers(0, 5, n)})

    return model, frame(60, 0), frame(80, 1)


def test_a_dataframe_feeds_one_input_per_column(per_column):
    model, sample, fresh = per_column
    b = mp.pack(model, sample)
    cols = b.signature.columns
    assert [c.name for c in cols] == ["age", "income", "city"] and all(c.index is None for c in cols)
    assert [c.dtype for c in cols] == ["float64", "float64", "int64"]
    as_inputs = {k: fresh[k].to_numpy().reshape(-1, 1).astype("int32" if k == "city" else "float32") for k in fresh}
    want = model.predict(as_inputs, verbose=0)
    np.testing.assert_allclose(b.predict(fresh)["probabilities"], want, atol=1e-5)
    np.testing.assert_allclose(b.predict(fresh.to_dict("records"))["probabilities"], want, atol=1e-5)
    with pytest.raises(InputError, match="city"):
        b.predict(fresh.drop(columns=["city"]))
    with pytest.raises(ConversionError, match="not inputs of the model: extra"):
        mp.pack(model, sample.assign(extra=1.0))


def test_a_dataframe_names_the_columns_of_a_matrix_input(families):
    model, sample, fresh = families["mlp"]
    frame = pd.DataFrame(sample.astype(np.float64), columns=["sepal_l", "sepal_w", "petal_l", "petal_w"])
    b = mp.pack(model, frame)
    assert b.signature.column_names == ["sepal_l", "sepal_w", "petal_l", "petal_w"]
    fresh_frame = pd.DataFrame(fresh.astype(np.float64), columns=frame.columns)
    np.testing.assert_allclose(b.predict(fresh_frame)["probabilities"], model.predict(fresh, verbose=0), atol=1e-5)
    with pytest.raises(ConversionError, match="takes 4 columns"):
        mp.pack(model, frame.iloc[:, :3])


def test_subclassed_model_and_wrong_samples():
    class Scorer(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = L.Dense(4, activation="relu")
            self.out = L.Dense(1)

        def call(self, x):
            return self.out(self.hidden(x))

    keras.utils.set_random_seed(6)
    model = Scorer()
    x = np.random.default_rng(7).normal(size=(30, 3)).astype("float32")
    with pytest.raises(ConversionError, match="not built"):
        mp.pack(model, x)
    model.predict(x[:2], verbose=0)
    b = mp.pack(model, x)
    assert b.task == "regression"  # one linear output column
    assert [t.name for t in b.signature.inputs] == ["input"]
    np.testing.assert_allclose(b.predict(x)["prediction"], model.predict(x, verbose=0)[:, 0], atol=1e-5)
    with pytest.raises(ConversionError, match="unknown Keras converter option"):
        mp.pack(model, x, options={"nope": 1})
    with pytest.raises(UnsupportedModelError, match=r"keras\.Model"):
        mp.pack(L.Dense(2), x)


def test_a_sample_of_the_wrong_shape_is_refused(families):
    model, sample, _ = families["conv2d"]
    with pytest.raises(ConversionError, match=r"image.*\[N, 8, 8, 2\]"):
        mp.pack(model, sample[:, :4])
    model, sample, _ = families["dict"]
    with pytest.raises(ConversionError, match="lacks input"):
        mp.pack(model, {"num": sample["num"]})


# ---------------------------------------------------------------------- files, sessions, processes
def test_verify_in_a_session_that_did_not_pack(families, files, file_bundles, tmp_path):
    model, _, fresh = families["gru"]
    b = mp.load(file_bundles["gru"].save(tmp_path / "gru.mpk"))
    # a file read again (an object the converter has never seen), and the model in memory
    assert mp.verify(b, KerasFile.read(files["gru"]), fresh).passed
    assert mp.verify(b, model, fresh).passed
    other = keras.models.clone_model(model)  # the same architecture, other weights
    assert not mp.verify(b, other, fresh).passed


def test_pack_is_deterministic(families, files, file_bundles):
    again = mp.pack(KerasFile.read(files["conv1d"]), families["conv1d"][1], name="conv1d")
    assert again.to_bytes() == file_bundles["conv1d"].to_bytes()
    assert b"/tmp/" not in again.model_bytes and b"stack_trace" not in again.model_bytes


def test_packing_a_file_leaves_this_process_backend_alone(files, families):
    before = (os.environ.get("KERAS_BACKEND"), keras.backend.backend())
    kf = KerasFile.read(files["lstm"])
    mp.pack(kf, families["lstm"][1])
    assert (os.environ.get("KERAS_BACKEND"), keras.backend.backend()) == before
    kf.close()


def test_the_pytorch_backend_needs_no_tensorflow(tmp_path):
    """A user on the Keras PyTorch backend packs a model in memory without TensorFlow being imported."""
    script = textwrap.dedent("""
        import os, sys
        os.environ["KERAS_BACKEND"] = "torch"
        import numpy as np, keras, modelport as mp
        norm = keras.layers.Normalization()
        x = (np.random.default_rng(0).normal(size=(50, 3)) * 20 + 7).astype("float32")
        norm.adapt(x)
        model = keras.Sequential([keras.Input((3,)), norm, keras.layers.Dense(4, activation="relu"),
                                  keras.layers.BatchNormalization(), keras.layers.Dense(2, activation="softmax")])
        b = mp.pack(model, x)
        fresh = (np.random.default_rng(1).normal(size=(20, 3)) * 20 + 7).astype("float32")
        err = float(np.abs(b.predict(fresh)["probabilities"] - model.predict(fresh, verbose=0)).max())
        print(b.manifest["source"]["backend"], "tensorflow" in sys.modules, err < 1e-5)
    """)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["HOME"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env,
                       check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-3:] == ["torch", "False", "True"]


# ---------------------------------------------------------------------- untrusted files
def _lambda_model(tmp_path: Path) -> Path:
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((3,)), L.Dense(2), L.Lambda(lambda t: t * 2.0 + 1.0, name="twice_plus_one")])
    path = tmp_path / "lambda.keras"
    model.save(path)
    return path


def test_lambda_layers_are_refused_unless_trusted(tmp_path):
    path = _lambda_model(tmp_path)
    with pytest.raises(ConversionError, match=r"layer 'twice_plus_one'.*Lambda") as info:
        load_model_file(path)
    assert "bytecode" in str(info.value) and "--trust-code" in str(info.value)
    x = np.random.default_rng(8).normal(size=(20, 3)).astype("float32")
    b = mp.pack(load_model_file(path, trust_code=True), x)
    trusted = keras.saving.load_model(path, safe_mode=False)
    np.testing.assert_allclose(b.predict(x)["prediction"], trusted.predict(x, verbose=0), atol=1e-5)


CUSTOM_MODULE = """
import keras

@keras.saving.register_keras_serializable(package="mp_test")
class Doubling(keras.layers.Layer):
    def call(self, x):
        return x * 2.0
"""


def test_custom_layers_are_refused_unless_trusted_and_importable(tmp_path, monkeypatch):
    (tmp_path / "mp_custom_layers.py").write_text(CUSTOM_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    custom = importlib.import_module("mp_custom_layers")
    keras.utils.set_random_seed(8)
    model = keras.Sequential([keras.Input((3,)), L.Dense(2), custom.Doubling(name="doubler")])
    path = tmp_path / "custom.keras"
    model.save(path)
    with pytest.raises(ConversionError, match=r"layer 'doubler': custom layer 'mp_test>Doubling'.*module "
                                              r"'mp_custom_layers'"):
        KerasFile.read(path)
    x = np.random.default_rng(9).normal(size=(20, 3)).astype("float32")
    kf = KerasFile.read(path, trust_code=True)
    assert kf.archive.custom_modules == ["mp_custom_layers"]
    b = mp.pack(kf, x)  # the worker imports the module (trusted), which registers the class
    np.testing.assert_allclose(b.predict(x)["prediction"], model.predict(x, verbose=0), atol=1e-5)
    kf.close()


def _rewrite(src: Path, dest: Path, *, add: dict[str, bytes] | None = None, drop: tuple[str, ...] = (),
             edit: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for name in zin.namelist():
            if name not in drop:
                zout.writestr(name, (edit or {}).get(name, zin.read(name)))
        for name, blob in (add or {}).items():
            zout.writestr(name, blob)
    return dest


def test_hostile_and_corrupt_archives_are_refused(files, tmp_path):
    src = files["mlp"]
    with pytest.raises(ConversionError, match=r"'\.\./evil\.txt'"):
        load_model_file(_rewrite(src, tmp_path / "traversal.keras", add={"../evil.txt": b"x"}))
    with pytest.raises(ConversionError, match="absolute"):
        load_model_file(_rewrite(src, tmp_path / "absolute.keras", add={"/etc/evil": b"x"}))
    with pytest.raises(ConversionError, match="not part of a Keras model archive"):
        load_model_file(_rewrite(src, tmp_path / "extra.keras", add={"payload.py": b"print(1)"}))
    with pytest.raises(ConversionError, match="no weights"):
        load_model_file(_rewrite(src, tmp_path / "noweights.keras", drop=("model.weights.h5",)))
    with pytest.raises(ConversionError, match="not valid JSON"):
        load_model_file(_rewrite(src, tmp_path / "badjson.keras", edit={"config.json": b"{not json"}))
    with pytest.raises(ConversionError, match="nests"):
        load_model_file(_rewrite(src, tmp_path / "deep.keras", edit={"config.json": b"[" * 100_000 + b"]" * 100_000}))
    data = src.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="truncated or corrupt"):
        load_model_file(tmp_path / "cut.keras")
    # one flipped byte inside the weights: the entry's CRC no longer matches
    with zipfile.ZipFile(src) as zf:
        info = zf.getinfo("model.weights.h5")
        offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    flipped = bytearray(data)
    flipped[offset] ^= 0xFF
    (tmp_path / "flipped.keras").write_bytes(bytes(flipped))
    with pytest.raises(ConversionError, match="corrupt"):
        load_model_file(tmp_path / "flipped.keras")
    # a zip bomb: a small entry that claims to expand far beyond its size
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf, zipfile.ZipFile(src) as zin:
        for name in zin.namelist():
            zf.writestr(name, zin.read(name))
        zf.writestr("assets/zeros.bin", b"\0" * (64 * 1024**2))
    (tmp_path / "bomb.keras").write_bytes(bomb.getvalue())
    with pytest.raises(ConversionError, match="zip bomb"):
        load_model_file(tmp_path / "bomb.keras")


def test_path_reading_layers_are_refused(files, tmp_path):
    config = json.loads(zipfile.ZipFile(files["mlp"]).read("config.json"))
    layer = {"module": "keras.layers", "class_name": "TFSMLayer", "registered_name": None,
             "config": {"name": "loader", "filepath": "/srv/other_model", "call_endpoint": "serve"}}
    config["config"]["layers"].insert(1, layer)
    path = _rewrite(files["mlp"], tmp_path / "tfsm.keras", edit={"config.json": json.dumps(config).encode()})
    with pytest.raises(ConversionError, match="layer 'loader': TFSMLayer loads a model from a path"):
        load_model_file(path)
    # a function from outside Keras, smuggled into a built-in layer's config
    config = json.loads(zipfile.ZipFile(files["mlp"]).read("config.json"))
    dense = next(x for x in config["config"]["layers"] if x["class_name"] == "Dense")
    dense["config"]["activation"] = {"module": "os", "class_name": "function", "config": "system",
                                     "registered_name": "function"}
    path = _rewrite(files["mlp"], tmp_path / "os.keras", edit={"config.json": json.dumps(config).encode()})
    with pytest.raises(ConversionError, match=rf"layer '{dense['config']['name']}': custom function"):
        load_model_file(path)


def test_legacy_h5_and_other_zips_are_named(tmp_path):
    (tmp_path / "old.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(UnsupportedModelError, match=r"legacy Keras \.h5"):
        detect(tmp_path / "old.h5")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", b"hello")
    with pytest.raises(UnsupportedModelError, match=r"Keras \.keras"):
        detect(tmp_path / "other.zip")


# ---------------------------------------------------------------------- the installed console script
def _modelport(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(cwd), "LANG": "C.UTF-8",
           "MODELPORT_HOME": str(cwd / "home")}
    return subprocess.run([str(BIN / "modelport"), *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600, check=False)


def test_console_script_packs_and_verifies_a_keras_file(families, files, tmp_path):
    model, sample, fresh = families["mlp"]
    names = ["sepal_l", "sepal_w", "petal_l", "petal_w"]
    pd.DataFrame(sample, columns=names).to_parquet(tmp_path / "sample.parquet")
    pd.DataFrame(fresh, columns=names).to_parquet(tmp_path / "fresh.parquet")
    r = _modelport("pack", files["mlp"], "sample.parquet", "-o", "net.mpk", "--classes", "a,b,c", "--json",
                   cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["parity"]["pass"] and summary["classes"] == ["a", "b", "c"]
    assert summary["source"]["backend"] == "torch"
    b = mp.load(tmp_path / "net.mpk")
    assert b.signature.column_names == names
    assert_matches(b, model, pd.DataFrame(fresh, columns=names), classes=["a", "b", "c"])
    r = _modelport("verify", "net.mpk", "--original", files["mlp"], "--data", "fresh.parquet", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]


def test_console_script_refuses_an_untrusted_file_and_writes_nothing(tmp_path):
    path = _lambda_model(tmp_path)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(10, 3)).astype("float32"))
    r = _modelport("pack", path, "x.npy", "-o", "lambda.mpk", cwd=tmp_path)
    assert r.returncode == ConversionError.exit_code
    assert "twice_plus_one" in r.stderr and "--trust-code" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "lambda.mpk").exists()
    (tmp_path / "cut.keras").write_bytes(path.read_bytes()[:200])
    r = _modelport("pack", "cut.keras", "x.npy", "-o", "cut.mpk", cwd=tmp_path)
    assert r.returncode == ConversionError.exit_code and "corrupt" in r.stderr
    assert not (tmp_path / "cut.mpk").exists()
    r = _modelport("pack", path, "x.npy", "-o", "lambda.mpk", "--trust-code", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "lambda.mpk").exists()
