"""Named emulator configurations that reproduce real instruments' data.

``tirf-microtubules`` matches the real linear TIRF-SIM microtubule stack the project
measures against (`../shared/dlsr_assets/rDL-SIM_Microtubules_MT_raw9.mrc`): 256 x 256 px of
62.6 nm, detection NA 1.49 at ~525 nm, a 180 nm pattern (488 nm at excitation NA 1.35),
per-orientation modulation, a dim, hazy field. The side-by-side figures (same measurement
code, `calibration.stack_statistics`) are in docs/emulator.md.
"""

from __future__ import annotations

from sim_emulator.microscope import EmulatorConfig

PRESETS: dict[str, dict[str, object]] = {
    "tirf-microtubules": {
        "structure": "microtubules",
        "size_px": 256,
        "photon_count_e": 10.5,
        "optics": {
            "na": 1.49,
            "excitation_nm": 488.0,
            "emission_nm": 525.0,
            "pixel_size_nm": 62.6,
            "otf_attenuation": 0.8,
            "background_fraction": 2.0,
        },
        "patterns": {
            "mode": "sim",
            "period_nm": 180.0,
            "orientation_modulations": (0.94, 0.82, 0.87),
        },
    },
}


def preset_names() -> list[str]:
    """Names of the presets."""
    return sorted(PRESETS)


def preset_config(name: str, **overrides: object) -> EmulatorConfig:
    """The emulator configuration of a preset; ``overrides`` replace top-level fields."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not one of {', '.join(preset_names())}")
    return EmulatorConfig.model_validate({**PRESETS[name], **overrides})
