"""Tests of the benchmark scripts' pure helpers (nothing here needs root or a network)."""
