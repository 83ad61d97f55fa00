"""``modelport pack MODEL_FILE sample.csv`` for models trained on pandas categoricals (the README's
form): the installed console script, in a subprocess, on real XGBoost JSON / UBJ and LightGBM text
model files; the CSV's text columns take the categories stored in the model file, and the bundle
matches the library on fresh rows."""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelport as mp

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

BIN = Path(sysconfig.get_path("scripts"))
COLORS = ["red", "green", "blue", "black"]


def _modelport(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(cwd), "LANG": "C.UTF-8",
           "MODELPORT_HOME": str(cwd / "home")}
    return subprocess.run([str(BIN / "modelport"), *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(size=n),
        "color": pd.Categorical(rng.choice(COLORS, n), categories=sorted(COLORS)),
        "tier": pd.Categorical(rng.choice([1, 2, 3], n), categories=[1, 2, 3]),
    })


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("categorical-csv")
    df = _frame(1500, 0)
    y = ((df.x > 0) ^ (df.color == "red") ^ (df.tier == 2)).astype(int)
    model = xgb.XGBClassifier(n_jobs=1, n_estimators=20, max_depth=3, enable_categorical=True).fit(df, y)
    model.save_model(d / "xgb.json")
    model.save_model(d / "xgb.ubj")
    lgb.LGBMClassifier(n_estimators=20, verbose=-1, min_child_samples=5).fit(df, y).booster_.save_model(d / "lgb.txt")
    df.head(400).to_csv(d / "sample.csv", index=False)
    return d


def _library(work: Path, name: str, fresh: pd.DataFrame) -> np.ndarray:
    if name.startswith("xgb"):
        m = xgb.XGBClassifier()
        m.load_model(work / name)
        return m.predict_proba(fresh)[:, 1]
    return lgb.Booster(model_file=str(work / name)).predict(fresh)


@pytest.mark.parametrize("name", ["xgb.json", "xgb.ubj", "lgb.txt"])
def test_pack_csv_sample_of_a_categorical_model(work, name):
    out = work / f"{name}.mpk"
    r = _modelport("pack", work / name, work / "sample.csv", "-o", out, "--overwrite", "--json", cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["parity"]["pass"] is True
    bundle = mp.load(out)
    color = bundle.signature.column("color")
    assert color.dtype == "category" and color.categories == tuple(sorted(COLORS))
    assert bundle.signature.column("tier").categories == (1, 2, 3)
    # fresh rows, as a DataFrame of categories and as the text of a CSV file
    fresh = _frame(300, 7)
    want = _library(work, name, fresh)
    np.testing.assert_allclose(bundle.predict(fresh)["probabilities"][:, 1], want, atol=1e-6)
    fresh.to_csv(work / "fresh.csv", index=False)
    r = _modelport("predict", out, work / "fresh.csv", "-o", work / "scored.csv", cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    np.testing.assert_allclose(pd.read_csv(work / "scored.csv")["proba_1"].to_numpy(), want, atol=1e-6)
    r = _modelport("verify", out, "--original", work / name, "--data", work / "fresh.csv", cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr


def test_csv_with_a_value_the_model_does_not_know_is_refused(work):
    bad = pd.read_csv(work / "sample.csv")
    bad.loc[5, "color"] = "purple"
    bad.to_csv(work / "bad.csv", index=False)
    r = _modelport("pack", work / "lgb.txt", work / "bad.csv", "-o", work / "bad.mpk", cwd=work)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "column 'color' holds values the model was not trained on: 'purple'" in r.stderr + r.stdout
    assert not (work / "bad.mpk").exists()


def test_unknown_categories_option_is_stored(work):
    out = work / "strict.mpk"
    r = _modelport("pack", work / "lgb.txt", work / "sample.csv", "-o", out, "--unknown-categories", "error",
                   "--overwrite", cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    assert mp.load(out).signature.column("color").unknown == "error"
    r = _modelport("pack", work / "lgb.txt", work / "sample.csv", "-o", out, "--unknown-categories", "ignore",
                   "--overwrite", cwd=work)
    assert r.returncode == 2 and "Invalid value for '--unknown-categories'" in r.stderr
