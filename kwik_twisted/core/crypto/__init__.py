"""
Kwik's cryptography: the TLS 1.3 handshake and AEAD packet protection.

:mod:`.handshake` runs TLS 1.3 over memory BIOs and exports packet keys;
:mod:`.protection` seals and opens packets with AES-128-GCM.
"""

from .handshake import ALPN, TlsConfig, TlsSession, make_context
from .protection import (
    INITIAL_SALT,
    PacketProtection,
    derive_protection,
    initial_protections,
)

__all__ = [
    "ALPN",
    "INITIAL_SALT",
    "PacketProtection",
    "TlsConfig",
    "TlsSession",
    "derive_protection",
    "initial_protections",
    "make_context",
]
