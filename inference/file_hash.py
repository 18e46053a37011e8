"""SHA-256 of a file's bytes (model files, ONNX exports, run files)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes (a model file's weights hash is inside it instead),
    read in blocks by hashlib."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
