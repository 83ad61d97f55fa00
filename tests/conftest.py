"""Shared fixtures: small real models and data, and the real servers' addresses."""

from __future__ import annotations

import os

import numpy as np
import pytest


def service_url(var: str) -> str:
    """The URL of a real server started by scripts/services.sh; fail in CI, skip elsewhere."""
    url = os.environ.get(var)
    if not url:
        msg = f"{var} is not set; run `eval \"$(scripts/services.sh start)\"` first"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return service_url("MODELPORT_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return service_url("MODELPORT_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def iris():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X, y


@pytest.fixture(scope="session")
def iris_forest(iris):
    from sklearn.ensemble import RandomForestClassifier

    X, y = iris
    return RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0).fit(X, y)


@pytest.fixture(scope="session")
def iris_bundle(iris, iris_forest):
    import modelport as mp

    X, _ = iris
    return mp.pack(iris_forest, X, name="iris", version="1", metrics={"accuracy": 0.97})


@pytest.fixture(scope="session")
def regression_data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 5))
    y = X @ np.array([1.5, -2.0, 0.5, 0.0, 3.0]) + rng.normal(scale=0.1, size=300)
    return X, y


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    # a test never touches the user's real registry under ~/.modelport
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path_factory.mktemp("modelport-home")))
    monkeypatch.delenv("MODELPORT_REGISTRY", raising=False)
