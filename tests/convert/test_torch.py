"""The PyTorch converter: parity with torch on fresh data at batch sizes 1 / 7 / 64, classifier and
regressor heads, CNNs, several inputs, ExportedPrograms, and the errors users can cause."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import modelport as mp
from modelport.bundle.graph import ALLOWED_DOMAINS, iter_nodes
from modelport.errors import ConversionError, InputError, UnsupportedModelError

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
nn = torch.nn

BATCHES = (1, 7, 64)


def fresh(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


class MLP(nn.Module):
    def __init__(self, n_in: int = 4, n_out: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, n_out))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return self.head(torch.flatten(x, 1))


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(3, 2)
        self.embed = nn.Embedding(10, 2)

    def forward(self, x, ids):
        return self.dense(x) + self.embed(ids).sum(1), x.sum(1)


def torch_out(model, *inputs):
    with torch.no_grad():
        was = model.training
        model.eval()
        try:
            return model(*inputs)
        finally:
            model.train(was)


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return MLP()


@pytest.fixture(scope="module")
def classifier_bundle(mlp):
    mlp.train()  # the user's mode: pack must export in eval mode and give the mode back
    b = mp.pack(mlp, fresh(40, 4, seed=0), name="mlp", options={"task": "classification", "classes": ["a", "b", "c"]})
    assert mlp.training and all(m.training for m in mlp.modules())
    return b


def test_mlp_classifier_matches_torch_at_every_batch_size(classifier_bundle, mlp, tmp_path):
    b = mp.load(classifier_bundle.save(tmp_path / "mlp.mpk"))
    assert b.task == "classification" and b.classes == ["a", "b", "c"]
    assert b.manifest["parity"]["pass"] and b.signature.column_names == ["f0", "f1", "f2", "f3"]
    assert b.signature.inputs[0].shape == (None, 4)
    ops = {n.op_type for n in iter_nodes(b.onnx_model.graph)}
    assert {"Softmax", "ArgMax", "Gather", "Gemm"} <= ops
    assert all(n.domain in ALLOWED_DOMAINS for n in iter_nodes(b.onnx_model.graph))
    for n in BATCHES:
        x = fresh(n, 4, seed=n)
        got = b.predict(x)
        probs = torch.softmax(torch_out(mlp, torch.from_numpy(x)), dim=1).numpy()
        np.testing.assert_allclose(got["probabilities"], probs, atol=1e-5)
        assert got["label"].tolist() == [["a", "b", "c"][i] for i in probs.argmax(1)]
        assert mp.verify(b, mlp, x).passed
    # edge cases: all zeros, huge values, one row
    edge = np.array([[0, 0, 0, 0], [1e4, -1e4, 1e4, -1e4]], dtype=np.float32)
    np.testing.assert_allclose(
        b.predict(edge)["probabilities"], torch.softmax(torch_out(mlp, torch.from_numpy(edge)), 1).numpy(), atol=1e-5
    )
    assert mp.check(b).passed


def test_verify_in_a_session_that_did_not_pack(classifier_bundle, mlp, tmp_path):
    import copy

    b = mp.load(classifier_bundle.save(tmp_path / "v.mpk"))
    same = copy.deepcopy(mlp)  # an object the converter has never seen, like a module loaded elsewhere
    report = mp.verify(b, same, fresh(64, 4, seed=5))
    assert report.passed and report.label_agreement == 1.0
    torch.manual_seed(99)
    assert not mp.verify(b, MLP(), fresh(64, 4, seed=6)).passed


def test_pack_is_deterministic(classifier_bundle, mlp):
    again = mp.pack(mlp, fresh(40, 4, seed=0), name="mlp", options={"task": "classification", "classes": ["a", "b", "c"]})
    assert again.to_bytes() == classifier_bundle.to_bytes()
    text = again.model_bytes
    assert b"stack_trace" not in text and b"/tmp/" not in text  # no local paths from torch's metadata


def test_regressor_single_and_multi_target():
    torch.manual_seed(1)
    reg = MLP(5, 1)
    b = mp.pack(reg, fresh(30, 5), options={"task": "regression"})
    assert b.task == "regression" and b.signature.outputs[0].shape == (None,)
    for n in BATCHES:
        x = fresh(n, 5, seed=10 + n)
        np.testing.assert_allclose(b.predict(x)["prediction"], torch_out(reg, torch.from_numpy(x)).numpy()[:, 0], rtol=1e-5, atol=1e-6)
    multi = MLP(5, 2)
    bm = mp.pack(multi, fresh(30, 5), options={"task": "regression"})
    x = fresh(64, 5, seed=3)
    got = bm.predict(x)["prediction"]
    assert got.shape == (64, 2)
    np.testing.assert_allclose(got, torch_out(multi, torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_binary_classifier_with_one_logit_and_probability_outputs():
    torch.manual_seed(2)
    logit = MLP(3, 1)
    b = mp.pack(logit, fresh(20, 3), options={"task": "classification", "classes": [0, 1]})
    x = fresh(64, 3, seed=4)
    p1 = torch.sigmoid(torch_out(logit, torch.from_numpy(x))).numpy()[:, 0]
    got = b.predict(x)
    np.testing.assert_allclose(got["probabilities"][:, 1], p1, atol=1e-6)
    assert got["label"].tolist() == (p1 > 0.5).astype(int).tolist()

    softmaxed = nn.Sequential(MLP(3, 4), nn.Softmax(dim=1))
    b = mp.pack(softmaxed, fresh(20, 3), options={"task": "classification", "scores": "probabilities"})
    assert b.classes == [0, 1, 2, 3]
    assert "Softmax" in {n.op_type for n in b.onnx_model.graph.node}  # the module's own, not a second one
    np.testing.assert_allclose(b.predict(x)["probabilities"], torch_out(softmaxed, torch.from_numpy(x)).numpy(), atol=1e-6)


def test_cnn_on_images_keeps_batch_dynamic_and_batchnorm_untouched():
    torch.manual_seed(3)
    cnn = CNN()
    with torch.no_grad():  # make BatchNorm's running statistics non-trivial
        cnn.bn.running_mean.uniform_(-0.5, 0.5)
        cnn.bn.running_var.uniform_(0.5, 2.0)
    cnn.train()
    before = cnn.bn.running_mean.clone()
    b = mp.pack(cnn, torch.randn(5, 1, 8, 8), name="cnn")
    assert torch.equal(cnn.bn.running_mean, before) and cnn.training  # eval mode during export and reference
    assert b.task == "tensor" and b.signature.output_names == ["output_0"] and b.signature.columns is None
    assert b.signature.inputs[0].shape == (None, 1, 8, 8)
    for n in BATCHES:
        x = fresh(n, 1, 8, 8, seed=20 + n)
        np.testing.assert_allclose(b.predict(x)["output_0"], torch_out(cnn, torch.from_numpy(x)).numpy(), atol=1e-5)
    assert any("dynamic batch checked" in note for note in b.manifest["parity"]["notes"])


def test_module_with_two_inputs_tuple_and_dict():
    torch.manual_seed(4)
    model = TwoInputs()
    x, ids = torch.randn(6, 3), torch.randint(0, 10, (6, 4))
    b = mp.pack(model, (x, ids), options={"output_names": ["score", "total"]})
    assert [t.name for t in b.signature.inputs] == ["x", "ids"]
    assert [t.dtype for t in b.signature.inputs] == ["float32", "int64"]
    assert b.signature.output_names == ["score", "total"]
    rng = np.random.default_rng(5)
    for n in BATCHES:
        xn = fresh(n, 3, seed=30 + n)
        idn = rng.integers(0, 10, size=(n, 4))
        got = b.predict({"x": xn, "ids": idn})
        score, total = torch_out(model, torch.from_numpy(xn), torch.from_numpy(idn))
        np.testing.assert_allclose(got["score"], score.numpy(), atol=1e-5)
        np.testing.assert_allclose(got["total"], total.numpy(), atol=1e-5)
    assert mp.check(b).passed
    kw = mp.pack(model, {"ids": ids, "x": x}, options={"input_names": None})
    assert {t.name for t in kw.signature.inputs} == {"x", "ids"}
    xn, idn = fresh(7, 3), rng.integers(0, 10, size=(7, 4))
    np.testing.assert_allclose(
        kw.predict({"x": xn, "ids": idn})["output_0"], torch_out(model, torch.from_numpy(xn), torch.from_numpy(idn))[0].numpy(), atol=1e-5
    )


def test_one_row_example_and_float64_module():
    torch.manual_seed(5)
    model = MLP(4, 2).double()
    b = mp.pack(model, np.random.default_rng(0).normal(size=(1, 4)), options={"task": "regression"})
    assert b.signature.inputs[0].dtype == "float64" and b.signature.inputs[0].shape == (None, 4)
    x = np.random.default_rng(1).normal(size=(64, 4))
    np.testing.assert_allclose(b.predict(x)["prediction"], torch_out(model, torch.from_numpy(x)).numpy(), rtol=1e-12, atol=1e-12)


def test_dataframe_sample_names_the_columns():
    torch.manual_seed(6)
    model = MLP(3, 2)
    df = pd.DataFrame({"age": [30.0, 40.0, 50.0], "income": [1.0, 2.0, 3.0], "visits": [1, 5, 2]})
    b = mp.pack(model, df, options={"task": "classification", "classes": ["no", "yes"]})
    assert b.signature.column_names == ["age", "income", "visits"]
    shuffled = pd.DataFrame({"visits": [3, 4], "age": [35.0, 45.0], "income": [0.5, 1.5]})
    x = shuffled[["age", "income", "visits"]].to_numpy(dtype=np.float32)
    np.testing.assert_allclose(
        b.predict(shuffled)["probabilities"], torch.softmax(torch_out(model, torch.from_numpy(x)), 1).numpy(), atol=1e-6
    )
    with pytest.raises(InputError, match="missing column"):
        b.predict(shuffled.drop(columns="age"))
    plain = mp.pack(model, df, options={"tabular": False})
    assert plain.signature.columns is None


def test_exported_program_dynamic_and_static():
    torch.manual_seed(7)
    model = MLP(4, 3).eval()
    x = torch.randn(5, 4)
    dynamic = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    b = mp.pack(dynamic, x, options={"task": "classification"})
    assert b.manifest["source"]["estimator"] == "ExportedProgram"
    for n in BATCHES:
        xn = fresh(n, 4, seed=40 + n)
        np.testing.assert_allclose(
            b.predict(xn)["probabilities"], torch.softmax(torch_out(model, torch.from_numpy(xn)), 1).numpy(), atol=1e-5
        )
    static = torch.export.export(model, (x,))
    with pytest.raises(ConversionError, match="dynamic_shapes"):
        mp.pack(static, x)


class FixedBatch(nn.Module):
    def forward(self, x):
        return x.reshape(4, -1).sum(1)


@pytest.mark.parametrize(
    ("model", "sample", "options", "error", "needle"),
    [
        (MLP(), fresh(5, 4), {"task": "classify"}, ConversionError, "task must be one of"),
        (MLP(), fresh(5, 4), {"colour": "red"}, ConversionError, "unknown torch converter option"),
        (MLP(), fresh(5, 4), {"task": "classification", "classes": ["a", "b"]}, ConversionError, "3 score column"),
        (MLP(), fresh(5, 4), {"classes": [1, 2]}, ConversionError, "needs task='classification'"),
        (MLP(), np.ones((5, 4), dtype=bool), {}, ConversionError, "dtype bool"),
        (MLP(), fresh(5, 3), {}, ConversionError, "module failed on the input"),
        (FixedBatch(), fresh(4, 3), {}, ConversionError, "batch"),
    ],
)
def test_errors(model, sample, options, error, needle):
    with pytest.raises(error, match=needle):
        mp.pack(model, sample, options=options)


def test_non_module_is_unsupported():
    with pytest.raises(UnsupportedModelError, match=r"nn\.Module"):
        mp.pack(torch.ones(3), fresh(2, 3))
