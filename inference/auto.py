"""``--model auto``: per raw set, the network where it is trustworthy, Wiener SIM elsewhere.

For every raw set the reconstructor observes the data (photon count, background, pattern
period/orientations/modulation, the rig's stated optics) and checks them against the network's
recorded training domain (:mod:`inference.domain`). The network is used only when the set is
inside that domain and, when the model card names one, at or below the photon count where the
network beats Wiener SIM in the assessment (above it Wiener is both faithful and better).
Otherwise the set is reconstructed with Wiener SIM. Every result says what was used and why:
``model_name`` is the method actually used and ``flags`` carries ``auto:<method>: <reason>``,
which the worker sends and the run file records per time point.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from acquisition import run_file
from calibration.sim_parameters import SimParameters, estimate_sim_parameters
from inference.domain import check_domain, observe
from inference.preprocessing import ElectronSet
from inference.reconstruction import ModelReconstructor, Reconstructor, SrResult

log = logging.getLogger(__name__)


class AutoReconstructor(Reconstructor):
    """Network inside its domain (and where it beats Wiener), Wiener SIM otherwise."""

    model_name = "auto"

    def __init__(
        self,
        network: ModelReconstructor,
        wiener: Reconstructor,
        na: float,
        emission_nm: float,
        pixel_size_nm: float,
        pattern_every_sets: int = 10,
    ) -> None:
        if network.mode != "sim":
            raise ValueError(
                f"--model auto needs a SIM network (9 raw frames), {network.model_name!r} is "
                f"{network.mode!r}"
            )
        if pattern_every_sets < 1:
            raise ValueError(f"pattern_every_sets={pattern_every_sets} must be >= 1")
        self.network = network
        self.wiener = wiener
        self.na = na
        self.emission_nm = emission_nm
        self.pixel_size_nm = pixel_size_nm
        self.pattern_every_sets = pattern_every_sets
        self.scale = network.scale
        self.mode = network.mode
        self.model_sha256 = network.model_sha256
        self.domain = network.model.info.domain
        self._parameters: SimParameters | None = None
        self._sets_seen = 0

    @property
    def parameters(self) -> SimParameters | None:
        """The pattern parameters of the latest estimate (None before, or when it failed)."""
        return self._parameters

    def choose(self, raw: np.ndarray, converted: ElectronSet | None = None) -> tuple[str, str]:
        """('network' | 'wiener', reason) for one raw set (P, Y, X) in camera units;
        ``converted``: the set in electrons (`Preprocessor.electrons`), made here if not given."""
        converted = converted or self.network.preprocessor.electrons(raw)
        frames_e = np.asarray(converted.frames_e, dtype=np.float32)
        photon_count_e = converted.photon_count_e
        if self._parameters is None or self._sets_seen % self.pattern_every_sets == 0:
            try:
                self._parameters = estimate_sim_parameters(
                    frames_e, self.pixel_size_nm, offset_adu=0.0
                )
            except ValueError as exc:
                log.warning("auto: pattern estimate failed (%s); using Wiener SIM", exc)
                self._parameters = None
        self._sets_seen += 1
        observation = observe(
            frames_e,
            na=self.na,
            emission_nm=self.emission_nm,
            pixel_size_nm=self.pixel_size_nm,
            parameters=self._parameters,
            photon_count_e=photon_count_e,
        )
        if self.domain is None:
            return "wiener", f"{self.network.model_name} records no training domain"
        if photon_count_e is None:
            return "wiener", "no photon calibration: the photon count cannot be checked"
        if self._parameters is None:
            return "wiener", "pattern parameters could not be estimated"
        problems = check_domain(self.domain, observation)
        if problems:
            return "wiener", "; ".join(problems)
        crossover = self.domain.better_than_wiener_below_e
        if crossover is not None and photon_count_e > crossover:
            return "wiener", (
                f"photon count {photon_count_e:.4g} e- above {crossover:g} e-, where Wiener SIM "
                f"is as good as {self.network.model_name} (assessment)"
            )
        return "network", f"inside the training domain of {self.network.model_name}"

    def reconstruct_batch(self, raws: Sequence[np.ndarray]) -> list[SrResult]:
        results = []
        for raw in raws:
            converted = self.network.preprocessor.electrons(raw)  # once: check and network
            method, reason = self.choose(raw, converted)
            if method == "network":
                result = self.network.reconstruct_batch([raw], [converted])[0]
            else:
                result = self.wiener.reconstruct(raw)
            choice = f"{run_file.AUTO_FLAG_PREFIX}{result.model_name}: {reason}"
            result.flags = [*result.flags, choice]
            if method == "wiener":
                log.info("auto: Wiener SIM for this set: %s", reason)
            results.append(result)
        return results
