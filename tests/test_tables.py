"""Reading and writing tables: round trips in every format, and clear errors for bad files."""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pytest

from modelport.errors import InputError
from modelport.tables import detect_format, read_table, write_table


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [0.1 + 0.2, np.nan, -1e-300, 123456789.123456789],
            "n": [1, 2, 3, -(2**53)],
            "s": ["a", None, "ç ünïcode", "with,comma \"quoted\""],
            "b": [True, False, True, False],
        }
    )


@pytest.mark.parametrize("ext", ["csv", "parquet", "jsonl", "ndjson", "json"])
def test_round_trip_keeps_values_exactly(tmp_path, frame, ext):
    path = tmp_path / f"t.{ext}"
    write_table(frame, path)
    back = read_table(path)
    assert list(back.columns) == ["x", "n", "s", "b"]
    np.testing.assert_array_equal(back["x"].to_numpy(dtype=float), frame["x"].to_numpy())  # full float precision
    assert back["n"].tolist() == frame["n"].tolist()
    assert back["s"].isna().tolist() == [False, True, False, False]
    assert back["s"].dropna().tolist() == ["a", "ç ünïcode", "with,comma \"quoted\""]
    assert back["b"].tolist() == [True, False, True, False]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left beside it


def test_parquet_keeps_categories_and_dtypes(tmp_path):
    df = pd.DataFrame({"c": pd.Categorical(["u", "v", "u"]), "f": np.array([1, 2, 3], dtype=np.float32)})
    write_table(df, tmp_path / "t.parquet")
    back = read_table(tmp_path / "t.parquet")
    assert str(back["c"].dtype) == "category" and list(back["c"].cat.categories) == ["u", "v"]
    assert back["f"].dtype == np.float32


def test_json_reads_lines_and_arrays(tmp_path):
    (tmp_path / "lines.json").write_text('{"a": 1, "b": "x"}\n\n{"a": 2, "c": true}\n')
    df = read_table(tmp_path / "lines.json")
    assert list(df.columns) == ["a", "b", "c"] and df["a"].tolist() == [1, 2]
    (tmp_path / "array.json").write_text('[{"a": 1.5}, {"a": null}]')
    df = read_table(tmp_path / "array.json")
    assert df["a"].iloc[0] == 1.5 and np.isnan(df["a"].iloc[1])


def test_format_detection_and_override(tmp_path, frame):
    assert detect_format("a.PARQUET") == "parquet"
    assert detect_format("a.ndjson") == "jsonl"
    with pytest.raises(InputError, match=r"cannot tell the table format.*\.txt"):
        detect_format("a.txt")
    with pytest.raises(InputError, match="unknown table format 'xml'"):
        detect_format("a.csv", "xml")
    write_table(frame, tmp_path / "data.txt", format="jsonl")
    assert read_table(tmp_path / "data.txt", format="jsonl")["n"].tolist() == frame["n"].tolist()


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("trunc.csv", b"a,b,c\n1,2,3\n4,5", "looks truncated"),
        ("bad.csv", b"a,b\n1,2\n3,4,5,6\n", "malformed CSV"),
        ("latin.csv", "a\nçà\n".encode("latin-1"), "not UTF-8"),
        ("fake.parquet", b"this is not parquet at all", "not a Parquet file"),
        ("trunc.jsonl", b'{"a": 1}\n{"a": 2}\n{"a": ', "looks truncated"),
        ("list.jsonl", b'{"a": 1}\n[1, 2]\n', "line 2 holds a JSON list"),
        ("bad.jsonl", b'{"a": 1}\n{nope}\n{"a": 3}\n', "invalid JSON on line 2"),
        ("none.jsonl", b"\n\n", "holds no records"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=needle) as err:
        read_table(path)
    assert str(path) in str(err.value)


def test_truncated_parquet(tmp_path, frame):
    write_table(frame, tmp_path / "t.parquet")
    data = (tmp_path / "t.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_table(tmp_path / "cut.parquet")


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        read_table(tmp_path / "d.csv")


def test_write_to_streams(frame, capsysbinary):
    write_table(frame, None, format="jsonl")
    out = capsysbinary.readouterr().out.decode()
    assert out.splitlines()[1] == '{"x": null, "n": 2, "s": null, "b": false}'
    binary = io.BytesIO()
    write_table(frame, binary, format="parquet")
    assert binary.getvalue()[:4] == b"PAR1"
    text = io.StringIO()
    write_table(frame, text)  # CSV by default
    assert text.getvalue().splitlines()[0] == "x,n,s,b"
    with pytest.raises(InputError, match="Parquet is binary"):
        write_table(frame, io.StringIO(), format="parquet")


def test_write_is_atomic(tmp_path, frame):
    target = tmp_path / "out.parquet"
    target.write_bytes(b"previous content")
    bad = pd.DataFrame({"obj": [object(), object()]})  # pyarrow cannot store arbitrary objects
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error type is not ours to pin
        write_table(bad, target)
    assert target.read_bytes() == b"previous content"
    assert sorted(os.listdir(tmp_path)) == ["out.parquet"]
    write_table(frame, target)
    assert read_table(target)["n"].tolist() == frame["n"].tolist()
