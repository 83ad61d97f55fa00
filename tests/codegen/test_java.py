"""The Java target: the generated class compiled with the JDK and run (not only generated).

Bit-identical to the C target on tree ensembles (NaN rows, thresholds and their float32
neighbours), the public API (single row, batch, flat arrays, labels, constants), the jar of
``--build`` (Java 11 class files), large models split over methods and data constants, and
clear errors for bad options and missing tools.
"""

from __future__ import annotations

import struct
import subprocess
import zipfile

import numpy as np
import pytest

import modelport as mp
from modelport.cli.main import main
from modelport.codegen import compile_bundle, lower
from modelport.codegen import java as java_target
from modelport.codegen.check import c_matrix, check, evaluation_rows, run_c
from modelport.codegen.toolchain import Job, run_java, tool
from modelport.errors import CodegenError

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
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor

    X, y = _xy()
    df = pd.DataFrame(X[:, :4], columns=list("abcd"))
    df["kind"] = pd.Categorical(np.array(["x", "y", "z"])[y])
    return {
        "forest": mp.pack(RandomForestClassifier(12, max_depth=6, random_state=0).fit(np.nan_to_num(X), y), X, name="forest"),
        "forest_reg": mp.pack(RandomForestRegressor(8, max_depth=5, random_state=0).fit(np.nan_to_num(X), X[:, 4]), X, name="fr"),
        "xgb": mp.pack(xgb.XGBClassifier(n_estimators=15, max_depth=4).fit(X, y), X, name="xgb"),
        "hgb": mp.pack(HistGradientBoostingClassifier(max_iter=8, random_state=0).fit(X, y), X, name="hgb"),
        "lgb_cat": mp.pack(lgb.LGBMClassifier(n_estimators=6, num_leaves=7, min_child_samples=5, min_data_per_group=5,
                                              cat_smooth=1, verbose=-1).fit(df, y), df, name="lgbcat"),
    }


def test_java_is_bit_identical_to_c_on_trees(bundles) -> None:
    """Same float32 thresholds, NaN rule and float32 sums as the C target, for numeric splits
    (node arrays) and LightGBM's categorical splits (the general node table): forests (sums and
    averages only) are bit-identical; where a softmax or logistic follows, Java's exp (double,
    rounded once) and C's expf may differ in the last bits (a few ulps), never more."""
    jobs, want = [], []
    for i, b in enumerate(bundles.values()):
        p = lower(b)
        cols, _ = evaluation_rows(b, p)
        cols32 = {c.name: (cols[c.name].astype(np.float32).astype(np.float64) if c.kind == "f" else cols[c.name]) for c in p.columns}
        jobs.append(Job(f"J{i}", java_target.to_java(p, class_name_=f"J{i}"), c_matrix(p, cols32)))
        want.append(run_c(p, cols32))
    for name, got, (cs, cl) in zip(bundles, run_java(jobs), want):
        assert not isinstance(got, Exception), got
        if name.startswith("forest"):
            np.testing.assert_array_equal(got[0], cs, err_msg=name)
        else:
            np.testing.assert_array_max_ulp(got[0].astype(np.float32), cs.astype(np.float32), maxulp=4)
        if cl is not None:
            np.testing.assert_array_equal(got[1], cl, err_msg=name)
    assert "walkGeneral(E0_NODES" in jobs[-1].source  # categorical splits take the general walk


