"""The registry API on both back ends: push, idempotence, versions, aliases, tags, search,
soft delete, lineage, verified loading and the messages of lookups that fail."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import modelport as mp
from modelport.errors import InputError, IntegrityError, ModelNotFoundError, RegistryError, VerificationError
from modelport.registry import Registry, VersionInfo, open_registry

from .conftest import tampered, variant


def test_push_assigns_versions_and_is_idempotent(open_reg, base_bundle):
    reg = open_reg()
    assert isinstance(reg, Registry)
    before = datetime.now(timezone.utc)
    v1 = reg.push(base_bundle)
    v2 = reg.push(variant(base_bundle, 1))
    again = reg.push(base_bundle)
    assert (v1.name, v1.version, v1.is_new) == ("iris", 1, True)
    assert (v2.version, v2.is_new) == (2, True)
    assert (again.version, again.digest, again.is_new) == (1, base_bundle.digest, False)
    assert v1.digest == base_bundle.digest
    # created is the registry's clock, in UTC
    assert before - timedelta(seconds=5) <= v1.created <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert v1.created.tzinfo is not None
    assert v1.metrics == {"auc": 0.9} and v1.tags == {"team": "risk"}
    assert [v.version for v in reg.versions("iris")] == [1, 2]
    assert len(list(reg.store.blobs())) == 2


def test_same_digest_other_manifest_bytes_maps_to_the_same_version(open_reg, base_bundle):
    reg = open_reg()
    v1 = reg.push(base_bundle)
    renamed = variant(base_bundle, 0)  # doc string 'variant 0' -> another digest
    reg.push(renamed)
    described = base_bundle
    from .conftest import rebuild

    described = rebuild(base_bundle, description="same model, other words")
    assert described.digest == base_bundle.digest and described.to_bytes() != base_bundle.to_bytes()
    again = reg.push(described)
    assert again.version == v1.version and not again.is_new
    # nothing was stored for it: the blob of version 1 is unchanged and no orphan appeared
    assert set(reg.store.blobs()) == {v.blob for v in reg.versions("iris")}


def test_load_round_trips_and_predicts_like_the_original(open_reg, base_bundle, iris):
    reg = open_reg()
    reg.push(base_bundle, name="flowers")
    loaded = reg.load("models:/flowers/1")
    assert loaded.digest == base_bundle.digest
    rng = np.random.default_rng(3)
    X = iris[0][rng.integers(0, 150, 40)] + rng.normal(scale=0.3, size=(40, 4))
    X[0] = [0, 0, 0, 0]
    X[1] = [1e6, -1e6, 1e6, -1e6]
    want, got = base_bundle.predict(X), loaded.predict(X)
    np.testing.assert_array_equal(got["label"], want["label"])
    np.testing.assert_allclose(got["probabilities"], want["probabilities"])


def test_push_from_a_path_and_pull_to_file_and_directory(open_reg, base_bundle, tmp_path):
    reg = open_reg()
    src = base_bundle.save(tmp_path / "in.mpk")
    info = reg.push(src)
    out = tmp_path / "out" / "pulled.mpk"
    assert reg.pull("models:/iris", out).version == info.version
    assert out.read_bytes() == base_bundle.to_bytes()
    reg.pull("models:/iris/1", tmp_path / "dir")
    assert mp.load(tmp_path / "dir").digest == base_bundle.digest


def test_aliases_resolve_move_and_unset(open_reg, base_bundle):
    reg = open_reg()
    reg.push(base_bundle)
    reg.push(variant(base_bundle, 1))
    reg.set_alias("iris", "production", 1)
    assert reg.resolve("models:/iris@production").version == 1
    assert reg.resolve("models:/iris").version == 2  # latest
    assert reg.resolve("models:/iris/latest").version == 2
    moved = reg.set_alias("iris", "production", "2")
    assert moved.version == 2 and moved.aliases == ("production",)
    assert reg.resolve("models:/iris/1").aliases == ()
    assert {m.name: m.aliases for m in reg.models()} == {"iris": {"production": 2}}
    reg.remove_alias("iris", "production")
    with pytest.raises(ModelNotFoundError, match=r"no alias 'production'; its aliases: none"):
        reg.resolve("models:/iris@production")
    with pytest.raises(ModelNotFoundError, match="no alias 'staging'"):
        reg.remove_alias("iris", "staging")
    with pytest.raises(InputError, match="not a valid alias"):
        reg.set_alias("iris", "3", 1)
    with pytest.raises(InputError, match="not a valid alias"):
        reg.set_alias("iris", "latest", 1)
    with pytest.raises(ModelNotFoundError, match=r"no version 7; its versions: 1, 2 \(latest 2\)"):
        reg.set_alias("iris", "production", 7)


def test_unknown_model_version_and_alias_list_what_exists(open_reg, base_bundle):
    reg = open_reg()
    reg.push(base_bundle)
    reg.push(base_bundle, name="churn")
    reg.set_alias("churn", "champion", 1)
    with pytest.raises(ModelNotFoundError, match=r"no model named 'nope' .*models: churn, iris\."):
        reg.resolve("models:/nope")
    with pytest.raises(ModelNotFoundError, match=r"model 'churn' has no version 4; its versions: 1 \(latest 1\)"):
        reg.resolve("models:/churn/4")
    with pytest.raises(ModelNotFoundError, match=r"has no alias 'prod'; its aliases: champion -> 1"):
        reg.load("models:/churn@prod")
    with pytest.raises(ModelNotFoundError, match="no model named"):
        reg.versions("nope")
    with pytest.raises(InputError, match="positive whole number"):
        reg.resolve("models:/churn/0")
    with pytest.raises(InputError, match="not a valid model name"):
        reg.push(base_bundle, name="has space")


def test_tags_set_remove_and_search(open_reg, base_bundle):
    reg = open_reg()
    a = reg.push(base_bundle)  # auc 0.9, team=risk
    b = reg.push(variant(base_bundle, 1, metrics={"auc": 0.95, "f1": 0.7}, tags={"team": "growth"}))
    c = reg.push(variant(base_bundle, 2, metrics={"auc": 0.8}, tags={}), name="churn-eu")
    reg.set_tags(b.uri, {"stage": "candidate"})
    assert reg.resolve(b.uri).tags == {"stage": "candidate", "team": "growth"}
    reg.remove_tags(b.uri, ["stage"])
    with pytest.raises(InputError, match="has no tag"):
        reg.remove_tags(b.uri, ["stage"])

    def found(**kw):
        return [(v.name, v.version) for v in reg.search(**kw)]

    assert found(where="metrics.auc > 0.9") == [("iris", 2)]
    assert found(where="metrics.auc >= 0.9") == [("iris", 1), ("iris", 2)]
    assert found(where="metrics.auc < 0.9") == [("churn-eu", 1)]
    assert found(where="metrics.f1 = 0.7") == [("iris", 2)]
    assert found(where="metrics.auc > 0.85 and tags.team = 'risk'") == [("iris", 1)]
    assert found(where="tags.team != risk") == [("churn-eu", 1), ("iris", 2)]  # no tag counts as "not equal"
    assert found(where="name = 'CHURN*'") == [("churn-eu", 1)]
    assert found(where="version >= 2") == [("iris", 2)]
    assert found(where=f"digest = '{a.digest}'") == [("iris", 1)]
    assert found(where="task = classification") == [("churn-eu", 1), ("iris", 1), ("iris", 2)]
    assert found(name="ir?s") == [("iris", 1), ("iris", 2)]
    assert found(name="iris_") == []  # '_' is not a wildcard
    assert found(tags={"team": None}) == [("iris", 1), ("iris", 2)]
    assert found(tags={"team": "growth"}) == [("iris", 2)]
    assert found(where="metrics.missing > 0") == []
    assert c.metrics == {"auc": 0.8} and c.tags == {}


def test_soft_delete_protects_aliased_versions(open_reg, base_bundle):
    reg = open_reg()
    reg.push(base_bundle)
    reg.push(variant(base_bundle, 1))
    reg.set_alias("iris", "production", 2)
    with pytest.raises(RegistryError, match=r"alias.*production.*refusing") as err:
        reg.delete("models:/iris/2")
    assert "--force" in str(err.value)
    assert reg.resolve("models:/iris/2").deleted is None
    with pytest.raises(InputError, match="does not name a version"):
        reg.delete("models:/iris")
    gone = reg.delete("models:/iris@production", force=True)
    assert gone.version == 2 and gone.deleted is not None
    assert [v.version for v in reg.versions("iris")] == [1]
    assert [v.version for v in reg.versions("iris", include_deleted=True)] == [1, 2]
    assert reg.resolve("models:/iris").version == 1  # latest skips deleted versions
    with pytest.raises(ModelNotFoundError, match=r"no version 2 \(it was deleted on .*its versions: 1"):
        reg.resolve("models:/iris/2")
    with pytest.raises(ModelNotFoundError, match="no alias 'production'"):
        reg.resolve("models:/iris@production")
    assert reg.search(where="version = 2") == []
    assert [m.latest for m in reg.models()] == [1]
    # numbers are never reused: the next push is 3, pushing version 2's bundle again restores 2
    assert reg.push(variant(base_bundle, 3)).version == 3
    restored = reg.push(variant(base_bundle, 1))
    assert restored.version == 2 and restored.deleted is None
    reg.delete("models:/iris/1")
    reg.delete("models:/iris/2")
    reg.delete("models:/iris/3")
    with pytest.raises(ModelNotFoundError, match="no live versions"):
        reg.resolve("models:/iris")


def test_lineage_follows_parent_digests(open_reg, base_bundle):
    reg = open_reg()
    root = reg.push(base_bundle)
    child = reg.push(variant(base_bundle, 1, lineage={"parent": root.digest}))
    other = reg.push(variant(base_bundle, 2, lineage={"parent": child.digest}), name="fork")
    orphan_parent = "sha256:" + "ab" * 32
    lost = reg.push(variant(base_bundle, 3, lineage={"parent": orphan_parent}), name="lost")
    assert child.parent == root.digest
    chain = reg.lineage("models:/fork")
    assert [(e.digest, e.version.uri if e.version else None) for e in chain] == [
        (other.digest, "models:/fork/1"), (child.digest, "models:/iris/2"), (root.digest, "models:/iris/1"),
    ]
    chain = reg.lineage(lost.uri)
    assert [(e.digest, e.version) for e in chain][1] == (orphan_parent, None)
    assert len(reg.lineage(root.uri)) == 1


def test_push_refuses_a_bundle_that_fails_check(open_reg, base_bundle):
    reg = open_reg()
    bad = tampered(base_bundle)
    assert not mp.check(bad).passed
    with pytest.raises(VerificationError, match="refusing to push"):
        reg.push(bad)
    assert reg.models() == []
    assert list(reg.store.blobs()) == []


def test_pull_verifies_the_blob_and_the_digest(open_reg, base_bundle):
    reg = open_reg()
    info = reg.push(base_bundle)
    path = reg.store._path(info.blob)  # local store: damage the stored archive on disk
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="modified or corrupted"):
        reg.load("models:/iris/1")
    # pushing the good bundle again repairs the store
    assert reg.push(base_bundle).version == 1
    assert reg.load("models:/iris/1").digest == base_bundle.digest
    path.unlink()
    with pytest.raises(IntegrityError, match="missing from the artifact store"):
        reg.load("models:/iris/1")


def test_gc_removes_only_unreferenced_blobs(open_reg, base_bundle):
    reg = open_reg()
    info = reg.push(base_bundle)
    stray = variant(base_bundle, 9).to_bytes()
    from modelport.registry.store import blob_key

    reg.store.put(blob_key(stray), stray)  # as a push killed after writing its blob leaves it
    assert reg.gc() == [blob_key(stray)]
    assert set(reg.store.blobs()) == {info.blob}
    assert reg.gc() == []
    reg.delete(info.uri)  # soft delete keeps the blob: pushing again restores the version
    assert reg.gc() == []


def test_modelport_load_accepts_registry_uris(base_bundle, monkeypatch, tmp_path):
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "home"))
    reg = open_registry()
    assert reg.url == f"sqlite:///{tmp_path / 'home' / 'registry.db'}"
    reg.push(base_bundle, name="churn")
    reg.push(variant(base_bundle, 1), name="churn")
    reg.set_alias("churn", "production", 1)
    assert mp.load("models:/churn@production").digest == base_bundle.digest
    assert mp.load("models:/churn/2").digest != base_bundle.digest
    assert mp.load("models:/churn").digest == mp.load("models:/churn/2").digest
    assert (tmp_path / "home" / "registry.artifacts").is_dir()


def test_registry_url_from_environment(base_bundle, monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'r.db'}"
    monkeypatch.setenv("MODELPORT_REGISTRY", url)
    monkeypatch.setenv("MODELPORT_ARTIFACTS", str(tmp_path / "blobs"))
    reg = open_registry()
    assert reg.url == url
    info = reg.push(base_bundle)
    assert (tmp_path / "blobs" / "sha256" / info.blob[:2] / f"{info.blob}.mpk").is_file()
    monkeypatch.setenv("MODELPORT_REGISTRY", "mysql://x/y")
    with pytest.raises(RegistryError, match="unsupported registry URL"):
        open_registry()


def test_version_info_json_fields(open_reg, base_bundle):
    info = open_reg().push(base_bundle)
    d = info.to_dict()
    assert {"version", "digest", "created", "aliases", "tags", "metrics", "parent"} <= set(d)
    assert datetime.fromisoformat(d["created"]) == info.created
    assert isinstance(info, VersionInfo)


def test_fsspec_artifact_store(base_bundle, sqlite_url):
    pytest.importorskip("fsspec")
    url = "memory://modelport-test-" + sqlite_url[-30:].replace("/", "_")
    reg = open_registry(sqlite_url, artifacts=url)
    info = reg.push(base_bundle)
    assert reg.store.url.startswith("memory://")
    assert list(reg.store.blobs()) == [info.blob]
    assert reg.load(info.uri).digest == base_bundle.digest
    assert reg.push(base_bundle).is_new is False
