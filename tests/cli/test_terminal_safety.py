"""A bundle cannot drive the terminal (issue 10, class 8): names, descriptions, tags, metric names, column and
tensor names, file names and error texts holding escape sequences, C1 controls, bidi overrides or rich markup
are printed as visible escapes by every command (inspect, verify, diff, versions, show, search, tag, lineage),
never obeyed, and never crash the renderer."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import modelport as mp
from modelport.bundle import manifest as mf
from modelport.bundle.core import Bundle
from modelport.cli.main import cli
from modelport.inspect._text import clean, clean_data, clean_json

CLEAR = "\x1b[2J\x1b[H"  # clear the screen, cursor home
FAKE = CLEAR + "verdict: PASS: digests match"
HOSTILE = [
    FAKE, "\x1b]0;owned\x07", "\x9b2J", "\u202eSSAP", "\r\x08\x08FAIL", "line\u2028break", "[bold green]PASS[/]",
    "[/]", "\x00nul", "zero\u200bwidth",
]
#: what must never reach a terminal from bundle text (CliRunner is not a terminal: rich adds no styling)
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _run(*args, env=None):
    # wide enough that rich does not fold the text this test looks for
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": "2000", **(env or {})})
    assert not isinstance(result.exception, (AttributeError, TypeError, KeyError)) or result.exit_code in (0, 10, 11), \
        result.exception
    from rich.errors import MarkupError

    assert not isinstance(result.exception, MarkupError), result.exception
    return result


def _assert_inert(result):
    text = result.output + (result.stderr if result.stderr_bytes else "")
    found = RAW.findall(text)
    assert not found, f"raw controls {found!r} in:\n{text[:2000]}"
    return text


@pytest.fixture(scope="module")
def hostile_bundle(tmp_path_factory):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    cols = [f"age{CLEAR}", "inc\u202eome", "[red]x[/red]"]
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=cols)
    y = (X.iloc[:, 0] > 0).astype(int).to_numpy()
    b = mp.pack(LogisticRegression().fit(X, y), X, name="hostile", description=" ".join(HOSTILE),
                tags={"team": FAKE, "[/]": "\u202e"}, metrics={f"auc{CLEAR}": 0.9, "[/]": 1.0})
    path = tmp_path_factory.mktemp("hostile") / "hostile.mpk"
    b.save(path)
    return b, path


def test_clean_shows_every_control_as_an_escape():
    assert clean(FAKE) == "\\x1b[2J\\x1b[Hverdict: PASS: digests match"
    assert clean("\u202eSSAP\x9b") == "\\u202eSSAP\\x9b"
    assert clean("a\nb\tc") == "a\\nb\\tc" and clean("a\nb\tc", multiline=True) == "a\nb\tc"
    assert clean("ünïcödé 模型 ✓") == "ünïcödé 模型 ✓"  # text is not ASCII-fied
    assert clean_data({FAKE: [FAKE, (1, "\x07")]}) == {clean(FAKE): [clean(FAKE), (1, "\\x07")]}
    value = {"name": "\u202e\x9b", "plain": "ok ✓"}
    assert json.loads(clean_json(json.dumps(value, ensure_ascii=False))) == value
    assert not RAW.search(clean_json(json.dumps(value, ensure_ascii=False)))


@pytest.mark.parametrize("args", [[], ["--json"], ["--graph"], ["--json", "--graph"]])
def test_inspect(hostile_bundle, args):
    _, path = hostile_bundle
    result = _run("inspect", path, *args)
    assert result.exit_code == 0, result.output
    text = _assert_inert(result)
    if "--json" in args:
        data = json.loads(result.output)
        assert data["description"] == " ".join(HOSTILE)  # the JSON value is intact, only escaped
    elif "--graph" not in args:
        assert "\\x1b[2J" in text and "[bold green]PASS[/]" in text and "[/]" in text


@pytest.mark.parametrize("args", [[], ["--json"]])
def test_verify(hostile_bundle, args):
    _, path = hostile_bundle
    result = _run("verify", path, *args)
    assert result.exit_code == 0, result.output
    _assert_inert(result)


def test_verify_of_a_damaged_bundle_with_a_hostile_file_name(hostile_bundle, tmp_path):
    b, _ = hostile_bundle
    path = tmp_path / f"evil{CLEAR}.mpk"
    files = dict(b.files)
    files["model.onnx"] = files["model.onnx"][:-3]
    from modelport.bundle import archive

    path.write_bytes(archive.write_mpk_bytes(files))
    for args in ([], ["--json"]):
        result = _run("verify", path, *args)
        assert result.exit_code == 5
        _assert_inert(result)
    result = _run("inspect", path)
    assert result.exit_code == 5 and "error:" in result.output
    text = _assert_inert(result)
    assert "evil\\x1b[2J" in text


def test_diff(hostile_bundle, tmp_path):
    b, path = hostile_bundle
    manifest = json.loads(b.files["manifest.json"])
    manifest["description"] = FAKE + " v2"
    manifest["tags"] = {"team": "\x1b[31mred"}
    other = Bundle({**b.files, "manifest.json": mf.dumps(manifest)}, origin="other")
    other_path = other.save(tmp_path / f"other{CLEAR}.mpk")
    for args in ([], ["--json"]):
        result = _run("diff", path, other_path, *args)
        assert result.exit_code == 10, result.output
        _assert_inert(result)


def test_registry_commands(hostile_bundle, tmp_path):
    b, _ = hostile_bundle
    manifest = json.loads(b.files["manifest.json"])
    manifest["metrics"] = {"auc": 0.9}  # the registry refuses metric and tag names it cannot search anyway
    manifest["tags"] = {"team": FAKE}
    manifest["lineage"] = {"parent": FAKE}
    path = Bundle({**b.files, "manifest.json": mf.dumps(manifest)}, origin="x").save(tmp_path / "h.mpk")
    env = {"MODELPORT_REGISTRY": f"sqlite:///{tmp_path / 'reg.db'}"}
    assert _run("push", path, "--tag", f"stage={FAKE}", env=env).exit_code == 0
    for args in (["versions", "hostile"], ["versions", "hostile", "--json"], ["show", "models:/hostile/1"],
                 ["show", "models:/hostile/1", "--manifest"], ["show", "models:/hostile/1", "--json"],
                 ["search", "--name", "host*"], ["tag", "models:/hostile/1", f"note={CLEAR}x"],
                 ["lineage", "models:/hostile/1"], ["models"]):
        result = _run(*args, env=env)
        assert result.exit_code == 0, (args, result.output)
        _assert_inert(result)
    result = _run("tag", "models:/hostile/1", f"bad{CLEAR}key=1", env=env)
    assert result.exit_code != 0
    _assert_inert(result)
