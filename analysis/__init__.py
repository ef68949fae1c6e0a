"""Runs -> tidy CSV (collect) -> paper tables (tables) and figures (figures); DESIGN §8."""
