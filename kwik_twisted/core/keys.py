"""
The key schedule: which packet keys seal what we send and open what arrives.

Theory of operation (protocol.rst, "Handshake"; RFC 9001 §4.9 adapted).  A connection has two key
epochs: *initial* keys, derived from the client's first destination CID and so public to anyone who
saw that datagram, and *application* keys, exported from TLS when the handshake completes
(:meth:`KeySchedule.install`).  :class:`KeySchedule` owns both, and every choice between them:

* **Sending.**  Handshake bytes travel under initial keys until the peer is known to hold
  application keys (:meth:`~KeySchedule.handshake_epoch`); a packet takes the epoch of the
  handshake bytes it must carry, else application keys once they exist
  (:meth:`~KeySchedule.packet_epoch`).
* **Receiving.**  :meth:`~KeySchedule.receive_keys` picks the keys a packet's epoch names.  Once
  the handshake is confirmed (:meth:`~KeySchedule.confirm`) initial keys are *retired*: nothing
  sealed with public keys is believed any more (a forged CLOSE, ACK or rebinding), and an ACK that
  arrived under initial keys may not acknowledge the application packets sent on path 0
  (:meth:`~KeySchedule.clip_initial_ack`).
* **Early packets.**  A client's first application packets can overtake its Finished; the server
  holds up to :data:`MAX_EARLY_PACKETS` of them (:data:`MAX_EARLY_BYTES` in all) and replays them
  once its keys exist (:meth:`~KeySchedule.take_early`).  Nothing in that queue is authenticated,
  so a forger cannot grow it past those bounds; what does not fit is dropped and counted.
* **Key update.**  Application keys change generation (protocol.rst, "Key update"): their
  :class:`~.crypto.keyupdate.KeyPhases` (:attr:`KeySchedule.phases`) picks the sealing keys and
  key phase of each packet (:meth:`~KeySchedule.app_sealing`) and the keys a packet's key phase
  names.
"""

from __future__ import annotations

from collections import Counter

from ..errors import DecryptionFailed, DroppedPacket
from ..wire import Epoch
from .crypto.keyupdate import DEFAULT_KEY_UPDATE_INTERVAL, KeyPhases
from .crypto.protection import PacketProtection, initial_protections

#: Undecryptable application packets a server holds until its keys exist, and their bytes at most:
#: an honest client's first application flight (its initial window, ten packets) can overtake its
#: Finished; nothing in this queue is authenticated, so a forger must not be able to grow it.
MAX_EARLY_PACKETS = 16
MAX_EARLY_BYTES = 24 * 1024

# Plain ints for the per-packet path (an IntEnum member lookup costs about 80 ns in CPython 3.11).
_INITIAL, _APPLICATION = int(Epoch.INITIAL), int(Epoch.APPLICATION)


