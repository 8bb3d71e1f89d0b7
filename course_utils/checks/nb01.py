"""Exercises of notebook 01 (registered on import)."""
