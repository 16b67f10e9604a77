"""Replays of the atheris harnesses' checked-in corpus (``fuzz/``)."""
