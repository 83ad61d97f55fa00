"""Hostile manifests, zips, npz and ONNX files give modelport errors only (issue 10, class 8): no RuntimeError
for an encrypted zip entry, no UnicodeDecodeError, RecursionError, TypeError or OverflowError, no hang on a
FIFO, and no link or special file swapped into a directory bundle between listing and reading is followed."""

from __future__ import annotations

import io
import json
import os
import threading
import zipfile
import zlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from tests.fuzz import crafted

from modelport.bundle import archive, npz
from modelport.bundle.core import Bundle
from modelport.errors import BundleError, IntegrityError


@pytest.fixture
def seed(iris_bundle):
    return dict(iris_bundle.files)


# ------------------------------------------------------------------------------------------ zip headers
def test_an_encrypted_entry_is_an_integrity_error(seed):
    data = crafted.zip_of(seed, flags=0x1)
    with pytest.raises(IntegrityError, match=r"entry '[^']+' is encrypted; bundles are never encrypted"):
        Bundle.from_bytes(data, origin="enc.mpk")


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 99])
def test_compression_methods_other_than_deflate_are_refused(seed, method):
    entries = [(n, d, len(d), zlib.crc32(d)) for n, d in seed.items()]
    with pytest.raises(IntegrityError, match=rf"uses compression method {method}; bundles use deflate"):
        Bundle.from_bytes(crafted.raw_zip(entries, method=method), origin="m.mpk")


def test_a_central_directory_claiming_millions_of_entries_is_refused_before_it_is_parsed(seed):
    data = bytearray(crafted.zip_of(seed))
    eocd = data.rindex(b"PK\x05\x06")
    data[eocd + 8:eocd + 12] = (0xFFFE).to_bytes(2, "little") * 2
    with pytest.raises(IntegrityError, match=r"65534 entries, more than the limit of 1000"):
        Bundle.from_bytes(bytes(data), origin="cd.mpk")


def test_names_that_are_not_utf8_are_clean_errors(seed):
    data = bytearray(crafted.zip_of(seed, flags=0x800))
    pos = data.index(b"model.onnx", data.index(b"PK\x01\x02"))
    data[pos:pos + 2] = b"\xff\xfe"
    with pytest.raises(IntegrityError, match=r"corrupt or truncated archive"):
        Bundle.from_bytes(bytes(data), origin="utf.mpk")


def test_control_characters_in_entry_names_are_refused(seed):
    data = crafted.zip_bytes({**seed, "reference/\x1b[2J.npz": b"x"})
    with pytest.raises(IntegrityError, match=r"has control characters in its name"):
        Bundle.from_bytes(data, origin="ctl.mpk")


# ------------------------------------------------------------------------------------------ manifests
def _sealed(seed, edit):
    return crafted.reseal(seed, edit)


