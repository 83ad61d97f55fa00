"""modelport.runtime.session.run_graph: a bare graph run over several batches in one session, and
ONNX Runtime's errors (a graph it cannot load, a batch it cannot run) as ModelportError naming the batch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from modelport.errors import ModelportError
from modelport.runtime.session import run_graph


def _gather_graph() -> bytes:
    """y = table[ids]: ONNX Runtime refuses ids outside the table, as an Embedding's original does."""
    table = helper.make_tensor("table", TensorProto.FLOAT, [3, 2], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["y"], axis=0)],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_every_batch_is_answered_in_order():
    blob = _gather_graph()
    got = run_graph(blob, [{"ids": np.array([2])}, {"ids": np.array([0, 1, 2, 1])}, {"ids": np.zeros(0, np.int64)}])
    assert [r["y"].shape for r in got] == [(1, 2), (4, 2), (0, 2)]
    np.testing.assert_array_equal(got[0]["y"], [[4.0, 5.0]])
    np.testing.assert_array_equal(got[1]["y"], [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [2.0, 3.0]])


def test_errors_are_modelport_errors_that_name_the_batch():
    blob = _gather_graph()
    with pytest.raises(ModelportError, match=r"batch of 5 row\(s\)"):
        run_graph(blob, [{"ids": np.array([0])}, {"ids": np.array([0, 1, 2, 3, 0])}])
    with pytest.raises(ModelportError, match=r"batch of 1 row\(s\)"):
        run_graph(blob, [{"ids": np.array([0.5], dtype=np.float32)}])  # a wrong dtype
    with pytest.raises(ModelportError, match="cannot load this graph"):
        run_graph(b"not an onnx graph", [{"ids": np.array([0])}])
