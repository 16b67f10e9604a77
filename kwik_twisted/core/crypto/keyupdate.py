"""
Key update: application keys of successive generations, one key phase bit on the wire.

Theory of operation (protocol.rst, "Key update"; RFC 9001 §6 adapted).  The application keys
exported from TLS are generation 0.  Generation *n + 1* of each direction is derived from
generation *n* alone (:func:`next_secret`: HKDF-Expand-SHA256 of the 28-byte key || IV with the
label :data:`KEY_UPDATE_LABEL`, as RFC 9001 §6.1 does with "quic ku"), so both sides step together
without a message.  The envelope's Key Epoch plays QUIC's Key Phase bit: even generations send Key
Epoch 1 (phase 0), odd ones Key Epoch 2 (phase 1); Key Epoch 3 stays reserved.

:class:`KeyPhases` holds one connection's generations:

* **Initiating.**  :meth:`~KeyPhases.sealing` counts the packets sealed under the current
  generation; past ``interval`` (or after :meth:`~KeyPhases.request`) it steps to the next one,
  but only once a packet of the peer's authenticated in the current phase (the peer holds these
  keys, RFC 9001 §6.5) and the previous generation's receive keys are gone (so at most three
  generations are ever live: previous, current, next).
* **Responding.**  A packet in the other phase is tried with the previous generation's receive
  keys (a packet sent before the update, late or reordered), then with the next generation's
  (derived once and cached); only the latter's success steps the generation, and our own sending
  follows.  A failure is dropped and counted (``key_phase_rejected``): at most two AEAD opens per
  forged packet, never an update, never a derivation per packet.
* **Discarding.**  The previous generation's receive keys live :data:`DISCARD_PTOS` PTOs after the
  first packet authenticated in the new phase, then go: a packet from two generations back fails
  authentication and is dropped (counted).

The AEAD limits are per generation: each :class:`~.protection.PacketProtection` counts its own
failed opens (INTEGRITY_LIMIT), and ``sent`` the packets sealed under the current send keys, which
the default interval (:data:`DEFAULT_KEY_UPDATE_INTERVAL`, half the confidentiality limit) keeps
far below 2**23 as long as the peer responds.  A peer that never answers an update (never sends in
the new phase) blocks the next one; ``exhausted`` then turns true :data:`LIMIT_MARGIN` packets
before the confidentiality limit, and the connection stops using the keys (it ends, sending
nothing: RFC 9001 §6.6).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from kwik_twisted.errors import DecryptionFailed

from .protection import CONFIDENTIALITY_LIMIT, IV_LENGTH, KEY_LENGTH, PacketProtection

#: HKDF-Expand info of the next generation's key || IV (RFC 9001's "quic ku", Kwik's own label).
KEY_UPDATE_LABEL = b"kwik v3 key update"
#: Packets sealed under one generation before we start the next: half the AES-GCM
#: confidentiality limit (RFC 9001 §6.6), so a slow peer still has room to respond.
DEFAULT_KEY_UPDATE_INTERVAL = CONFIDENTIALITY_LIMIT // 2
#: Packets short of the confidentiality limit at which the send keys count as used up (a send
#: round seals at most a burst of packets after the connection last checked).
LIMIT_MARGIN = 4096
#: PTOs the previous generation's receive keys outlive the update (RFC 9001 §6.5: three).
DISCARD_PTOS = 3


def next_secret(secret: bytes) -> bytes:
    """The next generation's 28-byte key || IV from this generation's."""
    expand = HKDFExpand(hashes.SHA256(), KEY_LENGTH + IV_LENGTH, KEY_UPDATE_LABEL)
    return expand.derive(bytes(secret))


def next_protection(protection: PacketProtection) -> PacketProtection:
    """The :class:`PacketProtection` of the generation after ``protection``'s."""
    secret = next_secret(protection.secret)
    return PacketProtection(secret[:KEY_LENGTH], secret[KEY_LENGTH:])


