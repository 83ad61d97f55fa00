"""Routing through real servers: weighted splits, stickiness, shadows, explicit versions, the stop
rule, bandits on feedback, live changes (API, file, registry aliases) and the refusals."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

import modelport as mp
from modelport.serve import ServeConfig

from .conftest import thread_server
from .routing_models import failing, slow, with_graph

pytestmark = pytest.mark.integration

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.4, 1.3]], dtype=np.float32)


def body(x: np.ndarray = X[:1], **params: str) -> dict:
    doc: dict = {"inputs": [{"name": "X", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    if params:
        doc["parameters"] = params
    return doc


def routing_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.toml"
    path.write_text(text)
    return path


def post_many(url: str, bodies: list[dict], *, threads: int = 4, headers: list[dict] | None = None) -> list[httpx.Response]:
    """POST every body (in order of the list), from several client threads."""
    out: list[httpx.Response | None] = [None] * len(bodies)
    local = threading.local()

    def one(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30)
        out[i] = local.client.post(url, json=bodies[i], headers=(headers[i] if headers else None))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(len(bodies))))
    return out  # type: ignore[return-value]


def metric(url: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def route_of(url: str, name: str = "iris") -> dict:
    r = httpx.get(f"{url}/v2/repository/models/{name}/route")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def copies(bundles, tmp_path_factory) -> dict[str, Path]:
    """Extra versions of iris with iris' signature: a third forest (v3, v1's graph), a slow copy
    (v5) and one that fails in ONNX Runtime (v6)."""
    root = tmp_path_factory.mktemp("routing-copies")
    v1, v2 = mp.load(bundles.iris_v1), mp.load(bundles.iris_v2)
    paths = {"v3": root / "iris3.mpk", "slow": root / "iris-slow.mpk", "fail": root / "iris-fail.mpk"}
    with_graph(v1, v1.onnx_model, version="3").save(paths["v3"])
    slow(v2, 20_000, version="5").save(paths["slow"])
    failing(v2, version="6").save(paths["fail"])
    return paths


# ----------------------------------------------------------------------------- splits
def test_weighted_split_is_within_statistical_bounds(bundles, copies, tmp_path):
    path = routing_file(tmp_path, f"""
[iris]
a = {{ model = "{bundles.iris_v1}", weight = 60 }}
b = {{ model = "{bundles.iris_v2}", weight = 30 }}
c = {{ model = "{copies['v3']}", weight = 10 }}
""")
    n = 10_000
    with thread_server(ServeConfig(sources=[], routing=[str(path)])) as url:
        responses = post_many(f"{url}/v2/models/iris/infer", [body()] * n)
        metrics = {arm: metric(url, "modelport_route_requests_total", model="iris", arm=arm) for arm in "abc"}
    assert {r.status_code for r in responses} == {200}
    arms = Counter(r.headers["x-model-arm"] for r in responses)
    versions = Counter((r.headers["x-model-arm"], r.json()["model_version"], r.headers["x-model-version"]) for r in responses)
    assert set(versions) == {("a", "1", "1"), ("b", "2", "2"), ("c", "3", "3")}
    for arm, p in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        sigma = (n * p * (1 - p)) ** 0.5
        assert abs(arms[arm] - n * p) < 4.5 * sigma, (arm, arms, n * p)  # fails ~1 time in 100,000
        assert metrics[arm] == arms[arm]


def test_sticky_assignment_by_field_and_by_header(bundles, tmp_path):
    path = routing_file(tmp_path, f"""
