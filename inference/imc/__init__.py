"""IMC-SR (Wang et al. 2021): instant three-colour SR by separating one SR channel into the
structures it contains. Network in `inference.models.imcsr`; emulator data in `mixtures`;
loss, training, held-out assessment, metrics, the live separator and its benchmark here.
"""

# The structures of the default mixture and of the bundled model's outputs, in output order:
# the example trio (Wang et al. 2021), a filament, a tubular network and filled puncta.
# Session 3 replaced CCPs, microtubules, F-actin: the emulator's two filament types differ in
# little but brightness, so a small CPU model swapped them (microtubule Pearson 0.74).
# Kept here, free of heavy imports, so the GUI can label its composite before a model reports.
DEFAULT_STRUCTURES: tuple[str, str, str] = ("microtubules", "er", "lysosomes")
