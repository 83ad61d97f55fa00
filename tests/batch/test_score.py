"""modelport.batch.score on DataFrames and Tables: parity with the original model, columns, row errors."""

from __future__ import annotations

import numpy as np
import pytest

import modelport.batch as mb
from modelport.errors import InputError

from .conftest import FEATURES, make_frame

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")


def test_classifier_matches_sklearn_on_fresh_rows(classifier, clf_bundle):
    model, _ = classifier
    df = make_frame(3_000, 99)
    # edge cases: extreme values and exact zeros
    df.loc[0, FEATURES] = 1e6
    df.loc[1, FEATURES] = -1e6
    df.loc[2, FEATURES] = 0.0
    out = mb.score(clf_bundle, df, chunk_rows=700)
    assert list(out.columns) == ["id", "note", "label", "proba_0", "proba_1", "proba_2"]
    assert out.index.equals(df.index)
    np.testing.assert_array_equal(out["label"].to_numpy(), model.predict(df[FEATURES]))
    proba = model.predict_proba(df[FEATURES])
    for j in range(3):
        np.testing.assert_allclose(out[f"proba_{j}"].to_numpy(), proba[:, j], atol=1e-5)
    np.testing.assert_array_equal(out["id"].to_numpy(), df["id"].to_numpy())


def test_regressor_prediction_column(regressor, reg_bundle):
    model, _ = regressor
    df = make_frame(1_000, 5)
    out = mb.score(reg_bundle, df, keep="none")
    assert list(out.columns) == ["prediction"]
    np.testing.assert_allclose(out["prediction"].to_numpy(), model.predict(df[FEATURES]), rtol=1e-4, atol=1e-4)


def test_arrow_table_in_arrow_table_out(clf_bundle):
    df = make_frame(200, 6)
    table = pa.Table.from_pandas(df, preserve_index=False)
    out = mb.score(clf_bundle, table, keep=["id"], chunk_rows=64)
    assert isinstance(out, pa.Table)
    assert out.schema.names == ["id", "label", "proba_0", "proba_1", "proba_2"]
    assert out.schema.field("label").type == pa.int64()
    assert out.schema.field("proba_0").type == pa.float32()
    expect = mb.score(clf_bundle, df, keep=["id"])
    np.testing.assert_array_equal(out.column("label").to_numpy(), expect["label"].to_numpy())


def _broken(df):
    bad = df.copy()
    bad["b"] = bad["b"].astype(object)
    bad.loc[3, "b"] = "not a number"
    bad.loc[250, "c"] = np.nan  # the model takes no missing values
    return bad


@pytest.mark.parametrize("chunk_rows", [100, 10_000])
def test_skip_leaves_rows_out_and_reports_global_row_numbers(clf_bundle, chunk_rows):
    df = _broken(make_frame(400, 7))
    out, rejects = mb.score(clf_bundle, df, on_error="skip", chunk_rows=chunk_rows, return_rejects=True)
    assert rejects["row"].tolist() == [3, 250]
    assert "'b' must be numeric" in rejects["reason"][0] and "not a number" in rejects["reason"][0]
    assert "'c' has missing values" in rejects["reason"][1]
    assert len(out) == 398
    assert 3 not in out.index and 250 not in out.index
    clean = mb.score(clf_bundle, df.drop(index=[3, 250]).astype({"b": float}))
    np.testing.assert_array_equal(out["label"].to_numpy(), clean["label"].to_numpy())


def test_null_keeps_every_row_with_null_predictions(clf_bundle):
    df = _broken(make_frame(300, 8))
    out, rejects = mb.score(clf_bundle, df, on_error="null", chunk_rows=128, return_rejects=True)
    assert len(out) == 300
    assert out["label"].isna().tolist() == [i in (3, 250) for i in range(300)]
    assert out["proba_0"].isna().sum() == 2
    assert rejects["row"].tolist() == [3, 250]


