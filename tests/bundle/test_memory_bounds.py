"""Loading is memory-bounded (issue 10, class 3): every bomb is refused before it is inflated or parsed, in
the bundle and in the archives nested in it, and what an accepted bundle takes stays within the bound that
docs/security.md states. Each case runs in a child process under a memory cap (RLIMIT_AS) larger than the
bomb, so the old loader (which inflated first) shows up as a peak of gigabytes, not as a crash of the suite."""

from __future__ import annotations

import json

import pytest
from tests.fuzz import capped, crafted

from modelport.bundle import archive, graph
from modelport.bundle.core import Bundle
from modelport.errors import BundleError, IntegrityError

MiB = 1024**2
CAP_MIB = 1536  # above every bomb below: the old code would have had room to inflate them


def load_bound(files: dict[str, bytes]) -> int:
    """docs/security.md: loading adds at most the files (1x) + 48x model.onnx + 25x manifest.json + 64 MiB."""
    return sum(map(len, files.values())) + 48 * len(files["model.onnx"]) + 25 * len(files["manifest.json"]) + 64 * MiB


@pytest.fixture(scope="module")
def seed(iris_bundle):
    return dict(iris_bundle.files)


def _run(tmp_path, name, data, action="load"):
    path = tmp_path / name
    path.write_bytes(data)
    report = capped.run(action, path, cap_mib=CAP_MIB)
    assert report["outcome"] != "killed", report
    return report


def test_many_small_entries_are_refused_before_anything_is_inflated(tmp_path, seed):
    data = crafted.many_entries_bomb(seed)  # 900 listed entries of 1 MiB of zeros
    assert len(data) < 2 * MiB
    r = _run(tmp_path, "many.mpk", data)
    assert r["outcome"] == "refused" and r["error"] == "IntegrityError", r
    assert "expand" in r["message"] and "in all (a zip bomb?)" in r["message"]
    assert r["peak_added"] < 32 * MiB, r


def test_entries_sharing_compressed_bytes_are_refused(tmp_path, seed):
    r = _run(tmp_path, "overlap.mpk", crafted.overlapping_bomb(seed))
    assert r["outcome"] == "refused" and "overlap (a zip bomb?)" in r["message"], r
    assert r["peak_added"] < 32 * MiB, r


@pytest.mark.parametrize("action", ["reference", "check"])
def test_a_bomb_nested_in_the_reference_npz_is_refused_before_inflating(tmp_path, seed, action):
    data = crafted.nested_npz_bomb(seed, size=1024**3)  # 1 GiB of zeros, stored in the outer zip
    r = _run(tmp_path, "nested.mpk", data, action)
    assert r["outcome"] == "refused" and r["error"] == "IntegrityError", r
    assert "reference/inputs.npz: not a valid pickle-free .npz archive" in r["message"]
    assert "(a zip bomb?)" in r["message"]
    assert r["peak_added"] < len(data) + 64 * MiB, r


def test_npy_header_shapes_are_checked_against_the_bytes_they_come_with(tmp_path, seed):
    r = _run(tmp_path, "shape.mpk", crafted.npy_shape_bomb(seed), "reference")
    assert r["outcome"] == "refused", r
    assert "declares shape (1000000000000,) of float64 (8000000000000 bytes) but holds 64 bytes" in r["message"]
    assert r["peak_added"] < 64 * MiB, r


def test_the_nested_budget_is_shared_with_the_outer_archive(seed):
    # each layer within its own ratio, together past what the bundle's stored bytes allow: refused on the
    # nested layer (the outer 200x and the inner 200x do not multiply)
    import numpy as np

    from modelport.bundle import npz

    inner = npz.dumps({"X": np.repeat(np.arange(256 * 1024, dtype=np.float64), 4)})  # 8 MiB, deflates ~20x
    files = crafted.reseal({**seed, "reference/inputs.npz": inner})
    stored = sum(map(len, files.values())) // 150  # as if the archive were 150x smaller than its files
    b = Bundle(files, origin="shared.mpk", stored_bytes=stored)
    with pytest.raises(IntegrityError, match=r"array 'X' \(8388608 bytes\) would bring what this bundle expands to "
                                             r"past \d+ bytes \(200x the \d+ bytes it is stored in"):
        _ = b.reference_inputs


