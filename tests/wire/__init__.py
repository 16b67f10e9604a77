"""Tests for :mod:`kwik_twisted.wire`, the Kwik v3 codecs."""