BAD_FIELDS = {
    "name not a string": lambda m: m.update(name=123),
    "empty name": lambda m: m.update(name=""),
    "version a list": lambda m: m.update(version=[1]),
    "version too large": lambda m: m.update(version=2**70),
    "description an object": lambda m: m.update(description={"a": 1}),
    "created a number": lambda m: m.update(created=5),
    "source a list": lambda m: m.update(source=[1]),
    "metrics a string": lambda m: m.update(metrics="auc"),
    "metric a string": lambda m: m.update(metrics={"auc": "high"}),
    "metric overflowing a float": lambda m: m.update(metrics={"auc": 10**400}),
    "metric a boolean": lambda m: m.update(metrics={"auc": True}),
    "tags a list": lambda m: m.update(tags=["a"]),
    "tag value a number": lambda m: m.update(tags={"team": 1}),
    "lineage a string": lambda m: m.update(lineage="x"),
    "lineage parent a number": lambda m: m.update(lineage={"parent": 5}),
    "onnx a list": lambda m: m.update(onnx=[]),
    "onnx opsets strings": lambda m: m.update(onnx={"opsets": {"ai.onnx": "21"}}),
    "parity a string": lambda m: m.update(parity="pass"),
    "tolerance not numbers": lambda m: m.update(parity={**m["parity"], "tolerance": {"probability_abs": "x"}}),
    "parity outputs a list": lambda m: m.update(parity={**m["parity"], "outputs": [1]}),
    "parity error a string": lambda m: m.update(parity={**m["parity"], "max_abs_error": "0"}),
    "reference a list": lambda m: m.update(reference=[]),
    "reference columns a list": lambda m: m.update(reference={"columns": [1]}),
    "reference column a number": lambda m: m.update(reference={"columns": {"f0": 1}}),
    "classes a string": lambda m: m.update(classes="abc"),
    "classes nested": lambda m: m.update(classes=[[0], [1], [2]]),
    "classes repeated": lambda m: m.update(classes=[0, 0, 1]),
    "task a list": lambda m: m.update(task=["classification"]),
    "format a number": lambda m: m.update(format=1),
    "format version huge": lambda m: m.update(format="modelport/" + "9" * 5000),
    "signature a list": lambda m: m.update(signature=[]),
    "signature inputs a number": lambda m: m.update(signature={**m["signature"], "inputs": 5}),
    "signature input a number": lambda m: m.update(signature={**m["signature"], "inputs": [5]}),
    "signature input name a list": lambda m: m["signature"]["inputs"][0].update(name=["X"]),
    "signature shape a string": lambda m: m["signature"]["inputs"][0].update(shape="N"),
    "signature columns a dict": lambda m: m["signature"].update(columns={"a": 1}),
    "column categories a number": lambda m: m["signature"]["columns"][0].update(categories=5),
    "files size a boolean": lambda m: m["files"]["model.onnx"].update(size=True),
    "files digest uppercase": lambda m: m["files"]["model.onnx"].update(sha256=m["files"]["model.onnx"]["sha256"].upper()),
    "files entry a list": lambda m: m["files"].update({"model.onnx": []}),
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_odd_typed_manifest_fields_are_bundle_errors(seed, case):
    files = _sealed(seed, BAD_FIELDS[case])
    with pytest.raises(BundleError) as err:
        Bundle(files, origin="odd.mpk")
    assert str(err.value).startswith("odd.mpk"), err.value


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_manifests_are_strict_json(seed, literal):
    raw = seed["manifest.json"].replace(b'"metrics": {', b'"metrics": {"x": ' + literal + b", ", 1)
    assert raw != seed["manifest.json"]
    with pytest.raises(BundleError, match=r"manifest.json is not valid JSON"):
        Bundle({**seed, "manifest.json": raw}, origin="nan.mpk")


def test_a_manifest_that_is_not_an_object_at_every_level(seed):
    for raw in (b"null", b"[]", b'"x"', b"5", json.dumps({"format": "modelport/1", "files": []}).encode()):
        with pytest.raises(BundleError):
            Bundle({**seed, "manifest.json": raw}, origin="shape.mpk")


# ------------------------------------------------------------------------------------------ ONNX files
def _with_model(seed, model):
    return crafted.reseal({**seed, "model.onnx": model if isinstance(model, bytes) else model.SerializeToString()})


def test_onnx_text_that_is_not_utf8_is_an_integrity_error(seed):
    model = onnx.load_model_from_string(seed["model.onnx"])
    model.graph.node[0].name = "marker"
    model.graph.node.append(helper.make_node("Relu", ["undefined"], ["y2"], name="marker2"))
    data = model.SerializeToString().replace(b"marker2", b"mark\xff\xfe2")
    with pytest.raises(IntegrityError, match=r"text that is not valid UTF-8 in field 'name'"):
        Bundle(_with_model(seed, data), origin="utf.mpk")


def _nested_if_bytes(levels: int) -> bytes:
    """A model whose graph holds an If whose then-branch holds an If ... ``levels`` deep, built on the wire
    (protobuf's own builders refuse to go past its nesting limit)."""
    def field(number, payload):
        return crafted._varint(number << 3 | 2) + crafted._varint(len(payload)) + payload

    leaf = helper.make_graph([helper.make_node("Identity", ["X"], ["Y"])], "g", [], []).SerializeToString()
    graph = leaf
    for _ in range(levels):
        attr = field(1, b"then_branch") + crafted._varint(20 << 3) + crafted._varint(5) + field(6, graph)
        node = field(1, b"c") + field(2, b"Y") + field(4, b"If") + field(5, attr)
        graph = field(1, node) + field(2, b"g")
    return b"\x08\x0a" + field(7, graph) + field(8, b"\x10\x15")  # ir_version 10, graph, opset_import {version 21}


def test_graphs_nested_past_the_protobuf_limit_are_integrity_errors(seed):
    for levels in (40, 200, 5000):
        with pytest.raises(IntegrityError, match=r"model.onnx (is not a valid ONNX protobuf|nests messages more than 100)"):
            Bundle(_with_model(seed, _nested_if_bytes(levels)), origin="deep.mpk")


def test_truncated_and_garbage_onnx_are_integrity_errors(seed):
    for data in (seed["model.onnx"][:-7], seed["model.onnx"][:100], b"\x00" * 64, os.urandom(4096), b""):
        with pytest.raises(IntegrityError):
            Bundle(_with_model(seed, data), origin="junk.mpk")


def test_tree_ensembles_whose_nodes_loop_back_do_not_hang_inspect(seed):
    from modelport.inspect.describe import describe

    model = onnx.load_model_from_string(seed["model.onnx"])
    node = next(n for n in model.graph.node if n.op_type.startswith("TreeEnsemble"))
    attrs = {a.name: a for a in node.attribute}
    attrs["nodes_truenodeids"].ints[0] = 0  # the root's left child is the root
    files = _with_model(seed, model)
    try:
        b = Bundle(files, origin="loop.mpk")
    except IntegrityError:
        return  # refused by the checker or ONNX: fine
    assert describe(b)["trees"]["max_depth"] >= 1


# ------------------------------------------------------------------------------------------ npz members
NPZ_CASES = {
    "an object array": lambda: _object_npy(),
    "a structured dtype": lambda: crafted.npy_bytes(np.zeros(2, dtype=[("a", "<f8")])),
    "a datetime dtype": lambda: crafted.npy_bytes(np.zeros(2, dtype="M8[s]")),
    "a zero-width dtype": lambda: _header_only("<U0", (10**18,)),
    "a negative dimension": lambda: _header_only("<f8", (-1,)),
    "a header of the wrong size": lambda: _header_only("<f8", (4,)) + b"\0" * 31,
    "an unknown format version": lambda: b"\x93NUMPY\x09\x00" + b"\0" * 20,
    "a header that is not a literal": lambda: b"\x93NUMPY\x01\x00" + (20).to_bytes(2, "little") + b"{'descr': x}        ",
    "a deeply nested header": lambda: b"\x93NUMPY\x01\x00" + (4000).to_bytes(2, "little") + b"(" * 4000,
}


def _object_npy():
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _header_only(descr, shape):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_hostile_npy_members_are_refused(case):
    member = NPZ_CASES[case]()
    data = crafted.zip_bytes({"X.npy": member})
    with pytest.raises(IntegrityError, match=r"x.npz: not a valid pickle-free .npz archive"):
        npz.loads(data, origin="x.npz")


def test_npz_round_trip_keeps_dtypes_shapes_and_order():
    arrays = {"a": np.arange(12, dtype=np.int32).reshape(3, 4), "b": np.array(["x", "yz"]),
              "c": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "d": np.array([True, False]),
              "e": np.zeros((0, 3), np.float32)}
    back = npz.loads(npz.dumps(arrays), origin="rt.npz")
    assert sorted(back) == sorted(arrays)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)