def test_a_graph_that_costs_far_more_to_parse_than_it_weighs_is_refused_unparsed(tmp_path, seed):
    bomb = crafted.protobuf_bomb(nodes=4_000_000)  # 8 MB of empty nodes: ~600 MB once parsed
    data = crafted.zip_bytes(crafted.reseal({**seed, "model.onnx": bomb}), stored=("model.onnx",))
    r = _run(tmp_path, "proto.mpk", data)
    assert r["outcome"] == "refused" and "model.onnx would take about" in r["message"], r
    assert "in memory to parse, more than the limit of 32x" in r["message"]
    assert r["peak_added"] < 26 * len(bomb) + 64 * MiB, r


def test_deeply_nested_or_oversized_manifests_are_clean_errors(tmp_path, seed):
    r = _run(tmp_path, "deep.mpk", crafted.zip_bytes({**seed, "manifest.json": crafted.json_depth_bomb(200_000)}))
    assert r["outcome"] == "refused" and "manifest.json nests too deeply" in r["message"], r
    huge_int = json.dumps({"format": "modelport/1"})[:-1].encode() + b', "version": ' + b"9" * 100_000 + b"}"
    r = _run(tmp_path, "digits.mpk", crafted.zip_bytes({**seed, "manifest.json": huge_int}))
    assert r["outcome"] == "refused" and "manifest.json is not valid JSON" in r["message"], r
    with pytest.raises(IntegrityError, match=r"manifest.json declares \d+ bytes, over the limit of 1024"):
        archive.read_mpk_bytes(crafted.zip_bytes(seed), limits=archive.Limits(max_manifest_bytes=1024))


def test_local_functions_that_inline_to_billions_of_nodes_are_refused():
    with pytest.raises(IntegrityError, match=r"has \d{13} nodes once its local functions are inlined"):
        graph.check(crafted.inlining_bomb(40), origin="inline.mpk")


def test_the_node_limit_counts_every_graph(iris_bundle):
    model = crafted.node_chain(1_000)
    graph.check(model, origin="ok.mpk", max_nodes=1_000)
    with pytest.raises(IntegrityError, match=r"1000 nodes .* more than the limit of 999"):
        Bundle(crafted.bundle_files(model, **crafted.FLOAT_IO), origin="chain.mpk", limits=archive.Limits(max_nodes=999))


@pytest.mark.parametrize("action", ["load", "check"])
def test_a_real_bundle_stays_within_the_documented_bound(tmp_path, iris_bundle, action):
    files = dict(iris_bundle.files)
    r = _run(tmp_path, "iris.mpk", archive.write_mpk_bytes(files), action)
    assert r["outcome"] == "ok" and r.get("passed", True), r
    assert r["peak_added"] <= load_bound(files) + (64 * MiB if action == "check" else 0), r


def test_a_worst_case_accepted_graph_stays_within_the_documented_bound(tmp_path):
    # the most nodes per byte a valid graph has, just under the parse-cost limit
    model = crafted.node_chain(60_000)
    data = model.SerializeToString()
    assert 20 < graph.parse_cost(data, origin="x") / len(data) < 32
    files = crafted.bundle_files(data, **crafted.FLOAT_IO)
    r = _run(tmp_path, "chain.mpk", archive.write_mpk_bytes(files))
    assert r["outcome"] == "ok", r
    assert r["peak_added"] <= load_bound(files), r


def test_memory_errors_become_bundle_errors(seed, monkeypatch):
    def boom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(graph, "parse", boom)
    with pytest.raises(BundleError, match=r"not enough memory to read model\.onnx"):
        Bundle(seed, origin="oom.mpk")
