"""Bundle.predict input checks (runtime/coerce.py) on a real DataFrame pipeline and on an array model,
with parity against the original scikit-learn model on fresh rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelport.errors import InputError


@pytest.fixture(scope="module")
def fresh(frame_model):
    rng = np.random.default_rng(11)
    n = 50
    return pd.DataFrame({
        "age": rng.uniform(18, 80, n),
        "income": rng.normal(50_000, 15_000, n),
        "city": rng.choice(["paris", "lyon", "nice"], n),
    })


def _same(out, model, df):
    np.testing.assert_array_equal(out["label"], model.predict(df))
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(df), atol=1e-6)


def test_columns_in_any_order(frame_bundle, frame_model, fresh):
    model, _ = frame_model
    shuffled = fresh[["city", "income", "age"]]
    _same(frame_bundle.predict(shuffled), model, fresh)


def test_records_and_dict_and_arrow_inputs(frame_bundle, frame_model, fresh):
    import pyarrow as pa

    model, _ = frame_model
    _same(frame_bundle.predict(fresh.to_dict("records")), model, fresh)
    _same(frame_bundle.predict({k: fresh[k].tolist() for k in ("income", "city", "age")}), model, fresh)
    _same(frame_bundle.predict(pa.Table.from_pandas(fresh)), model, fresh)
    # records may list their keys in any order
    shuffled_records = [{"city": r["city"], "age": r["age"], "income": r["income"]} for r in fresh.to_dict("records")]
    _same(frame_bundle.predict(shuffled_records), model, fresh)


def test_unseen_category_matches_the_original(frame_bundle, frame_model):
    model, _ = frame_model
    df = pd.DataFrame({"age": [30.0, 70.0], "income": [40_000.0, 90_000.0], "city": ["marseille", "paris"]})
    _same(frame_bundle.predict(df), model, df)


def test_missing_columns_are_listed(frame_bundle, fresh):
    with pytest.raises(InputError) as err:
        frame_bundle.predict(fresh.drop(columns=["income", "city"]))
    msg = str(err.value)
    assert "missing column(s): income, city" in msg and "expects columns: age, income, city" in msg


def test_unexpected_columns_are_listed(frame_bundle, fresh):
    with pytest.raises(InputError, match=r"unexpected column\(s\): zip, name\."):
        frame_bundle.predict(fresh.assign(zip="75001", name="x"))


def test_missing_and_unexpected_together(frame_bundle, fresh):
    with pytest.raises(InputError, match=r"missing column\(s\): age; unexpected column\(s\): AGE"):
        frame_bundle.predict(fresh.rename(columns={"age": "AGE"}))


def test_wrong_dtype(frame_bundle, fresh):
    with pytest.raises(InputError, match=r"column 'age' must be numeric \(float64\)"):
        frame_bundle.predict(fresh.assign(age="old"))
    with pytest.raises(InputError, match=r"column 'income' must be numeric.*'lots'"):
        frame_bundle.predict([{"age": 30.0, "income": "lots", "city": "paris"}])


def test_numeric_strings_are_accepted_where_numbers_are_expected(frame_bundle, frame_model, fresh):
    # CSV-like input: numbers given as text still score, exactly like the numbers
    model, _ = frame_model
    as_text = fresh.assign(age=fresh["age"].map(repr))
    _same(frame_bundle.predict(as_text), model, fresh)


def test_nan_into_non_nullable_column_names_column_and_row(frame_bundle, fresh):
    assert not frame_bundle.signature.column("age").nullable
    bad = fresh.copy()
    bad.loc[3, "age"] = np.nan
    with pytest.raises(InputError) as err:
        frame_bundle.predict(bad)
    assert "column 'age' has missing values (NaN) in row(s) 3" in str(err.value)
    assert err.value.hint and "impute" in err.value.hint


def test_missing_string_and_missing_record_key(frame_bundle, frame_model):
    # OneHotEncoder(handle_unknown="ignore") takes a missing city as one more unknown city (all zeros)
    model, _ = frame_model
    df = pd.DataFrame({"age": [1.0, 2.0], "income": [1.0, 2.0], "city": pd.Series(["paris", None], dtype=object)})
    _same(frame_bundle.predict(df), model, df)
    records = [{"age": 30.0, "income": 1.0, "city": "paris"}, {"age": 31.0, "city": "lyon"}]
    with pytest.raises(InputError, match=r"column 'income' has missing values \(NaN\) in row\(s\) 1"):
        frame_bundle.predict(records)


def test_empty_batch(frame_bundle, fresh):
    for empty in (fresh.head(0), []):
        out = frame_bundle.predict(empty)
        assert out["label"].shape == (0,)
        assert out["probabilities"].shape == (0, 2)


def test_array_model_inputs(iris_bundle, iris_forest):
    X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]])
    out = iris_bundle.predict(X)
    np.testing.assert_array_equal(out["label"], iris_forest.predict(X))
    np.testing.assert_allclose(out["probabilities"], iris_forest.predict_proba(X), atol=1e-5)
    # a single row as a 1-D array, and the f0..f3 columns by name in any order
    np.testing.assert_array_equal(iris_bundle.predict(X[0])["label"], out["label"][:1])
    by_name = {f"f{i}": X[:, i] for i in (3, 1, 0, 2)}
    np.testing.assert_array_equal(iris_bundle.predict(by_name)["label"], out["label"])
    with pytest.raises(InputError, match=r"input 'X' must have shape \[N, 4\] \(columns f0, f1, f2, f3\); got shape \[3, 3\]"):
        iris_bundle.predict(X[:, :3])
    assert iris_bundle.predict(X[:0])["probabilities"].shape == (0, 3)


def test_nan_in_array_input_for_a_column_that_refuses_it(lr_bundle, lr_iris):
    assert not any(c.nullable for c in lr_bundle.signature.columns)
    X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.3, 3.3, 6.0, 2.5]])
    np.testing.assert_allclose(lr_bundle.predict(X)["probabilities"], lr_iris.predict_proba(X), atol=1e-6)
    X[2, 1] = np.nan
    with pytest.raises(InputError, match=r"column 'f1' has missing values \(NaN\) in row\(s\) 2"):
        lr_bundle.predict(X)


def test_unknown_output_name(frame_bundle, fresh):
    with pytest.raises(InputError, match="unknown output"):
        frame_bundle.predict(fresh, outputs=["score"])
    only = frame_bundle.predict(fresh, outputs=["probabilities"])
    assert list(only) == ["probabilities"]
