"""Deployment targets for a bundle: serverless functions, a container image, Kubernetes / KServe
manifests and an MLflow model directory. One module per target; this table maps target names to
them, with the options each one takes (the CLI's ``modelport export`` is built from it).

    >>> from modelport.export import export
    >>> export("churn.mpk", "lambda", "dist/lambda")
    >>> export("churn.mpk", "container", "dist/image", build="localhost/churn:1")

Every export writes a fresh directory (never into a non-empty one unless ``overwrite``), builds it
beside the destination and renames it into place only when complete; ``export.json`` in it records
what was exported, the sizes and the platform limits they were checked against.

Importing this package is light: a function's cold start imports the platform module only.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelport.errors import InputError

if TYPE_CHECKING:
    from modelport.bundle.core import Bundle
    from modelport.export._result import ExportResult

__all__ = ["TARGETS", "ExportResult", "Target", "export"]

_FUNCTION_OPTIONS = frozenset({"deps", "python", "arch", "wheelhouse", "check"})


@dataclass(frozen=True)
class Target:
    """One deployment target: its module's ``export(bundle, output, **options)`` and what it takes."""

    name: str
    summary: str
    entry: str  # "module:function"
    options: frozenset[str] = frozenset()

    def load(self) -> Any:
        module, attr = self.entry.split(":")
        return getattr(importlib.import_module(module), attr)


TARGETS: Mapping[str, Target] = {t.name: t for t in (
    Target("lambda", "AWS Lambda: handler, runtime dependencies and bundle, as a directory and a zip",
           "modelport.export.aws_lambda:export", _FUNCTION_OPTIONS),
    Target("gcf", "Google Cloud Functions: main.py, requirements.txt and bundle, as a directory and a zip",
           "modelport.export.gcf:export", _FUNCTION_OPTIONS),
    Target("azure", "Azure Functions: function_app.py, host.json, requirements.txt and bundle, directory and zip",
           "modelport.export.azure:export", _FUNCTION_OPTIONS),
    Target("container", "a Containerfile and build context (wheelhouse, bundle) for a small image running "
           "modelport serve; --build TAG builds it with podman or buildah",
           "modelport.export.container:export", frozenset({"build", "base", "port", "builder"})),
    Target("kserve", "Kubernetes manifests: a KServe InferenceService (V2) and a Deployment, Service and "
           "HorizontalPodAutoscaler", "modelport.export.kserve:export",
           frozenset({"image", "port", "replicas", "max_replicas", "namespace", "cpu", "memory"})),
    Target("mlflow", "an MLflow model directory: the onnx flavor and a python_function flavor loading the bundle",
           "modelport.export.mlflow:export", frozenset()),
)}


def export(
    bundle: Bundle | str | os.PathLike[str],
    target: str,
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    **options: Any,
) -> ExportResult:
    """Export ``bundle`` (a Bundle, a path or a ``models:/`` URI) for ``target`` into the directory
    ``output``. ``options`` are the target's own (see :data:`TARGETS`); others are refused."""
    spec = TARGETS.get(target)
    if spec is None:
        raise InputError(f"unknown export target {target!r}; known: {', '.join(TARGETS)}.")
    unknown = sorted(k for k, v in options.items() if k not in spec.options and v is not None)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        takers = sorted({t.name for t in TARGETS.values() if set(unknown) & t.options})
        raise InputError(
            f"{flags} do(es) not apply to --target {target}.",
            hint=f"{flags} belong(s) to --target {' / '.join(takers)}" if takers else None,
        )
    from modelport import load

    b = load(bundle)
    fn = spec.load()
    return fn(b, output, overwrite=overwrite, **{k: v for k, v in options.items() if v is not None})


def __getattr__(name: str) -> Any:
    if name == "ExportResult":
        from modelport.export._result import ExportResult

        return ExportResult
    raise AttributeError(f"module 'modelport.export' has no attribute {name!r}")
