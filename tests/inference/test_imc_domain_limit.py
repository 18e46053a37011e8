"""Each IMC-SR model's own domain limit: the documented rule, measured on in-domain fields,
written into a copy of the model file (same weights), used by the live separator; files without
it keep the default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from acquisition.cli import build_app
from inference.domain import Range
from inference.imc.domain_limit import (
    MARGIN,
    MARGIN_SHARE,
    domain_limit,
    measure_in_domain,
    share_ranges,
    write_domain_limits,
)
from inference.imc.live import (
    DEFAULT_UNEXPLAINED_LIMIT,
    ImcSeparator,
    channel_shares,
    unexplained_fraction,
)
from inference.imc.live_data import LiveField, normalised, save_field
from inference.model_file import ModelFileError, read_model_file, save_model
from inference.models.imcsr import Imcsr, ImcsrOptions


def _model_file(tmp_path: Path, frames: int = 1) -> Path:
    torch.manual_seed(5)
    module = Imcsr(ImcsrOptions.model_validate(
        {"input_frames": frames, "width": 4, "groups": 1, "blocks": 1, "reduction": 2}))
    path = tmp_path / f"imc{frames}.pt"
    save_model(path, module, architecture="imcsr", mode="imc", options=module.options)
    return path


def _fields(count: int) -> list[LiveField]:
    rng = np.random.default_rng(11)
    fields = []
    for seed in range(count):
        components = rng.random((3, 24, 24)).astype(np.float32)
        total = components.sum(axis=0)
        fields.append(LiveField({"dfcan-sim": total * 40.0, "wiener": total + rng.random(
            total.shape).astype(np.float32)}, components, seed, 100.0))
    return fields


def test_limit_is_the_margin_times_the_99th_percentile_of_in_domain_fractions() -> None:
    values = np.linspace(0.0, 0.1, 101)  # 99th percentile 0.099
    assert domain_limit(values) == pytest.approx(MARGIN * 0.099)
    assert domain_limit(np.r_[np.full(99, 0.02), 0.5]) == pytest.approx(
        MARGIN * np.percentile(np.r_[np.full(99, 0.02), 0.5], 99))
    with pytest.raises(ValueError, match="finite"):
        domain_limit([])
    with pytest.raises(ValueError, match="finite"):
        domain_limit([0.01, float("nan")])


def test_share_ranges_are_the_widened_outer_percentiles_per_channel() -> None:
    low_channel = np.linspace(0.1, 0.3, 201)  # 0.5th / 99.5th percentiles 0.101 / 0.299
    shares = np.stack([low_channel, 0.5 - low_channel / 2, 0.5 - low_channel / 2], axis=1)
    ranges = share_ranges(shares)
    assert len(ranges) == 3
    assert ranges[0].low == pytest.approx((1 - MARGIN_SHARE) * 0.101)
    assert ranges[0].high == pytest.approx((1 + MARGIN_SHARE) * 0.299)
    assert ranges[1].low == pytest.approx((1 - MARGIN_SHARE) * (0.5 - 0.299 / 2))
    assert share_ranges(np.array([[0.0, 0.05, 0.95]]))[2].high == 1.0  # capped at 1
    with pytest.raises(ValueError, match="images x channels"):
        share_ranges(np.zeros((0, 3)))


def test_channel_shares_are_each_channels_part_of_the_positive_signal() -> None:
    channels = np.zeros((3, 4, 4), np.float32)
    channels[0] = 1.0
    channels[1, :2] = 2.0
    channels[2] = -5.0  # negative output is no signal
    np.testing.assert_allclose(channel_shares(channels), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(channel_shares(np.zeros((3, 2, 2))), [1 / 3] * 3)


@pytest.mark.parametrize("frames", [1, 3])
def test_in_domain_statistics_are_the_live_separations_of_every_method(
    tmp_path: Path, frames: int
) -> None:
    separator = ImcSeparator(_model_file(tmp_path, frames))
    fields = _fields(3)
    measured = measure_in_domain(separator, fields)
    assert measured.fractions.shape == (6,) and measured.shares.shape == (6, 3)
    # exactly the live separation of each image (temporal: a still window of it)
    module = separator.model.module
    images = [im for f in fields for im in f.sr.values()]
    for value, shares, image in zip(measured.fractions, measured.shares, images, strict=True):
        x = normalised(image)
        with torch.no_grad():
            y = module(torch.from_numpy(np.stack([x] * frames))[None])[0].numpy()
        assert value == pytest.approx(unexplained_fraction(x, y), rel=1e-4)
        np.testing.assert_allclose(shares, channel_shares(y), rtol=1e-4)


def test_model_file_carries_its_own_limits_and_files_without_them_use_the_default(
    tmp_path: Path,
) -> None:
    path = _model_file(tmp_path)
    plain = ImcSeparator(path)
    info = read_model_file(path)[0]
    assert info.imc_unexplained_limit is None and info.imc_channel_shares is None
    assert plain.unexplained_limit == DEFAULT_UNEXPLAINED_LIMIT and plain.share_ranges is None
    image = np.random.default_rng(4).random((24, 24), dtype=np.float32)
    plain.separate(image)
    fraction, shares = plain.last_unexplained, plain.last_shares.copy()
    assert fraction > 0
    assert (plain.last_reason is None) == (fraction <= DEFAULT_UNEXPLAINED_LIMIT)
    wide = [Range(low=0.0, high=1.0)] * 3
    for limit, flagged in ((fraction / 2, True), (fraction * 2, False)):
        limited = tmp_path / f"limited-{flagged}.pt"
        write_domain_limits(path, limited, limit, wide)
        info = read_model_file(limited)[0]
        assert info.imc_unexplained_limit == limit and info.imc_channel_shares == wide
        assert info.weights_sha256 == read_model_file(path)[0].weights_sha256
        separator = ImcSeparator(limited)
        assert separator.unexplained_limit == limit
        separator.separate(image)
        assert separator.last_unexplained == pytest.approx(fraction)
        assert (separator.last_reason is not None) == flagged
        if flagged:
            assert f"limit {limit:.1%}" in str(separator.last_reason)
    # a share outside its range flags the frame on its own, naming the channel
    narrow = [Range(low=0.0, high=1.0), Range(low=0.0, high=1.0),
              Range(low=min(shares[2] + 0.01, 1.0), high=1.0)]
    write_domain_limits(path, tmp_path / "narrow.pt", fraction * 2, narrow)
    separator = ImcSeparator(tmp_path / "narrow.pt")
    separator.separate(image)
    assert "lysosomes channel holds" in str(separator.last_reason)
    assert "unexplained" not in str(separator.last_reason)
    with pytest.raises(ValueError, match="imc_unexplained_limit"):
        write_domain_limits(path, tmp_path / "bad.pt", 0.0, None)
    write_domain_limits(path, tmp_path / "two.pt", 0.05, wide[:2])
    with pytest.raises(ModelFileError, match="2 ranges for 3 channels"):
        ImcSeparator(tmp_path / "two.pt")


def test_cli_measures_the_limits_on_field_folders_and_writes_them(tmp_path: Path) -> None:
    model = _model_file(tmp_path)
    (tmp_path / "cal").mkdir()
    for field in _fields(4):
        save_field(tmp_path / "cal" / f"field-{field.seed:07d}.npz", field)
    out = tmp_path / "out.pt"
    app = build_app()
    result = CliRunner().invoke(app, ["imc-domain-limit", str(model), "--fields",
                                      str(tmp_path / "cal"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    measured = measure_in_domain(ImcSeparator(model), _fields(4))
    info = read_model_file(out)[0]
    assert info.imc_unexplained_limit == pytest.approx(domain_limit(measured.fractions))
    assert info.imc_channel_shares is not None
    for written, expected in zip(info.imc_channel_shares, share_ranges(measured.shares),
                                 strict=True):
        assert (written.low, written.high) == pytest.approx((expected.low, expected.high))
    assert "8 in-domain images (4 fields)" in result.output
    again = CliRunner().invoke(app, ["imc-domain-limit", str(model), "--fields",
                                     str(tmp_path / "cal"), "-o", str(out)])
    assert again.exit_code == 2 and "exists" in again.output
    empty = CliRunner().invoke(app, ["imc-domain-limit", str(model), "--fields",
                                     str(tmp_path), "-o", str(tmp_path / "x.pt")])
    assert empty.exit_code == 2 and "no field-*.npz" in empty.output
