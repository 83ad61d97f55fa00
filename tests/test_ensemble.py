"""``modelport.ensemble.fuse`` and ``modelport ensemble``: one graph whose answers are the
members' answers combined, on rows none of them saw; refusals that name the difference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modelport as mp
from modelport.ensemble import fuse


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    root = tmp_path_factory.mktemp("ensemble")
    made = {
        "a": mp.pack(RandomForestClassifier(12, random_state=0).fit(X, y), X, name="a", version="1"),
        "b": mp.pack(RandomForestClassifier(6, max_depth=2, random_state=1).fit(X, y), X, name="b", version="1"),
        "c": mp.pack(ExtraTreesClassifier(8, random_state=2).fit(X, y), X, name="c", version="1"),
        "sa": mp.pack(RandomForestClassifier(5, random_state=0).fit(X, names), X, name="sa"),
        "sb": mp.pack(ExtraTreesClassifier(5, random_state=0).fit(X, names), X, name="sb"),
        "r1": mp.pack(RandomForestRegressor(6, random_state=0).fit(X[:, :3], X[:, 3]), X[:, :3], name="r1"),
        "r2": mp.pack(GradientBoostingRegressor(n_estimators=15).fit(X[:, :3], X[:, 3]), X[:, :3], name="r2"),
        "two": mp.pack(RandomForestClassifier(4, random_state=0).fit(X, y % 2), X, name="two"),
        "wide": mp.pack(RandomForestClassifier(4, random_state=0).fit(X[:, :3], y), X[:, :3], name="wide"),
    }
    paths = {}
    for key, b in made.items():
        paths[key] = root / f"{key}.mpk"
        b.save(paths[key])
    return {k: mp.load(p) for k, p in paths.items()}, paths


def fresh(n: int = 400, width: int = 4) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.uniform([4, 2, 1, 0][:width], [8, 4.5, 7, 2.5][:width], size=(n, width)).astype(np.float32)


def probs(b: mp.Bundle, x: np.ndarray) -> np.ndarray:
    return b.predict(x)["probabilities"].astype(np.float64)


@pytest.mark.parametrize("method,weights", [("mean", None), ("weighted", [3.0, 1.0, 0.5])])
def test_an_ensemble_equals_the_mean_of_its_members(members, method, weights):
    m, _ = members
    parts = [m["a"], m["b"], m["c"]]
    ens = fuse(parts, method=method, weights=weights)
    x = fresh()
    w = np.array(weights or [1, 1, 1], dtype=np.float64)
    want = sum(wi * probs(p, x) for wi, p in zip(w / w.sum(), parts))
    got = ens.predict(x)
    np.testing.assert_allclose(got["probabilities"], want, atol=1e-6)
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-5  # a tie may fall either way in float32
    assert clear.sum() > 300 and (got["label"][clear] == np.argmax(want, axis=1)[clear]).all()
    assert got["label"].dtype == parts[0].predict(x)["label"].dtype
    assert ens.manifest["lineage"]["members"] == [p.digest for p in parts]
    assert ens.manifest["source"]["method"] == method and ens.manifest["parity"]["pass"]
    assert mp.check(ens).parity.passed  # its reference outputs are re-checked anywhere
    assert fuse(parts, method=method, weights=weights).digest == ens.digest  # deterministic


def test_vote_and_stack(members):
    m, _ = members
    parts = [m["a"], m["b"], m["c"]]
    x = fresh()
    votes = fuse(parts, method="vote", weights=[1, 1, 2]).predict(x)
    onehots = [np.eye(3)[np.argmax(probs(p, x), axis=1)] for p in parts]
    share = (onehots[0] + onehots[1] + 2 * onehots[2]) / 4
    np.testing.assert_allclose(votes["probabilities"], share, atol=1e-6)
    assert (votes["label"] == np.argmax(share, axis=1)).all()  # shares are exact: ties fall to the first class
    assert (votes["label"] == parts[2].predict(x)["label"]).mean() > 0.9  # the double vote nearly always wins

    w, b = [1.5, -0.5, 2.0], [0.2, 0.0, -0.1]
    stacked = fuse(parts, method="stack", weights=w, intercept=b).predict(x)
    logits = np.asarray(b) + sum(wi * probs(p, x) for wi, p in zip(w, parts))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(stacked["probabilities"], e / e.sum(axis=1, keepdims=True), atol=1e-6)


def test_string_classes_and_regressors(members):
    m, _ = members
    x = fresh()
    ens = fuse([m["sa"], m["sb"]], method="mean").predict(x)
    want = (probs(m["sa"], x) + probs(m["sb"], x)) / 2
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-5  # a tie may fall either way in float32
    assert clear.sum() > 300
    names = np.array(["setosa", "versicolor", "virginica"])
    assert list(ens["label"][clear]) == list(names[np.argmax(want, axis=1)][clear])
    assert set(ens["label"]) <= set(names)

    x3 = fresh(width=3)
    y1, y2 = (m[k].predict(x3)["prediction"].astype(np.float64) for k in ("r1", "r2"))
    np.testing.assert_allclose(fuse([m["r1"], m["r2"]]).predict(x3)["prediction"], (y1 + y2) / 2, rtol=1e-6)
    stacked = fuse([m["r1"], m["r2"]], method="stack", weights=[0.7, 0.4], intercept=0.25).predict(x3)
    np.testing.assert_allclose(stacked["prediction"], 0.25 + 0.7 * y1 + 0.4 * y2, rtol=1e-6)


def test_missing_values_are_taken_only_if_every_member_takes_them(members):
    m, _ = members
    x3 = fresh(8, width=3)
    x3[2, 0] = np.nan
    m["r1"].predict(x3)  # the forest takes NaN ...
    with pytest.raises(mp.ModelportError, match="missing values"):
        m["r2"].predict(x3)  # ... the boosted model does not
    ens = fuse([m["r1"], m["r2"]])
    with pytest.raises(mp.ModelportError, match="missing values"):
        ens.predict(x3)  # so the ensemble refuses it rather than answer with r2 scoring a NaN
    assert ens.manifest["parity"]["samples"] > 0


def test_members_that_differ_are_refused_naming_the_difference(members):
    m, _ = members
    cases = [
        ([m["a"], m["r1"]], {}, "task: 'classification' here, 'regression' there"),
        ([m["a"], m["two"]], {}, "classes: [0, 1, 2] here, [0, 1] there"),
        ([m["a"], m["wide"]], {}, "shape [N, 4] here, [N, 3] there"),
        ([m["a"]], {}, "at least two bundles"),
        ([m["a"], m["a"]], {}, "named twice"),
        ([m["a"], m["b"]], {"method": "mean", "weights": [1, 2]}, "takes no weights"),
        ([m["a"], m["b"]], {"method": "weighted"}, "needs one weight per member (2)"),
        ([m["a"], m["b"]], {"method": "weighted", "weights": [1]}, "2 members, 1 weight(s)"),
        ([m["a"], m["b"]], {"method": "weighted", "weights": [1, -1]}, ">= 0 with a positive sum"),
        ([m["a"], m["b"]], {"method": "vote", "weights": [1, float("nan")]}, "finite number"),
        ([m["a"], m["b"]], {"method": "mean", "intercept": 1.0}, "belongs to method 'stack' only"),
        ([m["a"], m["b"]], {"method": "stack", "weights": [1, 1], "intercept": [1, 2]}, "one per class (3)"),
        ([m["r1"], m["r2"]], {"method": "vote"}, "combines classifiers"),
        ([m["a"], m["b"]], {"method": "median"}, "must be one of mean, weighted, vote, stack"),
    ]
    for parts, kw, needle in cases:
        with pytest.raises(mp.ModelportError) as info:
            fuse(parts, **kw)
        assert needle in info.value.message, (needle, info.value.message)


def test_an_ensemble_compiles_and_serves(members, tmp_path):
    from modelport.codegen import compile_bundle

    m, _ = members
    ens = fuse([m["a"], m["b"], m["c"]], method="vote")
    source = compile_bundle(ens, "python").files
    namespace: dict = {}
    exec(compile(next(iter(source.values())), "model.py", "exec"), namespace)  # our own generated code
    x = fresh(50)
    want = ens.predict(x)
    got = namespace["predict"]([list(map(float, row)) for row in x])
    assert [g["label"] for g in got] == want["label"].tolist()
    np.testing.assert_allclose([[g[f"proba_{c}"] for c in range(3)] for g in got], want["probabilities"], atol=1e-6)
    # served, it is one bundle: the V2 answer is the fused graph's
    path = tmp_path / "ens.mpk"
    ens.save(path)
    import httpx

    from modelport.serve import ServeConfig

    from .serve.conftest import thread_server

    with thread_server(ServeConfig(sources=[str(path)])) as url:
        r = httpx.post(f"{url}/v2/models/{ens.name}/infer", json={"inputs": [
            {"name": "X", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert r.status_code == 200, r.text
    out = {o["name"]: o["data"] for o in r.json()["outputs"]}
    assert out["label"] == want["label"].tolist()


def test_the_console_script(members, tmp_path):
    _, paths = members
    exe = Path(sys.executable).with_name("modelport")
    out = tmp_path / "ens.mpk"
    done = subprocess.run([str(exe), "ensemble", str(paths["a"]), str(paths["b"]), str(paths["c"]),
                           "--method", "weighted", "--weights", "2,1,1", "-o", str(out), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    ens = mp.load(out)
    assert doc["digest"] == ens.digest and doc["members"] == [mp.load(paths[k]).digest for k in "abc"]
    verified = subprocess.run([str(exe), "verify", str(out)], capture_output=True, text=True, timeout=300)
    assert verified.returncode == 0, verified.stderr
    bad = subprocess.run([str(exe), "ensemble", str(paths["a"]), str(paths["r1"]), "-o", str(tmp_path / "x.mpk")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "task: 'classification' here, 'regression' there" in bad.stderr
    assert not (tmp_path / "x.mpk").exists()
    worse = subprocess.run([str(exe), "ensemble", str(paths["a"]), str(paths["b"]), "--method", "weighted",
                            "--weights", "1,x", "-o", str(tmp_path / "y.mpk")], capture_output=True, text=True, timeout=300)
    assert worse.returncode == 2 and "numbers separated by commas" in worse.stderr
