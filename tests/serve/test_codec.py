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


# ----------------------------------------------------------------------------- bounds
@pytest.mark.parametrize(
    ("shape", "needle"),
    [
        ([-1, 4], "non-negative integers"),
        ([1.0, 4], "non-negative integers"),
        ([True], "non-negative integers"),
        ("4", "non-negative integers"),
        ([2**62, 2**62], "int64"),
        ([0, 2**62, 4], "int64"),  # no elements, but numpy could not even describe the shape
        ([1] * 33, "at most 32"),
    ],
)
def test_shapes_are_checked_before_anything_is_allocated(shape, needle):
    with pytest.raises(InputError, match=needle):
        codec.parse_shape("x", shape)
    assert codec.parse_shape("x", [0, 4]) == (0, 4) and codec.parse_shape("x", [1] * 32) == (1,) * 32


@pytest.mark.parametrize("datatype", ["BYTES", "FP32", "INT64", "BOOL"])
def test_a_declared_shape_never_allocates_more_than_the_data_backs(datatype):
    import tracemalloc

    raw = struct.pack("<I", 1) * 30  # 120 bytes
    tracemalloc.start()
    try:
        with pytest.raises(InputError):
            codec.from_raw("x", datatype, [300_000_000], raw)
        with pytest.raises(InputError):
            codec.tensor_from_json("x", datatype, [300_000_000], [1])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # the old BYTES decoder allocated 2.4 GB here


def test_integer_range_is_one_rule_for_json_and_typed_contents():
    for datatype, bad in (("INT8", 1000), ("INT8", -129), ("UINT8", 256), ("UINT8", -1), ("INT16", 40000),
                          ("UINT16", 70000), ("INT32", 2**31), ("UINT32", -1), ("INT64", 2**63), ("UINT64", -1)):
        with pytest.raises(InputError, match=f"{datatype} holds integers from") as from_json:
            codec.tensor_from_json("x", datatype, [2], [bad, 1])
        wide = np.array([bad, 1], dtype=np.uint64 if bad >= 2**63 else np.int64)
        with pytest.raises(InputError, match=f"{datatype} holds integers from") as from_typed:
            codec.check_integers("x", datatype, wide)
        assert from_json.value.message == from_typed.value.message
    # the extremes themselves fit, exactly (no float rounding at 2**63 / 2**64)
    assert codec.tensor_from_json("x", "UINT64", [2], [2**64 - 1, 0]).tolist() == [2**64 - 1, 0]
    assert codec.tensor_from_json("x", "INT64", [2], [-(2**63), 2**63 - 1]).tolist() == [-(2**63), 2**63 - 1]
    assert codec.check_integers("x", "INT8", np.array([-128, 127])).dtype == np.int8
    with pytest.raises(InputError, match="whole numbers"):
        codec.tensor_from_json("x", "INT32", [1], [1.5])
    with pytest.raises(InputError, match="must be integers"):
        codec.tensor_from_json("x", "INT32", [1], ["7"])


def test_floats_too_large_for_their_datatype_are_refused_explicit_infinities_are_values():
    with pytest.raises(InputError, match="FP32 holds finite numbers"):
        codec.tensor_from_json("x", "FP32", [2], [1e39, 1.0])
    with pytest.raises(InputError, match="FP16 holds finite numbers"):
        codec.tensor_from_json("x", "FP16", [1, 2], [[70000.0, 1.0]])
    with pytest.raises(InputError, match="FP16 holds finite numbers"):
        codec.tensor_from_json("x", "FP16", [2], ["1e6", None])
    out = codec.tensor_from_json("x", "FP32", [4], ["inf", "-inf", "NaN", None])
    assert np.isposinf(out[0]) and np.isneginf(out[1]) and np.isnan(out[2:]).all()
    assert codec.tensor_from_json("x", "FP64", [1], [1e300]).tolist() == [1e300]


def test_long_names_are_cut_in_messages():
    with pytest.raises(InputError) as err:
        codec.from_raw("n" * 100_000, "FP32", [1], b"")
    assert len(err.value.message) < 500 and "100000 characters" in err.value.message
