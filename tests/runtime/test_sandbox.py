"""runtime/sandbox.py is the one place that creates ONNX Runtime sessions, and every session it creates looks
for external data in a private, empty directory and parses the ONNX format only."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

from modelport.errors import ConversionError, InputError, ModelportError
from modelport.runtime import sandbox

SRC = Path(__file__).resolve().parents[2] / "src" / "modelport"


def test_no_module_but_the_sandbox_creates_an_onnxruntime_session():
    offenders = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if name == "InferenceSession" and path.name != "sandbox.py":
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == [], "create ONNX Runtime sessions through modelport.runtime.sandbox.create_session"


def test_the_external_data_directory_is_private_and_empty():
    path = Path(sandbox.empty_directory())
    assert path.is_dir() and list(path.iterdir()) == []
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)
    assert path.stat().st_uid == os.getuid()
    assert sandbox.empty_directory() == str(path)  # one per process


def test_every_session_gets_the_pinned_entries(iris_bundle):
    options = sandbox.session_options(session_config={"session.intra_op.allow_spinning": "0"})
    assert options.get_session_config_entry(sandbox.EXTERNAL_DATA_FOLDER) == sandbox.empty_directory()
    assert options.get_session_config_entry(sandbox.LOAD_FORMAT) == "ONNX"
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    for key in sandbox.PINNED:
        with pytest.raises(InputError, match="is set by modelport"):
            sandbox.session_options(session_config={key: "x"})


def test_onnx_runtime_errors_become_the_callers_error_type():
    with pytest.raises(ModelportError, match=r"x.mpk: ONNX Runtime [\d.]+ cannot load this graph") as err:
        sandbox.create_session(b"not a model", origin="x.mpk")
    assert "pip install -U onnxruntime" in str(err.value)
    with pytest.raises(ConversionError, match="cannot load this graph"):
        sandbox.create_session(b"not a model", origin="the exported graph", error=ConversionError, hint=None)


def test_bytes_in_the_ort_format_are_not_parsed_as_such(iris_bundle):
    # an ORT-format flatbuffer (identifier ORTM at offset 4) is refused as ONNX, never handed to the other parser
    with pytest.raises(ModelportError, match="cannot load this graph"):
        sandbox.create_session(b"\x00\x00\x00\x00ORTM" + b"\x00" * 64, origin="ort.mpk")
