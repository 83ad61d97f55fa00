"""The input rules of modelport.runtime.coerce on hand-made signatures: one rule per kind of value,
the same words from build() (whole input) and check() (per row), and the per-row masks batch uses."""

from __future__ import annotations

import time

import numpy as np
import pytest

from modelport.bundle.signature import Signature
from modelport.errors import InputError
from modelport.runtime.coerce import FeedBuilder, records_to_columns


def _sig(columns, inputs=None) -> Signature:
    if inputs is None:
        inputs = [{"name": c["name"], "dtype": c.pop("tensor"), "shape": [None, 1]} for c in columns]
        for c in columns:
            c.update(input=c["name"], index=None)
    return Signature.from_dict({"inputs": inputs, "outputs": [{"name": "y", "dtype": "float32", "shape": [None]}],
                                "columns": columns})


@pytest.fixture(scope="module")
def builder() -> FeedBuilder:
    return FeedBuilder(_sig([
        {"name": "f", "dtype": "float64", "tensor": "float64", "nullable": False},
        {"name": "i8", "dtype": "int32", "tensor": "int8", "nullable": False},
        {"name": "u", "dtype": "int64", "tensor": "uint8", "nullable": False},
        {"name": "b", "dtype": "bool", "tensor": "bool", "nullable": False},
        {"name": "s", "dtype": "str", "tensor": "str", "nullable": False},
    ]))


GOOD = {"f": [1.5, "2.5"], "i8": [-128, 127.0], "u": [0, 255], "b": [True, "false"], "s": ["x", b"y"]}


def test_good_values_of_every_kind(builder):
    feeds = builder.build(GOOD).feeds
    np.testing.assert_array_equal(feeds["f"], [[1.5], [2.5]])
    assert feeds["i8"].dtype == np.int8 and feeds["i8"].ravel().tolist() == [-128, 127]
    assert feeds["u"].dtype == np.uint8
    assert feeds["b"].dtype == np.bool_ and feeds["b"].ravel().tolist() == [True, False]
    assert feeds["s"].ravel().tolist() == ["x", "y"]


@pytest.mark.parametrize(
    ("column", "bad", "message"),
    [
        ("f", None, "column 'f' has missing values (NaN) in row(s) 1; this model cannot take missing values"),
        ("f", "", "column 'f' has missing values (NaN) in row(s) 1"),  # empty text is missing, as in a CSV file
        ("f", "1,5", "column 'f' must be numeric (float64) in row(s) 1; got '1,5'"),
        ("i8", 128, "column 'i8' must hold values that fit int8 (-128 to 127) in row(s) 1; got 128"),
        ("i8", 1.5, "column 'i8' must hold whole numbers (int8) in row(s) 1; got 1.5"),
        ("i8", float("inf"), "column 'i8' must hold whole numbers (int8)"),
        ("u", -1, "column 'u' must hold values that fit uint8 (0 to 255) in row(s) 1; got -1"),
        ("b", 0.5, "column 'b' must hold booleans (true/false, or the numbers 0 and 1) in row(s) 1; got 0.5"),
        ("b", 2, "column 'b' must hold booleans"),
        ("b", "yes", "column 'b' must hold booleans (true/false, or the numbers 0 and 1) in row(s) 1; got 'yes'"),
        ("s", None, "column 's' has missing values in row(s) 1; this model cannot take missing strings"),
        ("s", 5, "column 's' must hold strings in row(s) 1; got 5"),
        ("s", b"\xff", "column 's' holds bytes that are not valid UTF-8 text in row(s) 1"),
    ],
)
def test_bad_values_have_one_message_whole_and_per_row(builder, column, bad, message):
    data = {k: list(v) for k, v in GOOD.items()}
    data[column][1] = bad
    with pytest.raises(InputError) as err:
        builder.build(data)
    assert message in str(err.value)
    checked = builder.check(data)
    assert checked.bad is not None and checked.bad.tolist() == [False, True]
    core = message.split(" in row(s)")[0]
    assert core in checked.reasons[1]
    # the good row is fed on its own
    assert next(iter(checked.feeds.values())).shape[0] == 1


