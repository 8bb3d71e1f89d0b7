"""Exercises of notebook 04 (registered on import)."""
