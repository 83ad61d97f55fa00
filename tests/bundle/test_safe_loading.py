"""Safe loading (issue 2 part 4): every way a bundle can be unsafe or damaged is refused, naming the file
and the reason. Archives are crafted byte by byte; nothing here goes through modelport's own writer
unless the test says so."""

from __future__ import annotations

import os
import stat
import zipfile

import onnx
import pytest
from onnx import TensorProto, helper

from modelport.bundle import archive
from modelport.bundle.archive import Limits
from modelport.bundle.core import Bundle
from modelport.errors import BundleError, FormatVersionError, IntegrityError

# ---------------------------------------------------------------------------- unsafe entry names


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/passwd", "absolute path"),
        ("C:/windows/evil.dll", "absolute path"),
        ("../evil.txt", "leaves the bundle"),
        ("reference/../../evil.txt", "leaves the bundle"),
        ("reference//x.npz", "leaves the bundle"),
        ("reference\\x.npz", "invalid name"),
    ],
)
def test_zip_entry_names_that_escape_are_refused(tmp_path, iris_files, make_zip, name, reason):
    path = tmp_path / "evil.mpk"
    path.write_bytes(make_zip({**iris_files, name: b"x"}))
    with pytest.raises(IntegrityError) as err:
        Bundle.read(path)
    assert str(path) in str(err.value) and repr(name) in str(err.value) and reason in str(err.value)
    # nothing was written anywhere while refusing
    assert sorted(os.listdir(tmp_path)) == ["evil.mpk"]


def test_duplicate_zip_entries_are_refused(tmp_path, iris_files):
    import warnings

    path = tmp_path / "dup.mpk"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate we mean to write
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in iris_files.items():
                zf.writestr(name, data)
            zf.writestr("model.onnx", b"a second model")
    with pytest.raises(IntegrityError, match=r"entry 'model.onnx' appears twice"):
        Bundle.read(path)


def test_hidden_files_in_a_directory_bundle_are_never_read(tmp_path, iris_bundle):
    d = iris_bundle.save(tmp_path / "b")
    (d / ".DS_Store").write_bytes(b"\0\0junk")
    (d / "reference" / ".nfs0001").write_bytes(b"junk")
    assert Bundle.read(d).files == iris_bundle.files


def test_zip_symlink_entry_is_refused(tmp_path, iris_files, make_zip):
    path = tmp_path / "link.mpk"
    path.write_bytes(make_zip({**iris_files, "reference/link": b"/etc/passwd"},
                              modes={"reference/link": stat.S_IFLNK | 0o777}))
    with pytest.raises(IntegrityError, match=r"'reference/link' is a symbolic link"):
        Bundle.read(path)


def test_directory_with_symlinked_file_is_refused(tmp_path, iris_bundle):
    d = iris_bundle.save(tmp_path / "b")
    target = tmp_path / "outside.onnx"
    target.write_bytes((d / "model.onnx").read_bytes())
    (d / "model.onnx").unlink()
    (d / "model.onnx").symlink_to(target)
    with pytest.raises(IntegrityError, match=r"'model.onnx' is a symbolic link"):
        Bundle.read(d)


def test_directory_with_symlinked_subdirectory_is_refused(tmp_path, iris_bundle):
    d = iris_bundle.save(tmp_path / "b")
    real = tmp_path / "elsewhere"
    (d / "reference").rename(real)
    (d / "reference").symlink_to(real, target_is_directory=True)
    with pytest.raises(IntegrityError, match=r"'reference' is a symbolic link"):
        Bundle.read(d)


def test_bundle_path_that_is_a_symlink_is_refused(tmp_path, iris_bundle):
    real = iris_bundle.save(tmp_path / "real.mpk")
    link = tmp_path / "link.mpk"
    link.symlink_to(real)
    with pytest.raises(IntegrityError, match="symbolic link"):
        Bundle.read(link)


# --------------------------------------------------------------------------------- size limits


