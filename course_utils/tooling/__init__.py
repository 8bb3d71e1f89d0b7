"""Maintenance commands behind the Makefile: executing notebooks, the student edition, HTML."""
