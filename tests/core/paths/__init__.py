"""Tests for kwik_twisted.core.paths: path metrics, schedulers and congestion detection."""
