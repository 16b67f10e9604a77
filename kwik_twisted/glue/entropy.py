"""The operating system's CSPRNG as an :class:`~kwik_twisted.core.entropy.Entropy`."""

from __future__ import annotations

import os


class SystemEntropy:
    """Random bytes from ``os.urandom``: what real connections use."""

    __slots__ = ()

    def random_bytes(self, n: int) -> bytes:
        """Return ``n`` bytes from the OS's CSPRNG."""
        return os.urandom(n)
