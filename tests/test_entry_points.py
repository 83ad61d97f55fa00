"""The installed ``modelport`` command and ``python -m modelport``, run as a user runs them.

Each call is a subprocess of this environment's own console script, with a clean environment:
no inherited PYTHONPATH, no site customisation of the developer's shell, a throw-away HOME. This
is the only place a module that some other import happened to load first (``importlib.util``)
shows up as the crash a fresh install gets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from modelport.cli.main import COMMANDS

BIN = Path(sysconfig.get_path("scripts"))


def clean_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": f"{BIN}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(tmp_path),
        "MODELPORT_HOME": str(tmp_path / "modelport-home"),
        "LANG": "C.UTF-8",
    }


def modelport_script() -> Path:
    script = BIN / ("modelport.exe" if os.name == "nt" else "modelport")
    assert script.exists(), f"the console script {script} is not installed; run `pip install -e .` in this environment"
    return script


def run(argv: list[str], tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=clean_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_console_script_help_lists_every_command(tmp_path):
    r = run([str(modelport_script()), "--help"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    for name in COMMANDS:
        assert name in r.stdout, f"{name} missing from --help"


def test_console_script_version(tmp_path):
    from modelport import __version__

    r = run([str(modelport_script()), "--version"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert __version__ in r.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_from_the_console_script(command, tmp_path):
    r = run([str(modelport_script()), command, "--help"], tmp_path)
    assert r.returncode == 0, f"modelport {command} --help exited {r.returncode}:\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr
    assert "Usage:" in r.stdout


def test_python_dash_m_isolated(tmp_path):
    # -I: no PYTHONPATH, no user site, no current directory on sys.path
    r = run([sys.executable, "-I", "-m", "modelport", "--help"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "pack" in r.stdout


def test_help_without_site_preloads(tmp_path):
    # -S: no .pth processing at all, so nothing a .pth file imports (importlib.util, say) is preloaded
    code = (
        "import sys, sysconfig; p = sysconfig.get_paths();"
        f" sys.path[:0] = [{str(Path(__file__).resolve().parents[1] / 'src')!r}, p['purelib'], p['platlib']];"
        " sys.argv = ['modelport', '--help']; from modelport.cli.main import main; main()"
    )
    r = run([sys.executable, "-S", "-c", code], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Commands" in r.stdout


def test_unknown_command_is_a_clean_usage_error(tmp_path):
    r = run([str(modelport_script()), "no-such-command"], tmp_path)
    assert r.returncode == 2
    assert "No such command" in r.stderr
    assert "Traceback" not in r.stderr


def test_library_error_exit_code_from_the_console_script(tmp_path):
    r = run([str(modelport_script()), "inspect", str(tmp_path / "missing.mpk")], tmp_path)
    assert r.returncode == 5, r.stderr  # BundleError
    assert r.stderr.startswith("error: ")
    assert "Traceback" not in r.stderr
