"""The `contracts` command-line client (also `python -m clausework.cli`)."""
