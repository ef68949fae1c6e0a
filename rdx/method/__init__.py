"""The paper's method as pure tensor functions: reward dropout and the off-policy objective.

Nothing in this package imports the rest of rdx; rdx.config reads the dropout modes from
here, so this file stays free of torch.
"""

DROPOUT_MODES = ("none", "quantile", "random", "threshold")
