"""The paper's method as pure tensor functions: reward dropout and the off-policy objective.

Nothing in this package imports the rest of rdx; rdx.config reads the dropout modes from
here, so this file stays free of torch.
"""

# Batch rules decide per training batch; set rules rank a whole sample set once, before
# training (ReST/RFT's per-prompt selection, RAFT's global top fraction).
BATCH_MODES = ("none", "quantile", "random", "threshold")
SET_MODES = ("prompt_quantile", "global_top")
DROPOUT_MODES = BATCH_MODES + SET_MODES
GAMMA_MODES = ("quantile", "random", "prompt_quantile", "global_top")  # γ means something
PPO_SCORES = ("r_hat", "reward")  # what PPO's dropout thresholds: R + ln π_ref, or R alone