[iris]
production = {{ model = "{bundles.iris_v1}", weight = 50 }}
canary     = {{ model = "{bundles.iris_v2}", weight = 50, sticky = "customer_id" }}
""")
    customers = [f"c{i}" for i in range(200)]
    with thread_server(ServeConfig(sources=[], routing=[str(path)])) as url:
        # the key as a V2 request parameter, as an input the model does not have, and a records field
        by_param = post_many(f"{url}/v2/models/iris/infer", [body(customer_id=c) for c in customers * 3])
        as_input = post_many(f"{url}/v2/models/iris/infer", [
            {"inputs": [*body()["inputs"], {"name": "customer_id", "shape": [1], "datatype": "BYTES", "data": [c]}]}
            for c in customers])
        records = post_many(f"{url}/v2/models/iris/records", [
            {"records": [{"f0": 5.1, "f1": 3.5, "f2": 1.4, "f3": 0.2, "customer_id": c}]} for c in customers])
        missing_before = metric(url, "modelport_route_sticky_missing_total", model="iris")
        without = post_many(f"{url}/v2/models/iris/infer", [body()] * 40)
        missing = metric(url, "modelport_route_sticky_missing_total", model="iris") - missing_before
        # the same route keyed by a header, set through the repository API
        table = {"production": {"model": str(bundles.iris_v1), "weight": 50},
                 "canary": {"model": str(bundles.iris_v2), "weight": 50}, "sticky": "header:X-Customer"}
        assert httpx.post(f"{url}/v2/repository/models/iris/route", json=table).status_code == 200
        by_header = post_many(f"{url}/v2/models/iris/infer", [body()] * 400,
                              headers=[{"x-customer": c} for c in customers * 2])
    for responses in (by_param, as_input, records, without, by_header):
        assert {r.status_code for r in responses} == {200}, [r.text for r in responses if r.status_code != 200][:2]
    seen: dict[str, set[str]] = {}
    for c, r in zip(customers * 3, by_param):
        seen.setdefault(c, set()).add(r.headers["x-model-arm"])
    for c, r in zip(customers, as_input):
        seen[c].add(r.headers["x-model-arm"])
    for c, r in zip(customers, records):
        seen[c].add(r.headers["x-model-arm"])
    assert all(len(arms) == 1 for arms in seen.values()), {c: a for c, a in seen.items() if len(a) > 1}
    on_canary = sum(arms == {"canary"} for arms in seen.values())
    assert abs(on_canary - 100) < 4.5 * 50 ** 0.5  # each customer lands by its hash: half of them
    assert missing == 40  # no key: assigned at random, and counted
    assert set(Counter(r.headers["x-model-arm"] for r in without)) == {"production", "canary"}
    by_customer: dict[str, set[str]] = {}
    for c, r in zip(customers * 2, by_header):
        by_customer.setdefault(c, set()).add(r.headers["x-model-arm"])
    assert all(len(a) == 1 for a in by_customer.values())
    assert 0 < sum(a == {"canary"} for a in by_customer.values()) < 200


def test_explicit_versions_and_one_arm_routes(bundles, copies, tmp_path):
    path = routing_file(tmp_path, f"""
[iris]
production = {{ model = "{bundles.iris_v1}" }}
shadow = ["{copies['v3']}"]
""")
    with thread_server(ServeConfig(sources=[str(bundles.lin)], routing=[str(path)])) as url:
        routed = httpx.post(f"{url}/v2/models/iris/infer", json=body())
        pinned = httpx.post(f"{url}/v2/models/iris/versions/3/infer", json=body())
        other = httpx.post(f"{url}/v2/models/lin/infer", json={"inputs": [
            {"name": "X", "shape": [1, 5], "datatype": "FP64", "data": [0.1] * 5}]})
        meta = httpx.get(f"{url}/v2/models/iris").json()
        route = route_of(url)
    assert routed.headers["x-model-version"] == "1" and routed.headers["x-model-arm"] == "production"
    assert pinned.json()["model_version"] == "3" and "x-model-arm" not in pinned.headers  # a shadow's version, asked for
    assert other.headers["x-model-version"] == "1" and "x-model-arm" not in other.headers
    assert meta["versions"] == ["1", "3"]
    assert route["arms"][0]["weight"] == 100.0  # one arm: the weight may be left out


# ----------------------------------------------------------------------------- shadows
def test_shadow_never_changes_or_delays_the_answer(bundles, copies, tmp_path):
    """A shadow that takes ~0.15 s per call beside a model answering in about a millisecond:
    the answers are the model's, and their p99 is that of the model alone."""
    path = routing_file(tmp_path, f"""
[iris]
production = {{ model = "{bundles.iris_v1}", weight = 100 }}
""")
    requests = [body(X[i % 3:i % 3 + 1]) for i in range(300)]

    def timed(url: str) -> tuple[list[float], list[dict]]:
        took, answers = [], []
        with httpx.Client(timeout=30) as c:
            for b in requests:
                t = time.perf_counter()
                r = c.post(f"{url}/v2/models/iris/infer", json=b)
                took.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
                answers.append(r.json()["outputs"])
        return took, answers

    with thread_server(ServeConfig(sources=[], routing=[str(path)])) as url:
        timed(url)  # warm
        alone, plain = timed(url)
        table = {"production": {"model": str(bundles.iris_v1), "weight": 100}, "shadow": [str(copies["slow"])]}
        assert httpx.post(f"{url}/v2/repository/models/iris/route", json=table).status_code == 200
        shadowed, answers = timed(url)
        time.sleep(0.5)
        shadow = route_of(url)["shadows"][0]
        # what one call of the shadow costs here, now (asked for by version: answered, not shadowed)
        with httpx.Client(timeout=30) as c:
            own = []
            for _ in range(5):
                t = time.perf_counter()
                assert c.post(f"{url}/v2/models/iris/versions/5/infer", json=body()).status_code == 200
                own.append(time.perf_counter() - t)
        shadow_cost = float(np.median(own))
    p99_alone, p99_shadowed = np.quantile(alone, 0.99), np.quantile(shadowed, 0.99)
    assert answers == plain  # never changed
    assert shadow["version"] == "5" and shadow["requests"] > 0 and shadow["disagreements"] == 0
    assert shadow["dropped"].get("busy", 0) > 0  # it could not keep up: dropped, counted, nobody waited
    # waiting for the shadow would cost every request at least a shadow call; on a machine whose
    # cores the shadow shares, what remains is CPU contention, bounded well below that
    assert shadow_cost > 5 * np.median(alone), (shadow_cost, np.median(alone))  # the shadow is the slow one
    assert np.median(shadowed) < np.median(alone) + 0.25 * shadow_cost, (np.median(alone), np.median(shadowed))
    assert p99_shadowed < max(3 * p99_alone, p99_alone + 0.5 * shadow_cost), (p99_alone, p99_shadowed, shadow_cost)


