"""The public API is exactly ``modelport.__all__``; importing modelport stays light."""

from __future__ import annotations

import subprocess
import sys

import modelport


def test_all_names_resolve():
    for name in modelport.__all__:
        assert getattr(modelport, name) is not None, name


def test_public_api_is_exactly_all():
    public = {n for n in dir(modelport) if not n.startswith("_")}
    # submodules appear as attributes once imported; they are not API
    submodules = {"bundle", "convert", "errors", "runtime", "verification", "registry", "serve", "batch",
                  "codegen", "inspect", "cli", "tables", "stream", "monitor", "dask", "spark", "signing", "export"}
    assert public - submodules - set(modelport.__all__) == set()


def test_verify_is_the_function_even_after_submodule_import():
    import modelport.verification

    assert callable(modelport.verify) and modelport.verify.__module__ == "modelport"


def test_import_loads_no_training_or_server_library():
    code = (
        "import sys, modelport\n"
        "heavy = ['sklearn', 'torch', 'xgboost', 'lightgbm', 'catboost', 'pandas', 'onnxruntime',"
        " 'starlette', 'grpc', 'sqlalchemy', 'pyspark', 'dask', 'model_signing', 'cryptography', 'OpenSSL']\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_running_a_bundle_imports_only_the_runtime(tmp_path, iris_bundle):
    """load + predict on a numpy array (what a function or container does) imports numpy, onnx,
    onnxruntime and modelport's loader and runtime: no pandas, no training library, no web
    framework, not even the CLI's click and rich."""
    path = tmp_path / "iris.mpk"
    iris_bundle.save(path)
    code = (
        "import sys, numpy as np, modelport\n"
        f"b = modelport.load({str(path)!r})\n"
        "b.predict(np.array([[5.1, 3.5, 1.4, 0.2]]))\n"
        "import modelport.export.aws_lambda, modelport.export.gcf, modelport.export.azure, modelport.export.mlflow\n"
        "heavy = ['pandas', 'pyarrow', 'sklearn', 'scipy', 'torch', 'xgboost', 'lightgbm', 'catboost', 'starlette',"
        " 'uvicorn', 'fastapi', 'flask', 'grpc', 'sqlalchemy', 'click', 'rich', 'yaml', 'orjson', 'mlflow']\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_error_tree():
    e = modelport.errors
    assert issubclass(e.IntegrityError, e.BundleError)
    assert issubclass(e.ModelNotFoundError, e.RegistryError)
    assert issubclass(e.UnsupportedModelError, e.ConversionError)
    for cls in (e.BundleError, e.ConversionError, e.InputError, e.VerificationError, e.RegistryError, e.ExportError):
        assert issubclass(cls, e.ModelportError) and cls.exit_code != 0
    err = e.InputError("bad", hint="do this")
    assert "hint: do this" in str(err) and err.message == "bad"
