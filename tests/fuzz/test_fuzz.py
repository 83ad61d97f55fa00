"""The fixed-seed slice of the fuzzing suite that runs with the normal test suite (the full run is
``python -m tests.fuzz --cases 5000``; see tests/fuzz/__init__.py): a few hundred mutated and crafted bundles, each
loaded, inspected, verified and scored in capped worker processes."""

from __future__ import annotations

import pytest
from tests.fuzz import cases, runner

SLICE = 300
SEED = 1234


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return runner.run(cases=SLICE, seed=SEED, workers=2, work=tmp_path_factory.mktemp("fuzz"))


def test_every_hostile_bundle_is_a_clean_refusal_or_answers_like_its_seed(report):
    assert not report.failures, report.summary()
    assert report.cases == SLICE


def test_the_slice_exercises_every_family_and_both_verdicts(report):
    # a suite that refused everything (or nothing) would prove nothing
    assert set(report.by_family) == set(cases.FAMILIES), report.summary()
    assert report.outcomes["refused"] > SLICE // 2, report.summary()
    assert report.outcomes["accepted"] > 20, report.summary()
    for family in ("bomb", "crafted", "truncate"):
        assert set(report.by_family[family]) == {"refused"}, report.summary()


def test_the_runner_counts_every_kind_of_failure(tmp_path):
    # the oracle itself: a raw exception, a hang, a dead worker and a blown memory cap are each counted, and the
    # cases after them still run on fresh workers
    (tmp_path / "secret.bin").write_bytes(runner.SECRET)
    kinds = ["raise", "hang", "die", "memory"]
    dicts = [{"id": i, "path": str(tmp_path / "none.mpk"), "seed_path": "", "same_graph": True, "selftest": k}
             for i, k in enumerate(kinds)]
    dicts.append({"id": 99, "path": str(tmp_path / "none.mpk"), "seed_path": "", "same_graph": True})
    results = runner.run_cases(dicts, tmp_path, n_workers=2, timeout=5.0, cap_mib=512, logs=tmp_path)
    assert results[0]["outcome"] == "raw" and results[0]["error"] == "ValueError"
    assert results[1]["outcome"] == "hang"
    assert results[2]["outcome"] == "killed" and "SIGKILL" in results[2]["error"]
    assert results[3]["outcome"] == "raw" and results[3]["error"] == "MemoryError"  # the cap held
    assert results[99]["outcome"] == "refused"  # no such file: a clean modelport error


def test_answers_are_compared_exactly():
    import numpy as np
    from tests.fuzz import worker

    assert worker._differences({"y": np.array([1.0, 2.0])}, {"y": np.array([1.0, 2.5])}) == ["y: max difference 0.5"]
    assert worker._differences({"label": np.array(["a"])}, {"label": np.array(["b"], dtype=object)}) == \
        ["label: 1 values differ"]
    assert worker._differences({"y": np.array([[1.0]])}, {"y": np.array([1.0])}) == ["y: shape (1,) instead of (1, 1)"]
    assert worker._differences({"y": np.array([np.nan])}, {"y": np.array([np.nan])}) == []
    assert worker._differences({"y": np.array([1.0])}, {}) == ["output y missing"]