def test_fail_names_the_global_row(clf_bundle):
    df = _broken(make_frame(300, 9))
    with pytest.raises(InputError, match=r"row 3 cannot be scored: column 'b' must be numeric"):
        mb.score(clf_bundle, df, chunk_rows=2)


def test_missing_columns_lists_missing_and_unexpected(clf_bundle):
    df = make_frame(10, 1).rename(columns={"a": "A", "e": "E"})
    with pytest.raises(InputError) as info:
        mb.score(clf_bundle, df)
    msg = str(info.value)
    assert "missing column(s): a, e" in msg and "'A'" in msg and "'E'" in msg and "expects" in msg


def test_prediction_names_must_not_overwrite_input(clf_bundle):
    df = make_frame(10, 1)
    df["label"] = 1
    with pytest.raises(InputError, match="prefix"):
        mb.score(clf_bundle, df)
    out = mb.score(clf_bundle, df, prefix="pred_")
    assert {"label", "pred_label", "pred_proba_2"} <= set(out.columns)


def test_keep_unknown_column_is_refused(clf_bundle):
    with pytest.raises(InputError, match="nope"):
        mb.score(clf_bundle, make_frame(5, 1), keep=["id", "nope"])


def test_missing_and_numeric_strings_are_unknown_cities_as_for_the_encoder(text_bundle):
    # OneHotEncoder(handle_unknown="ignore") encodes None and a number in a string column as all zeros
    bundle, pipe, train = text_bundle
    df = train.head(50).copy().astype({"city": object})
    df.loc[[4, 9], "city"] = None
    df.loc[12, "city"] = 7
    out, rejects = mb.score(bundle, df, on_error="skip", return_rejects=True)
    assert len(rejects) == 0 and rejects.attrs["unknown_categories"] == {"city": 3}
    np.testing.assert_allclose(out["proba_1"].to_numpy(), pipe.predict_proba(df)[:, 1], atol=1e-5)


def test_runtime_refusals_are_narrowed_to_rows(text_bundle, tmp_path):
    # a bundle from before categories were recorded, whose encoder fails on an unknown value inside
    # ONNX Runtime: the rules let the rows through, and bisection attributes the failure to each row
    import json

    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    import modelport as mp
    from modelport.bundle import manifest as mf
    from modelport.bundle.core import Bundle

    _, _, train = text_bundle
    strict = Pipeline([
        ("ct", ColumnTransformer([("oh", OneHotEncoder(handle_unknown="error"), ["city"])], remainder="passthrough")),
        ("lr", LogisticRegression()),
    ]).fit(train, (train["x"] > 0).astype(int))
    fresh = mp.pack(strict, train, name="strict")
    manifest = json.loads(fresh.files["manifest.json"])
    for c in manifest["signature"]["columns"]:
        for key in ("categories", "unknown", "native"):
            c.pop(key, None)
        c["nullable"] = False
    old = Bundle({**fresh.files, "manifest.json": mf.dumps(manifest)}, origin="<old>")
    table = pa.table({"city": ["oslo", "paris", "rome", "lyon", "lima", "oslo"], "x": np.zeros(6)})
    out, rejects = mb.score(old, table, on_error="skip", return_rejects=True)
    assert out.num_rows == 4
    assert rejects.column("row").to_pylist() == [1, 3]
    assert all("ONNX Runtime" in r for r in rejects.column("reason").to_pylist())
    # the bundle packed today refuses the same rows by its rules, naming the value
    _, rejects = mb.score(fresh, table, on_error="skip", return_rejects=True)
    assert rejects.column("row").to_pylist() == [1, 3]
    assert "column 'city' has values outside its categories; got 'paris'" in rejects.column("reason")[0].as_py()


def test_empty_frame(clf_bundle):
    out = mb.score(clf_bundle, make_frame(0, 1))
    assert len(out) == 0 and "proba_1" in out.columns


def test_rejects_non_tabular_inputs(clf_bundle):
    with pytest.raises(InputError, match="DataFrame or a pyarrow Table"):
        mb.score(clf_bundle, np.zeros((3, 5)))
