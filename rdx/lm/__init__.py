"""Language models: construction, tokenizers, token rows (Sequences), sampling, pretraining.

This file stays free of torch: rdx.config reads the kernel choices from here.
"""

KERNELS = ("onednn", "torch")  # trainer.kernels: rdx.lm.kernels
