"""Realised metrics equal scikit-learn's; CBPE tracks the realised accuracy of calibrated probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from modelport.monitor.estimate import Calibration, estimate
from modelport.monitor.feedback import realised_metrics


@pytest.mark.parametrize("k", [2, 3])
def test_classifier_metrics_equal_sklearn(k):
    rng = np.random.default_rng(k)
    proba = rng.dirichlet(np.ones(k), size=400)
    y = np.array([rng.choice(k, p=p) for p in proba])
    pred = proba.argmax(axis=1)
    got = realised_metrics("classification", list(range(k)), y, labels=pred, proba=proba)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=list(range(k))), abs=1e-9)
    if k == 2:
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]), abs=1e-12)
        assert got["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    else:
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"), abs=1e-12)
        assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)


def test_regressor_metrics_equal_sklearn():
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    p = y + rng.normal(scale=0.3, size=300)
    got = realised_metrics("regression", None, y, prediction=p)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)), abs=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), abs=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y, p), abs=1e-12)


def test_cbpe_estimates_the_accuracy_of_calibrated_probabilities_and_calibration_fixes_overconfidence():
    rng = np.random.default_rng(5)
    p1 = rng.uniform(size=20_000)
    y = (rng.uniform(size=p1.size) < p1).astype(int)  # calibrated by construction
    proba = np.column_stack([1 - p1, p1])
    est = estimate(proba)
    real = realised_metrics("classification", [0, 1], y, proba=proba)
    assert est["accuracy"] == pytest.approx(real["accuracy"], abs=0.01)
    assert est["roc_auc"] == pytest.approx(real["roc_auc"], abs=0.01)
    # an overconfident model: its raw estimate is too high, the calibrated one is right
    sharp = np.clip(0.5 + (p1 - 0.5) * 1.9, 0, 1)
    over = np.column_stack([1 - sharp, sharp])
    raw = estimate(over)["accuracy"]
    cal = Calibration.fit(over[:10_000], y[:10_000])
    fixed = estimate(over[10_000:], calibration=cal)["accuracy"]
    truth = realised_metrics("classification", [0, 1], y[10_000:], proba=over[10_000:])["accuracy"]
    assert abs(raw - truth) > 0.05 and fixed == pytest.approx(truth, abs=0.015)
