"""Lazy imports of optional dependencies, with the pip line to run when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from modelport.errors import MissingDependencyError

# module name -> (distribution, modelport extra)
_HINTS: dict[str, tuple[str, str]] = {
    "pandas": ("pandas", "tabular"),
    "pyarrow": ("pyarrow", "tabular"),
    "sklearn": ("scikit-learn", "sklearn"),
    "skl2onnx": ("skl2onnx", "sklearn"),
    "onnxmltools": ("onnxmltools", "xgboost"),
    "xgboost": ("xgboost", "xgboost"),
    "lightgbm": ("lightgbm", "lightgbm"),
    "catboost": ("catboost", "catboost"),
    "torch": ("torch", "torch"),
    "starlette": ("starlette", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "orjson": ("orjson", "serve"),
    "prometheus_client": ("prometheus-client", "serve"),
    "grpc": ("grpcio", "grpc"),
    "sqlalchemy": ("sqlalchemy", "registry"),
    "fsspec": ("fsspec", "registry"),
    "psycopg": ("psycopg[binary]", "postgresql"),
    "dask": ("dask[dataframe]", "dask"),
    "distributed": ("distributed", "dask"),
    "pyspark": ("pyspark", "spark"),
    "redis": ("redis", "stream"),
    "nats": ("nats-py", "stream"),
    "duckdb": ("duckdb", "sql"),
    "model_signing": ("model-signing", "sign"),
    "OpenSSL": ("pyopenssl", "sign"),
    "cryptography": ("cryptography", "sign"),
    "yaml": ("pyyaml", "deploy"),
    "scipy": ("scipy", "monitor"),
}


def require(module: str, *, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming the install line."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        dist, extra = _HINTS.get(top, (top, None))
        what = f" for {purpose}" if purpose else ""
        line = f"pip install 'modelport[{extra}]'" if extra else f"pip install {dist}"
        raise MissingDependencyError(
            f"{dist} is needed{what} but is not installed ({exc}).",
            hint=f"run: {line}",
        ) from exc
