"""Shared fixtures: small real models and data, and the real servers' addresses."""

from __future__ import annotations

import os

import numpy as np
import pytest

#: set by scripts/test.sh (and so in CI): every skip is a failure, because in the project's own
#: environment a missing dependency, server or converter is a regression, not a reason to skip
STRICT = bool(os.environ.get("MODELPORT_STRICT_TESTS") or os.environ.get("CI"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under scripts/test.sh, where nothing may be skipped: {reason}"


def pytest_collectreport(report):
    # a module-level importorskip skips at collection time
    if STRICT and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{report.nodeid}: skipped at collection under scripts/test.sh: {reason}"


def service_url(var: str) -> str:
    """The URL of a real server started by scripts/services.sh; skipped (a failure under
    scripts/test.sh) when it is not set."""
    url = os.environ.get(var)
    if not url:
        pytest.skip(f"{var} is not set; run `eval \"$(scripts/services.sh start)\"` first")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return service_url("MODELPORT_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return service_url("MODELPORT_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def nats_url() -> str:
    """nats-server -js (JetStream) started by scripts/services.sh."""
    return service_url("MODELPORT_TEST_NATS_URL")


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