# ------------------------------------------------------------------------------------- special files
def _finishes(fn, seconds=20):
    """Run ``fn`` in a daemon thread; return its exception (None) if it finished in time, else fail."""
    result: list[BaseException | None] = []

    def target():
        try:
            fn()
            result.append(None)
        except BaseException as exc:  # handed to the test
            result.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert result, f"still running after {seconds} s: the reader blocked"
    return result[0]


def test_a_fifo_as_the_bundle_path_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "b.mpk"
    os.mkfifo(fifo)
    exc = _finishes(lambda: Bundle.read(fifo))
    assert isinstance(exc, BundleError) and "not a regular file or directory (a FIFO" in str(exc)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_as_the_bundle_path_is_refused(device):
    exc = _finishes(lambda: Bundle.read(device))
    assert isinstance(exc, BundleError) and "not a regular file or directory" in str(exc)


def test_a_fifo_inside_a_directory_bundle_is_refused_without_blocking(tmp_path, iris_bundle):
    d = iris_bundle.save(tmp_path / "b")
    (d / "reference" / "inputs.npz").unlink()
    os.mkfifo(d / "reference" / "inputs.npz")
    exc = _finishes(lambda: Bundle.read(d))
    assert isinstance(exc, IntegrityError) and "'reference/inputs.npz' is not a regular file" in str(exc)


