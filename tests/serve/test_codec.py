"""The V2 tensor encodings: raw (binary extension / gRPC raw contents) and JSON."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from modelport.errors import InputError
from modelport.serve import codec


@pytest.mark.parametrize("datatype", ["BOOL", "UINT8", "INT16", "INT32", "INT64", "UINT64", "FP16", "FP32", "FP64"])
def test_raw_round_trip(datatype):
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(3, 4)) * 10).astype(codec.V2_TO_NUMPY[datatype])
    raw = codec.to_raw(arr, datatype)
    assert len(raw) == arr.size * arr.dtype.itemsize
    np.testing.assert_array_equal(codec.from_raw("t", datatype, [3, 4], raw), arr)


def test_raw_bytes_are_length_prefixed():
    arr = np.array([["a", "bé"], ["", "xyz"]], dtype=object)
    raw = codec.to_raw(arr, "BYTES")
    assert raw[:5] == struct.pack("<I", 1) + b"a"
    back = codec.from_raw("t", "BYTES", [2, 2], raw)
    assert back.tolist() == [[b"a", "bé".encode()], [b"", b"xyz"]]
    with pytest.raises(InputError, match="ends after"):
        codec.from_raw("t", "BYTES", [5], raw)
    with pytest.raises(InputError, match="left over"):
        codec.from_raw("t", "BYTES", [3], raw)
    with pytest.raises(InputError, match="past the end"):
        codec.from_raw("t", "BYTES", [1], struct.pack("<I", 99) + b"ab")


def test_raw_size_mismatch_names_the_input():
    with pytest.raises(InputError, match=r"input 'X': 12 bytes .* shape \[2, 2\] of FP32 \(16 bytes expected\)"):
        codec.from_raw("X", "FP32", [2, 2], b"\0" * 12)


def test_json_flat_nested_and_errors():
    np.testing.assert_array_equal(codec.tensor_from_json("x", "INT64", [2, 2], [[1, 2], [3, 4]]), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(codec.tensor_from_json("x", "FP32", [2, 2], [1, 2, 3, 4]), [[1, 2], [3, 4]])
    assert codec.tensor_from_json("x", "BOOL", [2], [True, False]).dtype == np.bool_
    assert codec.tensor_from_json("x", "BYTES", [1, 2], [["a", "b"]]).tolist() == [["a", "b"]]
    assert np.isnan(codec.tensor_from_json("x", "FP64", [2], [None, "NaN"])).all()  # missing values
    with pytest.raises(InputError, match="needs 4 elements but data holds 3"):
        codec.tensor_from_json("x", "FP32", [2, 2], [1, 2, 3])
    with pytest.raises(InputError, match="BOOL"):
        codec.tensor_from_json("x", "BOOL", [1], [7])
    with pytest.raises(InputError, match="INT64"):
        codec.tensor_from_json("x", "INT64", [1], [None])
    with pytest.raises(InputError, match="shape must be"):
        codec.parse_shape("x", [1, True])
    with pytest.raises(InputError, match="parameter 'a'"):
        codec.parameters({"a": [1]}, "request")
