"""The prediction log writer itself: any fsspec URL, bounded queue (drops are counted, never
silent), rotation by size, bad arguments refused with modelport errors."""

from __future__ import annotations

import threading
import time

import pytest

import modelport as mp
from modelport.errors import InputError
from modelport.monitor.log import PredictionLog
from modelport.monitor.read import read_log, writers

from .conftest import churn_frame


def test_an_fsspec_url_holds_the_same_log(churn_path):
    import fsspec

    bundle = mp.load(churn_path)
    frame = churn_frame(300, 2)
    url = "memory://mp-log-test"
    with PredictionLog(url, rotate_seconds=3600) as log:
        log.model(bundle).write("m", len(frame), data=frame, outputs=bundle.predict(frame))
    got = read_log(url)
    assert got.num_rows == 300 and sorted(got.column("id").to_pylist()) == sorted(f"m:{i}" for i in range(300))
    assert writers(url)[0]["written"] == 300
    fs = fsspec.filesystem("memory")
    assert not [p for p in fs.find("/mp-log-test") if p.rsplit("/", 1)[-1].startswith(".")]  # no temporaries left
    fs.rm("/mp-log-test", recursive=True)


def test_a_writer_that_falls_behind_drops_and_counts_never_blocks(tmp_path, churn_path):
    bundle = mp.load(churn_path)
    frame = churn_frame(50, 3)
    out = bundle.predict(frame)
    log = PredictionLog(tmp_path / "log", max_pending_rows=200, rotate_seconds=3600, tick=5.0)
    target = log.model(bundle)
    gate = threading.Event()
    log.listeners.append(lambda *a: gate.wait(10))  # the writer thread is stuck on its first batch
    accepted = [target.write(f"r{i}", 50, data=frame, outputs=out) for i in range(40)]
    assert not all(accepted) and any(accepted)  # some queued, then dropped: the caller never waited
    gate.set()
    log.close()
    s = log.stats
    assert s.accepted == 2000 and s.dropped > 0 and s.written + s.dropped == s.accepted
    assert read_log(str(tmp_path / "log")).num_rows == s.written
    assert writers(str(tmp_path / "log"))[0]["dropped"] == s.dropped


def test_files_rotate_by_size(tmp_path, churn_path):
    bundle = mp.load(churn_path)
    frame = churn_frame(2000, 4)
    out = bundle.predict(frame)
    with PredictionLog(tmp_path / "log", max_file_bytes=20_000, row_group_rows=500, rotate_seconds=3600, tick=0.05) as log:
        target = log.model(bundle)
        for i in range(10):
            log.wait_room(2000)
            target.write(f"b{i}", 2000, data=frame, outputs=out)
            time.sleep(0.3)  # a tick between writes: sizes are checked at each tick
    files = list((tmp_path / "log").rglob("*.parquet"))
    assert len(files) > 1 and read_log(str(tmp_path / "log")).num_rows == 20_000


@pytest.mark.parametrize("kwargs, phrase", [
    ({"sample": 1.5}, "sample rate"), ({"sample": True}, "sample rate"), ({"rotate_seconds": 0}, "rotate_seconds"),
    ({"max_pending_rows": -1}, "max_pending_rows"),
])
def test_bad_arguments_are_input_errors(tmp_path, kwargs, phrase):
    with pytest.raises(InputError, match=phrase):
        PredictionLog(tmp_path / "log", **kwargs)


def test_a_write_without_inputs_or_with_a_bad_role_is_refused(tmp_path, churn_path):
    bundle = mp.load(churn_path)
    with PredictionLog(tmp_path / "log") as log:
        target = log.model(bundle)
        with pytest.raises(InputError, match="feeds or the input data"):
            target.write("x", 1, outputs={})
        with pytest.raises(InputError, match="role"):
            target.write("x", 1, data=[{}], outputs={}, role="boss")
        with pytest.raises(InputError, match="request ids"):
            target.write("x", 2, data=[{}, {}], outputs={}, request_ids=["a"])
