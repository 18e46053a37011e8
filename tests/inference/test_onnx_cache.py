"""The ONNX export cache: keyed by the model's full SHA-256 and the exporter version, and
verified (manifest + the export's own SHA-256) before a cached file is used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.engines import make_engine
from inference.engines.onnx_engine import exporter_version, onnx_path_for

from .test_engines import _batch, _tiny_model

pytest.importorskip("onnxruntime")


def test_a_corrupt_or_foreign_cached_export_is_never_used(tmp_path: Path) -> None:
    model = _tiny_model(seed=2)
    x = _batch(1, (16, 16))
    reference = make_engine(model, backend="torch", device="cpu").run(x)
    first = make_engine(model, backend="onnxruntime", device="cpu", cache_dir=tmp_path).run(x)
    path = onnx_path_for(model, (1, 9, 16, 16), False, tmp_path)
    assert path.is_file() and model.sha256 in path.name  # the full hash, not a prefix
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["model_sha256"] == model.sha256
    assert manifest["exporter"] == exporter_version() and "torch-" in manifest["exporter"]
    assert np.abs(first - reference).max() < 1e-4

    # bytes damaged on disk (a crash, a full disk, a bad copy): detected, exported again
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    again = make_engine(model, backend="onnxruntime", device="cpu", cache_dir=tmp_path).run(x)
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert json.loads(path.with_suffix(".json").read_text())["onnx_sha256"] != ""

    # a file at the cache name that another exporter (or another model) made: not reused
    other = _tiny_model(seed=3)
    path.write_bytes(b"")  # whatever is there is replaced, never loaded
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest["exporter"] = "torch-0.0_onnx-0.0_onnxscript-0.0_opset20"
    path.with_suffix(".json").write_text(json.dumps(manifest))
    third = make_engine(model, backend="onnxruntime", device="cpu", cache_dir=tmp_path).run(x)
    np.testing.assert_allclose(third, first, atol=1e-6)
    assert onnx_path_for(other, (1, 9, 16, 16), False, tmp_path) != path
    assert not list(tmp_path.glob(".*.partial"))  # no half-written export left behind