def test_cli_package_build_and_the_public_api(bundles, tmp_path, capsys) -> None:
    path = tmp_path / "lgbcat.mpk"
    bundles["lgb_cat"].save(path)
    with pytest.raises(SystemExit) as info:
        main(["compile", str(path), "-t", "java", "-o", str(tmp_path / "out"), "--prefix", "churn_model",
              "--package", "com.acme.churn", "--build", "--check"])
    err = capsys.readouterr().err
    assert info.value.code == 0, err
    assert "java (javac)       ok" in err
    source = (tmp_path / "out" / "ChurnModel.java").read_text()
    assert source.count("package com.acme.churn;") == 1 and "import " not in source  # no dependencies
    jar = tmp_path / "out" / "churn_model.jar"
    with zipfile.ZipFile(jar) as z:
        raw = z.read("com/acme/churn/ChurnModel.class")
    assert struct.unpack(">H", raw[6:8])[0] == 55  # class file version of Java 11
    # a user's program against the jar: constants, categories, one row, many rows, flat arrays, bad input
    (tmp_path / "Use.java").write_text("""
import com.acme.churn.ChurnModel;
public class Use {
    public static void main(String[] a) {
        System.out.println(String.join(",", ChurnModel.FEATURES) + " " + String.join(",", ChurnModel.CLASS_NAMES));
        System.out.println(ChurnModel.CLASS_LABELS[2] + " " + String.join(",", ChurnModel.CATEGORIES[4]));
        float[] row = {0.5f, Float.NaN, -1f, 2f, ChurnModel.categoryCode(4, "y")};
        float[] s = ChurnModel.predict(row);
        float[][] many = ChurnModel.predict(new float[][] {row, row});
        float[] flat = new float[6];
        ChurnModel.predict(new float[] {0.5f, Float.NaN, -1f, 2f, 1f, 0.5f, Float.NaN, -1f, 2f, 1f}, 2, flat);
        System.out.println(s[0] + " " + s[1] + " " + s[2] + " " + ChurnModel.predictLabel(row));
        System.out.println(many[1][2] == s[2] && flat[5] == s[2] && ChurnModel.categoryCode(4, "nope") != ChurnModel.categoryCode(4, "nope"));
        try {
            ChurnModel.predict(new float[] {1f, 2f});
        } catch (IllegalArgumentException e) {
            System.out.println(e.getMessage());
        }
    }
}
""")
    subprocess.run([tool("javac"), "--release", "11", "-cp", str(jar), "-d", str(tmp_path / "use"), str(tmp_path / "Use.java")],
                   check=True, capture_output=True)
    out = subprocess.run([tool("java"), "-cp", f"{jar}:{tmp_path / 'use'}", "Use"], check=True, capture_output=True, text=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "a,b,c,d,kind 0,1,2"
    assert lines[1] == "2 x,y,z"
    s0, s1, s2, label = lines[2].split()
    want = bundles["lgb_cat"].predict(
        __import__("pandas").DataFrame({"a": [0.5], "b": [np.nan], "c": [-1.0], "d": [2.0],
                                        "kind": __import__("pandas").Categorical(["y"], categories=["x", "y", "z"])}))
    np.testing.assert_allclose([float(s0), float(s1), float(s2)], want["probabilities"][0], rtol=1e-6)
    assert int(label) == int(want["label"][0])
    assert lines[3] == "true"
    assert "a row must hold 5 values (a, b, c, d, kind); got 2 values instead" in lines[4]


def test_large_programs_are_split_over_methods_and_dot_tables(monkeypatch) -> None:
    """Per-row code past METHOD_CHARS moves into several methods sharing scratch arrays (Java's
    64 KB method limit), and large dot products into data tables; the results do not change."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    X, y = _xy(f=40, nan=False)
    logreg = mp.pack(LogisticRegression(max_iter=300).fit(X, y), X, name="wide")
    mlp = mp.pack(MLPClassifier(hidden_layer_sizes=(12,), max_iter=200, random_state=0).fit(X, y), X, name="mlp")
    monkeypatch.setattr(java_target, "METHOD_CHARS", 400)
    for b in (logreg, mlp):
        src = java_target.to_java(lower(b), class_name_="Split")
        assert "private static void outputs_1(" in src
        assert "DOT_IDX" in src  # a 40-term dot product read from a table
        report = check(b, targets=("java",))
        assert report.passed, report.summary()


def test_node_data_spans_several_string_constants() -> None:
    """A forest whose node data exceeds one class-file string constant (65535 bytes) compiles."""
    from sklearn.ensemble import RandomForestRegressor

    X, _ = _xy(n=3000, f=10, nan=False)
    b = mp.pack(RandomForestRegressor(25, max_depth=9, random_state=0).fit(X, X[:, 0] * X[:, 1]), X[:500], name="big")
    src = compile_bundle(b, "java").files["Model.java"]
    assert src.split("DATA = data(new String[] {")[1].split("});")[0].count('",') >= 2
    report = check(b, targets=("java",), max_threshold_rows=300)
    assert report.passed, report.summary()


@pytest.mark.parametrize("argv,message", [
    (["--target", "c", "--package", "com.acme"], "--package applies to --target java only"),
    (["--target", "javascript", "--build"], "--build applies to --target java only"),
])
def test_java_options_are_refused_for_other_targets(bundles, tmp_path, capsys, monkeypatch, argv, message) -> None:
    path = tmp_path / "b.mpk"
    bundles["forest"].save(path)
    (tmp_path / "w").mkdir()
    monkeypatch.chdir(tmp_path / "w")
    with pytest.raises(SystemExit) as info:
        main(["compile", str(path), *argv])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert list((tmp_path / "w").iterdir()) == []


def test_bad_package_and_missing_jdk_are_clear_errors(bundles, tmp_path, capsys, monkeypatch) -> None:
    with pytest.raises(CodegenError, match=r"package .com\.9acme. is not a valid Java package name"):
        compile_bundle(bundles["forest"], "java", package="com.9acme")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    report = check(bundles["forest"], targets=("java",))
    (r,) = report.results
    assert r.skipped and "javac was not found" in r.skipped
    path = tmp_path / "b.mpk"
    bundles["forest"].save(path)
    with pytest.raises(SystemExit) as info:
        main(["compile", str(path), "-t", "java", "-o", str(tmp_path / "o"), "--build"])
    assert info.value.code == 3 and "JDK 11" in capsys.readouterr().err
