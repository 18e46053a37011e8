"""Networks: DFCAN, the DFGAN generator and discriminator, the cross-modality U-net baseline,
IMC-SR.

Architectures are looked up by name through `inference.models.registry`.
"""

from __future__ import annotations

from inference.models.cross_modality_unet import CrossModalityUnet, CrossModalityUnetOptions
from inference.models.dfcan import Dfcan, DfcanOptions, dfgan_generator_options
from inference.models.dfgan import DfganDiscriminator, DiscriminatorOptions
from inference.models.imcsr import Imcsr, ImcsrOptions  # registers 'imcsr' on import
from inference.models.registry import (
    ARCHITECTURES,
    build_model,
    register_architecture,
    validate_options,
)


class DfganGeneratorOptions(DfcanOptions):
    """DFCAN options with the DFGAN generator's defaults (5 groups x 10 FCABs, gamma 0.1)."""

    groups: int = 5
    blocks: int = 10
    gamma: float = 0.1


register_architecture("dfcan", DfcanOptions, Dfcan, "DFCAN (Qiao et al. 2021)")
register_architecture("dfgan", DfganGeneratorOptions, Dfcan, "DFGAN generator (Qiao et al. 2021)")
register_architecture(
    "dfgan-discriminator", DiscriminatorOptions, DfganDiscriminator, "DFGAN discriminator"
)
register_architecture(
    "cross-modality-unet",
    CrossModalityUnetOptions,
    CrossModalityUnet,
    "cross-modality U-net GAN generator (Wang et al. 2019)",
)

__all__ = [
    "ARCHITECTURES",
    "CrossModalityUnet",
    "CrossModalityUnetOptions",
    "Dfcan",
    "DfcanOptions",
    "DfganDiscriminator",
    "DfganGeneratorOptions",
    "DiscriminatorOptions",
    "Imcsr",
    "ImcsrOptions",
    "build_model",
    "dfgan_generator_options",
    "register_architecture",
    "validate_options",
]
