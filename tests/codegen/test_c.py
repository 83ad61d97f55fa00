"""The C target's tree walk (codegen/c.py): node layout, how calls are split into blocks, lanes
and tree groups, and the accumulation precision."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from onnx import TensorProto, helper
from tests.codegen.test_semantics import make_bundle

import modelport as mp
from modelport.codegen import compile_bundle, lower
from modelport.codegen.c import _walk_layout, build_shared, to_c
from modelport.codegen.flat import flatten
from modelport.errors import CodegenError
from modelport.runtime.session import Runtime


def _build(tmp_path, program, name: str, **kwargs):
    source, header = to_c(program, prefix=name, **kwargs)
    (tmp_path / f"{name}.c").write_text(source)
    (tmp_path / f"{name}.h").write_text(header)
    fn = ctypes.CDLL(str(build_shared(tmp_path, name)))[f"{name}_predict"]
    fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p]
    fn.restype = ctypes.c_int

    def predict(x: np.ndarray, pieces: list[int] | None = None) -> np.ndarray:
        """Scores of ``x``, computed in calls of ``pieces`` rows each (repeating the last)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty((len(x), program.n_outputs), dtype=np.float32)
        sizes = iter(pieces or [len(x)])
        size, start = len(x), 0
        while start < len(x):
            size = next(sizes, size)
            stop = min(len(x), start + size)
            assert fn(x[start:].ctypes.data, stop - start, out[start:].ctypes.data) == 0
            start = stop
        return out

    return predict


@pytest.fixture(scope="module")
def forests():
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 0.5)
    target = X[:, 0] * 2 + y
    X[rng.random(X.shape) < 0.08] = np.nan  # missing values go left in some splits, right in others
    return X, {
        # boosted multiclass: each tree feeds one class (one value per leaf); deep, lopsided trees
        "lgb_multiclass": mp.pack(lgb.LGBMClassifier(n_estimators=30, num_leaves=40, min_child_samples=5, verbose=-1)
                                  .fit(X, y), X[:500], name="lgbm"),
        # leaves with a value per class, read from the leaves array by index
        "rf_multiclass": mp.pack(RandomForestClassifier(13, max_depth=9, random_state=0).fit(np.nan_to_num(X), y),
                                 X[:500], name="rf"),
        "xgb_regressor": mp.pack(xgb.XGBRegressor(n_estimators=21, max_depth=5).fit(X, target), X[:500],
                                 name="xgbr"),
    }


@pytest.mark.parametrize("name", ["lgb_multiclass", "rf_multiclass", "xgb_regressor"])
def test_every_split_of_a_call_gives_the_same_bits(tmp_path, forests, name) -> None:
    """Whole blocks walk eight rows per tree, the rows left over eight trees per row, a single
    row (and any tree count not a multiple of 8) its own way: all must add the same leaves in
    the same order, so the results are bit-identical however the rows are split into calls,
    and they match ONNX Runtime."""
    X, bundles = forests
    b = bundles[name]
    prog = lower(b)
    predict = _build(tmp_path, prog, "m")
    rows = np.concatenate([X, X[:37] * np.float32(1.5)])
    whole = predict(rows)
    for pieces in ([1], [7], [8], [9], [3, 13, 255, 257], [600]):
        np.testing.assert_array_equal(predict(rows, pieces), whole, err_msg=f"{name}, calls of {pieces} rows")
    rt = Runtime(b, intra_op_threads=1, inter_op_threads=1)
    outs = [o.name for o in rt.session.get_outputs()]
    ref = rt.session.run(["probabilities" if "probabilities" in outs else outs[0]], {"X": rows})[0]
    np.testing.assert_allclose(whole, np.asarray(ref).reshape(whole.shape), rtol=1e-6, atol=1e-6 * np.abs(ref).max())


def test_boosted_multiclass_stores_one_value_per_leaf(forests) -> None:
    _, bundles = forests
    lg = lower(bundles["lgb_multiclass"]).ensembles[0]
    w = _walk_layout(lg, flatten(lg))
    assert w is not None and w.targets is not None and not w.leaf_values  # values live in the leaf records
    assert sorted(set(w.targets)) == [0, 1, 2]
    src = compile_bundle(bundles["lgb_multiclass"], "c").files["model.c"]
    assert "model_e0_leaves" not in src and "model_e0_target" in src
    rf = lower(bundles["rf_multiclass"]).ensembles[0]
    w = _walk_layout(rf, flatten(rf))
    assert w is not None and w.targets is None and len(w.leaf_values) == 3 * sum(o == 0 for o in w.off)


