"""Human-readable description and diff of bundles (``modelport inspect`` / ``modelport diff``)."""

from modelport.inspect.describe import describe, graph_text
from modelport.inspect.diff import Change, DiffReport, diff

__all__ = ["Change", "DiffReport", "describe", "diff", "graph_text"]
