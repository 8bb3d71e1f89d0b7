"""Exercises of notebook 06 (registered on import)."""
