"""The content-addressed artifact store: local directory and fsspec URLs."""

from __future__ import annotations

import pytest

from modelport.errors import IntegrityError
from modelport.registry.store import FsspecStore, LocalStore, blob_key, open_store


def test_local_store_dedupes_verifies_and_repairs(tmp_path):
    store = open_store(tmp_path / "s")
    assert isinstance(store, LocalStore)
    data = b"bundle bytes" * 100
    key = blob_key(data)
    assert store.put(key, data) is True
    assert store.put(key, data) is False  # already there, nothing written
    assert store.get(key) == data and store.exists(key)
    assert list(store.blobs()) == [key]
    path = tmp_path / "s" / "sha256" / key[:2] / f"{key}.mpk"
    path.write_bytes(b"evil" + data)
    with pytest.raises(IntegrityError, match="modified or corrupted"):
        store.get(key)
    assert store.put(key, data) is True  # a damaged copy is replaced
    assert store.get(key) == data
    with pytest.raises(IntegrityError, match="another sha256"):
        store.put(key, b"other bytes")
    with pytest.raises(IntegrityError, match="not a sha256 blob key"):
        store.get("../../etc/passwd")
    store.delete(key)
    assert not store.exists(key) and list(store.blobs()) == []
    with pytest.raises(IntegrityError, match="missing"):
        store.get(key)


def test_local_store_finds_stale_temporaries(tmp_path):
    store = LocalStore(tmp_path)
    key = blob_key(b"x")
    d = tmp_path / "sha256" / key[:2]
    d.mkdir(parents=True)
    tmp = d / f".tmp-{key}-abc"
    tmp.write_bytes(b"half")
    assert store.stale_temporaries() == [str(tmp)]
    assert store.stale_temporaries(key) == [str(tmp)]
    assert store.stale_temporaries(blob_key(b"y")) == []
    assert store.stale_temporaries(older_than=3600) == []
    store.remove_temporary(str(tmp))
    assert not tmp.exists()


def test_file_url_is_local(tmp_path):
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)


def test_fsspec_store_round_trip():
    pytest.importorskip("fsspec")
    store = open_store("memory://mp-store-test")
    assert isinstance(store, FsspecStore)
    data = b"abc" * 10
    key = blob_key(data)
    assert store.put(key, data) is True and store.put(key, data) is False
    assert store.get(key) == data
    assert list(store.blobs()) == [key]
    store.fs.pipe_file(store._path(key), b"tampered")
    with pytest.raises(IntegrityError, match="modified or corrupted"):
        store.get(key)
    store.delete(key)
    assert list(store.blobs()) == []
