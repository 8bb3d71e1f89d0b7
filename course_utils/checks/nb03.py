"""Exercises of notebook 03 (registered on import)."""
