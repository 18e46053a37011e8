"""Spectrum operations of Fourier channel attention: TF1 bilinear resize, quadrant swap, DFT.

These reproduce the authors' TensorFlow 1 graph exactly (their weights depend on it): the
spectrum is shifted by a quadrant swap (roll by ceil(n/2) per axis) and resized with TF1
`resize_images` bilinear (src = dst * in / out, no half-pixel offset, clamped at the edge).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn


def tf1_resize_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower index, upper index and lerp weight of TF1 legacy bilinear sampling (float32 maths).

    TF computes scale = in/out and src = dst * scale in float32; lower = floor(src),
    upper = min(ceil(src), in - 1), lerp = src - floor(src).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"resize sizes must be positive, got in={in_size} out={out_size}")
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.arange(out_size, dtype=np.float32) * np.float32(scale)
    floor = np.floor(src)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(src).astype(np.int64), in_size - 1)
    lerp = (src - floor).astype(np.float32)
    return lower, upper, lerp


def tf1_resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize the last two axes like TF1 `resize_images(..., BILINEAR)`, align_corners False."""
    in_h, in_w = int(x.shape[-2]), int(x.shape[-1])
    out_h, out_w = size
    if (in_h, in_w) == (out_h, out_w):
        return x
    y0, y1, yl = tf1_resize_taps(in_h, out_h)
    x0, x1, xl = tf1_resize_taps(in_w, out_w)
    if not yl.any() and not xl.any():  # integer downsampling: TF reads exactly every k-th sample
        return _decimate(x, y0, x0)
    dev = x.device
    y0_t, y1_t = torch.as_tensor(y0, device=dev), torch.as_tensor(y1, device=dev)
    x0_t, x1_t = torch.as_tensor(x0, device=dev), torch.as_tensor(x1, device=dev)
    yl_t = torch.as_tensor(yl, device=dev, dtype=x.dtype).reshape(-1, 1)
    xl_t = torch.as_tensor(xl, device=dev, dtype=x.dtype)
    top_rows = x.index_select(-2, y0_t)
    bottom_rows = x.index_select(-2, y1_t)
    top_left, top_right = top_rows.index_select(-1, x0_t), top_rows.index_select(-1, x1_t)
    bot_left, bot_right = bottom_rows.index_select(-1, x0_t), bottom_rows.index_select(-1, x1_t)
    top = top_left + (top_right - top_left) * xl_t
    bottom = bot_left + (bot_right - bot_left) * xl_t
    return top + (bottom - top) * yl_t


