"""Exercises of notebook 02 (registered on import)."""
