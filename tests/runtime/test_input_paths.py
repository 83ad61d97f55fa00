"""One table of good and bad inputs, sent through every way of scoring a bundle.

Paths: ``bundle.predict`` with a DataFrame, a dict of columns, records and (for the tensor form)
a numpy array; the V2 REST endpoint (column form and tensor form) and gRPC (tritonclient) of a
real ``modelport serve`` process; its records endpoint; ``batch.score`` on a DataFrame and
``score_file`` on a CSV file; and diff's scoring of rows. Every path must accept the same inputs,
give the same answers, and refuse the same inputs with the same core message, because all of
them are judged by ``modelport.runtime.coerce`` alone.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import modelport as mp
import modelport.batch as mb
from modelport.errors import InputError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:tritonclient.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:geventhttpclient.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gevent.*"),
]

tc_grpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

_spec = importlib.util.spec_from_file_location("_serve_helpers", Path(__file__).parent.parent / "serve" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_serve = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _serve
_spec.loader.exec_module(_serve)

ALL_PATHS = ("frame", "dict", "records", "rest", "grpc", "records_endpoint", "batch", "score_file", "diff")
TENSOR_PATHS = ("numpy", "dict", "rest", "grpc")


# ---------------------------------------------------------------------------------- bundles
def _flags_onnx() -> Any:
    """A hand-written graph with a BOOL, an INT8 and a FLOAT input: y = x * flag + small."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["flag"], ["flag_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["small"], ["small_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "flag_f"], ["xf"]),
        helper.make_node("Add", ["xf", "small_f"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "flags",
        [helper.make_tensor_value_info("flag", TensorProto.BOOL, [None, 1]),
         helper.make_tensor_value_info("small", TensorProto.INT8, [None, 1]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@dataclass
class Served:
    bundles: dict[str, mp.Bundle]
    paths: dict[str, Path]
    http: str
    grpc: str
    tmp: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Any:
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

    from modelport.convert.passthrough import OnnxModel

    tmp = tmp_path_factory.mktemp("input-paths")
    repo = tmp / "repo"
    repo.mkdir()
    rng = np.random.default_rng(5)
    n = 400
    people = pd.DataFrame({
        "age": rng.uniform(18, 80, n),
        "visits": rng.integers(0, 20, n),
        "member": rng.random(n) > 0.5,
        "city": rng.choice(["paris", "lyon", "nice"], n).astype(object),
        "plan": rng.choice(["basic", "pro"], n).astype(object),
    })
    y = ((people.age > 45) ^ (people.city == "nice") ^ people.member).astype(int)
    pipe = make_pipeline(
        make_column_transformer(
            (StandardScaler(), ["age"]),
            (MinMaxScaler(), ["visits", "member"]),
            (OneHotEncoder(handle_unknown="ignore"), ["city"]),
            (OneHotEncoder(handle_unknown="error"), ["plan"]),
        ),
        LogisticRegression(max_iter=1000),
    ).fit(people, y)

    cats = pd.DataFrame({
        "x": rng.normal(size=n),
        "color": pd.Categorical(rng.choice(["red", "green", "blue", "black"], n)),
        "tier": pd.Categorical(rng.choice([1, 2, 3], n)),
    })
    yc = ((cats.x > 0) ^ (cats.color == "red") ^ (cats.tier == 2)).astype(int)
    xgb_model = xgb.XGBClassifier(n_jobs=1, n_estimators=15, max_depth=3, enable_categorical=True).fit(cats, yc)
    lgb_model = lgb.LGBMClassifier(n_estimators=15, verbose=-1, min_child_samples=5).fit(cats, yc)

    flags_sample = {"flag": rng.random((50, 1)) > 0.5, "small": rng.integers(-5, 5, (50, 1)).astype(np.int8),
                    "x": rng.normal(size=(50, 1)).astype(np.float32)}
    bundles = {
        "people": mp.pack(pipe, people, name="people", version="1"),
        "colors": mp.pack(xgb_model, cats, name="colors", version="1"),
        "lgb": mp.pack(lgb_model, cats, name="lgb", version="1"),
        "flags": mp.pack(OnnxModel(_flags_onnx()), flags_sample, name="flags", version="1"),
    }
    paths = {}
    for name, b in bundles.items():
        paths[name] = b.save(repo / f"{name}.mpk")
    with _serve.process_server([str(repo)], tmp) as proc:
        yield Served({k: mp.load(v) for k, v in paths.items()}, paths, proc.http, proc.grpc, tmp)


# ---------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Case:
    id: str
    model: str
    columns: dict[str, list[Any]]
    #: the core of the refusal every path must say, or None when every path must accept
    error: str | None = None
    paths: tuple[str, ...] = ALL_PATHS
    #: paths that deliberately differ, with the expectation there ("accept" or a message)
    differs: dict[str, str | None] = field(default_factory=dict)
    #: outputs every accepting path must give (else: bundle.predict on a DataFrame is the reference)
    expect: Callable[[Served], dict[str, np.ndarray]] | None = None
    #: an unknown category each accepting path must count
    counts: str | None = None


def _people(**over: list[Any]) -> dict[str, list[Any]]:
    base: dict[str, list[Any]] = {"age": [30.0, 61.5], "visits": [3, 12], "member": [True, False],
                                  "city": ["paris", "nice"], "plan": ["basic", "pro"]}
    base.update(over)
    return base


def _colors(**over: list[Any]) -> dict[str, list[Any]]:
    base: dict[str, list[Any]] = {"x": [0.3, -1.2], "color": ["red", "blue"], "tier": [1, 3]}
    base.update(over)
    return base


def _sklearn_ref(served: Served, cols: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    # the original pipeline is not kept; its bundle agrees with it on these rows (parity tests prove it)
    return served.bundles["people"].predict(pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in cols.items()}))


CASES = [
    Case("people-good", "people", _people()),
    Case("numbers-as-text", "people", _people(age=["30.0", "61.5"], visits=["3", "12"])),
    Case("nan-where-not-nullable", "people", _people(age=[30.0, None]), error="column 'age' has missing values (NaN)"),
    Case("text-for-numeric", "people", _people(age=[30.0, "old"]), error="column 'age' must be numeric (float64)"),
    Case("fraction-for-int", "people", _people(visits=[3, 2.5]), error="column 'visits' must hold whole numbers (int64)"),
    Case("half-for-bool", "people", _people(member=[True, 0.5]), error="column 'member' must hold booleans"),
    Case("number-for-bool-not-01", "people", _people(member=[1, 2]), error="column 'member' must hold booleans"),
    Case("bool-as-01", "people", _people(member=[1, 0]),
         expect=lambda s: _sklearn_ref(s, _people())),
    # OneHotEncoder(handle_unknown="ignore"): an unseen city, a typo, a number and None are all zeros
    Case("unseen-city-ignored", "people", _people(city=["paris", "marseille"]), counts="city"),
    Case("typo-city-ignored", "people", _people(city=["Paris", "nice"]), counts="city",
         expect=lambda s: _sklearn_ref(s, _people(city=["zzz", "nice"]))),
    Case("number-for-string-city", "people", _people(city=["paris", 5]), counts="city",
         expect=lambda s: _sklearn_ref(s, _people(city=["paris", "zzz"]))),
    Case("missing-city-ignored", "people", _people(city=["paris", None]), counts="city",
         expect=lambda s: _sklearn_ref(s, _people(city=["paris", "zzz"]))),
    # OneHotEncoder(handle_unknown="error"): scikit-learn refuses, so does the bundle
    Case("unseen-plan-refused", "people", _people(plan=["basic", "gold"]),
         error="column 'plan' has values outside its categories"),
    Case("missing-column", "people", {k: v for k, v in _people().items() if k != "plan"},
         error="missing column(s): plan", paths=tuple(p for p in ALL_PATHS if p != "diff")),
    Case("extra-column", "people", {**_people(), "zip": ["75001", "06000"]}, error="unexpected column(s): zip",
         paths=tuple(p for p in ALL_PATHS if p != "diff"),
         # batch copies the columns a model does not read to its output (ids, timestamps)
         differs={"batch": None, "score_file": None}),
    Case("empty-batch", "people", {k: [] for k in _people()},
         paths=tuple(p for p in ALL_PATHS if p not in ("diff", "grpc"))),
    # XGBoost: categories by value; an unseen one is refused as XGBoost refuses it
    Case("colors-good", "colors", _colors()),
    Case("colors-missing", "colors", _colors(color=["red", None])),
    Case("colors-tier-as-text", "colors", _colors(tier=["1", "3"]), expect=lambda s: s.bundles["colors"].predict(
        pd.DataFrame(_colors()))),
    Case("colors-unseen-refused", "colors", _colors(color=["red", "platinum"]),
         error="column 'color' has values outside its categories"),
    Case("colors-number-for-string-refused", "colors", _colors(color=["red", 7]),
         error="column 'color' has values outside its categories"),
    # LightGBM: an unseen category is scored as missing, as LightGBM does, and counted
    Case("lgb-unseen-as-missing", "lgb", _colors(color=["red", "platinum"]), counts="color",
         expect=lambda s: s.bundles["lgb"].predict(pd.DataFrame(_colors(color=["red", None])))),
    # the tensor form: a matrix of category codes, the same in numpy, dict, REST and gRPC
    Case("codes", "colors", {"X": [[0.3, 3, 0], [-1.2, 1, 2]]}, paths=TENSOR_PATHS,
         expect=lambda s: s.bundles["colors"].predict(pd.DataFrame(_colors()))),
    Case("codes-out-of-range-native", "colors", {"X": [[0.3, 7, 0], [-1.2, 1, 2]]}, paths=TENSOR_PATHS,
         counts="color"),
    Case("category-values-in-a-matrix", "colors", {"X": [[0.3, "red", 0], [-1.2, "blue", 2]]},
         paths=("numpy", "dict"), error="column 'color' must hold category codes"),
    Case("wrong-width", "colors", {"X": [[0.3, 3], [-1.2, 1]]}, paths=TENSOR_PATHS,
         error="input 'X' must have shape [N, 3]"),
    Case("nan-in-a-nullable-slot", "colors", {"X": [[None, 3, 0], [-1.2, 1, 2]]}, paths=TENSOR_PATHS,
         expect=lambda s: s.bundles["colors"].predict(pd.DataFrame(_colors(x=[None, -1.2])))),
    # graph inputs without columns: BOOL takes 0/1 only, INT8 takes what fits
    Case("flags-good", "flags", {"flag": [[True], [False]], "small": [[3], [-4]], "x": [[0.5], [2.0]]},
         paths=(*TENSOR_PATHS[1:], "records_endpoint", "batch"),
         expect=lambda s: {"y": np.array([[3.5], [-4.0]], dtype=np.float32)}),
    Case("flags-one-as-true", "flags", {"flag": [[1.0], [0.0]], "small": [[3], [-4]], "x": [[0.5], [2.0]]},
         paths=TENSOR_PATHS[1:], expect=lambda s: {"y": np.array([[3.5], [-4.0]], dtype=np.float32)}),
    Case("flags-half-for-bool", "flags", {"flag": [[0.5], [0.0]], "small": [[3], [-4]], "x": [[0.5], [2.0]]},
         paths=(*TENSOR_PATHS[1:], "records_endpoint", "batch"), error="input 'flag' must hold booleans"),
    Case("flags-int8-overflow", "flags", {"flag": [[True], [False]], "small": [[3], [1000]], "x": [[0.5], [2.0]]},
         paths=(*TENSOR_PATHS[1:], "records_endpoint", "batch"), error="input 'small' must hold values that fit int8"),
    Case("flags-text-for-float", "flags", {"flag": [[True], [False]], "small": [[3], [1]], "x": [[0.5], ["abc"]]},
         paths=(*TENSOR_PATHS[1:], "records_endpoint", "batch"), error="input 'x' must be numeric (float32)"),
]


# ---------------------------------------------------------------------------------- the paths
class Refused(Exception):
    pass


def _frame(cols: dict[str, list[Any]]) -> pd.DataFrame:
    out = {}
    for k, v in cols.items():
        flat = [x[0] if isinstance(x, list) and len(x) == 1 else x for x in v]
        types = {type(x) for x in flat if x is not None}
        out[k] = pd.Series(flat, dtype=object) if len(types) > 1 or str in types or not flat else pd.Series(flat)
        if None in flat and types <= {float, int}:
            out[k] = pd.Series([np.nan if x is None else x for x in flat], dtype=float)
    return pd.DataFrame(out)


def _flat(cols: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {k: [x[0] if isinstance(x, list) and len(x) == 1 else x for x in v] for k, v in cols.items()}


def _records(cols: dict[str, list[Any]]) -> list[dict[str, Any]]:
    flat = _flat(cols)
    n = len(next(iter(flat.values())))
    return [{k: v[i] for k, v in flat.items()} for i in range(n)]


def _v2_type(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "BOOL"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "INT64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "FP64"
    return "BYTES"


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in data:
        out.extend(_flatten(v) if isinstance(v, list) else [v])
    return out


def _shape(data: list[Any]) -> list[int]:
    shape = [len(data)]
    if data and isinstance(data[0], list):
        shape += _shape(data[0])
    return shape


def _v2_inputs(cols: dict[str, list[Any]]) -> list[dict[str, Any]]:
    out = []
    for name, values in cols.items():
        flat = _flatten(values)
        dt = _v2_type(flat)
        data = [None if v is None else str(v) for v in flat] if dt == "BYTES" else flat
        out.append({"name": name, "shape": _shape(values) if values else [0], "datatype": dt, "data": data})
    return out


def _json_outputs(body: dict[str, Any]) -> dict[str, np.ndarray]:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in body["outputs"]}


def _http_error(r: httpx.Response) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    return r.json()["error"]


def run_path(path: str, served: Served, model: str, cols: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    """Outputs of ``cols`` scored through ``path``; raises Refused(message) where it refuses them."""
    bundle = served.bundles[model]
    try:
        if path == "frame":
            return bundle.predict(_frame(cols))
        if path == "dict":
            return bundle.predict({k: np.array(v, dtype=object) if _mixed(v) else v for k, v in cols.items()})
        if path == "numpy":
            (values,) = cols.values()
            return bundle.predict(np.array(values, dtype=object if _mixed(values) else None))
        if path == "records":
            return bundle.predict(_records(cols))
        if path == "diff":
            from modelport.inspect.diff import _score

            arrays = {k: np.array(v, dtype=object) for k, v in _flat(cols).items()}
            n = len(next(iter(arrays.values())))
            ok, outputs = _score(bundle, arrays, n)
            if not ok.all():
                raise Refused(f"diff leaves out row(s) {np.flatnonzero(~ok).tolist()}")
            return outputs
    except InputError as exc:
        raise Refused(str(exc)) from None
    if path == "rest":
        r = httpx.post(f"{served.http}/v2/models/{model}/infer", json={"inputs": _v2_inputs(cols)}, timeout=30)
        if r.status_code != 200:
            raise Refused(_http_error(r))
        return _json_outputs(r.json())
    if path == "records_endpoint":
        r = httpx.post(f"{served.http}/v2/models/{model}/records", json={"records": _records(cols)}, timeout=30)
        if r.status_code != 200:
            raise Refused(_http_error(r))
        preds = r.json()["predictions"]
        if bundle.classes is not None:
            names = [str(c) for c in bundle.classes]
            return {"probabilities": np.array([[p["probabilities"][c] for c in names] for p in preds]).reshape(-1, len(names))}
        return {k: np.array([p[k] for p in preds]).reshape(len(preds), -1) for k in (preds[0] if preds else {})}
    if path == "grpc":
        return _grpc(served, model, cols)
    if path == "batch":
        try:
            out, rejects = mb.score(bundle, _frame(cols), on_error="skip", keep="none", return_rejects=True)
        except InputError as exc:
            raise Refused(str(exc)) from None
        if len(rejects):
            raise Refused(" | ".join(rejects["reason"]))
        return _batch_outputs(bundle, out)
    if path == "score_file":
        src = served.tmp / f"in-{abs(hash(json.dumps(cols, default=str)))}.csv"
        _frame(cols).to_csv(src, index=False)
        dst = src.with_suffix(".out.csv")
        try:
            result = mb.score_file(served.paths[model], src, dst, on_error="skip", keep="none", overwrite=True)
        except InputError as exc:
            raise Refused(str(exc)) from None
        if result.rejected:
            raise Refused(" | ".join(pd.read_csv(result.rejects_path)["reason"]))
        return _batch_outputs(bundle, pd.read_csv(dst) if result.rows_out else pd.DataFrame())
    raise AssertionError(path)


def _mixed(values: list[Any]) -> bool:
    flat = _flatten(values)
    return any(isinstance(v, str) for v in flat) or any(v is None for v in flat)


def _batch_outputs(bundle: mp.Bundle, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    if bundle.classes is not None:
        cols = [f"proba_{c}" for c in bundle.classes]
        return {"probabilities": frame[cols].to_numpy() if len(frame) else np.empty((0, len(cols)))}
    return {"y": frame[["y"]].to_numpy()} if "y" in frame else {"y": frame.to_numpy()}


def _grpc(served: Served, model: str, cols: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    client = tc_grpc.InferenceServerClient(served.grpc)
    inputs = []
    for name, values in cols.items():
        flat = _flatten(values)
        dt = _v2_type(flat)
        shape = _shape(values)
        if dt == "BYTES":
            # BYTES cannot carry a null: an empty text is the missing value (as in a CSV file)
            arr = np.array([b"" if v is None else str(v).encode() for v in flat], dtype=object).reshape(shape)
        elif dt == "BOOL":
            arr = np.array(flat, dtype=bool).reshape(shape)
        elif dt == "INT64":
            arr = np.array(flat, dtype=np.int64).reshape(shape)
        else:
            arr = np.array([np.nan if v is None else v for v in flat], dtype=np.float64).reshape(shape)
        inp = tc_grpc.InferInput(name, shape, dt)
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    try:
        result = client.infer(model, inputs)
    except InferenceServerException as exc:
        assert "INVALID_ARGUMENT" in str(exc.status()), exc
        raise Refused(exc.message()) from None
    finally:
        client.close()
    names = served.bundles[model].signature.output_names
    return {n: result.as_numpy(n) for n in names}


def _same(got: dict[str, np.ndarray], want: dict[str, np.ndarray], where: str) -> None:
    key = "probabilities" if "probabilities" in want else "y"
    np.testing.assert_allclose(np.asarray(got[key], dtype=np.float64).reshape(want[key].shape),
                               np.asarray(want[key], dtype=np.float64), rtol=1e-5, atol=1e-6, err_msg=where)


def _unknown_metric(served: Served, model: str, column: str) -> float:
    text = httpx.get(f"{served.http}/metrics", timeout=10).text
    pattern = rf'modelport_unknown_categories_total\{{[^}}]*column="{column}"[^}}]*model="{model}"[^}}]*\}} (\S+)'
    m = re.search(pattern, text) or re.search(
        rf'modelport_unknown_categories_total\{{model="{model}",version="1",column="{column}"\}} (\S+)', text)
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_path_judges_the_same(served, case: Case):
    reference: dict[str, np.ndarray] | None = None
    if case.expect is not None:
        reference = case.expect(served)
    seen: dict[str, str] = {}
    for path in case.paths:
        want = case.differs.get(path, case.error) if path in case.differs else case.error
        before = _unknown_metric(served, case.model, case.counts) if case.counts and path in ("rest", "grpc",
                                                                                               "records_endpoint") else 0
        runtime_before = dict(served.bundles[case.model].runtime.unknown_categories)
        try:
            got = run_path(path, served, case.model, case.columns)
        except Refused as exc:
            seen[path] = str(exc)
            assert want is not None, f"{path} refused an input every path must accept: {exc}"
            if path != "diff":  # diff only says which rows it leaves out
                assert want in str(exc), f"{path}: {exc!s} lacks the core message {want!r}"
            continue
        assert want is None, f"{path} accepted an input every path must refuse ({want!r})"
        if reference is None:
            reference = got
        else:
            _same(got, reference, f"{case.id} via {path}")
        if case.counts:
            if path in ("rest", "grpc", "records_endpoint"):
                assert _unknown_metric(served, case.model, case.counts) > before, f"{path} did not count"
            elif path in ("frame", "dict", "records", "numpy"):
                after = served.bundles[case.model].runtime.unknown_categories
                assert after.get(case.counts, 0) > runtime_before.get(case.counts, 0), f"{path} did not count"


def test_batch_counts_unknown_categories_in_its_summary(served, tmp_path):
    from click.testing import CliRunner

    from modelport.cli.main import cli

    src = tmp_path / "in.csv"
    _frame(_people(city=["paris", "marseille"])).to_csv(src, index=False)
    result = mb.score_file(served.paths["people"], src, tmp_path / "out.csv")
    assert result.unknown_categories == {"city": 1}
    _, rejects = mb.score(served.bundles["people"], _frame(_people(city=["Paris", 5])), return_rejects=True)
    assert rejects.attrs["unknown_categories"] == {"city": 2}
    r = CliRunner().invoke(cli, ["score", str(served.paths["people"]), str(src), "-o", str(tmp_path / "o2.csv")])
    assert r.exit_code == 0, r.output
    assert "1 value(s) outside their column's categories were scored (not refused): city 1" in r.output
    # and refused, with --unknown-categories error: a reject naming the value
    r = CliRunner().invoke(cli, ["score", str(served.paths["lgb"]), str(_write(tmp_path, _colors(color=["red", "zz"]))),
                                 "-o", str(tmp_path / "o3.csv"), "--unknown-categories", "error", "--on-error", "skip"])
    assert r.exit_code == 0, r.output
    rejects = pd.read_csv(tmp_path / "o3.csv.rejects.csv")
    assert rejects["row"].tolist() == [1] and "column 'color' has values outside its categories" in rejects["reason"][0]


def _write(tmp_path: Path, cols: dict[str, list[Any]]) -> Path:
    p = tmp_path / f"t{len(list(tmp_path.iterdir()))}.csv"
    _frame(cols).to_csv(p, index=False)
    return p


def test_policy_is_overridden_at_serve_time(served, tmp_path):
    """``modelport serve --unknown-categories error`` refuses what the bundle would score as missing."""
    with _serve.process_server([str(served.paths["lgb"]), "--unknown-categories", "error"], tmp_path) as proc:
        r = httpx.post(f"{proc.http}/v2/models/lgb/records", json={"records": _records(_colors(color=["red", "zz"]))})
        assert r.status_code == 400 and "column 'color' has values outside its categories" in r.json()["error"]
        ok = httpx.post(f"{proc.http}/v2/models/lgb/records", json={"records": _records(_colors())})
        assert ok.status_code == 200


def test_nan_codes_are_not_unknown(served):
    # a missing code is a missing value, never an unknown category
    before = dict(served.bundles["colors"].runtime.unknown_categories)
    served.bundles["colors"].predict(np.array([[0.3, np.nan, 0.0]]))
    assert served.bundles["colors"].runtime.unknown_categories == before
    assert not math.isnan(served.bundles["colors"].predict(np.array([[0.3, np.nan, 0.0]]))["probabilities"][0, 0])