class KeySchedule:
    """
    The packet keys of one connection and the epoch choices (see the module docstring).

    :ivar confirmed: whether the handshake is confirmed (initial keys retired).
    :ivar peer_has_app_keys: whether a packet of the peer's arrived under application keys.
    :ivar first_app_seq: the first sequence number we sent on path 0 under application keys.
    """

    __slots__ = (
        "is_client",
        "stats",
        "initial_send",
        "initial_recv",
        "phases",
        "confirmed",
        "peer_has_app_keys",
        "first_app_seq",
        "early",
        "early_bytes",
        "replay_due",
        "on_update",
    )

    def __init__(self, original_dcid: bytes, *, is_client: bool, stats: Counter) -> None:
        self.is_client = is_client
        self.stats = stats
        self.initial_send, self.initial_recv = initial_protections(
            original_dcid, is_client=is_client
        )
        self.phases: KeyPhases | None = None
        self.confirmed = False
        self.peer_has_app_keys = False
        self.first_app_seq: int | None = None
        self.early: list[tuple[bytes, tuple, tuple]] = []
        self.early_bytes = 0
        self.replay_due = False
        #: Given to the application keys' :class:`KeyPhases` (a qlog hook), or ``None``.
        self.on_update = None

    def restart_initial(self, cid: bytes) -> None:
        """A Retry named ``cid``: initial keys from it from now on (core/stateless.py)."""
        self.initial_send, self.initial_recv = initial_protections(cid, is_client=self.is_client)

    # -- the handshake's progress ----------------------------------------------------

    @property
    def complete(self) -> bool:
        """Whether application keys exist."""
        return self.phases is not None

    @property
    def app_send(self) -> PacketProtection | None:
        """The current generation's application sealing keys (``None`` before the handshake)."""
        return None if self.phases is None else self.phases.send

    @property
    def app_recv(self) -> PacketProtection | None:
        """The current generation's application opening keys (``None`` before the handshake)."""
        return None if self.phases is None else self.phases.recv

    def install(
        self,
        send: PacketProtection,
        receive: PacketProtection,
        *,
        interval: int = DEFAULT_KEY_UPDATE_INTERVAL,
        pto=lambda: 1.0,
    ) -> None:
        """The handshake completed: application keys exist; held early packets are due.

        ``interval`` is the key update interval in packets, ``pto()`` the connection's PTO (how
        long the previous generation's receive keys outlive an update is three of them).
        """
        self.phases = KeyPhases(send, receive, interval=interval, pto=pto, stats=self.stats)
        self.phases.on_update = self.on_update
        self.replay_due = True

    def request_update(self) -> bool:
        """Ask for a key update as soon as the rules allow; ``False`` before the handshake."""
        if self.phases is None:
            return False
        self.phases.request()
        return True

    def confirm(self) -> None:
        """The handshake is confirmed: initial keys are retired (the opening half is freed:
        nothing under them is opened any more; the sealing half may still carry handshake bytes
        the peer lacks)."""
        self.confirmed = True
        self.initial_recv = None

    # -- sending ---------------------------------------------------------------------

    def handshake_epoch(self) -> int:
        """
        Which keys carry our handshake bytes now.

        Initial keys until the peer is known to have application keys: for the server, its own
        handshake completing; for the client, the first application-key packet from the server
        (the server drops initial-key packets from then on, so a client that kept using them for
        its retransmitted Finished, and the ACKs riding with it, would never be heard again).
        """
        if self.phases is None:
            return _INITIAL
        if self.confirmed or self.peer_has_app_keys:
            return _APPLICATION
        return _INITIAL

    def packet_epoch(self, handshake_pending: bool) -> int:
        """The epoch of the next packet, given whether handshake bytes wait to be sent."""
        if self.phases is None:
            return _INITIAL
        if not handshake_pending:
            return _APPLICATION
        return self.handshake_epoch()

    def send_keys(self, epoch: int) -> PacketProtection:
        """The sealing keys for ``epoch``."""
        if epoch == _INITIAL:
            return self.initial_send
        assert self.phases is not None
        return self.phases.send

    def app_sealing(self, now: float) -> tuple[PacketProtection, int]:
        """The sealing keys and key phase of the next application packet (counted toward the key
        update interval, which may start an update here)."""
        assert self.phases is not None
        return self.phases.sealing(now)

    def on_sent(self, seq: int) -> None:
        """An application-key packet went out on path 0 with ``seq`` (the first one counts)."""
        if self.first_app_seq is None:
            self.first_app_seq = seq

    # -- receiving -------------------------------------------------------------------

    def receive_keys(
        self,
        epoch: int,
        path_id: int,
        data: bytes,
        local_addr: tuple,
        remote_addr: tuple,
        key_phase: int = 0,
    ) -> PacketProtection:
        """
        The keys that open a packet of ``epoch`` (and ``key_phase``) on ``path_id``: something
        with :meth:`~.crypto.protection.PacketProtection.open`.

        :raises DroppedPacket: an initial-key packet after the handshake was confirmed or off
            path 0.
        :raises DecryptionFailed: no application keys yet (a server holds the datagram for
            later, within the early bounds).
        """
        if epoch == _INITIAL:
            # Initial keys are public to anyone who saw the first datagram: once the handshake no
            # longer needs them, nothing under them is believed (a forged CLOSE, ACK or rebinding).
            if path_id != 0 or self.confirmed:
                raise DroppedPacket("initial-key packet after the handshake, or off path 0")
            return self.initial_recv  # type: ignore[return-value]
        phases = self.phases
        if phases is None:
            # The client's first application packets (on any path) can overtake its Finished.
            if not self.is_client:
                self.hold_early((data, local_addr, remote_addr))
            raise DecryptionFailed("no application keys yet")
        if key_phase == phases.phase:
            return phases.recv
        return phases.receive(key_phase)  # type: ignore[return-value]

    def header_keys(self, header, data: bytes, local_addr: tuple, remote_addr: tuple):
        """:meth:`receive_keys` for a decoded packet header (its epoch, path and key phase)."""
        return self.receive_keys(
            header.epoch, header.path_id, data, local_addr, remote_addr, header.key_phase
        )

    def on_authenticated(self, epoch: int, now: float = 0.0, key_phase: int = 0) -> None:
        """A packet of ``epoch`` and ``key_phase`` authenticated at ``now`` (the peer holds keys
        of that epoch)."""
        phases = self.phases
        if epoch == _APPLICATION and phases is not None:
            self.peer_has_app_keys = True
            if key_phase != phases.phase or not phases.peer_in_phase or phases.previous is not None:
                phases.on_authenticated(key_phase, now)  # not the settled common case

    def clip_initial_ack(self, ranges: tuple) -> tuple:
        """
        The parts of an initial-key ACK's descending inclusive ``ranges`` that may be believed:
        those below our first application packet on path 0 (all of them before there is one).
        """
        limit = self.first_app_seq
        if limit is None:
            return ranges
        return tuple((lo, min(hi, limit - 1)) for lo, hi in ranges if lo < limit)

    # -- early packets -----------------------------------------------------------------

    def hold_early(self, datagram: tuple[bytes, tuple, tuple]) -> None:
        """Keep a datagram that may be the client's application data overtaking its Finished,
        within :data:`MAX_EARLY_PACKETS` and :data:`MAX_EARLY_BYTES`; drop it (counted) beyond."""
        size = len(datagram[0])
        if len(self.early) >= MAX_EARLY_PACKETS or self.early_bytes + size > MAX_EARLY_BYTES:
            self.stats["early_dropped"] += 1
            return
        self.early.append(datagram)
        self.early_bytes += size

    def take_early(self) -> list[tuple[bytes, tuple, tuple]]:
        """The held datagrams, once the keys to open them exist (empty before, and after)."""
        if not self.replay_due:
            return []
        self.replay_due = False
        early, self.early = self.early, []
        self.early_bytes = 0
        return early
