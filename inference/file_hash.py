"""SHA-256 of a file's bytes, read in blocks (model files, ONNX exports, run files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

HASH_BLOCK_BYTES = 8 * 1024 * 1024


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes (a model file's weights hash is inside it instead)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()