def test_shadow_disagreement_is_counted_exactly(bundles, tmp_path):
    path = routing_file(tmp_path, f"""
[iris]
production = {{ model = "{bundles.iris_v1}", weight = 100 }}
shadow = ["{bundles.iris_v2}"]
""")
    rng = np.random.default_rng(5)
    batches = [rng.uniform([4, 2, 1, 0], [8, 4.5, 7, 2.5], size=(8, 4)).astype(np.float32) for _ in range(20)]
    v1, v2 = mp.load(bundles.iris_v1), mp.load(bundles.iris_v2)
    want = sum(int((v1.predict(b)["label"] != v2.predict(b)["label"]).sum()) for b in batches)
    diff = max(float(np.abs(v1.predict(b)["probabilities"] - v2.predict(b)["probabilities"]).max()) for b in batches)
    with thread_server(ServeConfig(sources=[], routing=[str(path)])) as url:
        for b in batches:
            assert httpx.post(f"{url}/v2/models/iris/infer", json=body(b)).status_code == 200
        deadline = time.time() + 10
        while route_of(url)["shadows"][0]["requests"] < len(batches) and time.time() < deadline:
            time.sleep(0.05)
        shadow = route_of(url)["shadows"][0]
        largest = metric(url, "modelport_shadow_max_abs_difference_count", model="iris", version="1", shadow="2")
    assert want > 0  # the two forests disagree somewhere on these rows
    assert shadow["rows"] == 160 and shadow["disagreements"] == want
    assert largest == len(batches) and diff > 0


def test_shadow_with_another_signature_is_refused_at_load(bundles, tmp_path):
    path = routing_file(tmp_path, f"""
[iris]
production = {{ model = "{bundles.iris_v1}", weight = 100 }}
shadow = ["{bundles.tiers}"]
""")
    from modelport.serve.server import Server

    with pytest.raises(mp.InputError, match=r"shadow .* classes: \[0, 1, 2\] in 'production', \['bronze', 'gold', 'silver'\]"):
        Server(ServeConfig(sources=[], routing=[str(path)])).load()
    good = routing_file(tmp_path, f'[iris]\nproduction = {{ model = "{bundles.iris_v1}" }}\n')
    with thread_server(ServeConfig(sources=[], routing=[str(good)])) as url:
        bad = {"production": {"model": str(bundles.iris_v1), "weight": 100}, "shadow": [str(bundles.lin)]}
        r = httpx.post(f"{url}/v2/repository/models/iris/route", json=bad)
        assert r.status_code == 400 and "does not take the same requests" in r.json()["error"]
        assert str(bundles.lin.parent) not in r.text  # no server paths in what clients see
        assert route_of(url)["shadows"] == []  # unchanged
        assert httpx.post(f"{url}/v2/models/iris/infer", json=body()).status_code == 200


# ----------------------------------------------------------------------------- the stop rule
def test_a_canary_that_errs_is_stopped_by_the_rule(bundles, copies, tmp_path):
    path = routing_file(tmp_path, f"""
[iris]
production = {{ model = "{bundles.iris_v1}", weight = 50 }}
canary     = {{ model = "{copies['fail']}", weight = 50 }}

[iris.stop]
max_error_rate = 0.2
min_requests = 10
window = 30
""")
    with thread_server(ServeConfig(sources=[], routing=[str(path)])) as url, httpx.Client(timeout=30) as c:
        statuses: Counter[tuple[int, str]] = Counter()
        deadline = time.time() + 30
        while time.time() < deadline:
            r = c.post(f"{url}/v2/models/iris/infer", json=body())
            statuses[(r.status_code, r.headers.get("x-model-arm", "-"))] += 1
            if route_of(url)["arms"][1]["stopped"]:
                break
        route = route_of(url)
        after = [c.post(f"{url}/v2/models/iris/infer", json=body()) for _ in range(50)]
        stopped = metric(url, "modelport_route_arm_stopped", model="iris", arm="canary")
        pinned = c.post(f"{url}/v2/models/iris/versions/6/infer", json=body())
    canary = route["arms"][1]
    assert canary["stopped"] and "error rate" in canary["stopped"] and canary["weight"] == 0
    assert route["arms"][0]["weight"] == 100
    assert statuses[(500, "-")] >= 10 and statuses[(200, "production")] > 0
    assert {r.status_code for r in after} == {200} and {r.headers["x-model-arm"] for r in after} == {"production"}
    assert stopped == 1
    assert pinned.status_code == 500  # the stopped version itself is still served when asked for


