"""Determinism and round trips: same model + sample -> byte-identical .mpk; dir and .mpk hold the same files."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import modelport as mp
from modelport.bundle.core import Bundle


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_model_and_sample_give_byte_identical_mpk(iris, iris_forest, tmp_path):
    X, _ = iris
    one = mp.pack(iris_forest, X, name="iris", version="1")
    two = mp.pack(iris_forest, X.copy(), name="iris", version="1")
    assert one.to_bytes() == two.to_bytes()
    assert one.digest == two.digest
    a, b = one.save(tmp_path / "a.mpk"), two.save(tmp_path / "b.mpk")
    assert a.read_bytes() == b.read_bytes()


def test_mpk_is_sorted_with_fixed_timestamps_and_modes(iris_bundle, tmp_path):
    path = iris_bundle.save(tmp_path / "b.mpk")
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) == sorted([*iris_bundle.manifest["files"], "manifest.json"])
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_directory_save_holds_the_same_files(iris_bundle, tmp_path):
    d = iris_bundle.save(tmp_path / "dir")
    assert _tree(d) == dict(iris_bundle.files)
    with zipfile.ZipFile(iris_bundle.save(tmp_path / "b.mpk")) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == _tree(d)
    # readable by others, like the .mpk
    assert os.stat(d).st_mode & 0o777 == 0o755
    # atomic write: nothing but the two bundles is left in the parent
    assert sorted(os.listdir(tmp_path)) == ["b.mpk", "dir"]


def test_round_trip_dir_mpk_dir(iris_bundle, tmp_path):
    d1 = iris_bundle.save(tmp_path / "d1")
    from_dir = Bundle.read(d1)
    m = from_dir.save(tmp_path / "m.mpk")
    from_mpk = mp.load(m)
    d2 = from_mpk.save(tmp_path / "d2")
    assert _tree(d1) == _tree(d2) == dict(iris_bundle.files)
    assert m.read_bytes() == iris_bundle.to_bytes()
    assert from_dir.digest == from_mpk.digest == iris_bundle.digest
    X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    for b in (from_dir, from_mpk):
        np.testing.assert_array_equal(b.predict(X)["label"], iris_bundle.predict(X)["label"])
    assert mp.check(from_mpk).passed


def test_from_bytes_round_trip(iris_bundle):
    again = Bundle.from_bytes(iris_bundle.to_bytes())
    assert again.files == iris_bundle.files and again.to_bytes() == iris_bundle.to_bytes()


def test_overwriting_a_directory_bundle_replaces_it_whole(iris_bundle, lr_bundle, tmp_path):
    d = lr_bundle.save(tmp_path / "b")
    (d / "stale.txt").write_text("left over")
    iris_bundle.save(d)
    assert _tree(d) == dict(iris_bundle.files)  # no leftovers from the old bundle
    assert sorted(os.listdir(tmp_path)) == ["b"]


def test_save_refuses_to_overwrite_when_asked(iris_bundle, tmp_path):
    path = iris_bundle.save(tmp_path / "b.mpk")
    before = path.read_bytes()
    with pytest.raises(mp.BundleError, match="already exists"):
        iris_bundle.save(path, overwrite=False)
    assert path.read_bytes() == before


def test_descriptive_fields_do_not_change_the_identity(iris, iris_forest, iris_bundle):
    X, _ = iris
    renamed = mp.pack(iris_forest, X, name="other-name", version="9", description="text", metrics={"x": 1.0})
    assert renamed.digest == iris_bundle.digest  # same files, signature, task and classes
    assert renamed.to_bytes() != iris_bundle.to_bytes()  # but the manifest differs

