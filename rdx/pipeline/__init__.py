"""A run's stages: the artifact cache, the fixed models and trajectories, training, evaluation."""
