"""``modelport compile`` in-process: files written, SQL on stdout, --shared, --check, errors."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys

import numpy as np
import pytest

from modelport.cli.main import main


@pytest.fixture(scope="module")
def forest_mpk(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    import modelport as mp

    X, y = load_iris(return_X_y=True)
    path = tmp_path_factory.mktemp("b") / "iris.mpk"
    mp.pack(RandomForestClassifier(5, max_depth=4, random_state=0).fit(X, y), X, name="iris").save(path)
    return path, X


def run(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_c_shared_library_and_wrapper(forest_mpk, tmp_path, capsys):
    path, X = forest_mpk
    code, _, err = run(["compile", str(path), "--target", "c", "-o", str(tmp_path), "--prefix", "iris", "--shared", "--check"], capsys)
    assert code == 0, err
    header = (tmp_path / "iris.h").read_text()
    assert "int iris_predict(const float *x, long n_rows, float *out);" in header
    assert "iris_class_names" in header and "#define IRIS_N_FEATURES 4" in header
    source = (tmp_path / "iris.c").read_text()
    assert "malloc" not in source and "0x1." in source  # no allocation; hex float thresholds
    assert "c (gcc)            ok" in err
    spec = importlib.util.spec_from_file_location("iris_ctypes", tmp_path / "iris_ctypes.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["iris_ctypes"] = mod
    spec.loader.exec_module(mod)
    scores, labels = mod.predict(X[:10])
    import modelport as mp

    want = mp.load(path).predict(X[:10])
    np.testing.assert_array_equal(scores, want["probabilities"])
    assert list(labels) == list(want["label"])


def test_sql_to_stdout_runs_in_sqlite(forest_mpk, capsys):
    path, X = forest_mpk
    code, out, _ = run(["compile", str(path), "-t", "sql", "--dialect", "sqlite", "--table", "flowers", "--keep", "id"], capsys)
    assert code == 0
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE flowers (id INTEGER, f0 REAL, f1 REAL, f2 REAL, f3 REAL)")
    con.executemany("INSERT INTO flowers VALUES (?, ?, ?, ?, ?)", [(i, *map(float, X[i])) for i in range(20)])
    cur = con.execute(out)
    cols = [d[0] for d in cur.description]
    assert cols == ["id", "f0", "f1", "f2", "f3", "label", "proba_0", "proba_1", "proba_2"]
    rows = sorted(cur.fetchall())
    import modelport as mp

    want = mp.load(path).predict(X[:20])
    assert [r[5] for r in rows] == list(want["label"])


def test_python_module_imports_only_math(forest_mpk, tmp_path, capsys):
    path, X = forest_mpk
    code, _, err = run(["compile", str(path), "-t", "python", "-o", str(tmp_path / "iris_model.py"), "--check"], capsys)
    assert code == 0, err
    text = (tmp_path / "iris_model.py").read_text()
    imports = [ln.strip() for ln in text.splitlines() if ln.startswith(("import ", "from "))]
    assert imports == ["import math"]
    ns: dict = {}
    exec(compile(text, "iris_model", "exec"), ns)
    row = dict(zip(["f0", "f1", "f2", "f3"], X[0].tolist()))
    assert ns["predict_row"](row)["label"] == 0


def test_string_columns_are_refused_by_c_with_exit_code(tmp_path, capsys):
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    import modelport as mp

    df = pd.DataFrame({"x": [0.1, 0.5, 0.9, 0.3] * 10, "c": ["a", "b", "a", "c"] * 10})
    y = [0, 1, 0, 1] * 10
    model = make_pipeline(make_column_transformer((OneHotEncoder(), ["c"]), remainder="passthrough"), LogisticRegression())
    path = tmp_path / "s.mpk"
    mp.pack(model.fit(df, y), df).save(path)
    code, _, err = run(["compile", str(path), "-t", "c", "-o", str(tmp_path)], capsys)
    assert code == 9
    assert "strings" in err and "hint" in err


def test_unknown_bundle_and_shared_without_c(forest_mpk, tmp_path, capsys):
    path, _ = forest_mpk
    code, _, err = run(["compile", str(tmp_path / "missing.mpk"), "-t", "c"], capsys)
    assert code != 0 and "missing.mpk" in err
    code, _, err = run(["compile", str(path), "-t", "python", "-o", str(tmp_path), "--shared"], capsys)
    assert code != 0 and "--shared" in err


@pytest.mark.parametrize("argv,message", [
    (["--target", "sql", "--shared"], "--shared applies to --target c only"),
    (["--target", "python", "--shared"], "--shared applies to --target c only"),
    (["--target", "c", "--keep", "id"], "--keep applies to --target sql only"),
])
def test_refused_option_combinations_write_and_print_nothing(forest_mpk, tmp_path, capsys, monkeypatch, argv, message):
    path, _ = forest_mpk
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["compile", str(path), *argv], capsys)
    assert code == 2
    assert message in err
    assert out == ""  # before the fix, the SQL went to stdout first
    assert list(tmp_path.iterdir()) == []