def test_first_problem_per_row_and_many_rows(builder):
    n = 100_000
    data = {"f": np.linspace(0, 1, n), "i8": np.zeros(n), "u": np.ones(n), "b": np.ones(n), "s": np.array(["a"] * n)}
    data["f"][[5, 7]] = np.nan
    data["i8"][[7, 9]] = 0.5
    t0 = time.perf_counter()
    checked = builder.check(data)
    assert time.perf_counter() - t0 < 5
    assert np.flatnonzero(checked.bad).tolist() == [5, 7, 9]
    assert "column 'f'" in checked.reasons[7] and "column 'i8'" in checked.reasons[9]
    assert checked.feeds["f"].shape == (n - 3, 1)


def test_matrix_slots_and_the_tensor_form():
    sig = _sig(
        [{"name": "a", "dtype": "float64", "input": "X", "index": 0, "nullable": False},
         {"name": "c", "dtype": "category", "input": "X", "index": 1, "categories": ["x", "y"], "unknown": "error"},
         {"name": "k", "dtype": "bool", "input": "X", "index": 2}],
        inputs=[{"name": "X", "dtype": "float32", "shape": [None, 3]}],
    )
    b = FeedBuilder(sig)
    np.testing.assert_array_equal(b({"a": [1.0], "c": ["y"], "k": [True]})["X"], [[1.0, 1.0, 1.0]])
    # the tensor form: codes in the category slot; numpy and {"X": ...} alike
    np.testing.assert_array_equal(b(np.array([[1.0, 1.0, 0.0]]))["X"], [[1.0, 1.0, 0.0]])
    np.testing.assert_array_equal(b({"X": [[1.0, 0.0, 1.0]]})["X"], [[1.0, 0.0, 1.0]])
    with pytest.raises(InputError, match=r"column 'c' has category codes outside 0..1 in row\(s\) 0; got 2.0"):
        b(np.array([[1.0, 2.0, 0.0]]))
    with pytest.raises(InputError, match=r"column 'k' must hold booleans .*; got 0.5"):
        b(np.array([[1.0, 1.0, 0.5]]))
    with pytest.raises(InputError, match=r"column 'a' has missing values \(NaN\) in row\(s\) 0"):
        b(np.array([[np.nan, 1.0, 0.0]]))
    with pytest.raises(InputError, match=r"input 'X' must have shape \[N, 3\] \(columns a, c, k\); got shape \[1, 2\]"):
        b(np.array([[1.0, 1.0]]))
    # policies overridden: missing turns an unknown code and an unknown value into NaN, counted
    lenient = FeedBuilder(sig, unknown_categories="missing")
    built = lenient.build({"a": [1.0, 2.0], "c": ["x", "z"], "k": [0, 1]})
    assert np.isnan(built.feeds["X"][1, 1]) and built.unknown == {"c": 1}
    with pytest.raises(InputError, match="unknown_categories must be one of native, missing, error; got 'zeros'"):
        FeedBuilder(sig, unknown_categories="zeros")


def test_numeric_categories_match_numbers_and_their_text():
    sig = _sig([{"name": "t", "dtype": "category", "input": "X", "index": 0, "categories": [1, 2, 3]}],
               inputs=[{"name": "X", "dtype": "float32", "shape": [None, 1]}])
    b = FeedBuilder(sig)
    built = b.build({"t": [1, 2.0, "3", b"2", " ", None, "4", "x"]})
    codes = built.feeds["X"].ravel()
    np.testing.assert_array_equal(codes[:4], [0, 1, 2, 1])
    assert np.isnan(codes[4:]).all()  # blank and None are missing; 4 and x are unknown (missing by default)
    assert built.unknown == {"t": 2}


def test_records_are_linear_and_name_what_is_wrong():
    expected = ["a", "b"]
    assert records_to_columns([{"a": 1}, {"b": 2, "a": 3}], expected) == {"a": [1, 3], "b": [None, 2]}
    with pytest.raises(InputError, match=r"unexpected column\(s\): k0, k1, k2"):
        records_to_columns([{"a": 1, "b": 1}] + [{f"k{i}": 1} for i in range(50_000)], expected)
    with pytest.raises(InputError, match="record 1 is a list"):
        records_to_columns([{"a": 1}, [1, 2]], expected)
    many = [{} for _ in range(600_000)]
    many[0] = {"a": 1, "b": 2}
    with pytest.raises(InputError, match="records must name the model's columns"):
        records_to_columns(many, expected)
    t0 = time.perf_counter()
    with pytest.raises(InputError):
        records_to_columns([{f"k{i}": 1.0} for i in range(200_000)], expected)
    assert time.perf_counter() - t0 < 5
