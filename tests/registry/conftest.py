"""Fixtures of the registry tests: one small packed model, cheap variants of it with other
digests, and registries on SQLite (a temporary file) and on the real PostgreSQL server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from modelport.bundle import manifest as mf
from modelport.bundle import npz
from modelport.bundle.core import MODEL_FILE, REFERENCE_OUTPUTS, Bundle


@pytest.fixture(scope="session")
def base_bundle(iris) -> Bundle:
    from sklearn.tree import DecisionTreeClassifier

    import modelport as mp

    X, y = iris
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    return mp.pack(model, X, name="iris", metrics={"auc": 0.9}, tags={"team": "risk"})


def rebuild(bundle: Bundle, *, files: dict[str, bytes] | None = None, **manifest_changes: Any) -> Bundle:
    """A new bundle from ``bundle``'s files with some replaced and manifest fields changed;
    the files table is recomputed, so the result is a valid bundle."""
    new_files = {k: v for k, v in bundle.files.items() if k != "manifest.json"}
    new_files.update(files or {})
    manifest = {**json.loads(bundle.files["manifest.json"]), **manifest_changes}
    manifest["files"] = mf.files_table(new_files)
    return Bundle({**new_files, "manifest.json": mf.dumps(manifest)}, origin="<test>")


def variant(bundle: Bundle, i: int, **manifest_changes: Any) -> Bundle:
    """The same model with another digest: only the ONNX graph's doc string differs, so it
    computes exactly what ``bundle`` computes (and passes ``check``)."""
    m = bundle.onnx_model
    copy = type(m)()
    copy.CopyFrom(m)
    copy.doc_string = f"variant {i}"
    return rebuild(bundle, files={MODEL_FILE: copy.SerializeToString()}, **manifest_changes)


def tampered(bundle: Bundle) -> Bundle:
    """A bundle whose recorded reference answers are wrong: ``modelport.check`` fails on it."""
    outs = dict(bundle.reference_outputs)
    probs = outs["probabilities"].copy()
    outs["probabilities"] = np.roll(probs, 1, axis=1)
    outs["label"] = (outs["label"] + 1) % 3
    return rebuild(bundle, files={REFERENCE_OUTPUTS: npz.dumps(outs)})


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"


@pytest.fixture
def fresh_postgres(postgres_url) -> Iterator[str]:
    """A PostgreSQL schema of its own for one test (via search_path in the URL), dropped afterwards.

    A schema rather than a database: DROP DATABASE waits for every backend of the server to
    acknowledge it, which a long query of another test run can hold up indefinitely.
    """
    import psycopg

    name = f"mp_reg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{sep}options=-csearch_path%3D{name}"
    yield url
    from modelport import registry

    for key, reg in list(registry._CACHE.items()):
        if name in key[1]:
            reg.close()
            del registry._CACHE[key]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def any_url(request, tmp_path) -> str:
    """Both back ends: SQLite in a temporary file, and a fresh database on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'reg' / 'registry.db'}"
    return request.getfixturevalue("fresh_postgres")



@pytest.fixture
def open_reg(any_url, tmp_path):
    """open_registry on the parametrised back end with a per-test artifact directory."""
    from modelport.registry import open_registry

    def _open():
        return open_registry(any_url, artifacts=str(tmp_path / "artifacts"))

    return _open


