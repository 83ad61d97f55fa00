"""diff and inputs: a change of unknown-category policy is a signature change (breaking when values
become refused), and the behaviour section scores reference rows by the runtime's rules, leaving
out (and counting in its notes) the rows a bundle's policy refuses."""

from __future__ import annotations

import io

import numpy as np
import pytest

import modelport as mp
from modelport.inspect import diff

pd = pytest.importorskip("pandas")
lgb = pytest.importorskip("lightgbm")


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(3)
    n = 800
    df = pd.DataFrame({"x": rng.normal(size=n), "color": pd.Categorical(rng.choice(["a", "b", "c"], n))})
    model = lgb.LGBMClassifier(n_estimators=8, verbose=-1).fit(df, ((df.x > 0) ^ (df.color == "a")).astype(int))
    return mp.pack(model, df, name="m"), mp.pack(model, df, name="m", unknown_categories="error")


def test_policy_change_is_reported(pair):
    lenient, strict = pair
    report = diff(lenient, strict)
    change = next(c for c in report.changes if c.path == "columns.color.unknown")
    assert (change.old, change.new, change.breaking) == ("missing", "error", True)
    assert report.level == "breaking"
    back = next(c for c in diff(strict, lenient).changes if c.path == "columns.color.unknown")
    assert not back.breaking


def test_rows_a_policy_refuses_are_left_out(pair):
    lenient, strict = pair
    # the lenient bundle's reference rows include unseen-category probes; the strict one refuses them
    beh = diff(lenient, strict).behaviour
    assert beh["skipped"]["a"] > 0
    assert any("B refuses" in n for n in beh["notes"])
    assert beh["max_abs_difference"] == 0.0


def test_inspect_says_what_an_unknown_category_gets(pair):
    from rich.console import Console

    from modelport.inspect.describe import describe, render

    lenient, strict = pair
    for bundle, word in ((lenient, "missing"), (strict, "error")):
        info = describe(bundle)
        by_name = {c["name"]: c for c in info["signature"]["columns"]}
        assert by_name["color"]["unknown"] == word
        assert by_name["x"]["unknown"] is None
        buf = io.StringIO()
        Console(file=buf, width=200, color_system=None).print(render(info))
        assert f"unknown values: {word}" in buf.getvalue()
