"""Function artifacts as files: the zip unpacked into a fresh directory and imported by a clean
interpreter with nothing else on its path, the platform checks of the vendored wheels, the size
limits, and nothing half written when an export fails."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelport.cli.main import cli
from modelport.errors import ExportError, InputError
from modelport.export import _vendor, aws_lambda, export

from .conftest import CHURN_ROWS, http_v2_event
from .test_functions import expected_records, same

BANNED = ("pandas", "sklearn", "scipy", "starlette", "fastapi", "flask", "uvicorn", "click", "rich", "torch",
          "xgboost", "lightgbm", "pyarrow")


def unzip(zip_path: Path, into: Path) -> Path:
    into.mkdir()
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            mode = (info.external_attr >> 16) & 0o777
            assert mode & 0o444 == 0o444, f"{info.filename} is not world-readable ({oct(mode)})"
        zf.extractall(into)
    return into


def run_clean(paths: list[Path], code: str, cwd: Path) -> dict:
    """``python -I -S`` (no environment, no site-packages) with only ``paths`` on sys.path."""
    script = "import sys\nsys.path[:0] = %r\n" % [str(p) for p in paths] + textwrap.dedent(code) + textwrap.dedent(f"""
        import json as _json
        _report["banned"] = sorted({{m.split(".")[0] for m in sys.modules}} & set({BANNED!r}))
        _report["files"] = sorted({{getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}})
        print(_json.dumps(_report))
    """)
    proc = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", script], capture_output=True, text=True,
                          cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    stdlib = os.path.dirname(os.__file__)
    outside = [f for f in report["files"] if f and not f.startswith(stdlib)
               and not any(f.startswith(str(p)) for p in paths)]
    assert outside == [], f"imported from outside the artifact: {outside[:5]}"
    assert report["banned"] == []
    return report


@pytest.fixture(scope="module")
def gcf_env(bundles, tmp_path_factory):
    return export(bundles.churn, "gcf", tmp_path_factory.mktemp("gcf") / "out", deps="env")


@pytest.fixture(scope="module")
def azure_env(bundles, tmp_path_factory):
    return export(bundles.churn, "azure", tmp_path_factory.mktemp("azure") / "out", deps="env")


def test_gcf_zip_runs_in_a_clean_interpreter(gcf_env, bundles, tmp_path):
    assert gcf_env.details["checked_in_clean_interpreter"] is True
    names = {d.split("==")[0] for d in gcf_env.details["distributions"]}
    assert {"numpy", "onnx", "onnxruntime", "orjson", "protobuf"} <= names
    assert names.isdisjoint({"pandas", "scikit-learn", "starlette", "uvicorn", "click", "rich"})
    fn = unzip(gcf_env.path / gcf_env.files["zip"], tmp_path / "unzipped")
    report = run_clean([fn], f"""
        import main
        class Req:
            method, path, query_string = "POST", "/v2/models/churn/records", b""
            headers = {{"Content-Type": "application/json"}}
            def get_data(self, cache=True):
                return {json.dumps({"records": CHURN_ROWS}).encode()!r}
        body, status, headers = main.predict(Req())
        _report = {{"status": status, "body": body.decode(), "headers": headers}}
    """, cwd=tmp_path)
    assert report["status"] == 200
    same(json.loads(report["body"])["predictions"], expected_records(bundles.churn, CHURN_ROWS))
    sizes = gcf_env.sizes
    assert sizes["zipped"] < 100 * 2**20 and sizes["unzipped"] < 500 * 2**20
    assert (gcf_env.path / "function" / "requirements.txt").read_text().strip() == "functions-framework>=3,<4"
    summary = json.loads((gcf_env.path / "export.json").read_text())
    assert summary["target"] == "gcf" and summary["sizes"] == sizes


def test_azure_zip_runs_in_a_clean_interpreter(azure_env, bundles, tmp_path):
    fn = unzip(azure_env.path / azure_env.files["zip"], tmp_path / "unzipped")
    site = fn / ".python_packages" / "lib" / "site-packages"
    assert (site / "azure" / "functions").is_dir() and (site / "numpy").is_dir()
    assert not (fn / "numpy").exists()  # vendored where a deployment without a build looks
    report = run_clean([fn, site], f"""
        import function_app
        import azure.functions as func
        fn = function_app.app.get_functions()[0].get_user_function()
        r = fn(func.HttpRequest(method="POST", url="https://x.azurewebsites.net/v2/models/churn/records",
                                headers={{"content-type": "application/json"}}, params={{}},
                                body={json.dumps({"records": CHURN_ROWS}).encode()!r}))
        _report = {{"status": r.status_code, "body": r.get_body().decode()}}
    """, cwd=tmp_path)
    assert report["status"] == 200
    same(json.loads(report["body"])["predictions"], expected_records(bundles.churn, CHURN_ROWS))


def test_lambda_zip_runs_with_only_the_runtime_dependencies(bundles, tmp_path):
    result = export(bundles.churn, "lambda", tmp_path / "out", deps="none")
    assert any("layer" in n for n in result.notes)
    fn = unzip(result.path / result.files["zip"], tmp_path / "unzipped")
    assert sorted(p.name for p in fn.iterdir()) == ["lambda_function.py", "model", "modelport", "requirements.txt"]
    deps = tmp_path / "runtime-deps"  # what a Lambda layer would hold: the runtime closure, nothing else
    _vendor.copy_distributions(_vendor.closure(_vendor.FUNCTION_ROOTS), deps)
    event = http_v2_event("POST", "/v2/models/churn/records", json.dumps({"records": CHURN_ROWS}).encode(),
                          function_url=True)
    report = run_clean([fn, deps], f"""
        import lambda_function
        out = lambda_function.handler({event!r}, None)
        _report = {{"status": out["statusCode"], "body": out["body"]}}
    """, cwd=tmp_path)
    assert report["status"] == 200
    same(json.loads(report["body"])["predictions"], expected_records(bundles.churn, CHURN_ROWS))


def test_zip_is_deterministic(bundles, tmp_path):
    a = export(bundles.churn, "lambda", tmp_path / "a", deps="none")
    b = export(bundles.churn, "lambda", tmp_path / "b", deps="none")
    digest = [hashlib.sha256((r.path / r.files["zip"]).read_bytes()).hexdigest() for r in (a, b)]
    assert digest[0] == digest[1]


# ============================================================================ platforms and wheels
RT_AL2 = _vendor.PythonRuntime("AWS Lambda python3.11 (Amazon Linux 2)", (3, 11), (2, 26), "x86_64")


@pytest.mark.parametrize(("tag", "problem"), [
    ("py3-none-any", None),
    ("cp311-cp311-manylinux2014_x86_64", None),
    ("cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64", None),
    ("cp310-abi3-manylinux2014_x86_64", None),
    ("cp312-abi3-manylinux2014_x86_64", "3.12+ (abi3)"),
    ("cp311-cp311-manylinux_2_28_x86_64", "needs glibc 2.28"),
    ("cp312-cp312-manylinux2014_x86_64", "CPython 3.12"),
    ("cp311-cp311-manylinux2014_aarch64", "built for aarch64"),
    ("cp311-cp311-linux_x86_64", "not a manylinux"),
    ("cp311-cp311-musllinux_1_2_x86_64", "not a manylinux"),
    ("cp311-cp311-macosx_11_0_arm64", "not a manylinux"),
    ("pp310-pypy310_pp73-manylinux2014_x86_64", "pp310"),
])
def test_wheel_tags_against_a_runtime(tag, problem):
    why = _vendor._incompatible([tag], RT_AL2)
    if problem is None:
        assert why is None
    else:
        assert why is not None and problem in why


def test_env_deps_refused_where_the_platform_cannot_load_them(bundles, tmp_path):
    dists = _vendor.closure(_vendor.FUNCTION_ROOTS)
    bad = [d.pin for d in dists if _vendor._incompatible(d.tags, RT_AL2)]
    out = tmp_path / "lambda"
    if not bad:  # an environment whose wheels all still target glibc 2.26: then the export works
        export(bundles.churn, "lambda", out, deps="env", python="3.11", arch="x86_64", check=False)
        return
    with pytest.raises(ExportError) as info:
        export(bundles.churn, "lambda", out, deps="env", python="3.11", arch="x86_64")
    text = str(info.value)
    assert "Amazon Linux 2" in text and "glibc 2.26" in text
    assert all(pin in text for pin in bad) and "--deps pip" in text
    assert not out.exists()
    with pytest.raises(InputError, match=r"no Python 3\.8 runtime"):
        export(bundles.churn, "lambda", out, python="3.8")
    with pytest.raises(ExportError, match=r"CPython 3\.11, the runtime has 3\.12"):
        export(bundles.churn, "gcf", out, deps="env", python="3.12")


def test_function_roots_are_the_core_requirements():
    """FUNCTION_ROOTS is what pyproject says a function needs: the core minus the CLI, plus serverless."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    core, serverless = set(), set()
    for text in md.requires("modelport"):
        req = Requirement(text)
        name = _vendor._norm(req.name)
        if req.marker is None:
            core.add(name)
        elif req.marker.evaluate({"extra": "serverless"}) and not req.marker.evaluate({"extra": ""}):
            serverless.add(name)
    assert set(_vendor.FUNCTION_ROOTS) == (core - _vendor.CLI_ONLY) | serverless


