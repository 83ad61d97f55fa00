"""Model URIs and the --where search language: what parses, and the errors for what does not."""

from __future__ import annotations

import pytest

from modelport.errors import InputError
from modelport.registry.query import Condition, glob_to_like, parse_where
from modelport.registry.uri import ModelRef, parse


@pytest.mark.parametrize(
    ("uri", "ref"),
    [
        ("models:/churn", ModelRef("churn")),
        ("models:/churn/3", ModelRef("churn", version=3)),
        ("models:/churn@production", ModelRef("churn", alias="production")),
        ("models:/churn/latest", ModelRef("churn")),
        ("models:/churn@latest", ModelRef("churn")),
        ("models:/my.model_v2-eu/12", ModelRef("my.model_v2-eu", version=12)),
    ],
)
def test_uri_forms(uri, ref):
    assert parse(uri) == ref
    assert parse(ref.uri) == ref


def test_bare_names_only_when_asked():
    assert parse("churn/2", bare=True) == ModelRef("churn", version=2)
    with pytest.raises(InputError, match="not a registry URI"):
        parse("churn/2")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/", "not a valid model name"),
        ("models:/churn/0", "positive whole number"),
        ("models:/churn/-1", "positive whole number"),
        ("models:/churn/two", "positive whole number"),
        ("models:/churn/2/3", "positive whole number"),
        ("models:/churn@", "not a valid alias"),
        ("models:/churn@3", "not a valid alias"),
        ("models:/../etc/2", "not a valid model name"),
        ("models:/a b", "not a valid model name"),
    ],
)
def test_bad_uris(uri, message):
    with pytest.raises(InputError, match=message) as err:
        parse(uri)
    assert "models:/NAME" in str(err.value)


def test_where_conditions():
    assert parse_where("metrics.auc > 0.9") == [Condition("metrics", "auc", ">", 0.9)]
    assert parse_where("metrics.auc>=.5 AND tags.team == 'risk team' and name != \"churn*\"") == [
        Condition("metrics", "auc", ">=", 0.5),
        Condition("tags", "team", "=", "risk team"),
        Condition("name", None, "!=", "churn*"),
    ]
    assert parse_where("version <= 3 and task = regression and metrics.rmse < -1e-3") == [
        Condition("version", None, "<=", 3),
        Condition("task", None, "=", "regression"),
        Condition("metrics", "rmse", "<", -0.001),
    ]
    assert parse_where("tags.release = 2024-01") == [Condition("tags", "release", "=", "2024-01")]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "empty"),
        ("metrics.auc", "incomplete"),
        ("metrics.auc >", "incomplete"),
        ("metrics.auc > high", "compares with a number"),
        ("metrics.auc > nan", "compares with a number"),
        ("metrics > 1", "needs a key"),
        ("tags.team > 'a'", "only be tested with = or !="),
        ("owner = 'x'", "unknown field"),
        ("metrics.auc > 0.9 or metrics.f1 > 0.5", "expected 'and'"),
        ("version > 1.5", "whole number"),
        ("__import__('os').system('true')", "unexpected character"),
        ("metrics.auc > 0.9; drop table mp_models", "unexpected character"),
        ("metrics.auc > 1e999", "not a finite number"),
    ],
)
def test_where_errors_are_input_errors(query, message):
    with pytest.raises(InputError, match=message) as err:
        parse_where(query)
    assert "metrics.KEY" in str(err.value)  # the hint says what a query looks like


def test_glob_to_like_escapes_sql_wildcards():
    assert glob_to_like("churn*") == "churn%"
    assert glob_to_like("a_b%c?") == "a\\_b\\%c_"