def test_a_canary_that_degrades_is_stopped_by_latency_and_by_realised_accuracy(bundles, copies, tmp_path):
    slow_route = routing_file(tmp_path, f"""
[iris]
production = {{ model = "{bundles.iris_v1}", weight = 60 }}
canary     = {{ model = "{copies['slow']}", weight = 40 }}

[iris.stop]
max_latency_ratio = 5
min_requests = 8
window = 60
""")
    with thread_server(ServeConfig(sources=[], routing=[str(slow_route)])) as url, httpx.Client(timeout=30) as c:
        deadline = time.time() + 60
        while time.time() < deadline and not route_of(url)["arms"][1]["stopped"]:
            assert c.post(f"{url}/v2/models/iris/infer", json=body()).status_code == 200
        canary = route_of(url)["arms"][1]
    assert canary["stopped"] and "p99 latency" in canary["stopped"] and canary["weight"] == 0

    metric_route = tmp_path / "metric.toml"
    metric_route.write_text(f"""
[iris]
production = {{ model = "{bundles.iris_v1}", weight = 50 }}
canary     = {{ model = "{bundles.iris_v2}", weight = 50 }}

[iris.bandit]
min_weight = 50
max_weight = 50
min_labels = 5

[iris.stop]
max_error_rate = 0.5
max_metric_drop = 0.2
min_labels = 20
""")
    with thread_server(ServeConfig(sources=[], routing=[str(metric_route)])) as url, httpx.Client(timeout=30) as c:
        deadline = time.time() + 60
        while time.time() < deadline and not route_of(url)["arms"][1]["stopped"]:
            records = []
            for _ in range(10):
                r = c.post(f"{url}/v2/models/iris/infer", json=body())
                label = r.json()["outputs"][0]["data"][0]
                right = r.headers["x-model-arm"] == "production"  # the canary is always wrong
                records.append({"id": r.headers["x-request-id"], "label": label if right else (label + 1) % 3})
            assert c.post(f"{url}/v2/models/iris/feedback", json={"records": records}).status_code == 200
            time.sleep(0.1)
        route = route_of(url)
    production, canary = route["arms"]
    assert canary["stopped"] and "realised accuracy" in canary["stopped"], route
    assert production["weight"] == 100 and production["realised"]["accuracy"] == 1.0


# ----------------------------------------------------------------------------- bandits
@pytest.mark.parametrize("policy", ["thompson", "exp3"])
def test_bandit_moves_weight_to_the_arm_with_the_better_reward(bundles, tmp_path, policy):
    path = routing_file(tmp_path, f"""
[iris]
good = {{ model = "{bundles.iris_v1}", weight = 50 }}
bad  = {{ model = "{bundles.iris_v2}", weight = 50 }}

[iris.bandit]
policy = "{policy}"
reward = "accuracy"
min_weight = 5
max_weight = 90
update_every = 0.2
min_labels = 10
""")
    rng = np.random.default_rng(11)
    right = {"good": 0.9, "bad": 0.4}  # how often each arm's answer will be called right
    with thread_server(ServeConfig(sources=[], routing=[str(path)])) as url, httpx.Client(timeout=30) as c:
        assert [a["weight"] for a in route_of(url)["arms"]] == [50, 50]
        for _ in range(40):
            records = []
            for _ in range(10):
                r = c.post(f"{url}/v2/models/iris/infer", json=body())
                assert r.status_code == 200
                arm, rid = r.headers["x-model-arm"], r.headers["x-request-id"]
                assert r.json()["id"] == rid
                label = r.json()["outputs"][0]["data"][0]
                if rng.random() >= right[arm]:
                    label = (label + 1) % 3
                records.append({"id": rid, "label": label})
            got = c.post(f"{url}/v2/models/iris/feedback", json={"records": records})
            assert got.json() == {"joined": 10, "unknown_ids": 0}
            time.sleep(0.05)
        time.sleep(1.0)
        route = route_of(url)
        weight = metric(url, "modelport_route_weight", model="iris", arm="good")
    good, bad = route["arms"]
    assert good["realised"]["accuracy"] > bad["realised"]["accuracy"]
    assert good["weight"] >= 80 and bad["weight"] >= 5 - 1e-6 and good["weight"] <= 90 + 1e-6, route
    assert weight == pytest.approx(good["weight"])