def test_walks_stop_at_the_deepest_leaf_not_before(forests) -> None:
    """dmin / dmax bound each tree's walk: every leaf lies between them, and the records of a
    tree are reached from its root through offsets that stay inside it."""
    _, bundles = forests
    ens = lower(bundles["lgb_multiclass"]).ensembles[0]
    w = _walk_layout(ens, flatten(ens))
    assert w is not None
    assert min(w.dmin) < max(w.dmax)  # lopsided trees: a fixed full-depth walk would waste steps
    for t, root in enumerate(w.roots):
        end = w.roots[t + 1] if t + 1 < len(w.roots) else len(w.thr)
        depths, stack = [], [(root, 0)]
        while stack:
            p, d = stack.pop()
            assert root <= p < end
            if w.off[p] == 0:
                depths.append(d)
            else:
                stack += [(p + w.off[p], d + 1), (p + w.off[p] + 1, d + 1)]
        assert (min(depths), max(depths)) == (w.dmin[t], w.dmax[t])


def test_deep_tree_uses_wide_node_fields(tmp_path) -> None:
    """A balanced depth-16 tree puts children more than 32767 records after their parent, past
    the 16-bit offsets: the layout switches to 32-bit fields and still matches ONNX Runtime."""
    depth = 16
    n_internal = (1 << depth) - 1
    ids = list(range(2 * n_internal + 1))
    rng = np.random.default_rng(3)
    feats = [i % 3 for i in range(n_internal)] + [0] * (n_internal + 1)
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["prediction"], domain="ai.onnx.ml", n_targets=1,
        nodes_treeids=[0] * len(ids), nodes_nodeids=ids, nodes_featureids=feats,
        nodes_modes=["BRANCH_LEQ"] * n_internal + ["LEAF"] * (n_internal + 1),
        nodes_values=[float(v) for v in rng.choice([0.0, 0.5, 1.0, 1.25, 2.0], n_internal)] + [0.0] * (n_internal + 1),
        nodes_truenodeids=[2 * i + 1 for i in range(n_internal)] + [0] * (n_internal + 1),
        nodes_falsenodeids=[2 * i + 2 for i in range(n_internal)] + [0] * (n_internal + 1),
        nodes_missing_value_tracks_true=[i % 2 for i in range(n_internal)] + [0] * (n_internal + 1),
        target_treeids=[0] * (n_internal + 1), target_nodeids=ids[n_internal:], target_ids=[0] * (n_internal + 1),
        target_weights=[float(v) for v in rng.normal(size=n_internal + 1)],
    )
    out = helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 1])
    b = make_bundle([node], [out])
    prog = lower(b)
    ens = prog.ensembles[0]
    w = _walk_layout(ens, flatten(ens))
    assert w is not None and w.wide and max(w.off) > 32767
    assert "uint32_t slot; int32_t off;" in to_c(prog, prefix="m")[0]
    predict = _build(tmp_path, prog, "m")
    x = rng.choice([0.0, 0.5, 1.0, 1.25, 2.0, 3.0, -1.0, np.nan], size=(400, 3)).astype(np.float32)
    got = predict(x)
    np.testing.assert_array_equal(predict(x, [1]), got)
    ref = Runtime(b, intra_op_threads=1, inter_op_threads=1).session.run(["prediction"], {"X": x})[0]
    np.testing.assert_array_equal(got, np.asarray(ref).reshape(got.shape))


def test_double_sums_are_closer_to_lightgbm(tmp_path) -> None:
    """Float32 sums of many trees (ONNX Runtime's, the default) drift from LightGBM, which
    sums in double; sums='double' leaves only the float32 leaf values and the final rounding."""
    import lightgbm as lgb

    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 8)).astype(np.float32)
    y = 300 * X[:, 0] + 100 * np.sin(3 * X[:, 1]) + 50 * X[:, 2] * X[:, 3]
    model = lgb.LGBMRegressor(n_estimators=200, num_leaves=31, verbose=-1).fit(X, y)
    prog = lower(mp.pack(model, X[:500], name="lgbr"))
    want = model.predict(X)
    err_float = np.abs(_build(tmp_path, prog, "mf")(X)[:, 0] - want).max()
    got = _build(tmp_path, prog, "md", sums="double")(X)[:, 0]
    err_double = np.abs(got - want).max()
    assert err_double < err_float / 4
    assert err_double < 8 * np.spacing(np.float32(np.abs(want).max()))


def test_sums_must_be_float_or_double(forests) -> None:
    with pytest.raises(CodegenError, match="sums must be 'float' or 'double'"):
        to_c(lower(forests[1]["xgb_regressor"]), sums="single")
