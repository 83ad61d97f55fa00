"""Executing bundles with ONNX Runtime: the only layer that runs a graph."""

from modelport.runtime.session import Runtime, output_columns

__all__ = ["Runtime", "output_columns"]
