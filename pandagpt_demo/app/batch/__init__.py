"""Offline runs over many files in OpenAI's batch format (cli.py)."""
