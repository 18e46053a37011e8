"""IMC-SR (Wang et al. 2021): instant three-colour SR by separating one SR channel into the
structures it contains. Network in `inference.models.imcsr`; emulator data in `mixtures`;
loss, training, held-out assessment, metrics, the live separator and its benchmark here.
"""

# The structures of the default mixture and of the bundled model's outputs, in output order
# (Wang et al. 2021's example trio: a filament, a tubular network and filled puncta). Defined by
# the run file's /imc layout, so the recorder and the GUI label /imc without importing inference.
from acquisition.run_file import IMC_DEFAULT_CHANNEL_NAMES as DEFAULT_STRUCTURES

__all__ = ["DEFAULT_STRUCTURES"]
