"""Clausework's Python client: the command-line tool `contracts` (also `python -m clausework`)."""
