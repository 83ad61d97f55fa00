"""Fixtures for the core-format tests: a saved bundle's files, crafted archives, a DataFrame bundle."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from modelport.bundle import manifest as mf


def _zip(entries: Mapping[str, bytes], *, modes: Mapping[str, int] | None = None,
         compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip with exactly these entries (names unchecked), optionally with unix modes per entry."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.create_system = 3
            info.external_attr = ((modes or {}).get(name, stat.S_IFREG | 0o644)) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _with_manifest(files: Mapping[str, bytes], edit: Callable[[dict[str, Any]], None] | None = None,
                   *, refresh_table: bool = True) -> dict[str, bytes]:
    """``files`` with the manifest's files table recomputed (after replacing contents) and edited."""
    out = dict(files)
    manifest = json.loads(out["manifest.json"])
    if refresh_table:
        manifest["files"] = mf.files_table({k: v for k, v in out.items() if k != "manifest.json"})
    if edit is not None:
        edit(manifest)
    out["manifest.json"] = mf.dumps(manifest)
    return out


@pytest.fixture(scope="session")
def make_zip() -> Callable[..., bytes]:
    return _zip


@pytest.fixture(scope="session")
def with_manifest() -> Callable[..., dict[str, bytes]]:
    return _with_manifest


@pytest.fixture
def iris_files(iris_bundle) -> dict[str, bytes]:
    return dict(iris_bundle.files)


@pytest.fixture(scope="session")
def frame_model():
    """A ColumnTransformer pipeline over a DataFrame with numeric and string columns, and its data."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame({
        "age": rng.uniform(18, 80, n),
        "income": rng.normal(50_000, 15_000, n),
        "city": rng.choice(["paris", "lyon", "nice"], n),
    })
    y = ((df["age"] > 45) ^ (df["city"] == "nice")).astype(int).to_numpy()
    pre = ColumnTransformer([
        ("num", StandardScaler(), ["age", "income"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
    ])
    model = make_pipeline(pre, LogisticRegression(max_iter=1000)).fit(df, y)
    return model, df


@pytest.fixture(scope="session")
def frame_bundle(frame_model):
    import modelport as mp

    model, df = frame_model
    return mp.pack(model, df, name="people")


@pytest.fixture(scope="session")
def lr_iris(iris):
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    return LogisticRegression(max_iter=1000).fit(X, y)


@pytest.fixture(scope="session")
def lr_bundle(iris, lr_iris):
    """A logistic regression on iris: it cannot take NaN, so every column refuses missing values."""
    import modelport as mp

    X, _ = iris
    return mp.pack(lr_iris, X, name="lr")
