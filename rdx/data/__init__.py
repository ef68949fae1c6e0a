"""Corpora with attribute labels: the table of tasks (corpus), their sources (loaders)."""