class KeyPhases:
    """
    The application keys of one connection across key updates (see the module docstring).

    :ivar send: the current generation's sealing keys.
    :ivar recv: the current generation's opening keys.
    :ivar previous: the previous generation's opening keys, until discarded (else ``None``).
    :ivar generation: how many updates happened (0 for the keys TLS exported).
    :ivar phase: the current key phase, ``generation % 2``.
    :ivar sent: packets sealed under the current generation.
    """

    __slots__ = (
        "send",
        "recv",
        "previous",
        "_next_recv",
        "generation",
        "phase",
        "sent",
        "interval",
        "requested",
        "peer_in_phase",
        "discard_at",
        "pto",
        "stats",
        "limit",
        "on_update",
    )

    def __init__(
        self,
        send: PacketProtection,
        recv: PacketProtection,
        *,
        interval: int = DEFAULT_KEY_UPDATE_INTERVAL,
        pto: Callable[[], float] = lambda: 1.0,
        stats: Counter | None = None,
    ) -> None:
        self.send = send
        self.recv = recv
        self.previous: PacketProtection | None = None
        self._next_recv: PacketProtection | None = None
        self.generation = 0
        self.phase = 0
        self.sent = 0
        self.interval = max(1, interval)
        self.requested = False
        self.peer_in_phase = False
        self.discard_at: float | None = None
        self.pto = pto
        self.stats: Counter = Counter() if stats is None else stats
        #: Packets one generation may seal before it counts as used up.
        self.limit = CONFIDENTIALITY_LIMIT - LIMIT_MARGIN
        #: ``on_update(generation, local, now)``: a key update happened (qlog), or ``None``.
        self.on_update: Callable[[int, bool, float | None], None] | None = None

    @property
    def exhausted(self) -> bool:
        """Whether the current send keys sealed as many packets as they safely may (the peer
        never answered an update): the connection must stop using them."""
        return self.sent >= self.limit

    # -- sending ---------------------------------------------------------------------

    def request(self) -> None:
        """Update the keys as soon as the rules allow (the next packet, usually)."""
        self.requested = True

    def sealing(self, now: float) -> tuple[PacketProtection, int]:
        """The keys and key phase of the next application packet (one more sealed under them)."""
        self.sent = sent = self.sent + 1
        if (sent > self.interval or self.requested) and self.peer_in_phase:
            if self.previous is not None and self.discard_at is not None and now >= self.discard_at:
                self.discard()
            if self.previous is None:
                self.advance(now, local=True)
                self.sent = 1
        return self.send, self.phase

    # -- receiving -------------------------------------------------------------------

    def receive(self, key_phase: int) -> PacketProtection | _OtherPhase:
        """The keys that open a packet of ``key_phase``: the current ones, or an opener that tries
        the previous then the next generation's (and steps to the next on its success)."""
        if key_phase == self.phase:
            return self.recv
        return _OtherPhase(self)

    def on_authenticated(self, key_phase: int, now: float) -> None:
        """A packet of ``key_phase`` authenticated at ``now``: the peer holds the current keys if
        it is the current phase; the discard clock of the previous generation starts."""
        if key_phase != self.phase:
            return
        self.peer_in_phase = True
        if self.previous is not None:
            if self.discard_at is None:
                self.discard_at = now + DISCARD_PTOS * self.pto()
            elif now >= self.discard_at:
                self.discard()

    def discard(self) -> None:
        """Forget the previous generation's receive keys."""
        self.previous = None
        self.discard_at = None
        self.stats["key_generations_discarded"] += 1

    def next_receive(self) -> PacketProtection:
        """The next generation's opening keys (derived once per generation)."""
        if self._next_recv is None:
            self._next_recv = next_protection(self.recv)
        return self._next_recv

    def advance(self, now: float | None = None, *, local: bool = False) -> None:
        """Step both directions to the next generation; the current receive keys become the
        previous ones (discarded :data:`DISCARD_PTOS` PTOs after the peer is heard in the new
        phase)."""
        self.previous = self.recv
        self.recv = self.next_receive()
        self._next_recv = None
        self.send = next_protection(self.send)
        self.generation += 1
        self.phase ^= 1
        self.sent = 0
        self.requested = False
        self.peer_in_phase = False
        self.discard_at = None
        self.stats["key_updates"] += 1
        if self.on_update is not None:
            self.on_update(self.generation, local, now)


class _OtherPhase:
    """Opens one packet in the other key phase: previous generation first, then the next one."""

    __slots__ = ("phases", "used")

    def __init__(self, phases: KeyPhases) -> None:
        self.phases = phases
        self.used: PacketProtection | None = None

    def open(self, path_id: int, seq: int, aad: bytes, ciphertext: bytes) -> bytes:
        """Open the packet (a second call reuses the keys that worked); a success under the next
        generation's keys steps the generation.

        :raises DecryptionFailed: neither generation authenticates it (counted).
        """
        if self.used is not None:
            return self.used.open(path_id, seq, aad, ciphertext)
        phases = self.phases
        previous = phases.previous
        if previous is not None:
            try:
                plaintext = previous.open(path_id, seq, aad, ciphertext)
            except DecryptionFailed:
                pass
            else:
                self.used = previous
                phases.stats["key_previous_opened"] += 1  # sent before the update, arrived late
                return plaintext
        keys = phases.next_receive()
        try:
            plaintext = keys.open(path_id, seq, aad, ciphertext)
        except DecryptionFailed:
            phases.stats["key_phase_rejected"] += 1
            raise
        phases.advance()  # the peer updated: we respond (our sending follows)
        self.used = keys
        return plaintext


__all__ = [
    "DEFAULT_KEY_UPDATE_INTERVAL",
    "LIMIT_MARGIN",
    "DISCARD_PTOS",
    "KEY_UPDATE_LABEL",
    "KeyPhases",
    "next_protection",
    "next_secret",
]
