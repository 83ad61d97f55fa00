"""Data shared by the booster converter tests (XGBoost, CatBoost): five features with 15% NaN.

``train`` is (X, binary y, three-class y, regression y); ``fresh`` is new rows, one all-NaN and one
all-zero. test_lightgbm.py overrides both to add LightGBM's zero bin.
"""

from __future__ import annotations

import numpy as np
import pytest

N_FEATURES = 5


def nan_data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[rng.random(X.shape) < 0.15] = np.nan
    return X


@pytest.fixture(scope="module")
def train():
    X = nan_data(400, 0)
    rng = np.random.default_rng(1)
    signal = np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 1], nan=1.0) + 0.3 * rng.normal(size=len(X))
    return X, (signal > 0).astype(int), np.digitize(signal, [-0.5, 0.5]), 3 * np.nan_to_num(X[:, 2]) + signal


@pytest.fixture(scope="module")
def fresh():
    X = nan_data(200, 2)
    X[0] = np.nan  # a row with nothing known
    X[1] = 0.0
    return X