def test_oversize_entry_is_refused_before_reading(tmp_path, iris_bundle):
    path = iris_bundle.save(tmp_path / "b.mpk")
    size = len(iris_bundle.files["model.onnx"])
    with pytest.raises(IntegrityError, match=rf"'model.onnx' declares {size} bytes, over the limit"):
        Bundle.read(path, limits=Limits(max_entry_bytes=size - 1))
    d = iris_bundle.save(tmp_path / "dir")
    with pytest.raises(IntegrityError, match=rf"'model.onnx' has {size} bytes, over the limit"):
        Bundle.read(d, limits=Limits(max_entry_bytes=size - 1))


def test_total_size_and_entry_count_limits(tmp_path, iris_bundle):
    path = iris_bundle.save(tmp_path / "b.mpk")
    with pytest.raises(IntegrityError, match="over the limit"):
        Bundle.read(path, limits=Limits(max_total_bytes=iris_bundle.size - 1))
    with pytest.raises(IntegrityError, match=r"4 entries, more than the limit of 3"):
        Bundle.read(path, limits=Limits(max_entries=3))
    with pytest.raises(IntegrityError, match="more than 3 files"):
        Bundle.read(iris_bundle.save(tmp_path / "dir"), limits=Limits(max_entries=3))


def test_zip_bomb_is_refused_by_compression_ratio(tmp_path, iris_files, make_zip):
    bomb = b"\0" * (16 * 1024**2)  # deflates ~1000x
    path = tmp_path / "bomb.mpk"
    path.write_bytes(make_zip({**iris_files, "reference/bomb.npz": bomb}))
    assert path.stat().st_size < 100_000
    with pytest.raises(IntegrityError, match=r"'reference/bomb.npz' expands \d+x \(a zip bomb\?\)"):
        Bundle.read(path)


def test_entry_larger_than_its_header_says_is_refused(tmp_path, iris_files, make_zip):
    # a stored (uncompressed) entry whose headers claim fewer bytes than it holds
    data = make_zip(dict(iris_files), compression=zipfile.ZIP_STORED)
    name = b"model.onnx"
    real = len(iris_files["model.onnx"])
    fake = (real - 10).to_bytes(4, "little")
    buf = bytearray(data)
    # patch the uncompressed-size field in the local header (offset 22) and the central directory (offset 24)
    for sig, size_off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (pos := buf.find(sig, start)) != -1:
            name_off = 30 if sig == b"PK\x03\x04" else 46
            if buf[pos + name_off: pos + name_off + len(name)] == name:
                buf[pos + size_off: pos + size_off + 4] = fake
            start = pos + 4
    with pytest.raises(IntegrityError, match=r"entry 'model.onnx' is stored uncompressed but declares \d+ bytes in"):
        archive.read_mpk_bytes(bytes(buf), origin="lying.mpk")


def test_deflated_entry_is_read_no_further_than_its_header_says(tmp_path, iris_files, make_zip):
    # a deflated entry whose headers claim fewer bytes than it inflates to: reading stops at the declared
    # size, and the short file then disagrees with the manifest, before anything else reads it
    data = make_zip(dict(iris_files))
    name = b"model.onnx"
    real = len(iris_files["model.onnx"])
    buf = bytearray(data)
    for sig, size_off, name_off in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        start = 0
        while (pos := buf.find(sig, start)) != -1:
            if buf[pos + name_off: pos + name_off + len(name)] == name:
                buf[pos + size_off: pos + size_off + 4] = (real - 10).to_bytes(4, "little")
            start = pos + 4
    with pytest.raises(IntegrityError, match=rf"model.onnx has {real - 10} bytes but the manifest records {real}"):
        archive.read_mpk_bytes(bytes(buf), origin="lying.mpk")
    # without the table check (file-by-file reports) the cut-short read is still refused by its CRC
    with pytest.raises(IntegrityError, match=r"entry 'model.onnx' is (corrupt or truncated|not the size)"):
        archive.read_mpk_bytes(bytes(buf), origin="lying.mpk", check_table=False)


