"""IMC-SR quality measures: per-channel fidelity, false-positive signal and time-lapse flicker.

Definitions (used in docs/imc-sr.md and the model card):
- fidelity: NRMSE, SSIM and Pearson per channel against that structure's ground truth
  (inference.evaluation; SSIM on images in [0, 1]).
- false-positive fraction of a channel: the share of its predicted signal (intensity above the
  ground truth's flat background, its minimum) that lies where the structure is absent (ground
  truth within `dark_fraction` = 2 % of its 99.9th percentile above that background). Signal
  there belongs to another structure or to nothing.
- cross-talk fraction of a channel k (the false-positive measure of the summation-loss
  comparison): the predicted signal of k (above its ground truth's background) inside pixels
  where k is absent (as above) but the input has signal (noiseless mixture above its background
  by more than `SIGNAL_FRACTION` = 10 % of its 99.9th percentile, i.e. another structure is
  there), as a fraction of channel k's total predicted signal. It counts intensity put into the
  wrong channel, not noise or blur in empty regions.
- hallucination fraction (the false positive the summation term constrains directly, since
  the channels must add up to the input): the predicted signal summed over channels (each
  channel's intensity above its ground truth's flat background) inside background pixels of
  the input (noiseless mixture below `BACKGROUND_FACTOR` = 2 x its flat background, the sum of
  the labels' diffuse backgrounds: no structure there), as a fraction of the total predicted
  signal. It counts signal invented where the input has none.
- flicker: mean over "static signal" pixels of sum_c |y_t,c - y_{t-1},c|, divided by the mean
  mixture there. Static signal pixels have noiseless mixture > `signal_level` (0.1) in both
  frames and change by less than `static_level` (0.01) between them, so any change of the
  output there is flicker, not motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.evaluation import nrmse, pearson, ssim

DARK_FRACTION = 0.02
SIGNAL_FRACTION = 0.1
BACKGROUND_FACTOR = 2.0
SIGNAL_LEVEL = 0.1
STATIC_LEVEL = 0.01


@dataclass
class ChannelScores:
    """Per-channel fidelity and false-positive fraction, each a list over channels."""

    nrmse: list[float]
    ssim: list[float]
    pearson: list[float]
    false_positive: list[float]


def background_level(ground_truth: np.ndarray) -> np.ndarray:
    """Each channel's flat background: its ground truth's minimum; (..., C, 1, 1)."""
    return np.min(ground_truth, axis=(-2, -1), keepdims=True)


def dark_mask(ground_truth: np.ndarray, dark_fraction: float = DARK_FRACTION) -> np.ndarray:
    """Pixels where a channel's structure is absent (ground truth within `dark_fraction` of
    the range above its background); ground_truth (..., C, Y, X)."""
    floor = background_level(ground_truth)
    level = np.percentile(ground_truth, 99.9, axis=(-2, -1), keepdims=True) - floor
    return ground_truth - floor < dark_fraction * level


def predicted_signal(prediction: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """Prediction above its channel's label background (float64, >= 0); (..., C, Y, X)."""
    return np.clip(prediction.astype(np.float64) - background_level(ground_truth), 0.0, None)


def _check_mixture_shapes(
    prediction: np.ndarray, ground_truth: np.ndarray, clean_mixture: np.ndarray
) -> None:
    """prediction/ground_truth (..., C, Y, X) and clean_mixture (..., Y, X) must belong together."""
    if prediction.shape != ground_truth.shape or clean_mixture.shape != prediction.shape[:-3] + (
        prediction.shape[-2:]
    ):
        raise ValueError(
            f"prediction {prediction.shape}, ground truth {ground_truth.shape} and mixture "
            f"{clean_mixture.shape} do not match"
        )


def false_positive_fraction(
    prediction: np.ndarray, ground_truth: np.ndarray, dark_fraction: float = DARK_FRACTION
) -> np.ndarray:
    """Share of each channel's predicted signal (intensity above the ground truth's background)
    lying where its structure is absent; (..., C)."""
    if prediction.shape != ground_truth.shape:
        raise ValueError(f"prediction {prediction.shape} vs ground truth {ground_truth.shape}")
    mask = dark_mask(ground_truth, dark_fraction)
    signal = predicted_signal(prediction, ground_truth)
    inside = (signal * mask).sum(axis=(-2, -1))
    return inside / np.maximum(signal.sum(axis=(-2, -1)), 1e-12)


