"""Only standard ONNX operators run (issue 10, class 2): everywhere in the model, local functions and their
subgraphs included; a model-local function may only live where no runtime has kernels of its own."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from tests.fuzz import crafted

from modelport.bundle import graph
from modelport.bundle.core import Bundle
from modelport.errors import IntegrityError
from modelport.runtime.sandbox import create_session

CASES = crafted.domain_bypasses()
X = np.array([[1.0], [-1.0]], np.float32)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_domain_bypass_is_refused_at_load(case):
    files = crafted.bundle_files(CASES[case], **crafted.FLOAT_IO)
    with pytest.raises(IntegrityError, match=r"domain|cycle|function") as err:
        Bundle(files, origin="dom.mpk")
    assert str(err.value).startswith("dom.mpk: ")


def test_the_messages_say_what_and_where():
    def message(case):
        with pytest.raises(IntegrityError) as err:
            graph.check(CASES[case], origin="m.mpk")
        return str(err.value)

    text = message("non-standard op in a subgraph of a local function")
    assert "uses operator domain 'com.evil'" in text
    assert "(at function 'F' > node[1] (If) > attribute 'then_branch' > graph 'then' > node[0] (Exfiltrate))" in text
    assert "(at function 'Inner' > node[0] (Exfiltrate))" in message("non-standard op in a nested local function")
    assert "(at training info[0] > algorithm 'algo' > node[0] (Exfiltrate))" in message("non-standard op in training info")
    text = message("local function in com.microsoft named after a contrib kernel")
    assert "'Gelu' is in domain 'com.microsoft'" in text and "its own kernel" in text
    assert "cycle (A -> B -> A)" in message("functions that call each other")
    assert "cycle (Loop -> Loop)" in message("a function that calls itself")


def test_why_kernel_domains_are_refused_onnx_runtime_runs_its_own_kernel():
    # the function's body is Identity; ONNX Runtime runs its contrib Gelu instead (0.84, not 1.0)
    model = CASES["local function in com.microsoft named after a contrib kernel"]
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": X})[0]
    assert not np.allclose(out, X)


def test_a_function_named_like_a_contrib_kernel_is_refused_by_the_session_factory():
    model = crafted.contrib_named_function()
    graph.check(model, origin="own.mpk")  # its own domain: the graph rules allow it
    with pytest.raises(IntegrityError, match=r"'FusedGemm' .* name of an ONNX Runtime kernel"):
        create_session(model.SerializeToString(), origin="own.mpk", model=model)


@pytest.mark.parametrize("case", sorted(c for c in CASES if c.startswith("local function in")))
def test_the_session_factory_refuses_kernel_domains_even_past_the_graph_check(case):
    model = CASES[case]
    with pytest.raises(IntegrityError, match=r"domain or the name of an ONNX Runtime kernel"):
        create_session(model.SerializeToString(), origin="k.mpk", model=model)


def test_a_legitimate_local_function_loads_and_runs():
    model = crafted.legitimate_function()
    b = Bundle(crafted.bundle_files(model, **crafted.FLOAT_IO), origin="fn.mpk")
    np.testing.assert_allclose(b.predict({"X": X})["Y"], 2 * X)
