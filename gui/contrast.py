"""Display contrast: percentile auto-levels and 256-entry uint8 lookup tables (gamma, saturation).

Pure numpy, so the same numbers drive the window, the tests and the benchmark. Levels are
computed on a strided subsample (about 16 k pixels), so any image size costs about a
millisecond.
"""

from __future__ import annotations

import numpy as np

LUT_SIZE = 256
SATURATION_RGB = (255, 0, 0)  # pixels at or above the upper level are shown in red
AUTO_LEVEL_SAMPLES = 16_384
EDGE_MARGIN = 0.06  # fraction of each side left out of auto-levels


def percentile_levels(image: np.ndarray, ignore_pct: float = 0.1,
                      margin_fraction: float = EDGE_MARGIN) -> tuple[float, float]:
    """(low, high) display levels leaving ``ignore_pct`` % of pixels out at each end.

    A margin of ``margin_fraction`` of each side is left out: reconstructions taper their
    edges to zero, which would otherwise pull the lower level below the real background.
    """
    if not 0.0 <= ignore_pct < 50.0:
        raise ValueError(f"ignore_pct must be in [0, 50), got {ignore_pct}")
    data = np.asarray(image)
    if data.size == 0:
        raise ValueError("cannot compute levels of an empty image")
    ny, nx = data.shape[-2:]
    my, mx = int(ny * margin_fraction), int(nx * margin_fraction)
    if ny - 2 * my >= 8 and nx - 2 * mx >= 8:
        data = data[..., my:ny - my, mx:nx - mx]
    step = max(1, int(np.sqrt(data.size / AUTO_LEVEL_SAMPLES)))
    sample = data[..., ::step, ::step].astype(np.float32, copy=False).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(sample, (ignore_pct, 100.0 - ignore_pct))
    if high <= low:
        high = low + max(abs(float(low)) * 1e-3, 1e-6)
    return float(low), float(high)


def lut_indices(values: np.ndarray, levels: tuple[float, float], lut_size: int = LUT_SIZE
                ) -> np.ndarray:
    """LUT entry of each value: ``levels`` map to the first and last entry, rounded, clipped.

    One formula for the screen (:func:`colour_table_rgb32`) and for snapshots, so they agree.
    """
    low, high = levels
    scaled = np.subtract(values, low, dtype=np.float32)
    scaled /= np.float32(high - low)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    scaled *= np.float32(lut_size - 1)
    np.rint(scaled, out=scaled)  # half to even, as np.round
    return scaled.astype(np.intp)


def colour_table_rgb32(n_values: int, lut: np.ndarray, levels: tuple[float, float],
                       value_scale: float = 1.0, saturation_value: float | None = None
                       ) -> np.ndarray:
    """uint32 0xFFRRGGBB colour of every stored value 0 .. n_values - 1 (Qt's RGB32).

    A stored value v shows ``v * value_scale`` (e.g. uint16 SR x 1/65535) through ``levels``
    and ``lut``; values at or above ``saturation_value`` are painted in SATURATION_RGB. Drawing
    a uint16 frame is then one table lookup per pixel.
    """
    values = np.arange(n_values, dtype=np.float32)
    if value_scale != 1.0:
        values *= np.float32(value_scale)
    table = rgb32_of(lut)[lut_indices(values, levels, len(lut))]
    if saturation_value is not None:
        table[values >= saturation_value] = rgb32_of(np.array([SATURATION_RGB], np.uint8))[0]
    return table


