"""SR quality of an emulated run against the emulator's ground truth (the demo's quality line).

Scored exactly as `livesim evaluate` (the assessment) scores: `inference.assessment.score_interior`
(the interior, `SCORING_BORDER_PX` raw pixels off every edge, through the DFCAN paper's protocol:
percentile normalisation, registration, least-squares linear fit onto the ground truth, then
NRMSE / MS-SSIM / Pearson on the SR grid), wide-field upsampled 2x by the same cubic
interpolation. So the demo's summary and the assessment matrix rank methods the same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from acquisition import run_file


@dataclass(frozen=True)
class QualityRow:
    """Scores of one image against the ground truth."""

    label: str
    nrmse: float
    ms_ssim: float
    pearson: float

    def line(self) -> str:
        """One line of the demo's quality report."""
        return (f"  {self.label:24s} NRMSE {self.nrmse:.4f}  MS-SSIM {self.ms_ssim:.3f}  "
                f"Pearson {self.pearson:.3f}")


def methods_per_time_point(path: Path, channel: int = 0) -> dict[str, int]:
    """How many SR images of ``channel`` each method made (`/qc/method`: with ``auto`` the
    per-set choice between the network and Wiener SIM); empty when the file records none."""
    with h5py.File(path, "r") as h5:
        qc = h5.get(run_file.QC_GROUP)
        if qc is None or run_file.QC_METHOD not in qc:
            return {}
        recorded = qc[run_file.QC_METHOD][:, channel]
    names = (value.decode() if isinstance(value, bytes) else str(value) for value in recorded)
    return dict(sorted(Counter(name for name in names if name).items()))


def score_against_ground_truth(path: Path, channel: int = 0) -> list[QualityRow]:
    """The last recorded SR frame (labelled with the method that made it), Wiener SIM of the
    same raw set (when another method made it) and the upsampled wide-field, all vs the
    emulator's ground truth.

    Valid for runs of a static emulated sample (the demo holds it still). Empty when the file
    has no SR frame or was not emulated.
    """
    from inference.assessment import SCORING_BORDER_PX, score_interior, upsample_widefield
    from sim_emulator.microscope import EmulatorConfig, Microscope

    with h5py.File(path, "r") as h5:
        meta = run_file.read_metadata(h5)
        if run_file.SR_GROUP not in h5 or not len(h5[run_file.SR_GROUP]) or "emulator" not in meta:
            return []
        name = next(iter(h5[run_file.SR_GROUP]))
        sr_all = run_file.read_sr(h5, name, channel=channel)
        written = np.flatnonzero(np.isfinite(sr_all[:, 0, 0]))
        if not len(written):
            return []
        t = int(written[-1])
        sr = sr_all[t].astype(np.float32)
        wf = h5[run_file.WIDEFIELD][t, channel].astype(np.float32)
        raw = h5[run_file.RAW][t, channel]
        calibration = h5.get(run_file.CALIBRATION_GROUP)
        offset_adu = None if calibration is None or "offset_adu" not in calibration else (
            np.asarray(calibration["offset_adu"][()], np.float32))
        electrons_per_adu = None if calibration is None or (
            "electrons_per_adu" not in calibration) else calibration["electrons_per_adu"][()]
        qc = h5.get(run_file.QC_GROUP)
        method = name  # the dataset is named after the model ("auto" for the per-set choice)
        if qc is not None and run_file.QC_METHOD in qc:
            method = qc[run_file.QC_METHOD][t, channel].decode() or name
    config = EmulatorConfig.model_validate(meta["emulator"])
    laser_nm = float(meta["protocol"]["channels"][channel]["laser_nm"])
    truth = Microscope(config).ground_truth(0.0, laser_nm).sr
    factor = truth.shape[0] // wf.shape[0]
    wf_up = upsample_widefield(wf, factor)
    label = name if method == name else f"{name} ({method}, t={t})"
    images = [(label, sr)]
    if method != "wiener" and raw.shape[0] == 9 and offset_adu is not None:
        images.append(("wiener (same raw set)", _wiener(raw, offset_adu, electrons_per_adu,
                                                        config)))
    images.append(("wide-field (upsampled)", wf_up))
    rows = []
    for label, image in images:
        scores = score_interior(image, truth, SCORING_BORDER_PX)
        rows.append(QualityRow(label, float(scores.nrmse), float(scores.ms_ssim),
                               float(scores.pearson)))
    return rows


def _wiener(raw: np.ndarray, offset_adu: np.ndarray, electrons_per_adu: object,
            config: object) -> np.ndarray:
    """Wiener SIM of one raw set with the run's camera calibration and the emulator's optics,
    as the live worker would compute it."""
    from inference.reconstruction import make_reconstructor
    from inference.worker import PhotonCalibration

    per_count = float(np.median(np.asarray(electrons_per_adu, np.float32)))
    gain = np.full(offset_adu.shape, 1.0 / per_count, np.float32)
    optics = config.optics  # type: ignore[attr-defined]
    wiener = make_reconstructor("wiener", mode="sim",
                                calibration=PhotonCalibration(offset_adu, gain),
                                pixel_size_nm=optics.pixel_size_nm, na=optics.na,
                                emission_nm=optics.emission_nm)
    return wiener.reconstruct(np.asarray(raw)).image.astype(np.float32)
