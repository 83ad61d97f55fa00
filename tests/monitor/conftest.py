"""Fixtures for the monitoring tests: a binary churn classifier with a category column, a regressor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import modelport as mp


def churn_frame(n: int, seed: int, *, shift: float = 0.0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(18, 80, n).astype(np.float64) + shift,
        "plan": rng.choice(["basic", "pro", "max"], n, p=[0.5, 0.3, 0.2]),
        "spend": rng.normal(50, 10, n),
    })


def churn_label(df) -> np.ndarray:
    return ((df.spend > 50) ^ (df.plan == "max")).astype(int).to_numpy()


@pytest.fixture(scope="session")
def churn_model():
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    df = churn_frame(600, 1)
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan"]), remainder="passthrough"),
        LogisticRegression(max_iter=1000),
    ).fit(df, churn_label(df))
    return model, df


@pytest.fixture(scope="session")
def churn_path(tmp_path_factory, churn_model) -> Path:
    model, df = churn_model
    path = tmp_path_factory.mktemp("monitor-bundles") / "churn.mpk"
    mp.pack(model, df, name="churn", version="1").save(path)
    return path


@pytest.fixture(scope="session")
def churn_v2_path(tmp_path_factory, churn_model) -> Path:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    _, df = churn_model
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["plan"]), remainder="passthrough"),
        RandomForestClassifier(n_estimators=5, max_depth=2, random_state=0),
    ).fit(df, churn_label(df))
    path = tmp_path_factory.mktemp("monitor-bundles-v2") / "churn-v2.mpk"
    mp.pack(model, df, name="churn", version="2").save(path)
    return path


def records(df) -> list[dict]:
    return [{"age": float(a), "plan": str(p), "spend": float(s)} for a, p, s in zip(df.age, df.plan, df.spend)]
