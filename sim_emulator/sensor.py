"""The sCMOS camera: photons -> Poisson -> QE -> electrons -> ADU, pixel by pixel.

Each pixel has its own offset, gain and read noise (sCMOS), a few are hot, and the output is
clipped to the ADC range. Maps are fixed by ``map_seed`` (a camera is one physical object);
shot and read noise come from the generator passed to :meth:`Sensor.expose`.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class SensorModel(BaseModel):
    """Camera parameters (defaults: a typical back-illuminated sCMOS, 16-bit output)."""

    model_config = ConfigDict(extra="forbid")

    qe: float = Field(
        default=0.8, gt=0.0, le=1.0, description="quantum efficiency at the emission line"
    )
    offset_adu: float = Field(default=100.0, ge=0.0, le=60000.0)
    offset_spread_adu: float = Field(default=1.5, ge=0.0, le=1000.0)
    gain_adu_per_e: float = Field(default=2.0, gt=0.0, le=100.0)
    gain_spread: float = Field(
        default=0.01, ge=0.0, le=0.5, description="relative std of the gain map"
    )
    read_noise_e: float = Field(default=1.4, ge=0.0, le=100.0)
    read_noise_spread: float = Field(
        default=0.1, ge=0.0, le=2.0, description="relative log-normal spread of read noise"
    )
    dark_current_e_per_s: float = Field(default=0.3, ge=0.0, le=1e5)
    hot_pixel_fraction: float = Field(default=1e-4, ge=0.0, le=0.1)
    hot_pixel_dark_e_per_s: float = Field(default=2000.0, ge=0.0, le=1e7)
    bit_depth: int = Field(default=16, ge=8, le=16)
    binning: int = Field(default=1, ge=1, le=8)
    roi: tuple[int, int, int, int] | None = Field(
        default=None, description="(x, y, width, height), unbinned px; None = all"
    )
    map_seed: int = 20240531

    @model_validator(mode="after")
    def _roi_fits_binning(self) -> SensorModel:
        if self.roi is not None:
            x, y, width, height = self.roi
            if min(x, y) < 0 or min(width, height) < 1:
                raise ValueError(f"roi={self.roi} needs x, y >= 0 and width, height >= 1")
            if width % self.binning or height % self.binning:
                raise ValueError(
                    f"roi={self.roi}: width/height not divisible by binning={self.binning}"
                )
        return self

    @property
    def photons_per_count(self) -> float:
        """Incident photons per offset-subtracted ADU: 1 / (QE * gain)."""
        return 1.0 / (self.qe * self.gain_adu_per_e)

    @property
    def max_adu(self) -> int:
        """Saturation level of the ADC."""
        return 2**self.bit_depth - 1


class Sensor:
    """A camera of ``sensor_shape`` unbinned pixels with fixed per-pixel maps."""

    def __init__(self, model: SensorModel, sensor_shape: tuple[int, int]) -> None:
        self.model = model
        self.sensor_shape = (int(sensor_shape[0]), int(sensor_shape[1]))
        if model.roi is not None:
            x, y, width, height = model.roi
            if x + width > self.sensor_shape[1] or y + height > self.sensor_shape[0]:
                raise ValueError(f"roi={model.roi} exceeds the sensor of {self.sensor_shape} px")
        rng = np.random.default_rng(model.map_seed)
        shape = self.sensor_shape
        self.offset_map_adu = (
            model.offset_adu + model.offset_spread_adu * rng.standard_normal(shape)
        ).astype(np.float32)
        self.gain_map_adu_per_e = (
            model.gain_adu_per_e * (1.0 + model.gain_spread * rng.standard_normal(shape))
        ).astype(np.float32)
        sigma = model.read_noise_spread
        self.read_noise_map_e = (
            model.read_noise_e * np.exp(sigma * rng.standard_normal(shape) - sigma**2 / 2)
        ).astype(np.float32)
        self.hot_pixel_mask = rng.random(shape) < model.hot_pixel_fraction
        self.dark_current_map_e_per_s = np.where(
            self.hot_pixel_mask, model.hot_pixel_dark_e_per_s, model.dark_current_e_per_s
        ).astype(np.float32)

    @property
    def output_shape(self) -> tuple[int, int]:
        """(Y, X) of a read-out frame after ROI and binning."""
        height, width = self._roi_hw()
        return height // self.model.binning, width // self.model.binning

    def _roi_hw(self) -> tuple[int, int]:
        if self.model.roi is None:
            return self.sensor_shape
        return self.model.roi[3], self.model.roi[2]

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The ROI part of a full-sensor (Y, X) array (a view)."""
        if self.model.roi is None:
            return image
        x, y, width, height = self.model.roi
        return image[y : y + height, x : x + width]

    def expose(
        self, photons: np.ndarray, exposure_ms: float, rng: np.random.Generator
    ) -> np.ndarray:
        """Read out one frame: ``photons`` is the expected count per full-sensor pixel."""
        if photons.shape != self.sensor_shape:
            raise ValueError(f"photon image shape {photons.shape} != sensor {self.sensor_shape}")
        if exposure_ms < 0:
            raise ValueError(f"exposure_ms={exposure_ms} must be >= 0")
        model = self.model
        expected = self.crop(photons).astype(np.float64) * model.qe
        expected += self.crop(self.dark_current_map_e_per_s) * (exposure_ms / 1000.0)
        electrons = rng.poisson(np.maximum(expected, 0.0)).astype(np.float32)
        electrons += self.crop(self.read_noise_map_e) * rng.standard_normal(
            electrons.shape, dtype=np.float32
        )
        adu = electrons * self.crop(self.gain_map_adu_per_e)
        adu += self.crop(self.offset_map_adu)
        if model.binning > 1:
            b = model.binning
            h, w = adu.shape
            adu = adu.reshape(h // b, b, w // b, b).sum(axis=(1, 3))
        return np.clip(np.rint(adu), 0, model.max_adu).astype(np.uint16)

    def offset_map_out_adu(self) -> np.ndarray:
        """Expected dark level of each output pixel (ROI and binning applied), in ADU."""
        offset = self.crop(self.offset_map_adu)
        b = self.model.binning
        if b > 1:
            h, w = offset.shape
            offset = offset.reshape(h // b, b, w // b, b).sum(axis=(1, 3))
        return offset.astype(np.float32)
