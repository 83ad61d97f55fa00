"""What an export returns and records beside the artifact (``export.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SUMMARY = "export.json"


@dataclass
class ExportResult:
    """An export: its target, where it is, what it holds and how large it is (bytes)."""

    target: str
    path: Path
    bundle: str
    digest: str
    files: dict[str, str] = field(default_factory=dict)  # role -> path relative to ``path``
    sizes: dict[str, int] = field(default_factory=dict)
    limits: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["path"] = str(self.path)
        return doc

    def write_summary(self, root: Path) -> None:
        """``export.json`` in the artifact's directory (written before the directory is renamed into place)."""
        doc = self.to_dict()
        doc.pop("path")
        (root / SUMMARY).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