# ------------------------------------------------------------------------------ damaged bundles


@pytest.mark.parametrize("victim", ["model.onnx", "reference/inputs.npz", "reference/outputs.npz"])
def test_one_tampered_byte_in_a_directory_bundle(tmp_path, iris_bundle, victim):
    d = iris_bundle.save(tmp_path / "b")
    data = bytearray((d / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / victim).write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as err:
        Bundle.read(d)
    assert f"{d}: {victim} does not match its sha256 digest" in str(err.value)


@pytest.mark.parametrize("victim", ["model.onnx", "reference/inputs.npz"])
def test_one_tampered_byte_in_an_mpk(tmp_path, iris_files, victim):
    # a well-formed archive (valid CRCs) whose content differs from the manifest's digest
    files = dict(iris_files)
    data = bytearray(files[victim])
    data[len(data) // 3] ^= 0x01
    files[victim] = bytes(data)
    path = tmp_path / "t.mpk"
    path.write_bytes(archive.write_mpk_bytes(files))
    with pytest.raises(IntegrityError, match=rf"{path}: {victim} does not match its sha256 digest"):
        Bundle.read(path)


def test_flipped_byte_in_compressed_mpk_data(tmp_path, iris_bundle):
    path = iris_bundle.save(tmp_path / "b.mpk")
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF  # inside the first entry's deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=rf"{path}: entry '[^']+' is corrupt or truncated"):
        Bundle.read(path)


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_mpk(tmp_path, iris_bundle, keep):
    path = iris_bundle.save(tmp_path / "b.mpk")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(IntegrityError, match=rf"{path}: corrupt or truncated archive"):
        Bundle.read(path)
    with pytest.raises(IntegrityError, match="corrupt or truncated archive"):
        Bundle.from_bytes(data[: int(len(data) * keep)])


def test_not_a_bundle_at_all(tmp_path):
    path = tmp_path / "notes.mpk"
    path.write_text("hello")
    with pytest.raises(BundleError, match="not a modelport bundle"):
        Bundle.read(path)
    with pytest.raises(BundleError, match="no such bundle"):
        Bundle.read(tmp_path / "missing.mpk")


def test_manifest_not_json(tmp_path, iris_bundle):
    d = iris_bundle.save(tmp_path / "b")
    (d / "manifest.json").write_bytes(b'{"format": "modelport/1", ')
    with pytest.raises(BundleError, match=rf"{d}: manifest.json is not valid JSON"):
        Bundle.read(d)
    (d / "manifest.json").write_bytes(b"[1, 2]")
    with pytest.raises(BundleError, match="must hold a JSON object"):
        Bundle.read(d)


def test_missing_manifest_and_missing_listed_file(tmp_path, iris_bundle):
    d = iris_bundle.save(tmp_path / "b")
    (d / "reference" / "outputs.npz").unlink()
    with pytest.raises(IntegrityError, match=r"reference/outputs.npz is listed in the manifest but missing"):
        Bundle.read(d)
    (d / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        Bundle.read(d)


def test_unlisted_extra_file(tmp_path, iris_bundle, iris_files, make_zip):
    d = iris_bundle.save(tmp_path / "b")
    (d / "reference" / "extra.bin").write_bytes(b"surprise")
    with pytest.raises(IntegrityError, match=r"not listed in the manifest: reference/extra.bin"):
        Bundle.read(d)
    path = tmp_path / "x.mpk"
    path.write_bytes(make_zip({**iris_files, "payload.py": b"import os"}))
    with pytest.raises(IntegrityError, match=r"not listed in the manifest: payload.py"):
        Bundle.read(path)


def test_size_mismatch_is_reported_as_truncation(tmp_path, iris_bundle):
    d = iris_bundle.save(tmp_path / "b")
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[:-5])
    with pytest.raises(IntegrityError, match=rf"model.onnx has {len(data) - 5} bytes but the manifest records "
                                             rf"{len(data)}"):
        Bundle.read(d)


# ------------------------------------------------------------------------------- the ONNX graph


def test_onnx_external_data_is_refused(lr_iris_files, with_manifest):
    model = onnx.load_model_from_string(lr_iris_files["model.onnx"])
    init = model.graph.initializer[0]
    init.ClearField("raw_data")
    init.ClearField("float_data")
    init.ClearField("double_data")
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value="../../etc/passwd")
    files = with_manifest({**lr_iris_files, "model.onnx": model.SerializeToString()})
    with pytest.raises(IntegrityError, match=rf"initializer {init.name!r} refers to external data"):
        Bundle(files, origin="ext.mpk")


def test_unknown_operator_domain_is_refused(iris_files, with_manifest):
    model = onnx.load_model_from_string(iris_files["model.onnx"])
    model.graph.node.append(helper.make_node("Exfiltrate", ["X"], ["junk"], domain="com.evil", name="spy"))
    model.opset_import.append(helper.make_opsetid("com.evil", 1))
    files = with_manifest({**iris_files, "model.onnx": model.SerializeToString()})
    with pytest.raises(IntegrityError, match=r"ext.mpk: node 'spy' uses operator domain 'com.evil'"):
        Bundle(files, origin="ext.mpk")


def test_model_that_is_not_onnx(iris_files, with_manifest):
    files = with_manifest({**iris_files, "model.onnx": b"\xff\xfe definitely not protobuf \x00" * 10})
    with pytest.raises(IntegrityError, match=r"model\.onnx is not a valid ONNX protobuf|fails the ONNX checker"):
        Bundle(files, origin="junk.mpk")


def test_graph_the_checker_rejects(iris_files, with_manifest):
    model = onnx.load_model_from_string(iris_files["model.onnx"])
    model.graph.node.append(helper.make_node("Relu", ["does_not_exist"], ["y2"]))
    files = with_manifest({**iris_files, "model.onnx": model.SerializeToString()})
    with pytest.raises(IntegrityError, match="fails the ONNX checker"):
        Bundle(files, origin="bad.mpk")


# ---------------------------------------------------------------------------- format versions


def test_newer_format_version(iris_files, with_manifest):
    files = with_manifest(iris_files, lambda m: m.update(format="modelport/2"), refresh_table=False)
    with pytest.raises(FormatVersionError, match=r"new.mpk: the bundle has format 'modelport/2', newer") as err:
        Bundle(files, origin="new.mpk")
    assert "pip install -U modelport" in str(err.value)
    assert err.value.exit_code == 5


@pytest.mark.parametrize("fmt", ["otherformat/1", "modelport/x", None])
def test_unknown_format(iris_files, with_manifest, fmt):
    files = with_manifest(iris_files, lambda m: m.update(format=fmt), refresh_table=False)
    with pytest.raises(BundleError, match="format") as err:
        Bundle(files, origin="odd.mpk")
    assert not isinstance(err.value, FormatVersionError)


def test_manifest_naming_an_output_the_graph_lacks(iris_files, with_manifest):
    def edit(m):
        m["signature"]["outputs"].append({"name": "ghost", "dtype": "float32", "shape": [None]})

    files = with_manifest(iris_files, edit, refresh_table=False)
    with pytest.raises(BundleError, match=r"outputs \['ghost'\] that the graph does not produce"):
        Bundle(files, origin="ghost.mpk")


def test_reference_data_with_pickled_objects_is_refused(iris_files, with_manifest):
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, f0=np.array([{"a": 1}], dtype=object))  # an object array needs pickle to load
    files = with_manifest({**iris_files, "reference/inputs.npz": buf.getvalue()})
    bundle = Bundle(files, origin="pickle.mpk")  # digests fine; the content is refused when read
    with pytest.raises(IntegrityError, match=r"pickle.mpk:reference/inputs.npz: not a valid pickle-free .npz"):
        _ = bundle.reference_inputs



@pytest.fixture
def lr_iris_files(lr_bundle):
    return dict(lr_bundle.files)
