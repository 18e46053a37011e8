"""The live IMC-SR separator the worker calls on each SR frame.

Single-frame model: `separate(sr)` -> (C, sY, sX) immediately. Temporal model: `push(sr)`
returns the separation of the *previous* frame (a three-frame window t-1, t, t+1 needs the next
frame: one frame of latency) and `flush()` separates the last frame at the end of a run, with
the edge frame repeated. Input is min-max normalised to [0, 1] (per frame, or jointly over the
window) as in training; outputs are scaled back so the channels add up to the input's units.

Domain check, two tests on each separation, limits measured per model
(`inference.imc.domain_limit`) and stored in its file:
- the channels must explain the input: `unexplained_fraction` is the share of the (normalised)
  input's variance that their sum leaves as residual, both smoothed by a Gaussian of
  `UNEXPLAINED_SMOOTHING_PX` SR pixels first (pixel noise of a low-photon Wiener reconstruction
  is no structure for the channels to explain); flagged above the file's
  `imc_unexplained_limit` (files without it: `DEFAULT_UNEXPLAINED_LIMIT`);
- the input must be a mixture like the trained ones: each channel's share of the separated
  signal (`channel_shares`) must lie in the file's `imc_channel_shares` range (no such test for
  files without it). A structure alone, or one that the model puts into a single channel,
  moves the shares out of range.
A flagged frame gets `last_reason` and `ImcStream.out_of_domain` per time point (the worker
sends it as the IMC result's `imc_out_of_domain` flag, the session records an
`imc_out_of_domain` event and warns): the input is not a mixture of the structures the model
was trained on. The channels are still returned.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, zoom

from inference.model_file import LoadedModel, ModelFileError, load_model
from inference.models.imcsr import ImcsrOptions  # (importing it registers 'imcsr')

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "imcsr"
_EPSILON = 1e-7
# for model files without a measured `imc_unexplained_limit` (docs/imc-sr.md, Domain check)
DEFAULT_UNEXPLAINED_LIMIT = 0.05
UNEXPLAINED_SMOOTHING_PX = 1.0  # Gaussian sigma, SR pixels


def unexplained_fraction(
    image: np.ndarray, channels: np.ndarray, sigma_px: float = UNEXPLAINED_SMOOTHING_PX
) -> float:
    """Residual energy of the input not explained by the sum of the channels, as a fraction
    of the input's variance, after smoothing both by a Gaussian of `sigma_px` (G; 0: none):
    sum(G(x - sum_c y_c)^2) / sum((G(x) - mean G(x))^2)."""
    x = np.asarray(image, dtype=np.float32)  # filtered in float32, summed in float64
    residual = x - channels.sum(axis=0, dtype=np.float32)
    if sigma_px > 0:
        residual, x = gaussian_filter(residual, sigma_px), gaussian_filter(x, sigma_px)
    r = residual.astype(np.float64).ravel()
    centred = x.astype(np.float64).ravel()
    centred -= centred.mean()
    # no `@` or einsum: a BLAS dot product wakes the BLAS thread pool, whose threads then spin
    # on the cores the next torch forward needs (IMC-SR at 512 px: 190 against 120 ms a frame)
    spread = float(np.square(centred).sum())
    return float(np.square(r).sum() / spread) if spread > 0 else 0.0


def widefield_on_sr_grid(widefield: np.ndarray, sr_shape: tuple[int, ...]) -> np.ndarray:
    """The second input of a `widefield_input` model: the set's wide-field image (mean of the
    raw frames, photo-electrons or any linear unit) min-max normalised to [0, 1] and
    interpolated (linear, pixel areas aligned) onto the SR grid of `sr_shape`."""
    image = np.asarray(widefield, dtype=np.float32)
    if image.ndim != 2 or not np.isfinite(image).all():
        raise ValueError(f"wide-field image must be finite (Y, X), got shape {image.shape}")
    factors = (sr_shape[-2] / image.shape[0], sr_shape[-1] / image.shape[1])
    if factors[0] != factors[1] or factors[0] < 1 or factors[0] != int(factors[0]):
        raise ValueError(f"wide-field {image.shape} is not the SR grid {tuple(sr_shape[-2:])} "
                         "divided by one whole factor")
    low = float(image.min())
    image = (image - low) / (float(image.max()) - low + _EPSILON)
    if factors[0] == 1:
        return image
    return zoom(image, factors[0], order=1, mode="nearest", grid_mode=True).astype(np.float32)


def channel_shares(channels: np.ndarray) -> np.ndarray:
    """Each channel's share of the separated signal: sum(max(y_c, 0)) / sum_c sum(max(y_c, 0))
    (equal shares when the channels are empty)."""
    totals = np.clip(channels.astype(np.float64), 0.0, None).reshape(len(channels), -1).sum(1)
    whole = float(totals.sum())
    return totals / whole if whole > 0 else np.full(len(channels), 1.0 / len(channels))


class ImcSeparator:
    """Separates SR images into structure channels with a bundled or given IMC-SR model."""

    def __init__(
        self, model: str | Path | LoadedModel = DEFAULT_MODEL, device: str = "cpu"
    ) -> None:
        loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device)
        if loaded.info.architecture != "imcsr" or loaded.info.mode != "imc":
            raise ModelFileError(
                f"model {loaded.name!r} is {loaded.info.architecture}/{loaded.info.mode}, "
                "not an IMC-SR model (architecture 'imcsr', mode 'imc')"
            )
        self.model = loaded
        self.device = torch.device(device)
        options = ImcsrOptions.model_validate(loaded.info.options)
        self.input_frames = options.input_frames
        self.widefield_input = options.widefield_input
        self.input_channels = options.input_channels  # what the network takes
        self.channel_names: tuple[str, ...] = tuple(options.channel_names)
        self._window: deque[np.ndarray] = deque(maxlen=3)
        self._received = 0
        self._emitted = 0
        limit = loaded.info.imc_unexplained_limit
        self.unexplained_limit = DEFAULT_UNEXPLAINED_LIMIT if limit is None else limit
        shares = loaded.info.imc_channel_shares
        if shares is not None and len(shares) != len(self.channel_names):
            raise ModelFileError(
                f"model {loaded.name!r}: imc_channel_shares has {len(shares)} ranges for "
                f"{len(self.channel_names)} channels"
            )
        self.share_ranges = None if shares is None else [(r.low, r.high) for r in shares]
        self.last_unexplained = math.nan  # of the latest separation
        self.last_shares = np.full(len(self.channel_names), math.nan)
        self.last_reason: str | None = None  # why the latest input is out of domain, or None

    @property
    def name(self) -> str:
        """Model name (for run metadata)."""
        return self.model.name

    @property
    def sha256(self) -> str:
        """Weights SHA-256 (for run metadata)."""
        return self.model.sha256

    @property
    def temporal(self) -> bool:
        """True for the three-frame model."""
        return self.input_frames == 3

    @property
    def latency_frames(self) -> int:
        """Frames between `push(frame t)` and the result for frame t: 1 temporal, 0 single."""
        return 1 if self.temporal else 0

    def separate(self, sr_image: np.ndarray, widefield: np.ndarray | None = None) -> np.ndarray:
        """One SR image float (sY, sX) -> float32 (C, sY, sX) (single-frame models only);
        `widefield`: the set's wide-field image (camera grid), for `widefield_input` models."""
        if self.temporal:
            raise ValueError(
                f"model {self.name!r} is temporal (3 frames): use push()/flush(), not separate()"
            )
        image = self._checked(sr_image)
        return self._run(image[None], self._context(image, widefield))

    def push(
        self, sr_image: np.ndarray, widefield: np.ndarray | None = None
    ) -> tuple[int, np.ndarray] | None:
        """Add frame t; return (time index, channels) of the frame now separable, or None.

        Single-frame models return frame t itself; temporal models frame t-1 (None for t = 0).
        """
        image = self._checked(sr_image)
        context = self._context(image, widefield)
        index = self._received
        self._received += 1
        if not self.temporal:
            self._emitted += 1
            return index, self._run(image[None], context)
        if self._window and self._window[-1].shape != image.shape:
            raise ValueError(
                f"SR frame {index} has shape {image.shape}, "
                f"the window holds {self._window[-1].shape}"
            )
        self._window.append(image)
        if self._received < 2:
            return None
        frames = list(self._window)
        if len(frames) == 2:  # first frame: repeat it as its own predecessor
            frames = [frames[0], *frames]
        return self._emit(np.stack(frames))

    def flush(self) -> tuple[int, np.ndarray] | None:
        """Separate the last pushed frame (temporal model, end of run); None if nothing waits."""
        if not self.temporal or self._emitted >= self._received:
            return None
        frames = list(self._window)
        last = frames[-1]
        window = [frames[-2] if len(frames) >= 2 else last, last, last]
        return self._emit(np.stack(window))

    def reset(self) -> None:
        """Forget the window (a new run or a gap in the time-lapse)."""
        self._window.clear()
        self._received = 0
        self._emitted = 0

    def _emit(self, window: np.ndarray) -> tuple[int, np.ndarray]:
        index = self._emitted
        self._emitted += 1
        return index, self._run(window)

    def _context(self, image: np.ndarray, widefield: np.ndarray | None) -> np.ndarray | None:
        if not self.widefield_input:
            return None
        if widefield is None:
            raise ValueError(f"model {self.name!r} takes the wide-field image as its second "
                             "input: pass the set's wide-field (widefield=...)")
        return widefield_on_sr_grid(widefield, image.shape)

    def _checked(self, sr_image: np.ndarray) -> np.ndarray:
        image = np.asarray(sr_image, dtype=np.float32)
        if image.ndim != 2 or min(image.shape) < 4:
            raise ValueError(f"IMC-SR needs one SR image (sY, sX), got shape {image.shape}")
        if not np.isfinite(image).all():
            raise ValueError("SR image contains NaN or infinite values")
        return image

    def _run(self, frames: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """frames (F, sY, sX) -> (C, sY, sX) in the input's units; `context`: the wide-field
        on the SR grid, normalised (`widefield_on_sr_grid`), for `widefield_input` models."""
        low = float(frames.min())
        span = float(frames.max()) - low
        normalised = (frames - low) / (span + _EPSILON)
        network_input = normalised if context is None else np.concatenate(
            [normalised, context[None]])
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(network_input[None])).to(self.device)
            y = self.model.module(x)[0].float().cpu().numpy()
        self._check_domain(normalised[len(normalised) // 2], y)
        return np.ascontiguousarray(y * np.float32(span), dtype=np.float32)

    def _check_domain(self, image: np.ndarray, channels: np.ndarray) -> None:
        fraction = unexplained_fraction(image, channels)
        self.last_unexplained = fraction
        self.last_shares = channel_shares(channels)
        problems = []
        if fraction > self.unexplained_limit:
            problems.append(f"the {'/'.join(self.channel_names)} channels leave {fraction:.1%} of "
                            f"the input unexplained (limit {self.unexplained_limit:.1%})")
        for name, share, (low, high) in zip(
            self.channel_names, self.last_shares, self.share_ranges or [], strict=False
        ):
            if not low <= share <= high:
                problems.append(f"the {name} channel holds {share:.0%} of the signal (trained "
                                f"mixtures: {low:.0%}-{high:.0%})")
        was_out = self.last_reason is not None
        self.last_reason = None
        if problems:
            self.last_reason = "; ".join(problems) + (
                ": the input is not a mixture of the structures the model was trained on")
            # a warning when it starts, not one per frame (every flagged frame keeps its reason)
            logger.log(logging.DEBUG if was_out else logging.WARNING,
                       "IMC-SR out of domain: %s", self.last_reason)
        elif was_out:
            logger.info("IMC-SR input back within the trained mixtures")


class ImcStream:
    """An `ImcSeparator` for the worker: feeds SR frames tagged with their time point and
    returns (time_point, channels) pairs as they become available (the temporal model's
    one-frame latency included), so results are sent under the right time point."""

    def __init__(self, separator: ImcSeparator) -> None:
        self.separator = separator
        self.out_of_domain: dict[int, str] = {}  # time point -> reason (taken by the worker)
        self._pending: deque[int] = deque()
        self._shape: tuple[int, ...] | None = None
        self._last: int | None = None

    def process(
        self, time_point: int, sr_image: np.ndarray, widefield: np.ndarray | None = None
    ) -> list[tuple[int, np.ndarray]]:
        """Add the SR frame of `time_point` (and its set's wide-field image, for models that
        take it); return the separations now ready (oldest first).

        A new image shape (ROI change) or a time point that does not follow the last one (a
        skipped SR frame) restarts the window; the frame still waiting is flushed first.
        """
        ready: list[tuple[int, np.ndarray]] = []
        follows = self._last is None or time_point == self._last + 1
        restart = self._shape is not None and (np.shape(sr_image) != self._shape or not follows)
        if restart:
            ready += self.finish()
        self._shape = np.shape(sr_image)
        self._last = time_point
        self._pending.append(time_point)
        out = self.separator.push(sr_image, widefield)
        if out is not None:
            ready.append(self._ready(out[1]))
        return ready

    def _ready(self, channels: np.ndarray) -> tuple[int, np.ndarray]:
        time_point = self._pending.popleft()
        if self.separator.last_reason is not None:
            self.out_of_domain[time_point] = self.separator.last_reason
        return time_point, channels

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """End of run (or restart): separate the frame still waiting, then reset the window."""
        ready: list[tuple[int, np.ndarray]] = []
        out = self.separator.flush()
        if out is not None and self._pending:
            ready.append(self._ready(out[1]))
        self._pending.clear()
        self._shape = None
        self._last = None
        self.separator.reset()
        return ready
