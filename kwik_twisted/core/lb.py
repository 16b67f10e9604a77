"""
Connection IDs a load balancer can route: QUIC-LB's unencrypted ("plaintext") mode.

Theory of operation (protocol.rst, "Connection IDs for load balancers"; draft-ietf-quic-load-
balancers-21, sections 2 and 4).  A QUIC-LB connection ID is::

    QUIC-LB Connection ID {
      First Octet {
        Config Rotation (3),          -- 0..6; 0b111 marks an unroutable CID
        CID Len or Random Bits (5),   -- length self-description: CID length - 1
      },
      Server ID (..),                 -- what a CID-routing load balancer routes on
      Server Use / Nonce (..),        -- chosen by the server; at least 4 bytes
    }

The general codec (:func:`encode_cid`, :func:`decode_server_id`, :func:`server_use_of`,
:func:`config_rotation_of`, :func:`self_encoded_length`) handles every CID length QUIC v1 allows
(up to 20 bytes) and reproduces the draft's test vectors (``tests/core/test_lb.py``).  It checks
only the wire limits; the draft's minima for a *configuration* (server ID at least 1 byte, nonce at
least 4) are the configuration's business (Kwik's :class:`~kwik_twisted.config.ConnectionConfig`
checks its own: an empty server ID means "no load balancer in front", nonce at least 4 bytes).

Kwik's use: every server-chosen CID is :data:`~kwik_twisted.wire.CID_LENGTH` (8) bytes, self-
describes its length (first octet ``config_rotation << 5 | 7``), carries ``config.server_id`` (0 to
3 bytes, ``serverId=HEX``) and then the server-use bytes, whose first byte is the **route byte**
at CID offset :func:`ROUTE_OFFSET` ``= 1 + len(server_id)``; the rest is random.  A worker process
(``config.worker_index`` set) issues only CIDs whose route byte is congruent to its index modulo
``config.worker_count``, uniform among those values; the reuseport classic-BPF program returns
``route byte % N`` and so sends every datagram for such a CID to that worker.  A client's first
(random) DCID routes by the same arithmetic, so :func:`owns` judges it the same way.

Sans-I/O: randomness comes from the caller's :class:`~kwik_twisted.core.entropy.Entropy`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..wire import CID_LENGTH
from .entropy import Entropy, random_below

if TYPE_CHECKING:
    from ..config import ConnectionConfig

#: QUIC v1's longest connection ID (RFC 9000, section 17.2).
MAX_CID_LENGTH = 20
#: The config rotation codepoint reserved for unroutable CIDs (draft section 2.2).
UNROUTABLE_ROTATION = 0b111
#: The draft's shortest nonce (server-use bytes count as nonce).
MIN_NONCE_LENGTH = 4
#: The five low bits of the first octet: the self-described length or random bits.
LENGTH_MASK = 0x1F


# --------------------------------------------------------------------------
# The general codec.


def first_octet(
    config_rotation: int, cid_length: int, length_self_encoding: bool, low_bits: int = 0
) -> int:
    """
    The first octet of a ``cid_length``-byte CID: ``config_rotation`` in the top 3 bits, then
    ``cid_length - 1`` (self-encoding) or ``low_bits`` (the caller's random bits).

    :raises ValueError: a rotation outside 0..7, a length outside 1..20, bits beyond 5.
    """
    if not 0 <= config_rotation <= UNROUTABLE_ROTATION:
        raise ValueError(f"config rotation {config_rotation} is not 0..7")
    if not 1 <= cid_length <= MAX_CID_LENGTH:
        raise ValueError(f"a connection ID of {cid_length} bytes (QUIC allows 1..20)")
    if not 0 <= low_bits <= LENGTH_MASK:
        raise ValueError(f"low bits {low_bits:#x} do not fit in 5 bits")
    return config_rotation << 5 | (cid_length - 1 if length_self_encoding else low_bits)


def encode_cid(
    config_rotation: int,
    server_id: bytes,
    server_use: bytes,
    length_self_encoding: bool = True,
    *,
    low_bits: int | None = None,
    entropy: Entropy | None = None,
) -> bytes:
    """
    The CID ``first octet || server_id || server_use``.

    Without length self-encoding the first octet's 5 low bits are ``low_bits`` if given, else
    drawn from ``entropy`` (the draft: no observable relationship to earlier CIDs).

    :raises ValueError: the CID would exceed 20 bytes, the rotation is not 0..7, or random low
        bits are needed and neither ``low_bits`` nor ``entropy`` is given.
    """
    length = 1 + len(server_id) + len(server_use)
    if length_self_encoding:
        bits = 0
    elif low_bits is not None:
        bits = low_bits
    elif entropy is not None:
        bits = entropy.random_bytes(1)[0] & LENGTH_MASK
    else:
        raise ValueError("random first-octet bits need low_bits or an entropy source")
    head = first_octet(config_rotation, length, length_self_encoding, bits)
    return bytes((head,)) + bytes(server_id) + bytes(server_use)


def config_rotation_of(cid: bytes) -> int:
    """The config rotation codepoint of ``cid`` (its top 3 bits; 7: unroutable)."""
    if not cid:
        raise ValueError("an empty connection ID has no first octet")
    return cid[0] >> 5


def self_encoded_length(cid: bytes) -> int:
    """The CID length ``cid``'s first octet claims (meaningful only with self-encoding on)."""
    if not cid:
        raise ValueError("an empty connection ID has no first octet")
    return (cid[0] & LENGTH_MASK) + 1


def decode_server_id(cid: bytes, sid_len: int) -> bytes:
    """
    The ``sid_len``-byte server ID of ``cid``, as a load balancer extracts it.

    :raises ValueError: ``cid`` is too short to hold it (an unroutable DCID).
    """
    if sid_len < 0 or len(cid) < 1 + sid_len:
        raise ValueError(f"a {len(cid)}-byte connection ID holds no {sid_len}-byte server ID")
    return bytes(cid[1 : 1 + sid_len])


def server_use_of(cid: bytes, sid_len: int) -> bytes:
    """The bytes after the server ID (nonce and server-use bytes)."""
    decode_server_id(cid, sid_len)
    return bytes(cid[1 + sid_len :])


# --------------------------------------------------------------------------
# Kwik's use: 8-byte CIDs whose first server-use byte is the worker's route byte.


def ROUTE_OFFSET(config: ConnectionConfig) -> int:
    """The route byte's offset in a CID: after the first octet and the server ID."""
    return 1 + len(config.server_id)


def route_byte_for(worker_index: int, worker_count: int, entropy: Entropy) -> int:
    """A route byte uniform among ``0..255`` values ``v`` with ``v % worker_count ==
    worker_index`` (all below ``worker_count * (256 // worker_count)``)."""
    return worker_index + worker_count * random_below(entropy, 256 // worker_count)


def new_cid(config: ConnectionConfig, entropy: Entropy) -> bytes:
    """
    A fresh 8-byte server CID for ``config``: config rotation, length 7 self-encoded, the server
    ID, the route byte (a worker's own, else random) and random nonce bytes.
    """
    server_id = config.server_id
    server_use = entropy.random_bytes(CID_LENGTH - 1 - len(server_id))
    if config.worker_index is not None:
        route = route_byte_for(config.worker_index, config.worker_count, entropy)
        server_use = bytes((route,)) + server_use[1:]
    return bytes((config.config_rotation << 5 | (CID_LENGTH - 1),)) + server_id + server_use


def route_byte(cid: bytes, config: ConnectionConfig) -> int | None:
    """The byte at :func:`ROUTE_OFFSET` of ``cid``; ``None`` if ``cid`` is too short."""
    offset = 1 + len(config.server_id)
    return cid[offset] if len(cid) > offset else None


def owns(cid: bytes, config: ConnectionConfig) -> bool:
    """
    Whether datagrams addressed to ``cid`` are steered to this worker (``route byte %
    worker_count == worker_index``).  Always true outside a worker set; a CID too short to hold
    a route byte (Kwik's are never) is not judged: true.
    """
    index = config.worker_index
    if index is None:
        return True
    offset = 1 + len(config.server_id)
    if len(cid) <= offset:
        return True
    return cid[offset] % config.worker_count == index


__all__ = [
    "LENGTH_MASK",
    "MAX_CID_LENGTH",
    "MIN_NONCE_LENGTH",
    "ROUTE_OFFSET",
    "UNROUTABLE_ROTATION",
    "config_rotation_of",
    "decode_server_id",
    "encode_cid",
    "first_octet",
    "new_cid",
    "owns",
    "route_byte",
    "route_byte_for",
    "self_encoded_length",
    "server_use_of",
]
