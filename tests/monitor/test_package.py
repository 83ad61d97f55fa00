"""modelport.monitor ships in a wheel: a regular package (setuptools' find skips a folder without
``__init__.py``, so an editable install works and an installed one lacks it) with its assets."""

from __future__ import annotations

from pathlib import Path

import setuptools

import modelport

SRC = Path(modelport.__file__).resolve().parent.parent


def test_every_source_folder_is_a_package_setuptools_finds():
    found = set(setuptools.find_packages(str(SRC)))
    folders = {".".join(p.parent.relative_to(SRC).parts) for p in (SRC / "modelport").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert folders - found == set()
    assert "modelport.monitor" in found


def test_the_dashboard_assets_are_package_data():
    import tomllib

    pyproject = tomllib.loads((SRC.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["modelport"]
    static = SRC / "modelport" / "monitor" / "static"
    assets = sorted(p.relative_to(SRC / "modelport").as_posix() for p in static.iterdir())
    assert {"monitor/static/index.html", "monitor/static/app.js", "monitor/static/app.css"} <= set(assets)
    assert all(any(Path(a).match(pat) for pat in patterns) for a in assets), (assets, patterns)
