"""Off-policy reward dropout (paper Eq. 7, Algorithm 1): π learns from β's stored samples."""