def test_feedback_is_checked(bundles, tmp_path):
    path = routing_file(tmp_path, f"""
[iris]
a = {{ model = "{bundles.iris_v1}", weight = 50 }}
b = {{ model = "{bundles.iris_v2}", weight = 50 }}
[iris.bandit]
""")
    with thread_server(ServeConfig(sources=[], routing=[str(path)])) as url, httpx.Client(timeout=30) as c:
        rid = c.post(f"{url}/v2/models/iris/infer", json=body()).headers["x-request-id"]
        cases = [
            ({"records": [{"id": rid, "label": "purple"}]}, "not one of the model's classes"),
            ({"records": [{"id": rid}]}, 'either "label"'),
            ({"records": [{"id": rid, "label": 1, "row": 4}]}, "row 4 does not exist"),
            ({"records": [{"label": 1}]}, '"id" must be the request id'),
            ({"records": "x"}, 'list under "records"'),
            ({"labels": []}, 'list under "records"'),
            ({"records": [{"id": rid, "reward": 2}]}, "in [0, 1]"),
        ]
        for doc, needle in cases:
            r = c.post(f"{url}/v2/models/iris/feedback", json=doc)
            assert r.status_code == 400 and needle in r.json()["error"], (doc, r.text)
        assert c.post(f"{url}/v2/models/ghost/feedback", json={"records": []}).status_code == 404
        ok = c.post(f"{url}/v2/models/iris/feedback", json={"records": [{"id": rid, "label": 0}, {"id": "nope", "label": 0}]})
        assert ok.json() == {"joined": 1, "unknown_ids": 1}


