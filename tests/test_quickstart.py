"""The README's quickstart, run as its script runs it: the installed `modelport` command packs,
verifies, inspects, predicts and serves; the served answer is the packed model's."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_quickstart_script(tmp_path):
    for rel in ("scripts/quickstart.sh", "examples/quickstart.py", "requirements.lock"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    env = {
        # this environment is the one the script would have built; installing is tested by hand (README)
        "QUICKSTART_NO_INSTALL": "1",
        "QUICKSTART_VENV": sys.prefix,
        "PORT": str(_free_port()),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MODELPORT_HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
    }
    r = subprocess.run(["bash", str(tmp_path / "scripts" / "quickstart.sh")], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "quickstart-out"
    assert (out / "cancer.mpk").exists() and (out / "predictions.csv").exists()
    answer = json.loads(r.stdout.strip().splitlines()[-1])
    assert answer["model_name"] == "cancer"
    (prediction,) = answer["predictions"]
    assert prediction["label"] in ("benign", "malignant")
    assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-5
    assert "Traceback" not in r.stderr