def _decimate(x: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
    """Pick rows/cols (lerp 0 everywhere); strided slicing when they are evenly spaced from 0."""
    out = []
    for axis, index in ((-2, rows), (-1, cols)):
        step = int(index[1] - index[0]) if index.size > 1 else 1
        if index[0] == 0 and step > 0 and np.array_equal(index, np.arange(index.size) * step):
            out.append(slice(0, int(index[-1]) + 1, step))
        else:
            x = x.index_select(axis, torch.as_tensor(index, device=x.device))
            out.append(slice(None))
    return x[..., out[0], out[1]]


def tf1_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The TF1 bilinear resize along one axis as an (out, in) float64 matrix."""
    lower, upper, lerp = tf1_resize_taps(in_size, out_size)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lower), 1.0 - lerp.astype(np.float64))
    np.add.at(matrix, (rows, upper), lerp.astype(np.float64))
    return matrix


def quadrant_swap(x: torch.Tensor) -> torch.Tensor:
    """The authors' fftshift: swap quadrants by rolling ceil(n/2) on each of the last two axes."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    return torch.roll(x, shifts=(math.ceil(h / 2), math.ceil(w / 2)), dims=(-2, -1))


def power_spectrum_fft(u: torch.Tensor, gamma: float) -> torch.Tensor:
    """(|FFT2(u)| + 1e-8) ** gamma per channel, always in float32."""
    spectrum = torch.fft.fft2(u.float())
    return torch.pow(torch.abs(spectrum) + 1e-8, gamma)


def fold_factor(in_size: int, out_size: int) -> int | None:
    """k when the swap-then-TF1-resize of an in_size spectrum to out_size reads exactly the
    frequencies that are multiples of k, in swapped order (in = k * out, ceil(in/2) a multiple
    of k): then it equals the swapped spectrum of the signal folded k times. Else None."""
    if out_size < 1 or in_size % out_size:
        return None
    k = in_size // out_size
    if k < 2 or math.ceil(in_size / 2) % k:
        return None
    lower, _, lerp = tf1_resize_taps(in_size, out_size)
    if lerp.any() or not np.array_equal(lower, np.arange(out_size) * k):
        return None
    return k


def folded_power_spectrum(u: torch.Tensor, gamma: float, out_size: tuple[int, int]
                          ) -> torch.Tensor | None:
    """The quadrant-swapped, TF1-resized power spectrum computed on the folded signal.

    For in = k * out (and the swap a multiple of k), DFT_in(u)[k m] = DFT_out(sum_j u[n + j out])
    [m]: folding the image k times per axis and taking an out-size FFT gives exactly the
    frequencies the resize reads, with 1/k^2 of the FFT and power work. The swap of the
    decimated spectrum is the quadrant swap at the out size. None when the sizes do not allow it.
    """
    (out_h, out_w) = out_size
    kh = fold_factor(int(u.shape[-2]), out_h)
    kw = fold_factor(int(u.shape[-1]), out_w)
    if kh is None or kw is None:
        return None
    rows = _fold_axis(u.float(), -2, kh, out_h)  # slice sums: views, any memory format
    folded = _fold_axis(rows, -1, kw, out_w)
    index = _swapped_full_index_tensor(out_h, out_w, u.device)
    if folded.dim() == 4 and folded.is_contiguous(memory_format=torch.channels_last):
        # channels-last stays channels-last: (N, h, w, C) transforms over axes 1, 2
        half = torch.fft.rfft2(folded.permute(0, 2, 3, 1), dim=(1, 2))
        power = torch.pow(half.abs() + 1e-8, gamma)
        full = power.flatten(1, 2).index_select(1, index).unflatten(1, (out_h, out_w))
        return full.permute(0, 3, 1, 2)
    half = torch.fft.rfft2(folded.contiguous())  # real input: the other half is its mirror
    power = torch.pow(half.abs() + 1e-8, gamma)
    return power.flatten(-2).index_select(-1, index).unflatten(-1, (out_h, out_w))


def _fold_axis(x: torch.Tensor, axis: int, k: int, size: int) -> torch.Tensor:
    """sum over j < k of x's slices [j * size, (j + 1) * size) along ``axis``."""
    total = x.narrow(axis, 0, size) + x.narrow(axis, size, size)
    for j in range(2, k):
        total += x.narrow(axis, j * size, size)
    return total


_INDEX_TENSORS: dict[tuple[int, int, str], torch.Tensor] = {}


def _swapped_full_index_tensor(height: int, width: int, device: torch.device) -> torch.Tensor:
    key = (height, width, str(device))
    index = _INDEX_TENSORS.get(key)
    if index is None:
        # a normal tensor even when first asked for under inference_mode: the cache outlives
        # it, and autograd (training after an inference or a validation) must be able to save it
        with torch.inference_mode(False):
            index = torch.as_tensor(_swapped_full_index(height, width), device=device)
        _INDEX_TENSORS[key] = index
    return index


@functools.lru_cache(maxsize=16)
def _swapped_full_index(height: int, width: int) -> np.ndarray:
    """Flat indices into an rfft2 half spectrum (height, width//2+1) that give the full,
    quadrant-swapped spectrum (height, width): |F[m, n]| = |F[-m mod h, -n mod w]|."""
    half_w = width // 2 + 1
    rows = (np.arange(height) - math.ceil(height / 2)) % height  # swapped row r: frequency
    cols = (np.arange(width) - math.ceil(width / 2)) % width
    m, n = np.meshgrid(rows, cols, indexing="ij")
    mirrored = n >= half_w
    m = np.where(mirrored, (-m) % height, m)
    n = np.where(mirrored, (-n) % width, n)
    return (m * half_w + n).reshape(-1).astype(np.int64)


class MatmulSpectrum(nn.Module):
    """|DFT| as real matrix multiplies (for runtimes without a DFT op), quadrant-swapped.

    For a fixed input size (h, w): F = W_h u W_w^T with W = cos - i sin; the quadrant swap is
    folded into the rows of W, and with `resize_to` only the spectrum rows/columns that the
    TF1 resize reads are computed, then the resize is applied as two small matrices.
    """

    cos_h: torch.Tensor
    sin_h: torch.Tensor
    cos_w: torch.Tensor
    sin_w: torch.Tensor
    resize_h: torch.Tensor
    resize_w: torch.Tensor

    def __init__(self, height: int, width: int, gamma: float, resize_to: int | None) -> None:
        super().__init__()
        self.height, self.width, self.gamma = height, width, gamma
        cos_h, sin_h, resize_h = _dft_rows(height, resize_to)
        cos_w, sin_w, resize_w = _dft_rows(width, resize_to)
        self.register_buffer("cos_h", torch.from_numpy(cos_h), persistent=False)
        self.register_buffer("sin_h", torch.from_numpy(sin_h), persistent=False)
        self.register_buffer("cos_w", torch.from_numpy(cos_w), persistent=False)
        self.register_buffer("sin_w", torch.from_numpy(sin_w), persistent=False)
        self.register_buffer("resize_h", torch.from_numpy(resize_h), persistent=False)
        self.register_buffer("resize_w", torch.from_numpy(resize_w), persistent=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) real -> (N, C, out_h, out_w) shifted, resized power spectrum (float32)."""
        u = u.float()
        a = torch.matmul(self.cos_h, u)
        b = torch.matmul(self.sin_h, u)
        real = torch.matmul(a, self.cos_w.T) - torch.matmul(b, self.sin_w.T)
        imag = torch.matmul(a, self.sin_w.T) + torch.matmul(b, self.cos_w.T)
        power = torch.pow(torch.sqrt(real * real + imag * imag) + 1e-8, self.gamma)
        return torch.matmul(torch.matmul(self.resize_h, power), self.resize_w.T)


def _dft_rows(n: int, resize_to: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cos/sin DFT rows of the quadrant-swapped spectrum that are needed, and the resize matrix."""
    shift = math.ceil(n / 2)
    freq_of_row = (np.arange(n) - shift) % n  # row r of the swapped spectrum is frequency k
    resize = np.eye(n) if resize_to is None or resize_to == n else tf1_resize_matrix(n, resize_to)
    needed = np.flatnonzero(np.abs(resize).sum(axis=0) > 0)
    k = freq_of_row[needed].astype(np.float64)
    angle = 2.0 * np.pi * np.outer(k, np.arange(n)) / n
    cos = np.cos(angle).astype(np.float32)
    sin = np.sin(angle).astype(np.float32)
    return cos, sin, resize[:, needed].astype(np.float32)
