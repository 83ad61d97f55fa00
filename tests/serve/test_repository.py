"""What a client may learn of the model repository: texts without the server's paths, registry
URL or credentials (the server log keeps the full texts)."""

from __future__ import annotations

from modelport.serve.repository import ModelRepository, Source


def _repo(tmp_path, registry_url=None) -> ModelRepository:
    models = tmp_path / "srv" / "models"
    (models / "fraud").mkdir(parents=True)
    (models / "churn.mpk").write_bytes(b"")
    single = tmp_path / "elsewhere" / "one.mpk"
    single.parent.mkdir()
    single.write_bytes(b"")
    return ModelRepository([Source.parse(str(models)), Source.parse(str(single))], lambda *a: None,
                           registry_url=registry_url)


def test_source_paths_become_names_relative_to_their_source(tmp_path):
    repo = _repo(tmp_path)
    models = tmp_path / "srv" / "models"
    assert repo.public_text(f"{models}/fraud/2.mpk: digest mismatch") == "fraud/2.mpk: digest mismatch"
    assert repo.public_text(f"{tmp_path}/elsewhere/one.mpk: truncated") == "one.mpk: truncated"
    assert repo.public_text(f"cannot read {models.resolve()}/churn.mpk.") == "cannot read churn.mpk."


def test_other_absolute_paths_keep_only_their_last_part(tmp_path):
    repo = _repo(tmp_path)
    assert repo.public_text("open /var/lib/modelport/objects/ab/cd.mpk failed") == "open cd.mpk failed"
    assert repo.public_text("it read /etc/passwd and ~/.ssh/id_rsa") == "it read passwd and id_rsa"
    assert repo.public_text("sqlite:///var/lib/registry.db is locked") == "sqlite:///registry.db is locked"


def test_registry_url_and_credentials_are_removed(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELPORT_REGISTRY", raising=False)
    repo = _repo(tmp_path, registry_url="postgresql://ml:s3cret@db.internal:5432/models")
    text = repo.public_text("cannot connect to postgresql://ml:s3cret@db.internal:5432/models: refused")
    assert text == "cannot connect to <registry>: refused"
    text = repo.public_text("fetching https://bot:tok3n@files.internal/x failed")
    assert "tok3n" not in text and "bot" not in text


def test_what_is_not_a_server_path_is_left_alone(tmp_path):
    repo = _repo(tmp_path)
    for text in ("unknown model 'x'. Served: churn (versions 1).", "see /docs for the endpoints",
                 "models:/churn/3 has no alias", "input 'f0' has shape [1, 3]; ratio 1/2"):
        assert repo.public_text(text) == text
