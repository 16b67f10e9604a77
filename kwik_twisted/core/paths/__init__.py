"""Paths: per-path state, path management and schedulers."""
