"""Runs -> tidy CSV (collect) -> paper tables (tables) and figures (figures); docs/design.md §8."""
