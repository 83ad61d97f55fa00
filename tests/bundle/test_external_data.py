"""A bundle can never read the host's files (issue 10, class 1): a tensor that refers to external data is
refused wherever it hides in the model, and even with that check bypassed, the ONNX Runtime session
modelport builds cannot reach a planted secret, through any hiding place and any spelling of its path."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest
from tests.fuzz import crafted

from modelport.bundle import graph
from modelport.bundle.core import Bundle
from modelport.errors import InputError, IntegrityError, ModelportError
from modelport.runtime.sandbox import EXTERNAL_DATA_FOLDER, create_session

PLACES = sorted(crafted.hiding_places("secret.bin"))
X = {"X": np.zeros((1, 1), np.float32)}


@pytest.fixture
def secret(tmp_path, monkeypatch):
    """A secret file in the working directory; returns its bytes."""
    data = b"\xa5TOPSECRET-" + os.urandom(24)
    (tmp_path / "secret.bin").write_bytes(data)
    monkeypatch.chdir(tmp_path)
    return data


def _locations(tmp_path):
    """(working directory, location) pairs that all name the planted secret."""
    path = tmp_path / "secret.bin"
    rel_to_root = str(path).lstrip("/")
    return [
        (tmp_path, "secret.bin"),
        (tmp_path, "./secret.bin"),
        (tmp_path, f"../{tmp_path.name}/secret.bin"),
        (tmp_path, "../" * 40 + rel_to_root),  # up to / and back down
        (tmp_path, str(path)),  # absolute
        ("/", rel_to_root),  # a server started in /, a location relative to it
    ]


@pytest.mark.parametrize("place", PLACES)
def test_external_data_is_refused_at_load_wherever_it_hides(secret, place):
    model = crafted.hiding_places("secret.bin")[place]
    files = crafted.bundle_files(model)
    with pytest.raises(IntegrityError, match=r"refers to external data.*bundles must be self-contained") as err:
        Bundle(files, origin="hidden.mpk")
    assert str(err.value).startswith("hidden.mpk: ")


@pytest.mark.parametrize("place", PLACES)
def test_the_session_cannot_reach_the_secret_even_past_the_check(secret, tmp_path, monkeypatch, place):
    for cwd, location in _locations(tmp_path):
        monkeypatch.chdir(cwd)
        model = crafted.hiding_places(location)[place]
        try:
            session = create_session(model.SerializeToString(), origin="bypass.mpk")
            outputs = session.run(None, X)
        except ModelportError:
            continue  # refused: the wanted outcome
        except Exception as exc:
            assert "TOPSECRET" not in str(exc)
            continue
        assert not crafted.leaked(outputs, secret), f"{place} via {location!r} from {cwd}: the secret leaked"


def test_without_the_sandbox_onnx_runtime_does_read_the_secret(secret):
    # what the two tests above guard against: a plain session from bytes resolves against the working directory
    for place in ("graph.initializer", "local function Constant", "subgraph Constant (If.then_branch)"):
        model = crafted.hiding_places("secret.bin")[place]
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        assert crafted.leaked(session.run(None, X), secret), place


@pytest.mark.parametrize("place", ["graph.initializer", "local function attribute default", "nested local function",
                                   "graph.sparse_initializer.values"])
def test_a_loaded_bundle_cannot_leak_when_the_graph_check_is_bypassed(secret, monkeypatch, place):
    monkeypatch.setattr(graph, "check", lambda *a, **k: None)
    bundle = Bundle(crafted.bundle_files(crafted.hiding_places("secret.bin")[place]), origin="bypass.mpk")
    with pytest.raises(ModelportError) as err:
        bundle.predict(X)
    assert "TOPSECRET" not in str(err.value)
    assert "bypass.mpk" in str(err.value)


def test_session_config_cannot_point_external_data_elsewhere(secret, tmp_path, iris_bundle):
    from modelport.runtime.session import Runtime

    with pytest.raises(InputError, match=r"'session.model_external_initializers_file_folder_path' is set by modelport"):
        Runtime(iris_bundle, session_config={EXTERNAL_DATA_FOLDER: str(tmp_path)})
    with pytest.raises(InputError, match=r"session.load_model_format"):
        Runtime(iris_bundle, session_config={"session.load_model_format": "ORT"})


def test_real_bundles_still_load_and_reproduce_their_answers(iris_bundle, tmp_path):
    from modelport.verification import check

    report = check(Bundle.read(iris_bundle.save(tmp_path / "iris.mpk")))
    assert report.passed and report.rows > 0
