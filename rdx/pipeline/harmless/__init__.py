"""The harmlessness experiment (paper §7.5): PPO with reward dropout, and DPO."""