# ============================================================================ limits and bad input
def test_real_limits_name_themselves():
    unzipped, zipped = aws_lambda.LIMITS
    with pytest.raises(ExportError, match=r"over AWS Lambda's limit of 250 MB unzipped \(the function code and all "
                                          r"its layers\)"):
        unzipped.check("AWS Lambda", 262_144_001, subject="the lambda artifact")
    assert unzipped.check("AWS Lambda", 262_144_000, subject="x") is None
    note = zipped.check("AWS Lambda", 60 * 2**20, subject="the zip")
    assert note is not None and "50 MB zipped" in note  # advisory: larger packages go through S3


def test_a_bundle_too_large_for_the_platform_writes_nothing(bundles, tmp_path, monkeypatch):
    from modelport.export._artifact import SizeLimit

    size = Path(bundles.churn).stat().st_size
    small = (SizeLimit("unzipped", size + 1000, "the test's limit (a bundle plus 1000 bytes)"),)
    monkeypatch.setattr(aws_lambda, "LIMITS", small)
    out = tmp_path / "lambda"
    with pytest.raises(ExportError) as info:
        export(bundles.churn, "lambda", out, deps="none")
    assert "over AWS Lambda's limit of the test's limit" in str(info.value)
    assert "bundle" in str(info.value) and "--target container" in str(info.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_output_directory_rules(bundles, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists and is not empty"):
        export(bundles.churn, "lambda", out, deps="none")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    result = export(bundles.churn, "lambda", out, deps="none", overwrite=True)
    assert not (out / "keep.txt").exists() and (out / result.files["zip"]).is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    export(bundles.churn, "gcf", empty)
    assert (empty / "function" / "main.py").is_file()
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        export(bundles.churn, "lambda", file, deps="none")


def test_a_failure_midway_leaves_nothing(bundles, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ExportError("disk full (simulated)")

    monkeypatch.setattr(_vendor, "copy_modelport", broken)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="simulated"):
        export(bundles.churn, "lambda", out, deps="none")
    assert list(tmp_path.iterdir()) == []


def test_options_a_target_does_not_take(bundles, tmp_path):
    with pytest.raises(InputError, match=r"--build do\(es\) not apply to --target lambda") as info:
        export(bundles.churn, "lambda", tmp_path / "x", build="localhost/x:1")
    assert "--target container" in str(info.value)
    with pytest.raises(InputError, match="unknown export target"):
        export(bundles.churn, "heroku", tmp_path / "x")
    with pytest.raises(InputError, match="--wheelhouse applies to --deps pip"):
        export(bundles.churn, "lambda", tmp_path / "x", deps="none", wheelhouse=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_pip_deps_from_a_local_wheelhouse(bundles, tmp_path):
    """--deps pip --wheelhouse: pip installs wheels for the platform's tags, offline."""
    wheels = tmp_path / "wheels"
    for d in _vendor.closure(_vendor.FUNCTION_ROOTS):
        _vendor.repack_wheel(d, wheels)
    result = export(bundles.churn, "gcf", tmp_path / "out", deps="pip", wheelhouse=wheels)
    assert result.details["checked_in_clean_interpreter"] is True
    fn = result.path / "function"
    assert (fn / "onnxruntime").is_dir() and not (fn / "bin").exists()
    assert not any(fn.rglob("tests"))  # pruned like --deps env


# ============================================================================ the command
def test_cli_export(bundles, tmp_path):
    runner = CliRunner()
    out = tmp_path / "lam"
    r = runner.invoke(cli, ["export", str(bundles.churn), "--target", "lambda", "-o", str(out), "--deps", "none",
                            "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["target"] == "lambda" and (out / doc["files"]["zip"]).is_file()
    r = runner.invoke(cli, ["export", str(bundles.churn), "--target", "lambda", "-o", str(out), "--deps", "none"])
    assert r.exit_code == 2 and "not empty" in r.output
    r = runner.invoke(cli, ["export", str(bundles.churn), "--target", "gcf", "-o", str(tmp_path / "g"), "--build", "t"])
    assert r.exit_code == 2 and "--target container" in r.output
    r = runner.invoke(cli, ["export", str(bundles.churn), "--target", "gcf", "-o", str(tmp_path / "g2")])
    assert r.exit_code == 0 and "DEPLOY.md" in r.output and "installs from requirements.txt" in r.output
    r = runner.invoke(cli, ["export", str(tmp_path / "missing.mpk"), "--target", "gcf", "-o", str(tmp_path / "g3")])
    assert r.exit_code != 0 and not (tmp_path / "g3").exists()


def test_zip_entries_are_world_readable(bundles, tmp_path):
    result = export(bundles.churn, "lambda", tmp_path / "out", deps="none")
    with zipfile.ZipFile(result.path / result.files["zip"]) as zf:
        for info in zf.infolist():
            mode = (info.external_attr >> 16)
            assert stat.S_ISREG(mode) and mode & 0o444 == 0o444
            assert info.date_time == (1980, 1, 1, 0, 0, 0)


def test_platform_table_is_complete():
    from modelport.export import TARGETS

    assert set(TARGETS) == {"lambda", "gcf", "azure", "container", "kserve", "mlflow"}
    for t in TARGETS.values():
        assert callable(t.load())
    p = aws_lambda.platform()
    assert dataclasses.replace(p).entry_module == "lambda_function"
