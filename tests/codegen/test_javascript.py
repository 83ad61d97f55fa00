"""The JavaScript target: the generated ES module run under node (not only generated).

Bit-identical to the C target on forests (float32 thresholds, NaN rows, float32 sums with
Math.fround), a few ulps after a softmax; the module's API (rows as arrays or objects, null
as missing, labels, categories, errors); no imports; large programs split over functions.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import modelport as mp
from modelport.cli.main import main
from modelport.codegen import javascript as js_target
from modelport.codegen import lower
from modelport.codegen.check import c_matrix, check, evaluation_rows, run_c
from modelport.codegen.toolchain import Job, run_javascript, tool

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]


def _xy(n=300, f=6, seed=0, nan=True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1).astype(int)
    if nan:
        X[::7, 1] = np.nan
        X[3::11, 0] = np.nan
    return X, y


@pytest.fixture(scope="module")
def bundles():
    import lightgbm as lgb
    import pandas as pd
    import xgboost as xgb
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    X, y = _xy()
    df = pd.DataFrame(X[:, :4], columns=list("abcd"))
    df["kind"] = pd.Categorical(np.array(["x", "y", "z"])[y])
    return {
        "forest": mp.pack(RandomForestClassifier(12, max_depth=6, random_state=0).fit(np.nan_to_num(X), y), X, name="forest"),
        "forest_reg": mp.pack(RandomForestRegressor(8, max_depth=5, random_state=0).fit(np.nan_to_num(X), X[:, 4]), X, name="fr"),
        "xgb": mp.pack(xgb.XGBClassifier(n_estimators=15, max_depth=4).fit(X, y), X, name="xgb"),
        "lgb_cat": mp.pack(lgb.LGBMClassifier(n_estimators=6, num_leaves=7, min_child_samples=5, min_data_per_group=5,
                                              cat_smooth=1, verbose=-1).fit(df, y), df, name="lgbcat"),
    }


def test_javascript_matches_c_on_trees(bundles) -> None:
    jobs, want = [], []
    for i, b in enumerate(bundles.values()):
        p = lower(b)
        cols, _ = evaluation_rows(b, p)
        cols32 = {c.name: (cols[c.name].astype(np.float32).astype(np.float64) if c.kind == "f" else cols[c.name]) for c in p.columns}
        jobs.append(Job(f"m{i}", js_target.to_javascript(p), c_matrix(p, cols32)))
        want.append(run_c(p, cols32))
    for (name, _), (scores, labels), (cs, cl) in zip(bundles.items(), run_javascript(jobs), want):
        if name.startswith("forest"):
            np.testing.assert_array_equal(scores, cs, err_msg=name)
        else:
            np.testing.assert_array_max_ulp(scores.astype(np.float32), cs.astype(np.float32), maxulp=4)
        if cl is not None:
            np.testing.assert_array_equal(labels, cl, err_msg=name)
    assert "walkGeneral(E0_NODES" in jobs[-1].source


def test_cli_module_and_its_api(bundles, tmp_path, capsys) -> None:
    path = tmp_path / "lgbcat.mpk"
    bundles["lgb_cat"].save(path)
    out = tmp_path / "churn.mjs"
    with pytest.raises(SystemExit) as info:
        main(["compile", str(path), "-t", "javascript", "-o", str(out), "--check"])
    err = capsys.readouterr().err
    assert info.value.code == 0, err
    assert "javascript (node)  ok" in err
    source = out.read_text()
    assert not [ln for ln in source.splitlines() if ln.startswith("import ")]  # no dependencies
    (tmp_path / "use.mjs").write_text(f"""
import * as m from {json.dumps(str(out))};
const row = [0.5, null, -1, 2, m.categoryCode("kind", "y")];
const byName = {{a: 0.5, b: NaN, c: -1, d: 2, kind: m.categoryCode(4, "y")}};
const s = m.predict(row);
const t = m.predict(byName);
const batch = m.predictBatch(new Float32Array([...row.map((v) => v ?? NaN), ...row.map((v) => v ?? NaN)]), 2);
let error = "";
try {{ m.predict([1, 2]); }} catch (e) {{ error = `${{e.name}}: ${{e.message}}`; }}
console.log(JSON.stringify({{features: m.FEATURES, classes: m.CLASSES, cats: m.CATEGORIES[4], s: Array.from(s),
  same: Array.from(t).every((v, j) => v === s[j]) && batch.scores[5] === s[2], label: m.predictLabel(byName),
  batchLabel: batch.labels[1], unknown: Number.isNaN(m.categoryCode("kind", "nope")), error}}));
""")
    res = subprocess.run([tool("node"), str(tmp_path / "use.mjs")], check=True, capture_output=True, text=True)
    got = json.loads(res.stdout)
    assert got["features"] == ["a", "b", "c", "d", "kind"] and got["classes"] == [0, 1, 2] and got["cats"] == ["x", "y", "z"]
    import pandas as pd

    want = bundles["lgb_cat"].predict(pd.DataFrame({"a": [0.5], "b": [np.nan], "c": [-1.0], "d": [2.0],
                                                    "kind": pd.Categorical(["y"], categories=["x", "y", "z"])}))
    np.testing.assert_allclose(got["s"], want["probabilities"][0], rtol=1e-6)
    assert got["same"] and got["unknown"]
    assert got["label"] == int(want["label"][0]) == got["batchLabel"]
    assert got["error"] == "RangeError: a row must hold 5 values (a, b, c, d, kind); got 2 instead"


def test_large_programs_are_split_over_functions(monkeypatch) -> None:
    from sklearn.neural_network import MLPClassifier

    X, y = _xy(f=20, nan=False)
    b = mp.pack(MLPClassifier(hidden_layer_sizes=(10,), max_iter=200, random_state=0).fit(X, y), X, name="mlp")
    monkeypatch.setattr(js_target, "FUNCTION_CHARS", 300)
    src = js_target.to_javascript(lower(b))
    assert "function outputs_1(" in src
    report = check(b, targets=("javascript",))
    assert report.passed, report.summary()


def test_missing_node_is_reported_as_skipped(bundles, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("NODE", raising=False)
    (r,) = check(bundles["forest"], targets=("javascript",)).results
    assert r.skipped and "node (Node.js) was not found" in r.skipped
