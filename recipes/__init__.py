"""Runnable recipes: `python -m recipes.<name>`; see each module."""
