"""
Randomness, injected.

The core draws connection IDs, path challenges and skipped sequence numbers from an :class:`Entropy`
handed in by its owner: the Twisted glue passes
:class:`kwik_twisted.glue.entropy.SystemEntropy` (the OS's CSPRNG), tests pass
:class:`SeededEntropy` so that a run is reproducible bit for bit.
"""

from __future__ import annotations

import hashlib
from typing import Protocol


class Entropy(Protocol):
    """A source of random bytes."""

    def random_bytes(self, n: int) -> bytes:
        """Return ``n`` random bytes."""


class SeededEntropy:
    """
    A deterministic generator for tests and simulations (SHA-256 in counter mode).

    Not for production: anybody who knows the seed knows every value.
    """

    __slots__ = ("_key", "_counter", "_pool")

    def __init__(self, seed: int | bytes) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(16, "big", signed=True)
        self._key = hashlib.sha256(b"kwik seeded entropy" + seed).digest()
        self._counter = 0
        self._pool = b""

    def random_bytes(self, n: int) -> bytes:
        """Return the next ``n`` bytes of the stream."""
        while len(self._pool) < n:
            block = hashlib.sha256(self._key + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            self._pool += block
        out, self._pool = self._pool[:n], self._pool[n:]
        return out


def random_below(entropy: Entropy, bound: int) -> int:
    """A uniform integer in ``[0, bound)`` (bound < 2**32), drawn from ``entropy``."""
    return int.from_bytes(entropy.random_bytes(8), "big") % bound
