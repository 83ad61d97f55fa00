"""The registry commands, run in-process with click's CliRunner against MODELPORT_HOME in a tmp dir."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import modelport as mp
from modelport.cli.main import cli

from .conftest import tampered, variant


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPORT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELPORT_REGISTRY", raising=False)
    monkeypatch.delenv("MODELPORT_ARTIFACTS", raising=False)
    return tmp_path


@pytest.fixture
def files(home, base_bundle):
    """Three bundle files of model 'churn': v1, v2 (child of v1, better auc) and v3."""
    v1 = base_bundle
    v2 = variant(base_bundle, 2, metrics={"auc": 0.93}, lineage={"parent": v1.digest})
    v3 = variant(base_bundle, 3, metrics={"auc": 0.97}, lineage={"parent": v2.digest}, tags={"team": "growth"})
    out = []
    for i, b in enumerate((v1, v2, v3), 1):
        out.append(str(b.save(home / f"churn{i}.mpk")))
    return out


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_push_versions_show_pull(files, home):
    r = run("push", files[0], "--name", "churn")
    assert r.exit_code == 0, r.output
    assert "pushed churn version 1 (sha256:" in r.output
    assert run("push", files[1], "--name", "churn").output.startswith("pushed churn version 2")
    r = run("push", files[0], "--name", "churn")
    assert r.exit_code == 0 and "churn version 1 already holds" in r.output and "nothing new" in r.output
    r = run("push", files[2], "--name", "churn", "--tag", "stage=candidate", "--alias", "staging", "--json")
    pushed = json.loads(r.output)
    assert pushed["version"] == 3 and pushed["new"] is True and pushed["aliases"] == ["staging"]
    assert pushed["tags"] == {"stage": "candidate", "team": "growth"}

    r = run("versions", "churn", "--json")
    assert r.exit_code == 0
    listed = json.loads(r.output)
    assert [v["version"] for v in listed] == [1, 2, 3]
    for v in listed:
        assert {"version", "digest", "created", "aliases", "tags", "metrics"} <= set(v)
    assert listed[0]["digest"] == mp.load(files[0]).digest
    assert listed[1]["metrics"] == {"auc": 0.93}

    r = run("versions", "churn")
    assert r.exit_code == 0 and "staging" in r.output and "auc=0.97" in r.output

    r = run("models")
    assert r.exit_code == 0 and "churn" in r.output and "staging->3" in r.output
    assert json.loads(run("models", "--json").output) == [
        {"name": "churn", "created": json.loads(run("models", "--json").output)[0]["created"],
         "latest": 3, "versions": 3, "aliases": {"staging": 3}}
    ]

    r = run("show", "models:/churn@staging")
    assert r.exit_code == 0 and "models:/churn/3" in r.output and listed[2]["digest"] in r.output
    shown = json.loads(run("show", "models:/churn/2", "--json", "--manifest").output)
    assert shown["version"] == 2 and shown["manifest"]["metrics"] == {"auc": 0.93}

    out = home / "pulled.mpk"
    r = run("pull", "models:/churn@staging", "-o", str(out))
    assert r.exit_code == 0 and "wrote models:/churn/3" in r.output
    assert mp.load(out).digest == listed[2]["digest"]


def test_alias_tag_search_delete_lineage(files, home):
    for f in files:
        assert run("push", f, "--name", "churn").exit_code == 0
    r = run("alias", "churn", "production", "2")
    assert r.exit_code == 0 and "models:/churn@production -> version 2" in r.output
    assert mp.load("models:/churn@production").digest == mp.load(files[1]).digest

    r = run("tag", "models:/churn/2", "owner=ana", "stage=prod")
    assert r.exit_code == 0 and "owner=ana" in r.output
    r = run("tag", "models:/churn/2", "--remove", "stage")
    assert r.exit_code == 0 and "stage" not in r.output

    r = run("search", "--where", "metrics.auc > 0.92", "--json")
    assert [v["version"] for v in json.loads(r.output)] == [2, 3]
    r = run("search", "--tag", "owner=ana")
    assert r.exit_code == 0 and "churn" in r.output and "production" in r.output
    r = run("search", "--name", "nomatch*")
    assert r.exit_code == 0 and "no versions match" in r.output

    r = run("lineage", "models:/churn/3")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].startswith("models:/churn/3") and "└─ models:/churn/2" in lines[1] and "models:/churn/1" in lines[2]
    chain = json.loads(run("lineage", "models:/churn/3", "--json").output)
    assert [e["version"]["version"] for e in chain] == [3, 2, 1]

    r = CliRunner().invoke(cli, ["delete", "models:/churn/2"])
    assert r.exit_code == 7 and "production" in r.output and "--force" in r.output
    r = run("delete", "models:/churn/2", "--force")
    assert r.exit_code == 0 and "deleted models:/churn/2" in r.output
    assert [v["version"] for v in json.loads(run("versions", "churn", "--json").output)] == [1, 3]
    r = run("versions", "churn", "--all")
    assert "2 (deleted)" in r.output
    r = run("alias", "churn", "production", "--unset")
    assert r.exit_code == 7 and "no alias 'production'" in r.output  # --force removed it already


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["show", "models:/nope"], 7, "no model named 'nope'"),
        (["show", "models:/churn/9"], 7, "no version 9; its versions: 1"),
        (["pull", "models:/churn@prod"], 7, "no alias 'prod'"),
        (["show", "models:/churn/x"], 2, "positive whole number"),
        (["search", "--where", "metrics.auc >> 1"], 2, "cannot parse the search query"),
        (["alias", "churn", "production"], 2, "which version"),
        (["tag", "models:/churn/1"], 2, "nothing to do"),
        (["tag", "models:/churn/1", "novalue"], 2, "is not KEY=VALUE"),
        (["delete", "models:/churn"], 2, "does not name a version"),
        (["versions", "nope"], 7, "no model named 'nope'"),
    ],
)
def test_errors_exit_non_zero_with_a_message(files, args, code, needle):
    assert run("push", files[0], "--name", "churn").exit_code == 0
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == code, r.output
    assert needle in r.output and r.output.startswith("error: ")


def test_push_refuses_a_bundle_that_fails_verification(home, base_bundle):
    bad = tampered(base_bundle).save(home / "bad.mpk")
    r = CliRunner().invoke(cli, ["push", str(bad)])
    assert r.exit_code == 6 and "refusing to push" in r.output
    assert run("models").output.startswith("no models yet")


def test_push_of_a_damaged_file_is_refused(home, base_bundle):
    import io
    import zipfile

    data = bytearray(base_bundle.to_bytes())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("model.onnx")
    data[info.header_offset + 30 + len("model.onnx") + info.compress_size // 2] ^= 0xFF  # inside its deflate data
    path = home / "damaged.mpk"
    path.write_bytes(bytes(data))
    r = CliRunner().invoke(cli, ["push", str(path)])
    assert r.exit_code == 5 and r.output.startswith("error: ")


def test_registry_option_and_empty_listing(home):
    url = f"sqlite:///{home / 'other.db'}"
    r = run("models", "--registry", url)
    assert r.exit_code == 0 and "no models yet" in r.output
    assert (home / "other.db").exists()
    r = CliRunner().invoke(cli, ["models", "--registry", "mongodb://x"])
    assert r.exit_code == 7 and "unsupported registry URL" in r.output


def test_bundle_commands_accept_registry_uris(files):
    """diff (another module's command) loads both sides through modelport.load(models:/...)."""
    for f in files[:2]:
        assert run("push", f, "--name", "churn").exit_code == 0
    r = CliRunner().invoke(cli, ["diff", "models:/churn/1", "models:/churn/2", "--json"])
    assert r.exit_code == 10, r.output  # metrics and the graph's doc string changed: compatible
    assert json.loads(r.output)
    r = CliRunner().invoke(cli, ["diff", "models:/churn/1", "models:/churn/1", "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["diff", "models:/churn/1", "models:/churn/5"])
    assert r.exit_code == 7 and "no version 5" in r.output
