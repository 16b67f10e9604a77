"""
AEAD packet protection: AES-128-GCM keyed per direction.

Every path packet is sealed with AES-128-GCM (16-byte key, 12-byte IV, 16-byte
tag).  The nonce is built as in RFC 9001 section 5.3, widened for multipath
as in the multipath QUIC draft (section "Packet Protection"): the IV XOR the
96-bit big-endian value ``path_id (32 bits) || packet sequence number (64
bits)``.  Each path has its own sequence-number space, so the path ID in the
nonce keeps two paths from ever reusing a nonce under one key.  The packet
header (everything before the payload except the checksum field) is the
associated data, handed in by the caller.

Two key sets exist (protocol.rst, "Packet protection"):

* initial keys, derived with HKDF-SHA256 from the client's original
  destination connection ID (like RFC 9001 section 5.2): they give integrity
  against corruption, not secrecy, since anyone who sees the first packet can
  derive them;
* application keys, from the TLS exporter (see :mod:`.handshake`).

A failed open raises :class:`~kwik_twisted.errors.DecryptionFailed` and is
counted in ``failed_opens``; the open that reaches the integrity limit (RFC 9001
section 6.6, taken down to 2**36 by protocol.rst) raises
:class:`~kwik_twisted.errors.AeadLimitReached` instead, a protocol error that
closes the connection with AEAD_LIMIT_REACHED: past that many forgery attempts
the chance that one of them succeeded is no longer negligible.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kwik_twisted.errors import AeadLimitReached, DecryptionFailed, InternalError

KEY_LENGTH = 16
IV_LENGTH = 12
TAG_LENGTH = 16

#: Packets one AES-GCM key may seal (RFC 9001 section 6.6, confidentiality limit).
CONFIDENTIALITY_LIMIT = 2**23
#: Failed opens one AES-GCM key tolerates: RFC 9001 section 6.6 allows 2**52 for AES-128-GCM;
#: protocol.rst ("Receiving") asks for 2**36, which is what a receiver here enforces.
INTEGRITY_LIMIT = 2**36

INITIAL_SALT = hashlib.sha256(b"kwik v3 initial salt").digest()[:20]
CLIENT_INITIAL_INFO = b"kwik v3 client initial"
SERVER_INITIAL_INFO = b"kwik v3 server initial"


class PacketProtection:
    """
    Seal and open packets for one direction of one key phase.

    :ivar failed_opens: how many :meth:`open` calls failed authentication.
    :ivar integrity_limit: failed opens after which :meth:`open` raises
        :class:`~kwik_twisted.errors.AeadLimitReached` (default :data:`INTEGRITY_LIMIT`).
    """

    __slots__ = ("_decrypt", "_encrypt", "_iv", "failed_opens", "integrity_limit", "secret")

    def __init__(self, key: bytes, iv: bytes, *, integrity_limit: int | None = None) -> None:
        if len(key) != KEY_LENGTH or len(iv) != IV_LENGTH:
            raise InternalError(
                f"AES-128-GCM needs a {KEY_LENGTH}-byte key and a {IV_LENGTH}-byte IV, "
                f"got {len(key)} and {len(iv)}"
            )
        aead = AESGCM(bytes(key))
        self._encrypt = aead.encrypt  # bound once: this is the per-packet hot path
        self._decrypt = aead.decrypt
        self._iv = int.from_bytes(iv, "big")
        #: key || IV, from which the next generation derives (:mod:`.keyupdate`)
        self.secret = bytes(key) + bytes(iv)
        self.failed_opens = 0
        self.integrity_limit = INTEGRITY_LIMIT if integrity_limit is None else integrity_limit

    def seal(self, path_id: int, seq: int, aad: bytes, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext``, authenticating ``aad``; return ciphertext || tag."""
        if (path_id >> 32) or (seq >> 64):  # also true for negative numbers
            raise InternalError(f"nonce out of range: path {path_id}, seq {seq}")
        nonce = (self._iv ^ ((path_id << 64) | seq)).to_bytes(12, "big")
        return self._encrypt(nonce, plaintext, aad)

    def open(self, path_id: int, seq: int, aad: bytes, ciphertext: bytes) -> bytes:
        """
        Decrypt and authenticate ``ciphertext`` (which ends with the tag).

        :raises DecryptionFailed: on any failure: wrong key, tampered bytes,
            a tag-less stub, or a path or sequence number out of range.
        :raises AeadLimitReached: the failure that reaches ``integrity_limit``
            (and every one after it).
        """
        try:
            if (path_id >> 32) or (seq >> 64):
                raise ValueError("nonce out of range")
            nonce = (self._iv ^ ((path_id << 64) | seq)).to_bytes(12, "big")
            return self._decrypt(nonce, ciphertext, aad)
        except (InvalidTag, TypeError, ValueError):
            self.failed_opens += 1
            if self.failed_opens >= self.integrity_limit:
                raise AeadLimitReached(
                    f"{self.failed_opens} packets failed authentication under one key"
                ) from None
            raise DecryptionFailed("packet authentication failed") from None


def derive_protection(secret: bytes) -> PacketProtection:
    """Build a :class:`PacketProtection` from 28 bytes: key (16) then IV (12)."""
    return PacketProtection(secret[:KEY_LENGTH], secret[KEY_LENGTH:])


def _initial_secret(original_dcid: bytes, info: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_LENGTH + IV_LENGTH,
        salt=INITIAL_SALT,
        info=info,
    )
    return hkdf.derive(bytes(original_dcid))


def initial_keys(original_dcid: bytes, *, client: bool) -> tuple[bytes, bytes]:
    """Return the ``(key, iv)`` of one direction's initial keys (client→server or back)."""
    secret = _initial_secret(original_dcid, CLIENT_INITIAL_INFO if client else SERVER_INITIAL_INFO)
    return secret[:KEY_LENGTH], secret[KEY_LENGTH:]


def initial_protections(
    original_dcid: bytes, *, is_client: bool
) -> tuple[PacketProtection, PacketProtection]:
    """
    Return ``(send, receive)`` protections for handshake packets.

    Both sides derive them from the destination connection ID of the client's
    first packet: the client's send keys are the server's receive keys.
    """
    client = PacketProtection(*initial_keys(original_dcid, client=True))
    server = PacketProtection(*initial_keys(original_dcid, client=False))
    return (client, server) if is_client else (server, client)


__all__ = [
    "CONFIDENTIALITY_LIMIT",
    "INITIAL_SALT",
    "INTEGRITY_LIMIT",
    "IV_LENGTH",
    "KEY_LENGTH",
    "TAG_LENGTH",
    "PacketProtection",
    "derive_protection",
    "initial_keys",
    "initial_protections",
]
