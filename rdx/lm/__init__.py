"""Language models: construction, tokenizers, token rows (Sequences), sampling, pretraining."""