def cross_talk_fraction(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    clean_mixture: np.ndarray,
    dark_fraction: float = DARK_FRACTION,
    signal_fraction: float = SIGNAL_FRACTION,
) -> np.ndarray:
    """Share of each channel's predicted signal lying where its structure is absent but another
    one is present; prediction/ground_truth (..., C, Y, X), clean_mixture (..., Y, X) -> (..., C).
    """
    _check_mixture_shapes(prediction, ground_truth, clean_mixture)
    floor = np.min(clean_mixture, axis=(-2, -1), keepdims=True)
    level = np.percentile(clean_mixture, 99.9, axis=(-2, -1), keepdims=True) - floor
    occupied = (clean_mixture - floor > signal_fraction * level)[..., None, :, :]
    mask = dark_mask(ground_truth, dark_fraction) & occupied
    signal = predicted_signal(prediction, ground_truth)
    inside = (signal * mask).sum(axis=(-2, -1))
    return inside / np.maximum(signal.sum(axis=(-2, -1)), 1e-12)


def hallucination_fraction(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    clean_mixture: np.ndarray,
    background_factor: float = BACKGROUND_FACTOR,
) -> np.ndarray:
    """Share of the predicted signal (all channels) lying where the input is background
    (noiseless mixture < `background_factor` x its minimum); prediction/ground_truth
    (..., C, Y, X), clean_mixture (..., Y, X) -> (...)."""
    _check_mixture_shapes(prediction, ground_truth, clean_mixture)
    floor = np.min(clean_mixture, axis=(-2, -1), keepdims=True)
    background = clean_mixture < background_factor * floor
    signal = predicted_signal(prediction, ground_truth)
    total = signal.sum(axis=-3)
    inside = (total * background).sum(axis=(-2, -1))
    return inside / np.maximum(total.sum(axis=(-2, -1)), 1e-12)


def channel_scores(prediction: np.ndarray, ground_truth: np.ndarray) -> ChannelScores:
    """Scores per channel averaged over fields; prediction/ground_truth (N, C, Y, X)."""
    if prediction.ndim != 4 or prediction.shape != ground_truth.shape:
        raise ValueError(
            f"expected matching (N, C, Y, X), got {prediction.shape} and {ground_truth.shape}"
        )
    return ChannelScores(
        nrmse=[float(v) for v in nrmse(prediction, ground_truth).mean(axis=0)],
        ssim=[float(v) for v in ssim(prediction, ground_truth).mean(axis=0)],
        pearson=[float(v) for v in pearson(prediction, ground_truth).mean(axis=0)],
        false_positive=[
            float(v) for v in false_positive_fraction(prediction, ground_truth).mean(axis=0)
        ],
    )


def static_signal_mask(
    mixture: np.ndarray, signal_level: float = SIGNAL_LEVEL, static_level: float = STATIC_LEVEL
) -> np.ndarray:
    """(T-1, Y, X) pixels with signal in frames t-1 and t that did not move; mixture (T, Y, X)."""
    previous, current = mixture[:-1], mixture[1:]
    signal = (previous > signal_level) & (current > signal_level)
    return signal & (np.abs(current - previous) < static_level)


def flicker(prediction: np.ndarray, clean_mixture: np.ndarray) -> float:
    """Frame-to-frame output change on static signal pixels, relative to the mixture there.

    prediction (T, C, Y, X) for consecutive frames; clean_mixture (T, Y, X) noiseless.
    """
    if prediction.ndim != 4 or prediction.shape[0] != clean_mixture.shape[0]:
        raise ValueError(
            f"prediction (T, C, Y, X) {prediction.shape} and mixture (T, Y, X) "
            f"{clean_mixture.shape} must cover the same frames"
        )
    if prediction.shape[0] < 2:
        raise ValueError("flicker needs at least two frames")
    mask = static_signal_mask(clean_mixture)
    if not mask.any():
        raise ValueError("no static signal pixels: flicker is undefined for this time-lapse")
    change = np.abs(np.diff(prediction.astype(np.float64), axis=0)).sum(axis=1)
    return float(change[mask].mean() / clean_mixture[1:][mask].mean())