# ----------------------------------------------------------------------------- live changes
def test_routes_change_live_without_failing_requests(bundles, tmp_path):
    path = routing_file(tmp_path, f"""
[iris]
a = {{ model = "{bundles.iris_v1}", weight = 100 }}
b = {{ model = "{bundles.iris_v2}", weight = 0 }}
""")
    statuses: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    stop = threading.Event()
    lock = threading.Lock()

    def load(url: str) -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                r = c.post(f"{url}/v2/models/iris/infer", json=body(X))
                with lock:
                    statuses[r.status_code] += 1
                    versions[r.headers.get("x-model-version", "?")] += 1

    def wait_for(version: str) -> None:
        deadline = time.time() + 20
        while time.time() < deadline:
            with lock:
                before = versions[version]
            time.sleep(0.3)
            with lock:
                if versions[version] > before:
                    return
        raise AssertionError(f"version {version} never answered; {versions}")

    with thread_server(ServeConfig(sources=[], routing=[str(path)], poll_interval=0.1)) as url:
        threads = [threading.Thread(target=load, args=(url,)) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            wait_for("1")
            # the repository API: all traffic to b
            table = {"a": {"model": str(bundles.iris_v1), "weight": 0}, "b": {"model": str(bundles.iris_v2), "weight": 100}}
            assert httpx.post(f"{url}/v2/repository/models/iris/route", json=table).status_code == 200
            wait_for("2")
            # the file, re-read while polling: back to a, with a third version added as an arm
            extra = tmp_path / "iris7.mpk"
            v1 = mp.load(bundles.iris_v1)
            with_graph(v1, v1.onnx_model, version="7").save(extra)
            path.write_text(f'[iris]\na = {{ model = "{bundles.iris_v1}", weight = 0 }}\n'
                            f'c = {{ model = "{extra}", weight = 100 }}\n')
            os.utime(path, (time.time() + 5, time.time() + 5))
            wait_for("7")
            # a file that no longer loads keeps the route as it is
            path.write_text('[iris]\na = { model = "/nowhere.mpk", weight = 100 }\n')
            os.utime(path, (time.time() + 10, time.time() + 10))
            time.sleep(1.0)
            assert route_of(url)["arms"][1]["version"] == "7"
            assert metric(url, "modelport_route_reloads_total", result="refused") >= 1
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    assert set(statuses) == {200}, statuses
    assert versions["1"] and versions["2"] and versions["7"]


def test_routes_from_registry_aliases_with_weights(bundles, tmp_path, monkeypatch):
    from modelport.registry import open_registry

    url_db = f"sqlite:///{tmp_path / 'registry.db'}"
    reg = open_registry(url_db, artifacts=tmp_path / "artifacts")
    v1, v2 = reg.push(str(bundles.iris_v1)), reg.push(str(bundles.iris_v2))
    reg.set_alias("iris", "production", v1.version)
    reg.set_alias("iris", "canary", v2.version)
    reg.set_tags("models:/iris@production", {"route.weight": "80"})
    reg.set_tags("models:/iris@canary", {"route.weight": "20", "route.sticky": "customer_id"})
    monkeypatch.setenv("MODELPORT_ARTIFACTS", str(tmp_path / "artifacts"))
    config = ServeConfig(sources=[], routing=["models:/iris"], registry_url=url_db, poll_interval=0.1)
    with thread_server(config) as url:
        route = route_of(url)
        responses = post_many(f"{url}/v2/models/iris/infer", [body(customer_id=f"c{i}") for i in range(400)])
        # weights move with the tags; the canary alias moves to another version
        reg.set_tags("models:/iris@production", {"route.weight": "0"})
        reg.set_tags("models:/iris@canary", {"route.weight": "100"})
        deadline = time.time() + 20
        while time.time() < deadline and route_of(url)["arms"][0]["weight"] != 100:
            time.sleep(0.1)
        moved = route_of(url)
    assert route["sticky"] == "customer_id" and route["registry"] == "models:/iris"
    assert [(a["arm"], a["version"], a["weight"]) for a in route["arms"]] == [
        ("canary", str(v2.version), 20), ("production", str(v1.version), 80)]
    on_canary = sum(r.headers["x-model-arm"] == "canary" for r in responses)
    assert abs(on_canary - 80) < 4.5 * (400 * 0.2 * 0.8) ** 0.5
    assert moved["arms"][0]["weight"] == 100 and moved["arms"][1]["weight"] == 0


# ----------------------------------------------------------------------------- refusals
def test_bad_routing_is_refused_with_what_to_fix(bundles, tmp_path, monkeypatch):
    from modelport.registry import open_registry
    from modelport.serve.server import Server

    def load(text: str, **kw: object) -> None:
        Server(ServeConfig(sources=[], routing=[str(routing_file(tmp_path, text))], **kw)).load()  # type: ignore[arg-type]

    v1, v2 = bundles.iris_v1, bundles.iris_v2
    cases = [
        (f'[iris]\na = {{ model = "{v1}", weight = 90 }}\nb = {{ model = "{v2}", weight = 5 }}\n',
         "the weights add up to 95 (a 90, b 5); they must add up to 100"),
        (f'[iris]\na = {{ model = "{v1}", weight = 50 }}\nb = {{ model = "{v2}" }}\n', "have no weight"),
        (f'[iris]\na = {{ model = "{v1}", wieght = 100 }}\n', "unknown key(s) 'wieght'"),
        (f'[iris]\na = {{ model = "{tmp_path}/missing.mpk", weight = 100 }}\n', "arm 'a': model source"),
        ('[iris]\nshadow = ["x.mpk"]\n', "the route has no arms"),
        (f'[iris]\na = {{ model = "{v1}", weight = 50 }}\nb = {{ model = "{v2}", weight = 50 }}\n[iris.stop]\n'
         'arms = ["c"]\n', "no arm named 'c'; the arms are a, b"),
        (f'[iris]\na = {{ model = "{v1}", weight = 100 }}\n[iris.stop]\n', "needs a baseline arm and at least one other"),
        (f'[iris]\na = {{ model = "{v1}", weight = 100 }}\n[iris.bandit]\n', "a bandit needs at least two arms"),
        ("[iris\n", "is not valid TOML"),
    ]
    for text, needle in cases:
        with pytest.raises(mp.ModelportError) as info:
            load(text)
        assert needle in info.value.message, (text, info.value.message)
    reg = open_registry(f"sqlite:///{tmp_path / 'r.db'}", artifacts=tmp_path / "artifacts")
    info_v1 = reg.push(str(v1))
    reg.set_alias("iris", "production", info_v1.version)
    monkeypatch.setenv("MODELPORT_ARTIFACTS", str(tmp_path / "artifacts"))
    with pytest.raises(mp.ModelportError, match="has no alias 'canry'; its aliases: production"):
        load('[iris]\na = { model = "models:/iris@canry", weight = 100 }\n', registry_url=f"sqlite:///{tmp_path / 'r.db'}")
    with pytest.raises(mp.ModelportError, match=r"no alias of 'iris' points at a version tagged route\.weight"):
        Server(ServeConfig(sources=[], routing=["models:/iris"], registry_url=f"sqlite:///{tmp_path / 'r.db'}")).load()
    with pytest.raises(mp.ModelportError, match=r"unknown model|no model|not found"):
        load('[iris]\na = { model = "models:/ghost@production", weight = 100 }\n', registry_url=f"sqlite:///{tmp_path / 'r.db'}")


def test_the_cli_refuses_a_bad_routing_file(bundles, tmp_path):
    import subprocess
    import sys

    path = routing_file(tmp_path, f'[iris]\na = {{ model = "{bundles.iris_v1}", weight = 70 }}\n'
                                  f'b = {{ model = "{bundles.iris_v2}", weight = 20 }}\n')
    done = subprocess.run([sys.executable, "-m", "modelport", "serve", "--routing", str(path), "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "add up to 90" in done.stderr
    none = subprocess.run([sys.executable, "-m", "modelport", "serve"], capture_output=True, text=True, timeout=60)
    assert none.returncode == 2 and "needs SOURCES" in none.stderr


def test_route_api_errors_are_4xx(bundles, tmp_path):
    path = routing_file(tmp_path, f'[iris]\na = {{ model = "{bundles.iris_v1}" }}\n')
    with thread_server(ServeConfig(sources=[], routing=[str(path)])) as url, httpx.Client(timeout=30) as c:
        cases = [
            ({"a": {"model": str(bundles.iris_v1), "weight": 60}}, 400, "add up to 60"),
            ({"a": 3}, 400, "neither an arm"),
            ([1, 2], 400, "a route must be a table"),
            ({"a": {"model": "models:/x@y", "weight": 100}}, None, ""),  # no registry here: a clear error
        ]
        for doc, status, needle in cases:
            r = c.post(f"{url}/v2/repository/models/iris/route", json=doc)
            assert 400 <= r.status_code < 500 and (status is None or r.status_code == status), r.text
            assert needle in r.json()["error"]
        assert c.get(f"{url}/v2/repository/models/ghost/route").status_code == 404
        assert c.delete(f"{url}/v2/repository/models/ghost/route").status_code == 404
        assert c.put(f"{url}/v2/repository/models/iris/route").status_code == 405
        assert c.post(f"{url}/v2/models/iris/infer", json=body()).headers["x-model-arm"] == "a"
        assert c.delete(f"{url}/v2/repository/models/iris/route").status_code == 200
        assert c.post(f"{url}/v2/models/iris/infer", json=body()).status_code == 404  # its only source was the route
        assert c.get(f"{url}/v2/repository/routes").json() == []


# ----------------------------------------------------------------------------- isolation
def test_a_slow_arm_never_stalls_the_others(bundles, copies, tmp_path):
    """Half the traffic to an arm that takes ~0.15 s a call: requests on the fast arm are
    answered at its own pace while the slow arm's queue grows."""
    path = routing_file(tmp_path, f"""
[iris]
fast = {{ model = "{bundles.iris_v1}", weight = 50 }}
slow = {{ model = "{copies['slow']}", weight = 50 }}
""")
    took: list[tuple[str, float]] = []
    lock = threading.Lock()

    def one(c: httpx.Client) -> None:
        t = time.perf_counter()
        r = c.post(f"{url}/v2/models/iris/infer", json=body())
        assert r.status_code == 200, r.text
        with lock:
            took.append((r.headers["x-model-arm"], time.perf_counter() - t))

    with thread_server(ServeConfig(sources=[], routing=[str(path)])) as url:
        clients = [httpx.Client(timeout=60) for _ in range(8)]
        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: one(clients[i % 8]), range(96)))
        finally:
            for c in clients:
                c.close()
    fast = [s for arm, s in took if arm == "fast"]
    slow_ = [s for arm, s in took if arm == "slow"]
    assert len(fast) > 20 and len(slow_) > 20
    assert np.median(slow_) > 4 * np.median(fast)  # the slow arm's requests take long and queue ...
    assert np.quantile(fast, 0.9) < 0.5 * np.median(slow_), (np.quantile(fast, 0.9), np.median(slow_))  # ... no one else's


# ----------------------------------------------------------------------------- hostile input
HOSTILE_ROUTES = [
    ({"a": {"model": "M1", "weight": -10}, "b": {"model": "M2", "weight": 110}}, "weight"),
    ({"a": {"model": "M1", "weight": True}}, "weight"),
    ({"a": {"model": "M1", "weight": 1e308}, "b": {"model": "M2", "weight": -1e308}}, "weight"),
    ({"a": {"model": 7, "weight": 100}}, "model"),
    ({"a": {"model": "", "weight": 100}}, "model"),
    ({"a": {"model": ["M1"], "weight": 100}}, "model"),
    ({"a\r\nx-evil: 1": {"model": "M1", "weight": 100}}, "arm"),
    ({"": {"model": "M1", "weight": 100}}, "arm"),
    ({"é" * 300: {"model": "M1", "weight": 100}}, "arm"),
    ({"a": {"model": "M1", "weight": 100}, "sticky": "header:"}, "sticky"),
    ({"a": {"model": "M1", "weight": 100}, "sticky": "header:x\r\ny"}, "sticky"),
    ({"a": {"model": "M1", "weight": 100}, "sticky": 5}, "sticky"),
    ({"a": {"model": "M1", "weight": 100}, "shadow": [3]}, "shadow"),
    ({"a": {"model": "M1", "weight": 100}, "shadow": ["/etc/passwd"]}, ""),
    ({"a": {"model": "/etc/passwd", "weight": 100}}, ""),
    ({"a": {"model": "../../../../etc/shadow.mpk", "weight": 100}}, ""),
    ({"a": {"model": "M1", "weight": 50}, "b": {"model": "M2", "weight": 50},
      "bandit": {"min_weight": 60, "max_weight": 40}}, "min_weight 60 is above max_weight 40"),
    ({"a": {"model": "M1", "weight": 50}, "b": {"model": "M2", "weight": 50}, "bandit": {"policy": "greedy"}}, "policy"),
    ({"a": {"model": "M1", "weight": 50}, "b": {"model": "M2", "weight": 50}, "bandit": {"update_every": -1}}, ""),
    ({"a": {"model": "M1", "weight": 50}, "b": {"model": "M2", "weight": 50}, "stop": {"max_error_rate": 7}}, ""),
    ({"a": {"model": "M1", "weight": 50}, "b": {"model": "M2", "weight": 50}, "stop": []}, ""),
    ({f"arm{i}": {"model": "M1", "weight": 100 / 5000} for i in range(5000)}, ""),
    ({"a": {"model": "M1", "weight": 100, "extra": {"deep": [[[[[[[[[[1]]]]]]]]]]}}}, "unknown key"),
]


def test_hostile_route_tables_are_4xx_and_change_nothing(bundles, tmp_path):
    path = routing_file(tmp_path, f'[iris]\na = {{ model = "{bundles.iris_v1}", weight = 100 }}\n')

    def fill(value: object) -> object:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return {"M1": str(bundles.iris_v1), "M2": str(bundles.iris_v2)}.get(value, value) if isinstance(value, str) else value

    with thread_server(ServeConfig(sources=[], routing=[str(path)])) as url, httpx.Client(timeout=60) as c:
        before = route_of(url)
        wrong = []
        for table, needle in HOSTILE_ROUTES:
            r = c.post(f"{url}/v2/repository/models/iris/route", json=fill(table))
            error = r.json().get("error", "") if r.headers.get("content-type", "").startswith("application/json") else ""
            if not (400 <= r.status_code < 500 and needle in error.lower() and len(error) < 3000
                    and "root:" not in error and str(bundles.iris_v1.parent) not in error):
                wrong.append((str(table)[:120], r.status_code, r.text[:300]))
            if route_of(url) != before:
                wrong.append((str(table)[:120], "changed the route"))
                assert c.post(f"{url}/v2/repository/models/iris/route", json=fill({"a": {"model": "M1", "weight": 100}}))
                before = route_of(url)
        assert not wrong, "\n".join(map(str, wrong))
        for raw in (b"{", b"[]", b'"x"', b"1e999", b'{"a": NaN}', b"\xff\xfe"):
            r = c.post(f"{url}/v2/repository/models/iris/route", content=raw)
            assert 400 <= r.status_code < 500, (raw, r.text)
        for name in (".hidden", "-x", "a%0A", "x" * 5000):
            r = c.post(f"{url}/v2/repository/models/{name}/route", json=fill({"a": {"model": "M1", "weight": 100}}))
            assert r.status_code == 400 and "is not a model name" in r.json()["error"], (name[:20], r.text[:300])
            assert len(r.text) < 3000
        assert route_of(url) == before
        assert c.post(f"{url}/v2/models/iris/infer", json=body()).status_code == 200


def test_hostile_requests_to_a_routed_model_are_4xx_or_answered(bundles, tmp_path):
    path = routing_file(tmp_path, f"""
[iris]
a = {{ model = "{bundles.iris_v1}", weight = 50 }}
b = {{ model = "{bundles.iris_v2}", weight = 50, sticky = "customer_id" }}
[iris.bandit]
""")
    with thread_server(ServeConfig(sources=[], routing=[str(path)])) as url, httpx.Client(timeout=60) as c:
        cases = [
            ({**body(), "parameters": {"customer_id": {"nested": [1, 2]}}}, {}),
            ({**body(), "parameters": {"customer_id": "x" * 100_000}}, {}),
            ({**body(), "parameters": {"customer_id": None}}, {}),
            ({"inputs": [*body()["inputs"], {"name": "customer_id", "shape": [0], "datatype": "BYTES", "data": []}]}, {}),
            (body(), {"x-request-id": "é" * 10}),
            (body(), {"x-request-id": "r" * 10_000}),
            (body(), {"x-request-id": "a\tb"}),
        ]
        for doc, headers in cases:
            r = c.post(f"{url}/v2/models/iris/infer", json=doc, headers={k: v.encode() for k, v in headers.items()})
            assert r.status_code == 200 or 400 <= r.status_code < 500, (str(doc)[:200], r.status_code, r.text[:300])
            if r.status_code == 200:
                assert r.headers["x-model-arm"] in ("a", "b")
                rid = r.headers.get("x-request-id", "")
                assert rid.isascii() and rid.isprintable() and len(rid) <= 256
        assert c.post(f"{url}/v2/models/iris/infer", json=body()).status_code == 200
