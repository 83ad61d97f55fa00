"""Reading the prediction log: the rows of a window, as pyarrow.dataset would give them.

read_log reads each file with pyarrow.parquet and filters it itself (pyarrow.dataset costs about a
second of `modelport drift`'s start-up); these tests hold it to the dataset's answer on files the
window leaves whole, cuts, or skips, with null and mixed roles, and on versions whose files differ
in their columns.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from modelport.monitor.read import read_log

T0 = 1_796_000_000.0  # epoch seconds; files hold rows one second apart from here
TS = pa.timestamp("us", tz="UTC")


def _file(root, version: str, name: str, start: int, n: int, *, roles=None, nulls_ts=False, extra=True,
          f0_type=pa.float64()):
    d = root / "model=m" / f"version={version}" / "date=2026-12-01"
    d.mkdir(parents=True, exist_ok=True)
    ts = [int((T0 + start + i) * 1e6) for i in range(n)]
    if nulls_ts:
        ts[1] = None
    cols = {
        "id": pa.array([f"{name}-{i}" for i in range(n)]),
        "ts": pa.array(ts, TS),
        "version": pa.array([version] * n),
        "role": pa.array(roles if roles is not None else ["answer"] * n, pa.string()),
        "in.f0": pa.array([float(start + i) for i in range(n)]).cast(f0_type),
        "out.label": pa.array([i % 2 for i in range(n)], pa.int64()),
    }
    if extra:
        cols["in.f1"] = pa.array([float(-i) for i in range(n)])
    path = d / f"part-{name}.parquet"
    pq.write_table(pa.table(cols), path)
    return str(path)


@pytest.fixture()
def log(tmp_path):
    root = tmp_path / "log"
    files = {
        "1": [_file(root, "1", "20261201T000000-a-000001", 0, 10),
              _file(root, "1", "20261201T000010-a-000002", 10, 10,
                    roles=["answer", "shadow", None, "answer", "shadow", "answer", "answer", "answer", "answer", "x"]),
              _file(root, "1", "20261201T000020-a-000003", 20, 10, nulls_ts=True)],
        # a later file without in.f1 and with in.f0 stored as float32: null there, cast to the first file's type
        "2": [_file(root, "2", "20261201T000000-b-000001", 0, 5),
              _file(root, "2", "20261201T000005-b-000002", 5, 5, extra=False, f0_type=pa.float32())],
    }
    return root, files


def _expected(files, columns, since, until, roles):
    """What the former pyarrow.dataset reading gave: per version, the first file's schema, the filter pushed down."""
    tables = []
    for paths in files.values():
        dataset = ds.dataset(paths, format="parquet")
        names = dataset.schema.names
        wanted = names if columns is None else [n for c in columns for n in names
                                                if (n.startswith(c[:-1]) if c.endswith("*") else n == c)]
        cond = None
        for c in ([ds.field("ts") >= pa.scalar(int(since * 1e6), TS)] if since is not None else []) + \
                 ([ds.field("ts") < pa.scalar(int(until * 1e6), TS)] if until is not None else []) + \
                 ([ds.field("role").isin(list(roles))] if roles is not None else []):
            cond = c if cond is None else cond & c
        tables.append(dataset.to_table(columns=wanted, filter=cond))
    return pa.concat_tables(tables, promote_options="default")


@pytest.mark.parametrize("since, until", [
    (None, None),            # every file whole
    (T0 + 13.5, None),       # cuts version 1's second file, skips its first
    (None, T0 + 24),         # cuts the third file (its null ts is outside), skips nothing before
    (T0 + 100, None),        # after every row
    (T0 + 2, T0 + 7),        # inside one file of each version
    (T0 + 10, T0 + 20),      # exactly the second file of version 1
])
@pytest.mark.parametrize("roles", [("answer",), ("answer", "shadow"), ("nothing",), None])
def test_a_window_reads_the_rows_pyarrow_dataset_reads(log, since, until, roles):
    root, files = log
    columns = ["version", "in.*", "out.*"]
    got = read_log(str(root), since=since, until=until, roles=roles, columns=columns)
    want = _expected(files, columns, since, until, roles)
    assert got.schema.names == want.schema.names
    assert got.to_pylist() == want.to_pylist()
    assert got.schema.field("in.f0").type == pa.float64()


def test_all_columns_and_the_first_files_schema(log):
    root, files = log
    got = read_log(str(root), roles=None)
    want = _expected(files, None, None, None, None)
    assert got.schema.names == want.schema.names
    assert got.to_pylist() == want.to_pylist()
    v2 = [r for r in got.to_pylist() if r["version"] == "2"]
    assert [r["in.f1"] for r in v2][5:] == [None] * 5  # the file without the column
    assert isinstance(got.column("ts")[0].as_py(), dt.datetime)


def test_a_window_of_whole_files_imports_no_pandas_and_no_pyarrow_dataset(tmp_path):
    """The console command's start-up: neither module is imported reading whole (or skipped) files
    into numpy (a file the window cuts is filtered row by row: pyarrow imports pandas for that)."""
    import subprocess
    import sys

    root = tmp_path / "clean"
    _file(root, "1", "20261201T000000-a-000001", 0, 10)
    _file(root, "1", "20261201T000010-a-000002", 10, 10)
    code = ("import sys; from modelport.monitor.read import read_log; from modelport.monitor.drift import _numpy; "
            f"t = read_log({str(root)!r}, since={T0 + 10}, columns=['in.*']); assert t.num_rows == 10; "
            "_numpy(t.column('in.f0')); "
            "print(sorted(m for m in ('pandas', 'pyarrow.dataset') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