@pytest.fixture
def swap_after_listing(monkeypatch):
    """Run a callback between the directory listing and the reads (what a racing attacker would do)."""
    def install(callback):
        original = archive.DirSource._list

        def listed_then_swapped(self):
            original(self)
            callback()

        monkeypatch.setattr(archive.DirSource, "_list", listed_then_swapped)
    return install


def test_a_file_swapped_for_a_symlink_after_listing_is_not_followed(tmp_path, iris_bundle, swap_after_listing):
    d = iris_bundle.save(tmp_path / "b")
    secret = tmp_path / "secret.onnx"
    secret.write_bytes(b"TOPSECRET" * 100)

    def swap():
        (d / "model.onnx").unlink()
        (d / "model.onnx").symlink_to(secret)

    swap_after_listing(swap)
    with pytest.raises(IntegrityError, match=r"'model.onnx' is now a symbolic link"):
        Bundle.read(d)


def test_a_directory_swapped_for_a_symlink_after_listing_is_not_followed(tmp_path, iris_bundle, swap_after_listing):
    d = iris_bundle.save(tmp_path / "b")
    elsewhere = tmp_path / "elsewhere"

    def swap():
        (d / "reference").rename(elsewhere)
        (d / "reference").symlink_to(elsewhere, target_is_directory=True)

    swap_after_listing(swap)
    with pytest.raises(IntegrityError, match=r"'reference' changed while being read, or is a link"):
        Bundle.read(d)


def test_a_file_swapped_for_a_fifo_after_listing_does_not_block(tmp_path, iris_bundle, swap_after_listing):
    d = iris_bundle.save(tmp_path / "b")

    def swap():
        (d / "reference" / "outputs.npz").unlink()
        os.mkfifo(d / "reference" / "outputs.npz")

    swap_after_listing(swap)
    exc = _finishes(lambda: Bundle.read(d))
    assert isinstance(exc, IntegrityError) and "'reference/outputs.npz' is not a regular file" in str(exc)


def test_a_file_that_grows_after_listing_is_refused(tmp_path, iris_bundle, swap_after_listing):
    d = iris_bundle.save(tmp_path / "b")
    swap_after_listing(lambda: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes() + b"\0" * 10))
    with pytest.raises(IntegrityError, match=r"'model.onnx' changed while the bundle was being read"):
        Bundle.read(d)


def test_reading_a_directory_bundle_never_opens_a_file_by_path(tmp_path, iris_bundle, monkeypatch):
    # every open is relative to an opened directory (dir_fd) and refuses links (O_NOFOLLOW)
    d = iris_bundle.save(tmp_path / "b")
    opened = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *, dir_fd=None):
        opened.append((str(path), flags, dir_fd))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", spy)
    Bundle.read(d)
    assert opened and all(flags & os.O_NOFOLLOW for _, flags, _ in opened)
    assert all(dir_fd is not None for path, _, dir_fd in opened if path != str(d))


def test_tensor_proto_type_keeps_its_checks():
    # sanity for the crafted helpers: a valid tensor bundle loads
    t = helper.make_tensor("c", TensorProto.UINT8, [crafted.SECRET_LEN], [0] * crafted.SECRET_LEN)
    model = crafted._model([helper.make_node("Constant", [], ["Y"], value=t)])
    Bundle(crafted.bundle_files(model), origin="ok.mpk")


# ------------------------------------------------------------------- what the manifest says about the graph
def _columns_edit(fn):
    def edit(m):
        fn(m["signature"]["columns"])
    return edit