def rgb32_of(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colours packed as uint32 0xFFRRGGBB."""
    wide = np.asarray(rgb, dtype=np.uint32)
    return np.ascontiguousarray(np.uint32(0xFF000000) | (wide[:, 0] << 16) | (wide[:, 1] << 8)
                                | wide[:, 2])


def histogram_counts(image: np.ndarray, bins: int = 128,
                     samples: int = AUTO_LEVEL_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, counts) of a strided ~``samples``-pixel subsample, uniform bins.

    For the view's histogram a few times a second: uniform bins over the sample's range take
    numpy's sort-free path (pyqtgraph's own histogram sorts 40 k pixels each time).
    """
    data = np.asarray(image)
    step = max(1, int(np.sqrt(data.size / samples)))
    sample = data[..., ::step, ::step].ravel()
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.zeros(0), np.zeros(0)
    low, high = float(sample.min()), float(sample.max())
    if high <= low:
        high = low + 1.0
    counts, edges = np.histogram(sample, bins=bins, range=(low, high))
    return 0.5 * (edges[:-1] + edges[1:]), counts


def make_lut(colour_rgb: tuple[int, int, int] = (255, 255, 255), gamma: float = 1.0,
             saturation: bool = False, stops: np.ndarray | None = None) -> np.ndarray:
    """A (256, 3) uint8 table: black -> ``colour_rgb`` (or ``stops`` (256, 3)) with gamma.

    ``gamma`` < 1 lifts dim structure; ``saturation`` paints the top entry red so clipped
    pixels (>= upper level) stand out.
    """
    if not 0.05 <= gamma <= 20.0:
        raise ValueError(f"gamma must be in [0.05, 20], got {gamma}")
    ramp = np.linspace(0.0, 1.0, LUT_SIZE) ** gamma
    if stops is not None:
        table = np.asarray(stops, dtype=np.float64)
        if table.shape != (LUT_SIZE, 3):
            raise ValueError(f"stops must be ({LUT_SIZE}, 3), got {table.shape}")
        index = np.clip(np.round(ramp * (LUT_SIZE - 1)).astype(int), 0, LUT_SIZE - 1)
        lut = table[index]
    else:
        lut = ramp[:, None] * np.asarray(colour_rgb, dtype=np.float64)[None, :]
    lut = np.clip(np.round(lut), 0, 255).astype(np.uint8)
    if saturation:
        lut[-1] = SATURATION_RGB
    return np.ascontiguousarray(lut)


def hot_stops() -> np.ndarray:
    """A (256, 3) black-red-yellow-white ramp ('hot'), common for SR display."""
    x = np.linspace(0.0, 1.0, LUT_SIZE)
    red = np.clip(x * 3.0, 0, 1)
    green = np.clip(x * 3.0 - 1.0, 0, 1)
    blue = np.clip(x * 3.0 - 2.0, 0, 1)
    return np.stack([red, green, blue], axis=1) * 255.0


COLOURMAPS: dict[str, tuple[int, int, int] | None] = {
    "grey": (255, 255, 255), "green": (0, 255, 0), "magenta": (255, 0, 255),
    "cyan": (0, 255, 255), "hot": None,
}


def lut_for(name: str, gamma: float = 1.0, saturation: bool = False) -> np.ndarray:
    """The named colour map as a 256-entry LUT (see :data:`COLOURMAPS`)."""
    if name not in COLOURMAPS:
        raise ValueError(f"colour map {name!r} not in {sorted(COLOURMAPS)}")
    colour = COLOURMAPS[name]
    if colour is None:
        return make_lut(gamma=gamma, saturation=saturation, stops=hot_stops())
    return make_lut(colour, gamma, saturation)


def composite_rgb(channels: np.ndarray, colours: list[tuple[int, int, int]],
                  levels: list[tuple[float, float]], visible: list[bool],
                  gamma: float = 1.0) -> np.ndarray:
    """Additive RGB composite (Y, X, 3) uint8 of (C, Y, X) images, each in its own colour."""
    data = np.asarray(channels, dtype=np.float32)
    if data.ndim != 3 or not len(colours) == len(levels) == len(visible) == data.shape[0]:
        raise ValueError(f"channels {data.shape} need one colour, level pair and visibility "
                         f"flag each ({len(colours)}, {len(levels)}, {len(visible)} given)")
    out = np.zeros((*data.shape[1:], 3), dtype=np.float32)
    for image, colour, (low, high), show in zip(data, colours, levels, visible, strict=True):
        if not show:
            continue
        scaled = np.clip((image - low) / max(high - low, 1e-12), 0.0, 1.0)
        if gamma != 1.0:
            scaled **= gamma
        out += scaled[..., None] * (np.asarray(colour, dtype=np.float32) / 255.0)
    return np.ascontiguousarray(np.clip(out * 255.0, 0, 255).astype(np.uint8))


SIGNAL_FRACTION = 0.1  # an IMC channel whose top level is below this share of the brightest's


def composite_levels(channels: np.ndarray, ignore_pct: float = 0.1,
                     signal_fraction: float = SIGNAL_FRACTION
                     ) -> tuple[list[tuple[float, float]], list[bool]]:
    """Per-channel levels for an IMC composite, and whether each channel carries signal.

    A channel whose upper percentile is below ``signal_fraction`` of the brightest channel's
    is not stretched on its own (an empty lysosome channel at max 0.011 would otherwise fill
    the frame with noise in its colour): it is shown on the brightest channel's scale.
    """
    data = np.asarray(channels)
    levels = [percentile_levels(image, ignore_pct) for image in data]
    brightest = max(high for _, high in levels)
    carries = [high >= signal_fraction * brightest for _, high in levels]
    shown = [level if signal else (level[0], max(brightest, level[0] + 1e-6))
             for level, signal in zip(levels, carries, strict=True)]
    return shown, carries


def log_power_spectrum(image: np.ndarray) -> np.ndarray:
    """log10(1 + |FFT|^2) of an image, zero frequency in the centre (float32): the SR view's
    spectrum shows the resolution reached and reconstruction artefacts (peaks, rings)."""
    data = np.asarray(image, dtype=np.float32)
    spectrum = np.fft.fftshift(np.fft.fft2(data - np.float32(data.mean())))
    return np.log10(1.0 + np.abs(spectrum) ** 2).astype(np.float32)


def nice_length(span: float, fraction: float = 0.2) -> float:
    """A 1, 2 or 5 x 10^k length close to ``fraction`` of ``span`` (scale bars)."""
    if not span > 0:
        raise ValueError(f"span must be positive, got {span}")
    target = span * fraction
    power = 10.0 ** np.floor(np.log10(target))
    for step in (5.0, 2.0, 1.0):
        if step * power <= target:
            return float(step * power)
    return float(power)
