"""Drift statistics equal a scipy reference on fixed data; a shifted column is flagged, a stable one is not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr

import modelport as mp
from modelport.errors import InputError
from modelport.monitor import drift as d
from modelport.monitor.log import PredictionLog

from .conftest import churn_frame


def test_psi_is_the_symmetric_kl_of_the_bin_shares():
    ref = np.array([10.0, 20.0, 30.0, 40.0, 0.0])
    cur = np.array([12.0, 18.0, 25.0, 30.0, 15.0])
    p = np.maximum(ref / ref.sum(), d.EPS)
    q = np.maximum(cur / cur.sum(), d.EPS)
    expected = float(np.sum(rel_entr(q, p) + rel_entr(p, q)))
    assert d.psi(ref, cur) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("n", [500, 50_000])  # scipy's exact path, and the counting path with scipy's asymptotic p
def test_ks_equals_scipy(n):
    rng = np.random.default_rng(0)
    ref = np.sort(np.round(rng.normal(size=800), 2))  # ties on both sides
    cur = np.round(rng.normal(0.1, 1.1, size=n), 2)
    got = d.ks_2samp(ref, cur)
    want = stats.ks_2samp(ref, cur)
    assert got[0] == pytest.approx(want.statistic, abs=1e-12)
    assert got[1] == pytest.approx(want.pvalue, abs=1e-9)


def test_categorical_tests_equal_scipy():
    ref = d.Reference("plan", "categorical", 1000, 10, frequencies={"a": 500, "b": 300, "c": 150},
                      known=frozenset({"a", "b", "c", "d"}))
    counts = {"a": 300, "b": 350, "c": 100, "zz": 50}
    got = d.categorical_tests(ref, counts)
    table = np.array([[500, 300, 150, 40], [300, 350, 100, 50]], dtype=float)  # other: 1000-10-950 = 40 / zz
    chi = stats.chi2_contingency(table, correction=False)
    assert got["chi2"] == pytest.approx(chi.statistic, abs=1e-9)
    assert got["chi2_p_value"] == pytest.approx(chi.pvalue, abs=1e-9)
    js = jensenshannon(table[0] / table[0].sum(), table[1] / table[1].sum(), base=2)
    assert got["js"] == pytest.approx(js, abs=1e-9)
    assert got["unseen_rate"] == pytest.approx(50 / 800, abs=1e-12)


def test_a_manifest_histogram_that_is_not_one_is_refused():
    with pytest.raises(InputError, match="histogram"):
        d.Reference.from_statistics("x", {"kind": "numeric", "count": 3, "missing": 0,
                                          "histogram": {"edges": [3.0, 1.0, 2.0], "counts": [1, 2]}})


def _log_rows(tmp_path, bundle, frame, *, ts=None):
    log = PredictionLog(tmp_path / "log", rotate_seconds=3600)
    ml = log.model(bundle)
    out = bundle.predict(frame)
    ml.write("batch", len(frame), data=frame, outputs=out, ts=ts)
    log.close()
    return tmp_path / "log"


def test_a_shifted_column_is_flagged_and_a_stable_one_is_not(tmp_path, churn_model):
    model, df = churn_model
    bundle = mp.pack(model, df, name="churn", version="1")
    current = churn_frame(4000, 7)
    current["spend"] = current["spend"] + 15.0  # a shift of 1.5 standard deviations
    log = _log_rows(tmp_path, bundle, current)
    report = d.drift_of_log(bundle, str(log))
    cols = {c.name: c for c in report.columns}
    assert report.rows == 4000 and report.drifted and report.exit_code == 10
    assert cols["spend"].drifted and cols["spend"].psi > 0.2 and cols["spend"].ks_p_value < 1e-6
    assert not cols["age"].drifted and cols["age"].psi < 0.1
    assert not cols["plan"].drifted and cols["plan"].js < 0.1 and cols["plan"].unseen_rate == 0.0
    # the numbers are those of the statistics on the logged values themselves
    ref_in, _ = d.reference_from_bundle(bundle)
    x = current["spend"].to_numpy()
    assert cols["spend"].psi == pytest.approx(d.psi(ref_in["spend"].counts, d.bin_counts(ref_in["spend"].edges, x)),
                                              abs=1e-9)
    want = stats.ks_2samp(ref_in["spend"].sample, x)
    assert cols["spend"].ks == pytest.approx(want.statistic, abs=1e-9)
    assert cols["spend"].ks_p_value == pytest.approx(want.pvalue, abs=1e-9)
    assert any(c.name.startswith("proba_") for c in report.predictions)


def test_stable_traffic_is_no_drift_and_unseen_categories_are(tmp_path, churn_model):
    model, df = churn_model
    bundle = mp.pack(model, df, name="churn", version="1")
    log = _log_rows(tmp_path, bundle, churn_frame(3000, 11))
    report = d.drift_of_log(bundle, str(log))
    assert not report.drifted and report.exit_code == 0, [c.reasons for c in report.columns if c.drifted]
    new = churn_frame(1000, 12)
    new.loc[:299, "plan"] = "enterprise"  # not a category of the model: scored by its encoder, kept in the log
    log2 = _log_rows(tmp_path / "b", bundle, new)
    r2 = d.drift_of_log(bundle, str(log2))
    plan = next(c for c in r2.columns if c.name == "plan")
    assert plan.unseen_rate == pytest.approx(0.3) and plan.drifted


def test_against_another_window(tmp_path, churn_model):
    model, df = churn_model
    bundle = mp.pack(model, df, name="churn", version="1")
    import time

    old = time.time() - 3 * 86400
    base = _log_rows(tmp_path, bundle, churn_frame(2000, 3), ts=old)
    shifted = churn_frame(2000, 4)
    shifted["age"] += 30
    log = PredictionLog(base, rotate_seconds=3600)
    log.model(bundle).write("new", 2000, data=shifted, outputs=bundle.predict(shifted))
    log.close()
    report = d.drift_of_log(bundle, str(base), since="1d", against=str(base), against_until="2d")
    assert report.rows == 2000 and "age" in [c.name for c in report.columns if c.drifted]
    assert "log window" in report.reference


@pytest.mark.parametrize("type_", ["int8", "int16", "int32", "int64", "uint8", "uint32", "uint64",
                                   "float16", "float32", "float64"])
def test_numeric_columns_become_numpy_as_to_numpy_gives_them(type_):
    """Without nulls a numeric column is read as a view of its data buffer (to_numpy imports pandas):
    the same values and dtype, for every width, for a slice (an offset into the buffer) and for chunks."""
    import pyarrow as pa

    values = np.arange(200) % 100
    arr = pa.array(values).cast(getattr(pa, type_)())
    for col in (arr, arr.slice(37, 101), pa.chunked_array([arr.slice(0, 50), arr.slice(150)]), arr.slice(0, 0)):
        want = (col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col).to_numpy(zero_copy_only=False)
        got = d._numpy(col)
        assert got.dtype == want.dtype and np.array_equal(got, want)
