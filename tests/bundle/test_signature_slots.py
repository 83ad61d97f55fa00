"""Column slot indices in a manifest are validated when the signature is read: distinct, inside the
input, every slot of a matrix input fed exactly once. A crafted manifest that breaks one of these
is a BundleError naming the columns, never uninitialised memory fed to the model or an IndexError."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from modelport.bundle.core import Bundle
from modelport.bundle.signature import Signature
from modelport.errors import BundleError


def _edited(iris_files, with_manifest, tmp_path, edit) -> Bundle:
    files = with_manifest(iris_files, edit)
    d = tmp_path / "b"
    d.mkdir()
    for name, data in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
    return Bundle.read(d)


def _columns(m):
    return m["signature"]["columns"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: _columns(m)[1].update(index=0), r"columns 'f0' and 'f1' both map to slot 0 of input 'X'"),
        (lambda m: _columns(m)[3].update(index=7), r"column 'f3' has slot 7, outside input 'X' of width 4"),
        (lambda m: _columns(m).pop(), r"slot\(s\) 3 of input 'X' \(width 4\) are fed by no column"),
        (lambda m: _columns(m)[2].update(index=-1), r"column 'f2' has slot index -1"),
        (lambda m: _columns(m)[2].update(index="2"), r"column 'f2' has slot index '2'"),
        (lambda m: _columns(m)[2].update(index=2.0), r"column 'f2' has slot index 2.0"),
        (lambda m: _columns(m)[2].update(index=True), r"column 'f2' has slot index True"),
        (lambda m: _columns(m)[0].update(index=None), r"column 'f0' has no slot index"),
        (lambda m: _columns(m)[0].update(input="Y"), r"column 'f0' maps to input 'Y', which the graph does not have"),
        (lambda m: _columns(m)[0].update(categories=[{"a": 1}]), r"categories of column 'f0' must be a list"),
        (lambda m: _columns(m)[0].update(categories=["a", "a"]), r"column 'f0' lists a category twice"),
        (lambda m: _columns(m)[0].update(unknown="ignore"), r"unknown-category policy 'ignore'"),
        (lambda m: _columns(m)[0].update(native="zeros"), r"native unknown-category handling 'zeros'"),
        (lambda m: _columns(m)[0].update(name=7), r"a column name must be a non-empty string; got 7"),
    ],
)
def test_crafted_slots_are_refused_on_read(iris_files, with_manifest, tmp_path, edit, match):
    with pytest.raises(BundleError, match=match):
        _edited(iris_files, with_manifest, tmp_path, edit)


def test_every_graph_input_needs_its_columns():
    base = {
        "inputs": [{"name": "a", "dtype": "float64", "shape": [None, 1]},
                   {"name": "b", "dtype": "str", "shape": [None, 1]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [None]}],
        "columns": [{"name": "a", "dtype": "float64", "input": "a", "index": None}],
    }
    with pytest.raises(BundleError, match=r"graph input 'b' is fed by no column"):
        Signature.from_dict(base)
    two = copy.deepcopy(base)
    two["columns"] += [{"name": "b", "dtype": "str", "input": "b", "index": None},
                       {"name": "c", "dtype": "str", "input": "b", "index": None}]
    with pytest.raises(BundleError, match=r"graph input 'b' is fed by 2 columns"):
        Signature.from_dict(two)
    wide = copy.deepcopy(base)
    wide["inputs"][1]["shape"] = [None, 3]
    wide["columns"].append({"name": "b", "dtype": "str", "input": "b", "index": None})
    with pytest.raises(BundleError, match=r"column 'b' takes the whole input 'b', whose shape \[None, 3\]"):
        Signature.from_dict(wide)
    dup = copy.deepcopy(base)
    dup["inputs"][1]["name"] = "a"
    with pytest.raises(BundleError, match="graph input names are not unique"):
        Signature.from_dict(dup)


def test_slots_in_any_order_are_fine_and_score_by_name(iris_files, with_manifest, tmp_path, iris_bundle):
    # a valid permutation of the slots: each column lands where its index says
    def swap(m):
        cols = _columns(m)
        cols[0]["index"], cols[1]["index"] = 1, 0

    b = _edited(iris_files, with_manifest, tmp_path, swap)
    X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]])
    by_name = {"f0": X[:, 1], "f1": X[:, 0], "f2": X[:, 2], "f3": X[:, 3]}
    np.testing.assert_allclose(b.predict(by_name)["probabilities"], iris_bundle.predict(X)["probabilities"])


def test_old_manifests_without_policies_still_load(iris_files, with_manifest, tmp_path):
    def strip(m):
        for c in _columns(m):
            c.pop("unknown", None)
            c.pop("native", None)

    b = _edited(iris_files, with_manifest, tmp_path, strip)
    assert json.loads(b.files["manifest.json"])["signature"]["columns"][0]["name"] == "f0"
