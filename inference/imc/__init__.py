"""IMC-SR (Wang et al. 2021): instant three-colour SR by separating one SR channel into the
structures it contains. Network in `inference.models.imcsr`; emulator data in `mixtures`;
loss, training, held-out assessment, metrics, the live separator and its benchmark here.
"""
