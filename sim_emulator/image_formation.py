"""Image formation on a fine grid: sample x illumination -> OTF -> camera pixels.

The sample is splatted (bilinear) onto a grid finer than the camera, because the pattern
mixes sample frequencies up to cutoff + h|k| into the pass band, beyond the camera's Nyquist.
The fine grid is chosen from the physics: its Nyquist frequency covers cutoff + H|k| (H the
highest rendered harmonic) and the SR target's support, with a 10 % margin. Per orientation
and harmonic h, one FFT of sample * exp(i 2 pi h k . r) gives the shifted spectrum S(f - h k)
(pruned: only the frequencies inside the OTF support are transformed along the second axis);
each phase is then a cheap linear combination in Fourier space, multiplied by the OTF and the
pixel-integration sinc, and brought back with one small inverse FFT. The OTF is zero beyond
the camera's Nyquist frequency (checked at construction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from sim_emulator.illumination import SimPatterns
from sim_emulator.optics import Optics, frequency_grid_cycles_per_nm, otf, otf_of_frequency
from sim_emulator.samples import PointCloud

_BAND_MARGIN = 1.1  # fine-grid Nyquist / highest sample frequency needed


@dataclass
class SampleSpectra:
    """Fourier data of one sample state, computed once and shared by all its frames."""

    fine_image: np.ndarray  # (fY, fX) float32 emitter density per fine pixel
    fine_spectrum: np.ndarray  # rfft2 of fine_image, complex64
    base: np.ndarray  # (Y, X//2+1) complex64: (OTF x pixel + haze) x S(f)
    shifted: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _even_at_least(value: float) -> int:
    n = int(np.ceil(value - 1e-9))
    return n + (n % 2)


class ImageFormation:
    """Noiseless camera images (emitter units per pixel) of a point-cloud sample."""

    def __init__(
        self,
        optics: Optics,
        patterns: SimPatterns,
        shape: Sequence[int],
        workers: int = 1,
    ) -> None:
        self.optics = optics
        self.patterns = patterns
        self.shape = (int(shape[0]), int(shape[1]))
        self.pixel_size_nm = optics.pixel_size_nm
        self.workers = workers
        nyquist = 0.5 / self.pixel_size_nm
        cutoff = optics.cutoff_cycles_per_nm
        if cutoff >= nyquist:
            raise ValueError(
                f"pixel_size_nm={self.pixel_size_nm} undersamples the OTF "
                f"(cutoff {cutoff:.5f} >= Nyquist {nyquist:.5f} cycles/nm)"
            )
        # per orientation: c_h (its own modulation), zero-padded to the longest series
        series = [patterns.harmonic_coefficients(o) for o in range(patterns.orientations)]
        longest = max(len(c) for c in series)
        self.coefficients = np.zeros((patterns.orientations, longest))
        for orientation, c in enumerate(series):
            self.coefficients[orientation, : len(c)] = c
        self.wave_vectors = patterns.wave_vectors_cycles_per_nm()
        self.sr_factor = 3 if patterns.mode == "nlsim" else 2
        highest = max(
            cutoff + self.harmonics / patterns.period_nm, self.sr_cutoff_cycles_per_nm()
        )
        oversampling = max(1.0, 2.0 * self.pixel_size_nm * highest * _BAND_MARGIN)
        self.fine_shape = (
            max(_even_at_least(self.shape[0] * oversampling), self.shape[0]),
            max(_even_at_least(self.shape[1] * oversampling), self.shape[1]),
        )
        # same field of view on both grids, so frequency pixels coincide
        self.fine_pixel_nm = (
            self.shape[0] * self.pixel_size_nm / self.fine_shape[0],
            self.shape[1] * self.pixel_size_nm / self.fine_shape[1],
        )
        self._rows = np.fft.fftfreq(self.shape[0], 1.0 / self.shape[0]).astype(int)
        self._cols = np.fft.fftfreq(self.shape[1], 1.0 / self.shape[1]).astype(int)
        self._half = self.shape[1] // 2 + 1
        ky, kx = frequency_grid_cycles_per_nm(self.shape, self.pixel_size_nm)
        pixel = np.sinc(ky * self.pixel_size_nm) * np.sinc(kx * self.pixel_size_nm)
        transfer = otf(self.shape, self.pixel_size_nm, optics) * pixel
        self.transfer = transfer[:, : self._half].astype(np.float32)
        sigma = optics.background_blur_nm
        haze = np.exp(-2.0 * np.pi**2 * sigma**2 * (ky**2 + kx**2)) * pixel
        self.base_transfer = (
            transfer + optics.background_fraction * haze
        )[:, : self._half].astype(np.float32)
        # OTF support in camera-grid frequency indices (pruned FFT)
        df_y = 1.0 / (self.shape[0] * self.pixel_size_nm)
        df_x = 1.0 / (self.shape[1] * self.pixel_size_nm)
        self._support_y = int(np.ceil(cutoff / df_y)) + 1
        self._support_x = int(np.ceil(cutoff / df_x)) + 1
        self._fine_y_nm = np.arange(self.fine_shape[0]) * self.fine_pixel_nm[0]
        self._fine_x_nm = np.arange(self.fine_shape[1]) * self.fine_pixel_nm[1]

    @property
    def harmonics(self) -> int:
        """Highest harmonic order rendered (saturation can produce more than the model uses)."""
        return self.coefficients.shape[1] - 1

    @property
    def sr_shape(self) -> tuple[int, int]:
        """(sY, sX) of the SR target: 2x (wf, sim) or 3x (nlsim) the camera grid."""
        return self.shape[0] * self.sr_factor, self.shape[1] * self.sr_factor

    def splat(self, cloud: PointCloud) -> np.ndarray:
        """Bilinear deposit of emitters onto the fine grid (emitters outside are dropped)."""
        height, width = self.fine_shape
        fy = cloud.y_nm / self.fine_pixel_nm[0]
        fx = cloud.x_nm / self.fine_pixel_nm[1]
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
        full = scipy.fft.rfft2(fine, workers=self.workers).astype(np.complex64, copy=False)
        band = full[self._rows, : self._half]
        return SampleSpectra(
            fine_image=fine, fine_spectrum=full, base=band * self.base_transfer
        )

    def _band_of_modulated(self, modulated: np.ndarray, ramp_y: np.ndarray) -> np.ndarray:
        """Camera-band (Y, X) DFT of ``modulated * ramp_y[:, None]`` (a fine-grid complex
        image), zero outside the OTF support; the y ramp is applied after the x transform,
        on the columns kept only."""
        fy, fx = self.fine_shape
        sx, sy = self._support_x, self._support_y
        columns = np.r_[0:sx, fx - sx + 1 : fx]
        along_x = scipy.fft.fft(modulated, axis=1, workers=self.workers, overwrite_x=True)
        picked = along_x[:, columns]
        picked *= ramp_y[:, None]
        along_y = scipy.fft.fft(picked, axis=0, workers=self.workers, overwrite_x=True)
        rows = np.r_[0:sy, fy - sy + 1 : fy]
        band = np.zeros(self.shape, dtype=np.complex64)
        out_rows = np.r_[0:sy, self.shape[0] - sy + 1 : self.shape[0]]
        out_cols = np.r_[0:sx, self.shape[1] - sx + 1 : self.shape[1]]
        band[np.ix_(out_rows, out_cols)] = along_y[rows]
        return band

    def _shifted(
        self, spectra: SampleSpectra, orientation: int, order: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """OTF x pixel x S(f - h k) and S(f + h k) on the camera half-spectrum."""
        key = (orientation, order)
        if key not in spectra.shifted:
            kx, ky = self.wave_vectors[orientation] * order
            ramp_y = np.exp(2j * np.pi * ky * self._fine_y_nm).astype(np.complex64)
            ramp_x = np.exp(2j * np.pi * kx * self._fine_x_nm).astype(np.complex64)
            modulated = np.multiply(spectra.fine_image, ramp_x[None, :], dtype=np.complex64)
            band = self._band_of_modulated(modulated, ramp_y)
            rows = (-self._rows) % self.shape[0]
            cols = (-self._cols[: self._half]) % self.shape[1]
            minus = np.conj(band[np.ix_(rows, cols)])
            spectra.shifted[key] = (
                band[:, : self._half] * self.transfer,
                minus * self.transfer,
            )
        return spectra.shifted[key]

    def frames(
        self, spectra: SampleSpectra, patterns: Sequence[int | None], time_s: float = 0.0
    ) -> np.ndarray:
        """Noiseless images (len(patterns), Y, X) float32; None is uniform illumination.

        Pattern phases are those at ``time_s`` (the pattern drifts slowly)."""
        phases = self.patterns.phases_rad(time_s)
        stack = np.empty((len(patterns), self.shape[0], self._half), dtype=np.complex64)
        for i, pattern in enumerate(patterns):
            stack[i] = spectra.base
            if pattern is None or self.patterns.mode == "wf":
                continue
            orientation, phase = self.patterns.orientation_phase(pattern)
            phi = phases[orientation, phase]
            for order in range(1, self.harmonics + 1):
                c = float(self.coefficients[orientation, order])
                if c == 0.0:
                    continue
                plus, minus = self._shifted(spectra, orientation, order)
                stack[i] += np.complex64(c * np.exp(1j * order * phi)) * plus
                stack[i] += np.complex64(c * np.exp(-1j * order * phi)) * minus
        images = scipy.fft.irfft2(stack, s=self.shape, axes=(-2, -1), workers=self.workers)
        return np.maximum(images, 0.0).astype(np.float32, copy=False)

    def sr_cutoff_cycles_per_nm(self) -> float:
        """Support of the SIM-extended OTF: cutoff + H |k| (H = 1 for wf/sim, 2 for nlsim)."""
        order = max(self.patterns.max_harmonic, 1)
        return self.optics.cutoff_cycles_per_nm + order / self.patterns.period_nm

    def super_resolved(self, spectra: SampleSpectra) -> np.ndarray:
        """The sample seen through the SIM-extended OTF on the SR grid (float32, sY x sX).

        Values are emitter units per SR pixel: the SR image sums to the same total as the
        wide-field image.
        """
        sy, sx = self.sr_shape
        ky, kx = frequency_grid_cycles_per_nm((sy, sx), self.pixel_size_nm / self.sr_factor)
        half = sx // 2 + 1
        extended = otf_of_frequency(
            np.hypot(ky, kx[:, :half]), self.optics, self.sr_cutoff_cycles_per_nm()
        ).astype(np.float32)
        # move the fine spectrum onto the SR grid (same frequency pixels), inside the support
        fy, fx = self.fine_shape
        rows_needed = int(np.ceil(self.sr_cutoff_cycles_per_nm() * sy * self.pixel_size_nm
                                  / self.sr_factor)) + 1
        ry = min(rows_needed, fy // 2, sy // 2)
        rx = min(rows_needed, fx // 2, sx // 2)
        spectrum = np.zeros((sy, half), dtype=np.complex64)
        src_rows = np.r_[0:ry, fy - ry + 1 : fy]
        dst_rows = np.r_[0:ry, sy - ry + 1 : sy]
        spectrum[dst_rows, :rx] = spectra.fine_spectrum[src_rows, :rx]
        spectrum *= extended
        image = scipy.fft.irfft2(spectrum, s=(sy, sx), workers=self.workers)
        return np.maximum(image, 0.0).astype(np.float32, copy=False)
