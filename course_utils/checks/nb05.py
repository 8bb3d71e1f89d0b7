"""Exercises of notebook 05 (registered on import)."""
