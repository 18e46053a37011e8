"""Image formation on a fine grid: sample x illumination -> OTF -> camera pixels.

The sample is splatted (bilinear) onto a grid ``oversampling`` times finer than the camera
(2x for linear SIM, 3x for nonlinear SIM) because the pattern mixes frequencies up to
cutoff + h|k| into the pass band, beyond the camera's Nyquist. Per orientation and harmonic h
one FFT of sample * exp(i 2 pi h k . r) gives the shifted spectrum S(f - h k); every phase is
then a cheap linear combination in Fourier space, cropped to the camera band, multiplied by
the OTF and the pixel-integration sinc, and brought back with one small inverse FFT. The OTF
is zero beyond the camera's Nyquist frequency for all supported settings (checked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from sim_emulator.illumination import SimPatterns
from sim_emulator.optics import Optics, frequency_grid_cycles_per_nm, otf, otf_of_frequency
from sim_emulator.samples import PointCloud

BACKGROUND_BLUR_NM = 1200.0  # out-of-focus haze: Gaussian blur sigma in the focal plane


@dataclass
class SampleSpectra:
    """Fourier data of one sample state, computed once and shared by all its frames."""

    fine_image: np.ndarray  # (fY, fX) float32 emitter density per fine pixel
    base: np.ndarray  # (Y, X//2+1) complex64: OTF x pixel x S(f) (+ background)
    shifted: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class ImageFormation:
    """Noiseless camera images (emitter units per pixel) of a point-cloud sample."""

    def __init__(
        self,
        optics: Optics,
        patterns: SimPatterns,
        shape: Sequence[int],
        oversampling: int | None = None,
        workers: int = 1,
    ) -> None:
        self.optics = optics
        self.patterns = patterns
        self.shape = (int(shape[0]), int(shape[1]))
        self.oversampling = oversampling or (3 if patterns.mode == "nlsim" else 2)
        self.pixel_size_nm = optics.pixel_size_nm
        self.fine_pixel_nm = optics.pixel_size_nm / self.oversampling
        self.fine_shape = (self.shape[0] * self.oversampling, self.shape[1] * self.oversampling)
        self.workers = workers
        nyquist = 0.5 / self.pixel_size_nm
        if optics.cutoff_cycles_per_nm >= nyquist:
            raise ValueError(
                f"pixel_size_nm={self.pixel_size_nm} undersamples the OTF "
                f"(cutoff {optics.cutoff_cycles_per_nm:.5f} >= Nyquist {nyquist:.5f} cycles/nm)"
            )
        self._rows = np.fft.fftfreq(self.shape[0], 1.0 / self.shape[0]).astype(int)
        self._cols = np.fft.fftfreq(self.shape[1], 1.0 / self.shape[1]).astype(int)
        self._half = self.shape[1] // 2 + 1
        ky, kx = frequency_grid_cycles_per_nm(self.shape, self.pixel_size_nm)
        pixel = np.sinc(ky * self.pixel_size_nm) * np.sinc(kx * self.pixel_size_nm)
        self.transfer = (otf(self.shape, self.pixel_size_nm, optics) * pixel).astype(np.float32)
        sigma = BACKGROUND_BLUR_NM
        haze = np.exp(-2.0 * np.pi**2 * sigma**2 * (ky**2 + kx**2)) * pixel
        self.background_transfer = (optics.background_fraction * haze).astype(np.float32)
        self.coefficients = patterns.harmonic_coefficients()
        self.wave_vectors = patterns.wave_vectors_cycles_per_nm()
        self.phases = patterns.phases_rad()
        fy = np.arange(self.fine_shape[0]) * self.fine_pixel_nm
        fx = np.arange(self.fine_shape[1]) * self.fine_pixel_nm
        self._fine_y_nm = fy
        self._fine_x_nm = fx

    @property
    def harmonics(self) -> int:
        """Highest harmonic order rendered (saturation can produce more than the model uses)."""
        return len(self.coefficients) - 1

    def splat(self, cloud: PointCloud) -> np.ndarray:
        """Bilinear deposit of emitters onto the fine grid (emitters outside are dropped)."""
        height, width = self.fine_shape
        fy = cloud.y_nm / self.fine_pixel_nm
        fx = cloud.x_nm / self.fine_pixel_nm
        inside = (fy >= 0) & (fy < height - 1) & (fx >= 0) & (fx < width - 1)
        fy, fx, w = fy[inside], fx[inside], cloud.weight[inside]
        iy = fy.astype(np.int64)
        ix = fx.astype(np.int64)
        ty = fy - iy
        tx = fx - ix
        index = iy * width + ix
        indices = np.concatenate([index, index + 1, index + width, index + width + 1])
        weights = np.concatenate(
            [w * (1 - ty) * (1 - tx), w * (1 - ty) * tx, w * ty * (1 - tx), w * ty * tx]
        )
        image = np.bincount(indices, weights, minlength=height * width)
        return image.reshape(height, width).astype(np.float32)

    def spectra(self, cloud: PointCloud) -> SampleSpectra:
        """Splat and transform a sample state; shifted spectra are added lazily per orientation."""
        fine = self.splat(cloud)
        full = scipy.fft.rfft2(fine, workers=self.workers)
        band = full[self._rows][:, : self._half]
        transfer = self.transfer[:, : self._half] + self.background_transfer[:, : self._half]
        return SampleSpectra(fine_image=fine, base=(band * transfer).astype(np.complex64))

    def _shifted(self, spectra: SampleSpectra, orientation: int, order: int) -> tuple[
        np.ndarray, np.ndarray
    ]:
        """OTF x pixel x S(f - h k) and S(f + h k) on the camera half-spectrum."""
        key = (orientation, order)
        if key not in spectra.shifted:
            kx, ky = self.wave_vectors[orientation] * order
            ramp_y = np.exp(2j * np.pi * ky * self._fine_y_nm).astype(np.complex64)
            ramp_x = np.exp(2j * np.pi * kx * self._fine_x_nm).astype(np.complex64)
            modulated = spectra.fine_image * ramp_y[:, None]
            modulated *= ramp_x[None, :]
            full = scipy.fft.fft2(modulated, workers=self.workers, overwrite_x=True)
            band = full[self._rows][:, self._cols]
            minus = np.conj(band[(-self._rows) % self.shape[0]][:, (-self._cols) % self.shape[1]])
            transfer = self.transfer[:, : self._half]
            spectra.shifted[key] = (
                (band[:, : self._half] * transfer).astype(np.complex64),
                (minus[:, : self._half] * transfer).astype(np.complex64),
            )
        return spectra.shifted[key]

    def frames(self, spectra: SampleSpectra, patterns: Sequence[int | None]) -> np.ndarray:
        """Noiseless images (len(patterns), Y, X) float32; None is uniform illumination."""
        stack = np.empty((len(patterns), self.shape[0], self._half), dtype=np.complex64)
        for i, pattern in enumerate(patterns):
            stack[i] = spectra.base
            if pattern is None or self.patterns.mode == "wf":
                continue
            orientation, phase = self.patterns.orientation_phase(pattern)
            phi = self.phases[orientation, phase]
            for order in range(1, self.harmonics + 1):
                plus, minus = self._shifted(spectra, orientation, order)
                c = self.coefficients[order]
                stack[i] += (c * np.exp(1j * order * phi)) * plus
                stack[i] += (c * np.exp(-1j * order * phi)) * minus
        images = scipy.fft.irfft2(stack, s=self.shape, axes=(-2, -1), workers=self.workers)
        return np.maximum(images, 0.0).astype(np.float32, copy=False)

    def sr_cutoff_cycles_per_nm(self) -> float:
        """Support of the SIM-extended OTF: cutoff + H |k| (H = 1 for wf/sim, 2 for nlsim)."""
        order = max(self.patterns.max_harmonic, 1)
        return self.optics.cutoff_cycles_per_nm + order / self.patterns.period_nm

    def super_resolved(self, fine_image: np.ndarray) -> np.ndarray:
        """The sample seen through the SIM-extended OTF on the fine grid (float32, fY x fX)."""
        ky, kx = frequency_grid_cycles_per_nm(self.fine_shape, self.fine_pixel_nm)
        kx = kx[:, : self.fine_shape[1] // 2 + 1]
        extended = otf_of_frequency(
            np.hypot(ky, kx), self.optics, self.sr_cutoff_cycles_per_nm()
        ).astype(np.float32)
        spectrum = scipy.fft.rfft2(fine_image, workers=self.workers) * extended
        image = scipy.fft.irfft2(spectrum, s=self.fine_shape, workers=self.workers)
        return np.maximum(image, 0.0).astype(np.float32, copy=False)
