"""Write the sklearn2pmml fixtures of tests/data/pmml/ (run by scripts/make_pmml_fixtures.sh in its own venv).

sklearn2pmml needs its own scikit-learn (1.9.0 today; it refuses the 1.9.1 the project's lock pins), so
these files are generated once, outside the test environment, and committed. Each fixture is a
NAME.pmml beside NAME.csv, the rows it was trained on (a sample for ``modelport pack``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn2pmml import sklearn2pmml
from sklearn2pmml.decoration import CategoricalDomain, ContinuousDomain
from sklearn2pmml.pipeline import PMMLPipeline

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/pmml")
rng = np.random.default_rng(7)
N = 300


def frame(missing: bool = False) -> pd.DataFrame:
    df = pd.DataFrame({
        "age": rng.integers(18, 80, N).astype(float),
        "income": np.round(rng.lognormal(10, 0.6, N), 2),
        "score": np.round(rng.normal(0.0, 1.0, N), 4),
        "city": rng.choice(["paris", "lyon", "nice", "lille"], N),
    })
    if missing:
        df.loc[rng.random(N) < 0.08, "score"] = np.nan
        df.loc[rng.random(N) < 0.05, "income"] = np.nan
    return df


def binary_y(df: pd.DataFrame) -> np.ndarray:
    z = 0.04 * (df["age"] - 45) + 0.8 * df["score"].fillna(0) + (df["city"] == "nice") * 0.7
    return np.where(z + rng.normal(0, 0.5, len(df)) > 0, "yes", "no")


def save(name: str, pipeline: PMMLPipeline, df: pd.DataFrame, **kw: object) -> None:
    sklearn2pmml(pipeline, str(OUT / f"{name}.pmml"), **kw)
    df.to_csv(OUT / f"{name}.csv", index=False)
    print("wrote", name)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    num = ["age", "income", "score"]

    df = frame()
    y = binary_y(df)
    pre = ColumnTransformer([("num", StandardScaler(), num), ("cat", OneHotEncoder(), ["city"])])
    p = PMMLPipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))])
    p.fit(df, y)
    save("sklearn_logistic", p, df)

    df = frame()
    y3 = np.select([df["score"] < -0.4, df["score"] < 0.5], ["low", "mid"], "high")
    p = PMMLPipeline([("clf", DecisionTreeClassifier(max_depth=4, random_state=0))])
    p.fit(df[num], y3)
    save("sklearn_tree", p, df[num])

    df = frame()
    yr = df["age"] * 0.5 + df["score"] * 3 + rng.normal(0, 1, N)
    p = PMMLPipeline([("reg", RandomForestRegressor(n_estimators=8, max_depth=4, random_state=0))])
    p.fit(df[num], yr)
    save("sklearn_forest", p, df[num])

    df = frame()
    p = PMMLPipeline([("pre", ColumnTransformer([("num", "passthrough", num), ("cat", OneHotEncoder(), ["city"])])),
                      ("clf", GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0))])
    p.fit(df, binary_y(df))
    save("sklearn_gbm", p, df)

    df = frame()
    p = PMMLPipeline([
        ("pre", ColumnTransformer([
            ("num", ContinuousDomain(), num),
            ("cat", CategoricalDomain(), ["city"]),
        ])),
        ("ohe", ColumnTransformer([("num", "passthrough", [0, 1, 2]), ("cat", OneHotEncoder(), [3])])),
        ("reg", LinearRegression()),
    ])
    p.fit(df, yr)
    save("sklearn_linear_domain", p, df)

    df = frame()
    p = PMMLPipeline([("pre", StandardScaler()), ("clf", MLPClassifier(hidden_layer_sizes=(5,), max_iter=300,
                                                                          random_state=0))])
    p.fit(df[num], y3)
    save("sklearn_mlp", p, df[num])

    df = frame()
    p = PMMLPipeline([("clf", GaussianNB())])
    p.fit(df[num], y3)
    save("sklearn_naive_bayes", p, df[num])

    df = frame()
    p = PMMLPipeline([("pre", StandardScaler()), ("km", KMeans(n_clusters=3, n_init=3, random_state=0))])
    p.fit(df[num])
    save("sklearn_kmeans", p, df[num])

    df = frame()
    p = PMMLPipeline([("pre", StandardScaler()), ("svc", SVC(kernel="rbf", C=1.0))])
    p.fit(df[num], binary_y(df))
    save("sklearn_svc", p, df[num])

    df = frame()
    p = PMMLPipeline([("reg", DecisionTreeRegressor(max_depth=5, random_state=0))])
    p.fit(df[num], yr)
    save("sklearn_tree_regressor", p, df[num])

    # XGBoost and LightGBM (float32 thresholds: JPMML's x-mathContext="float"), with missing values
    import lightgbm as lgb
    import xgboost as xgb

    df = frame(missing=True)
    p = PMMLPipeline([("clf", xgb.XGBClassifier(n_estimators=12, max_depth=3, learning_rate=0.3, random_state=0))])
    p.fit(df[num], (binary_y(df) == "yes").astype(int))
    save("xgboost_binary", p, df[num])

    df = frame(missing=True)
    p = PMMLPipeline([("reg", xgb.XGBRegressor(n_estimators=10, max_depth=3, random_state=0))])
    p.fit(df[num], df["age"] * 0.3 + df["score"].fillna(0))
    save("xgboost_regressor", p, df[num])

    df = frame(missing=True)
    p = PMMLPipeline([("clf", lgb.LGBMClassifier(n_estimators=8, num_leaves=6, random_state=0, verbose=-1,
                                                   min_child_samples=5))])
    p.fit(df[num], y3)
    save("lightgbm_multiclass", p, df[num])

    df = frame(missing=True)
    p = PMMLPipeline([("reg", lgb.LGBMRegressor(n_estimators=8, num_leaves=6, random_state=0, verbose=-1))])
    p.fit(df[num], df["age"] * 0.3 + df["score"].fillna(0))
    save("lightgbm_regressor", p, df[num])


if __name__ == "__main__":
    main()