SIGNATURE_LIES = {
    "a slot out of range": _columns_edit(lambda cols: cols[0].update(index=len(cols))),
    "two columns on one slot": _columns_edit(lambda cols: cols[1].update(index=cols[0]["index"])),
    "a slot left empty": _columns_edit(lambda cols: cols.pop()),
    "a whole-input column on a matrix": _columns_edit(lambda cols: [cols.pop() for _ in range(len(cols) - 1)]
                                                      and cols[0].update(index=None)),
    "another rank than the graph's": lambda m: m["signature"]["inputs"][0].update(shape=[None, 4, 1]),
    "another width than the graph's": lambda m: m["signature"]["inputs"][0].update(shape=[None, 5]),
    "an output of another rank": lambda m: m["signature"]["outputs"][0].update(shape=[None, 1, 1]),
}


@pytest.mark.parametrize("case", sorted(SIGNATURE_LIES))
def test_a_signature_that_disagrees_with_the_graph_is_refused(seed, case):
    # column slots are judged where the signature is read; shapes against the graph by the bundle
    with pytest.raises(BundleError, match=r"the manifest gives|^lie.mpk: signature: "):
        Bundle(_sealed(seed, SIGNATURE_LIES[case]), origin="lie.mpk")


def test_reference_rows_that_disagree_in_count_are_a_verification_error(seed):
    from modelport.errors import VerificationError
    from modelport.verification import check

    outs = npz.loads(seed["reference/outputs.npz"], origin="o")
    outs["probabilities"] = outs["probabilities"][:0]
    b = Bundle(crafted.reseal({**seed, "reference/outputs.npz": npz.dumps(outs)}), origin="rows.mpk")
    with pytest.raises(VerificationError, match=r"the reference data does not describe one set of rows"):
        check(b)


def test_a_missing_mask_that_is_not_boolean_is_an_integrity_error(frame_bundle):
    from modelport.verification import check

    files = dict(frame_bundle.files)
    ins = npz.loads(files["reference/inputs.npz"], origin="i")
    ins["city::missing"] = np.zeros(len(ins["city"]))
    b = Bundle(crafted.reseal({**files, "reference/inputs.npz": npz.dumps(ins)}), origin="mask.mpk")
    with pytest.raises(IntegrityError, match=r"'city::missing' must be a boolean vector"):
        check(b)


@pytest.mark.parametrize("edit", [
    lambda c: c.pop("distinct"),
    lambda c: c.update(distinct="3"),
    lambda c: c.update(frequencies=["paris"]),
    lambda c: c.update(kind="other"),
])
def test_training_statistics_of_another_shape_are_refused(frame_bundle, edit):
    files = dict(frame_bundle.files)
    with pytest.raises(BundleError, match=r"'reference\.columns\.city\.(distinct|frequencies|kind)' must be"):
        Bundle(crafted.reseal(files, lambda m: edit(m["reference"]["columns"]["city"])), origin="stats.mpk")


def test_reference_outputs_of_another_kind_are_a_verification_error(seed):
    from modelport.errors import VerificationError
    from modelport.verification import check

    outs = npz.loads(seed["reference/outputs.npz"], origin="o")
    outs["probabilities"] = outs["probabilities"].astype("U3")
    b = Bundle(crafted.reseal({**seed, "reference/outputs.npz": npz.dumps(outs)}), origin="kind.mpk")
    with pytest.raises(VerificationError, match=r"reference output 'probabilities' holds <U3 values but the model"):
        check(b)


def test_the_file_by_file_report_of_a_deeply_nested_manifest_is_a_bundle_error(seed, tmp_path):
    from modelport.inspect.integrity import file_report

    path = tmp_path / "deep.mpk"
    path.write_bytes(crafted.zip_bytes({**seed, "manifest.json": crafted.json_depth_bomb(200_000)}))
    with pytest.raises(BundleError, match="nests too deeply"):
        file_report(path)


def test_inspect_reads_tree_node_modes_that_are_not_utf8(seed):
    from modelport.inspect.describe import describe

    model = onnx.load_model_from_string(seed["model.onnx"])
    node = next(n for n in model.graph.node if n.op_type.startswith("TreeEnsemble"))
    modes = next(a for a in node.attribute if a.name == "nodes_modes")
    leaf = next(i for i, m in enumerate(modes.strings) if m == b"LEAF")
    modes.strings[leaf] = b"\xffLEAF"
    try:
        b = Bundle(_with_model(seed, model), origin="modes.mpk")
    except IntegrityError:
        return  # refused by the checker: fine too
    assert describe(b)["trees"]["trees"] >= 1
