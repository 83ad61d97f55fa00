"""Parity with infinite answers: equal infinities agree, and an infinite answer in one row does not
hide a wrong answer in another (the relative error's scale is taken over the finite answers)."""

from __future__ import annotations

import numpy as np

from modelport.verification.parity import compare


def test_equal_infinities_agree() -> None:
    e = {"prediction": np.array([np.inf, -np.inf, 1.0, np.nan])}
    report = compare(e, {"prediction": e["prediction"].copy()}, task="regression")
    assert report.passed


def test_opposite_infinities_disagree() -> None:
    report = compare({"prediction": np.array([np.inf, 1.0])}, {"prediction": np.array([-np.inf, 1.0])},
                     task="regression")
    assert not report.passed


def test_an_infinite_answer_does_not_hide_a_wrong_one() -> None:
    e = {"prediction": np.array([np.inf, 1.0, 2.0, 3.0])}
    a = {"prediction": np.array([np.inf, 1.0, 2.0, 30.0])}
    assert not compare(e, a, task="regression").passed
