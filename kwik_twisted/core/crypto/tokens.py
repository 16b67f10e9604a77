"""
Stateless reset, Retry and Version Negotiation: the secrets, tokens and stateless datagrams.

Theory of operation (protocol.rst, "Stateless reset", "Retry", "Version negotiation").  These are
the datagrams a server sends *without* a connection: it answers a datagram it cannot route, it asks
a client to prove its address, or it tells a client which versions it speaks.  Everything here is a
pure function of its arguments (no clock, no randomness of its own: ``now`` and random bytes are
handed in), so the dispatcher and the client can be driven in simulated time.

**The static secret.**  :func:`derive_static_secret` turns the server's TLS private key (DER) into
32 bytes with HKDF-SHA256.  Reset tokens and Retry tokens are derived from it, so they are the same
in every worker process of one server and survive a restart, with no new configuration: a restarted
server can still reset the connections of its previous life, and a Retry token issued by one worker
validates in another.

**Stateless reset** (RFC 9000 §10.3 adapted).  :class:`ResetTokens` gives each connection ID its
16-byte token, ``HMAC-SHA256(K_reset, cid)[:16]``; an endpoint announces the token of each CID it
issues (NEW_CONNECTION_ID).  A server that receives a short-header datagram for a CID it does not
know answers with :func:`stateless_reset`: a datagram shaped like a short-header packet (first byte
``0x40`` or ``0x44``, random bytes) whose last 16 bytes are the token.  The peer recognises it with
:func:`match_reset` and ends the connection at once.  A reset is always *shorter* than what it
answers and never shorter than :data:`MIN_RESET_SIZE`, so a datagram of that size or less is never
answered: two endpoints that both lost their state cannot reset each other in a loop.  Resets (and
Version Negotiation) are paced by a :class:`RateLimiter`, a token bucket in the caller's time.

**Retry** (RFC 9000 §8.1 adapted).  :class:`RetryTokens` seals ``(issue time, original DCID, Retry
SCID)`` with AES-128-GCM under a key derived from the static secret, the client's IP address as
associated data: a token opens only for the address it was issued to, only within its lifetime,
and only in an Initial whose DCID is the Retry's SCID.  :func:`encode_retry` and
:func:`decode_retry` are the Retry packet codec, with RFC 9001 §5.8's integrity tag (fixed,
published key and nonce: the tag proves the Retry saw the client's first Initial, nothing more).

**Version Negotiation** (RFC 8999 §6): :func:`encode_version_negotiation`,
:func:`decode_version_negotiation`, :func:`is_version_negotiation`, and
:func:`version_negotiation_reply`, the server's whole decision for an unknown-version long header.

Every decoder takes peer bytes, costs O(length), checks every length (connection IDs are exactly 8
bytes, nothing may trail) and raises only :class:`~kwik_twisted.errors.DroppedPacket` subclasses;
validators return ``None`` instead of raising.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from struct import Struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kwik_twisted.config import MIN_DATAGRAM_SIZE
from kwik_twisted.errors import (
    ConfigurationError,
    DecryptionFailed,
    InternalError,
    MalformedPacket,
    UnsupportedVersion,
)
from kwik_twisted.wire.packets import (
    CID_LENGTH,
    HEADER_FORM,
    LONG_HEADER,
    LONG_PREFIX,
    MAX_TOKEN_LENGTH,
    RETRY_BYTE,
    VERSION,
)

from ..entropy import Entropy, random_below

# --------------------------------------------------------------------------
# The static secret

STATIC_SECRET_LENGTH = 32
STATIC_SECRET_SALT = b"kwik v3"
STATIC_SECRET_INFO = b"static secret"


def _hkdf(ikm: bytes, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 (extract and expand) of ``ikm``; no salt means RFC 5869's zero salt."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(bytes(ikm))


def derive_static_secret(private_key_der: bytes) -> bytes:
    """
    The server's 32-byte static secret, from its TLS private key in DER form.

    ``HKDF-SHA256(salt="kwik v3", ikm=private_key_der, info="static secret", L=32)``: the same key
    gives the same secret in every worker and after a restart, and the secret reveals nothing of
    the key.
    """
    if not private_key_der:
        raise ConfigurationError("the static secret needs a private key, got no bytes")
    return _hkdf(private_key_der, STATIC_SECRET_INFO, STATIC_SECRET_LENGTH, STATIC_SECRET_SALT)


# --------------------------------------------------------------------------
# Stateless reset

RESET_TOKEN_LENGTH = 16
RESET_KEY_INFO = b"kwik v3 stateless reset"
#: The smallest stateless reset, equal to the smallest short-header packet (protocol.rst,
#: "Envelope"); a datagram of this size or less is never answered with a reset.
MIN_RESET_SIZE = 42
#: A reset is at most this much longer than :data:`MIN_RESET_SIZE` (bounds what a flood costs).
RESET_SIZE_SPREAD = 32
#: Stateless resets and Version Negotiation packets a server sends: per second, and in a burst.
DEFAULT_RATE = 100.0
DEFAULT_BURST = 20

_SHORT_FIXED = 0x40
#: One token, less a rounding margin: 0.1 s at 10/s refills exactly one event despite floats.
_ONE = 1.0 - 1e-9
_KEY_PHASE = 0x04


class ResetTokens:
    """
    Stateless reset tokens of one endpoint: ``token(cid) = HMAC-SHA256(K_reset, cid)[:16]``.

    ``K_reset = HKDF-SHA256(ikm=secret, info="kwik v3 stateless reset", L=32)`` (no salt).
    """

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        self._key = _hkdf(secret, RESET_KEY_INFO)

    def token(self, cid: bytes) -> bytes:
        """The 16-byte stateless reset token of connection ID ``cid``."""
        return hmac.digest(self._key, bytes(cid), "sha256")[:RESET_TOKEN_LENGTH]


def stateless_reset(token: bytes, received_size: int, entropy: Entropy) -> bytes | None:
    """
    A stateless reset answering a datagram of ``received_size`` bytes, or ``None``.

    ``None`` when ``received_size <= MIN_RESET_SIZE``.  Otherwise the size is uniform in
    ``[MIN_RESET_SIZE, min(received_size - 1, MIN_RESET_SIZE + RESET_SIZE_SPREAD)]``, drawn first
    (:func:`~kwik_twisted.core.entropy.random_below` of that range's width: 8 bytes); then
    ``size - 16`` random bytes are drawn: the first becomes the first byte ``0x40 | (r & 0x04)``
    (a short header in a random key phase), the rest follow as they are, and the token ends the
    datagram.
    """
    if len(token) != RESET_TOKEN_LENGTH:
        raise InternalError(f"a reset token has {RESET_TOKEN_LENGTH} bytes, got {len(token)}")
    if received_size <= MIN_RESET_SIZE:
        return None
    largest = min(received_size - 1, MIN_RESET_SIZE + RESET_SIZE_SPREAD)
    size = MIN_RESET_SIZE + random_below(entropy, largest - MIN_RESET_SIZE + 1)
    body = entropy.random_bytes(size - RESET_TOKEN_LENGTH)
    first = _SHORT_FIXED | (body[0] & _KEY_PHASE)
    return bytes((first,)) + body[1:] + bytes(token)


def match_reset(datagram: bytes, tokens: Iterable[bytes]) -> bool:
    """
    Whether ``datagram`` is a stateless reset carrying one of ``tokens`` (a handful of them).

    It must be at least :data:`MIN_RESET_SIZE` bytes, look like a short header (first byte's two
    high bits ``01``) and end with one of the tokens, compared in constant time.  Every token is
    compared, so the time taken does not tell which one matched.
    """
    if len(datagram) < MIN_RESET_SIZE or datagram[0] & 0xC0 != _SHORT_FIXED:
        return False
    tail = bytes(datagram[-RESET_TOKEN_LENGTH:])
    found = False
    for token in tokens:
        found |= hmac.compare_digest(tail, token)
    return found


class RateLimiter:
    """
    A token bucket in the caller's time: ``rate`` events per second, ``burst`` at once.

    It starts full.  Time going backwards adds nothing (and is not remembered).  O(1) per call.
    """

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST) -> None:
        if not rate > 0 or burst < 1:
            raise ConfigurationError(f"a rate limit needs rate > 0 and burst >= 1: {rate}, {burst}")
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        """Whether one more event may happen at ``now``; if so, it is counted."""
        last = self._last
        if last is None or now > last:
            if last is not None:
                self._tokens = min(float(self.burst), self._tokens + (now - last) * self.rate)
            self._last = now
        if self._tokens >= _ONE:
            self._tokens -= 1.0
            return True
        return False


# --------------------------------------------------------------------------
# Retry tokens

RETRY_KEY_INFO = b"kwik v3 retry token"
RETRY_NONCE_LENGTH = 12
_AEAD_TAG = 16
#: Issue time in milliseconds, original DCID, Retry SCID.
_RETRY_PLAIN = Struct(">Q8s8s")
#: Every Retry token is exactly this long: nonce, sealed (time, ODCID, RSCID), tag.
RETRY_TOKEN_LENGTH = RETRY_NONCE_LENGTH + _RETRY_PLAIN.size + _AEAD_TAG
#: How long a Retry token is valid by default, in seconds.
DEFAULT_RETRY_LIFETIME = 10.0
#: How far in the future an issue time may lie (clocks of workers differ a little).
RETRY_CLOCK_SKEW = 1.0


def _check_ip(client_ip: bytes) -> bytes:
    if len(client_ip) not in (4, 16):
        raise InternalError(f"a packed IP address has 4 or 16 bytes, got {len(client_ip)}")
    return bytes(client_ip)


class RetryTokens:
    """
    Issue and validate address validation tokens (see the module docstring).

    ``key = HKDF-SHA256(ikm=secret, info="kwik v3 retry token", L=16)`` (no salt); a token is
    ``nonce (12) || AES-128-GCM(key, nonce, time_ms (8) || odcid (8) || rscid (8), aad=client_ip)``
    including the 16-byte tag: :data:`RETRY_TOKEN_LENGTH` bytes.  ``now`` must be the wall clock
    (seconds since the epoch), so that tokens validate across workers and restarts.  Nonces are
    random (96 bits): a key may issue 2**32 tokens before a repeat becomes likely.
    """

    __slots__ = ("_aead", "lifetime")

    def __init__(self, secret: bytes, lifetime: float = DEFAULT_RETRY_LIFETIME) -> None:
        if not lifetime > 0:
            raise ConfigurationError(f"a Retry token lifetime must be positive, got {lifetime}")
        self._aead = AESGCM(_hkdf(secret, RETRY_KEY_INFO, 16))
        self.lifetime = lifetime

    def issue(
        self, client_ip: bytes, odcid: bytes, rscid: bytes, now: float, nonce12: bytes
    ) -> bytes:
        """
        A token for the client at ``client_ip`` (packed) whose first Initial went to ``odcid``,
        told by a Retry to use ``rscid`` as its new DCID; ``nonce12`` is 12 random bytes.
        """
        if len(odcid) != CID_LENGTH or len(rscid) != CID_LENGTH or len(nonce12) != 12:
            raise InternalError("a Retry token needs 8-byte CIDs and a 12-byte nonce")
        millis = int(now * 1000)
        if not 0 <= millis < 2**64:
            raise InternalError(f"issue time out of range: {now}")
        plain = _RETRY_PLAIN.pack(millis, bytes(odcid), bytes(rscid))
        nonce = bytes(nonce12)
        return nonce + self._aead.encrypt(nonce, plain, _check_ip(client_ip))

    def validate(self, token: bytes, client_ip: bytes, dcid: bytes, now: float) -> bytes | None:
        """
        The original DCID sealed in ``token``, or ``None`` if the token is not valid here.

        Not valid: the wrong length, it does not open (another key, another address, tampered),
        it is older than ``lifetime`` or more than :data:`RETRY_CLOCK_SKEW` in the future, or the
        Initial carrying it is not addressed to the Retry's SCID (``dcid``).
        """
        ip = _check_ip(client_ip)
        if len(token) != RETRY_TOKEN_LENGTH or len(dcid) != CID_LENGTH:
            return None
        token = bytes(token)
        try:
            plain = self._aead.decrypt(token[:RETRY_NONCE_LENGTH], token[RETRY_NONCE_LENGTH:], ip)
        except InvalidTag:
            return None
        millis, odcid, rscid = _RETRY_PLAIN.unpack(plain)
        age = now - millis / 1000
        if age > self.lifetime or age < -RETRY_CLOCK_SKEW:
            return None
        if not hmac.compare_digest(rscid, bytes(dcid)):
            return None
        return odcid


# --------------------------------------------------------------------------
# The Retry packet

#: The Retry Integrity Tag's fixed key and nonce (published: anybody can compute the tag).
RETRY_INTEGRITY_KEY = hashlib.sha256(b"kwik v3 retry integrity key").digest()[:16]
RETRY_INTEGRITY_NONCE = hashlib.sha256(b"kwik v3 retry integrity nonce").digest()[:12]
_RETRY_INTEGRITY = AESGCM(RETRY_INTEGRITY_KEY)
#: First byte of a Retry: long header, fixed bit, type 3, reserved bits 0 (wire.packets).
RETRY_FIRST_BYTE = RETRY_BYTE
#: RFC 8999's long header with Kwik's 8-byte CIDs, as the envelope's (wire.packets).
_LONG = LONG_HEADER
MIN_RETRY_SIZE = LONG_PREFIX + 1 + _AEAD_TAG
MAX_RETRY_SIZE = LONG_PREFIX + MAX_TOKEN_LENGTH + _AEAD_TAG


def _check_cids(*cids: bytes) -> None:
    for cid in cids:
        if len(cid) != CID_LENGTH:
            raise InternalError(f"connection IDs have {CID_LENGTH} bytes, got {len(cid)}")


def _retry_tag(odcid: bytes, retry_without_tag: bytes) -> bytes:
    """RFC 9001 §5.8: AES-128-GCM of nothing, AAD = ODCID Length, ODCID, the Retry up to its tag."""
    pseudo = bytes((len(odcid),)) + bytes(odcid) + retry_without_tag
    return _RETRY_INTEGRITY.encrypt(RETRY_INTEGRITY_NONCE, b"", pseudo)


def encode_retry(dcid: bytes, scid: bytes, token: bytes, odcid: bytes) -> bytes:
    """
    A Retry packet to a client whose first Initial came from ``dcid`` to ``odcid``: it names
    ``scid`` as the server's new CID and carries ``token`` (1 to MAX_TOKEN_LENGTH bytes).
    """
    _check_cids(dcid, scid, odcid)
    if not 1 <= len(token) <= MAX_TOKEN_LENGTH:
        raise InternalError(f"a Retry token has 1 to {MAX_TOKEN_LENGTH} bytes, got {len(token)}")
    body = (
        _LONG.pack(RETRY_FIRST_BYTE, VERSION, CID_LENGTH, bytes(dcid), CID_LENGTH, bytes(scid))
        + bytes(token)
    )
    return body + _retry_tag(odcid, body)


def decode_retry(
    datagram: bytes, odcid: bytes, dcid: bytes | None = None
) -> tuple[bytes, bytes]:
    """
    ``(scid, token)`` of a Retry answering the client's first Initial, sent to ``odcid``.

    ``dcid``, if given, is the client's own SCID, which the Retry must be addressed to.

    :raises MalformedPacket: not a Retry's shape: the size, first byte, CID lengths, an empty or
        oversized token, another DCID than ``dcid``, or an SCID equal to ``odcid`` (a Retry must
        name a new connection ID).
    :raises UnsupportedVersion: a version other than :data:`~kwik_twisted.wire.VERSION`.
    :raises DecryptionFailed: the Retry Integrity Tag does not match.
    """
    _check_cids(odcid)
    data = bytes(datagram)
    if not MIN_RETRY_SIZE <= len(data) <= MAX_RETRY_SIZE:
        raise MalformedPacket(f"a Retry of {len(data)} bytes")
    first, version, dcid_len, got_dcid, scid_len, scid = _LONG.unpack_from(data)
    if version != VERSION:
        raise UnsupportedVersion(f"Retry of version 0x{version:08x}")
    if first != RETRY_FIRST_BYTE:
        raise MalformedPacket(f"not a Retry: first byte 0x{first:02x}")
    if dcid_len != CID_LENGTH or scid_len != CID_LENGTH:
        raise MalformedPacket("Retry connection IDs must have 8 bytes")
    if dcid is not None and got_dcid != bytes(dcid):
        raise MalformedPacket("Retry addressed to another connection ID")
    body, tag = data[:-_AEAD_TAG], data[-_AEAD_TAG:]
    if not hmac.compare_digest(_retry_tag(odcid, body), tag):
        raise DecryptionFailed("Retry integrity tag does not match")
    if scid == bytes(odcid):
        raise MalformedPacket("Retry does not name a new connection ID")
    return scid, body[LONG_PREFIX:]


# --------------------------------------------------------------------------
# Version Negotiation

_VN_MIN = LONG_PREFIX + 4


def is_version_negotiation(datagram: bytes) -> bool:
    """Whether ``datagram`` is in RFC 8999's long form with version 0 (Version Negotiation)."""
    return len(datagram) >= 5 and bool(datagram[0] & HEADER_FORM) and not any(datagram[1:5])


def encode_version_negotiation(
    dcid: bytes, scid: bytes, versions: Sequence[int], first_byte_random: int
) -> bytes:
    """
    A Version Negotiation packet: first byte ``0x80 | (first_byte_random & 0x7F)``, version 0, the
    two CIDs (``dcid`` is the client's SCID, ``scid`` the client's DCID), then ``versions``
    as 32-bit integers.  The CIDs may have any length up to 255 bytes (RFC 8999 echoes those of
    another version's client as they came); Kwik's own are 8.
    """
    if len(dcid) > 255 or len(scid) > 255:
        raise InternalError("connection IDs have at most 255 bytes")
    if not versions or any(not 0 < v < 2**32 for v in versions):
        raise InternalError(f"Version Negotiation needs nonzero 32-bit versions, got {versions}")
    first = HEADER_FORM | (first_byte_random & 0x7F)
    head = b"".join((
        bytes((first,)), bytes(4), bytes((len(dcid),)), bytes(dcid), bytes((len(scid),)),
        bytes(scid),
    ))
    return head + Struct(f">{len(versions)}I").pack(*versions)


def decode_version_negotiation(datagram: bytes) -> tuple[bytes, bytes, tuple[int, ...]]:
    """
    ``(dcid, scid, versions)`` of a Version Negotiation packet.

    :raises MalformedPacket: not a Version Negotiation packet, CIDs other than 8 bytes, no
        versions, or a length that is not a whole number of versions.
    """
    data = bytes(datagram)
    if not is_version_negotiation(data):
        raise MalformedPacket("not a Version Negotiation packet")
    if len(data) < _VN_MIN or (len(data) - LONG_PREFIX) % 4:
        raise MalformedPacket(f"Version Negotiation of {len(data)} bytes")
    _, _, dcid_len, dcid, scid_len, scid = _LONG.unpack_from(data)
    if dcid_len != CID_LENGTH or scid_len != CID_LENGTH:
        raise MalformedPacket("Version Negotiation connection IDs must have 8 bytes")
    count = (len(data) - LONG_PREFIX) // 4
    return dcid, scid, Struct(f">{count}I").unpack_from(data, LONG_PREFIX)


def version_negotiation_reply(
    datagram: bytes,
    first_byte_random: int,
    supported: Sequence[int] = (VERSION,),
    min_size: int = MIN_DATAGRAM_SIZE,
) -> bytes | None:
    """
    The server's answer to a datagram with a long header: a Version Negotiation packet listing
    ``supported`` if its version is unknown, else ``None``.

    The client's CIDs are echoed whatever their lengths (RFC 8999: a QUIC v1 client may use 20
    bytes).  ``None`` for a short header, version 0 (a Version Negotiation is never answered), CID
    lengths that run past the datagram, or a datagram smaller than ``min_size`` (by default 1200,
    the size of a client's first datagram: an answer never amplifies a small spoofed datagram).
    Rate limiting is the caller's (:class:`RateLimiter`).
    """
    data = bytes(datagram[: 7 + 2 * 255])
    if len(datagram) < max(min_size, 7) or not data[0] & HEADER_FORM:
        return None
    version = int.from_bytes(data[1:5], "big")
    if version == 0 or version in supported:
        return None
    dcid_end = 6 + data[5]
    if dcid_end + 1 > len(data):
        return None
    scid_end = dcid_end + 1 + data[dcid_end]
    if scid_end > len(data):
        return None
    dcid, scid = data[6:dcid_end], data[dcid_end + 1 : scid_end]
    return encode_version_negotiation(scid, dcid, supported, first_byte_random)


__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_RATE",
    "DEFAULT_RETRY_LIFETIME",
    "MIN_RESET_SIZE",
    "RESET_TOKEN_LENGTH",
    "RETRY_FIRST_BYTE",
    "RETRY_INTEGRITY_KEY",
    "RETRY_INTEGRITY_NONCE",
    "RETRY_TOKEN_LENGTH",
    "RateLimiter",
    "ResetTokens",
    "RetryTokens",
    "decode_retry",
    "decode_version_negotiation",
    "derive_static_secret",
    "encode_retry",
    "encode_version_negotiation",
    "is_version_negotiation",
    "match_reset",
    "stateless_reset",
    "version_negotiation_reply",
]
