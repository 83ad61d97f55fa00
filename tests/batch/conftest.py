"""Fixtures for batch scoring: real models packed into bundles, and input files written with pyarrow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

FEATURES = ["a", "b", "c", "d", "e"]


def make_frame(n: int, seed: int) -> pd.DataFrame:
    """Fresh rows of the training distribution, with an id and a timestamp the model does not read."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    df.insert(0, "id", np.arange(n, dtype=np.int64) + 1000)
    df["note"] = [f"row{i}" for i in range(n)]
    return df


@pytest.fixture(scope="session")
def classifier():
    from sklearn.ensemble import GradientBoostingClassifier

    train = make_frame(600, 1)
    y = np.where(train["a"] + train["b"] > 0.3, 2, np.where(train["c"] > 0, 1, 0))
    # gradient boosting takes no missing values, so NaN rows are row errors
    model = GradientBoostingClassifier(n_estimators=12, max_depth=3, random_state=0).fit(train[FEATURES], y)
    return model, train[FEATURES]


@pytest.fixture(scope="session")
def clf_bundle(classifier):
    import modelport as mp

    model, sample = classifier
    return mp.pack(model, sample, name="clf")


@pytest.fixture(scope="session")
def clf_path(clf_bundle, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundles") / "clf.mpk"
    clf_bundle.save(path)
    return path


@pytest.fixture(scope="session")
def regressor():
    from sklearn.ensemble import GradientBoostingRegressor

    train = make_frame(500, 2)
    y = 2 * train["a"] - train["d"] + 0.5 * train["e"] ** 2
    model = GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0).fit(train[FEATURES], y)
    return model, train[FEATURES]


@pytest.fixture(scope="session")
def reg_bundle(regressor):
    import modelport as mp

    model, sample = regressor
    return mp.pack(model, sample, name="reg")


@pytest.fixture(scope="session")
def text_bundle():
    """A pipeline with a string input: missing strings cannot be scored."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    import modelport as mp

    rng = np.random.default_rng(3)
    df = pd.DataFrame({"city": rng.choice(["oslo", "rome", "lima"], 300), "x": rng.normal(size=300)})
    y = (df["city"] == "rome").astype(int) ^ (df["x"] > 1).astype(int)
    pipe = Pipeline([
        ("ct", ColumnTransformer([("oh", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough")),
        ("lr", LogisticRegression()),
    ]).fit(df, y)
    return mp.pack(pipe, df, name="text"), pipe, df


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    return make_frame(5_000, 42)


@pytest.fixture(scope="session")
def parquet_file(frame, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "input.parquet"
    # row groups that do not line up with any chunk size used in the tests
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=777)
    return path


@pytest.fixture(scope="session")
def csv_file(frame, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "input.csv"
    frame.to_csv(path, index=False)
    return path
