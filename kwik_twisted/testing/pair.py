"""
A client and a server connection wired back to back in memory, for tests and demos.

:class:`MemoryPair` moves datagrams between a client
    :class:`~kwik_twisted.core.connection.Connection`
and a :class:`~kwik_twisted.core.dispatcher.ServerDispatcher` with no delay and no loss, in
simulated time (``pair.now``), collecting each side's events.  For links with delay, loss and the
rest, attach the same two objects to a :class:`~kwik_twisted.testing.simulator.Network` instead.

:func:`forge` builds a datagram *as a given connection would send it* (its keys, its CIDs, its next
sequence number) but with frames of the caller's choosing: the tool for hostile-peer tests.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from ..config import ConnectionConfig
from ..core.connection import Connection
from ..core.crypto.handshake import TlsConfig
from ..core.dispatcher import ServerDispatcher
from ..core.entropy import SeededEntropy
from ..core.recovery.loss import SentPacket
from ..events import Event
from ..wire import (
    CompressionInfo,
    Epoch,
    Header,
    PacketType,
    encode_packet,
    encode_payload,
)

CLIENT_ADDR = ("127.0.0.1", 50000)
SERVER_ADDR = ("127.0.0.1", 4433)


@dataclass(frozen=True)
class DevCertificates:
    """PEM bytes of a development CA and a server certificate for localhost, 127.0.0.1 and ::1."""

    ca: bytes
    chain: bytes
    key: bytes


@functools.cache
def dev_certificates(hostname: str = "localhost") -> DevCertificates:
    """Make (once per process) a CA and a server certificate signed by it."""
    from ..tools.devcerts import certificate_pem, key_pem, make_ca, make_certificate

    ca_cert, ca_key = make_ca()
    cert, key = make_certificate((ca_cert, ca_key), hostnames=(hostname,))
    return DevCertificates(certificate_pem(ca_cert), certificate_pem(cert, ca_cert), key_pem(key))


def server_config(certs: DevCertificates | None = None, **kw) -> ConnectionConfig:
    """A server configuration with the development certificate (path MTU discovery off unless
    ``pmtud=True`` is given: simulated links carry any size, and the scenarios' figures are
    counted in 1350-byte datagrams)."""
    kw.setdefault("pmtud", False)
    certs = certs or dev_certificates()
    tls = TlsConfig(certificate_chain=certs.chain, private_key=certs.key)
    return ConnectionConfig(tls=tls, **kw)


def client_config(
    certs: DevCertificates | None = None, server_name: str = "localhost", **kw
) -> ConnectionConfig:
    """A client configuration trusting the development CA (path MTU discovery off unless
    ``pmtud=True`` is given, as :func:`server_config`)."""
    kw.setdefault("pmtud", False)
    certs = certs or dev_certificates()
    tls = TlsConfig(trust_roots=certs.ca, server_name=server_name)
    return ConnectionConfig(tls=tls, **kw)


class MemoryPair:
    """
    A client connection and a server dispatcher joined without delay.

    :ivar client_events: events the client emitted, in order.
    :ivar server_events: events the (first) server connection emitted.
    :ivar now: the simulated clock.
    """

    def __init__(
        self,
        client: ConnectionConfig | None = None,
        server: ConnectionConfig | None = None,
        *,
        seed: int = 1,
        now: float = 1000.0,
    ) -> None:
        self.now = now
        self._servers: list[Connection] = []
        self.dispatcher = ServerDispatcher(
            server or server_config(),
            entropy=SeededEntropy(seed + 1),
            on_connection=self._servers.append,
        )
        self.client = Connection.client(
            client or client_config(),
            local_addr=CLIENT_ADDR,
            remote_addr=SERVER_ADDR,
            entropy=SeededEntropy(seed),
            now=now,
        )
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.datagrams = 0

    @property
    def server(self) -> Connection:
        """
        The server side's connection (after the first datagram reached it).

        Kept from the dispatcher's ``on_connection`` callback: the dispatcher forgets closed
        connections, and their last events must still be collected.
        """
        if not self._servers:
            raise RuntimeError("no server connection yet")
        return self._servers[0]

    def pump(self, max_rounds: int = 100000) -> None:
        """Exchange datagrams (no time passes) until neither side has anything to send."""
        for _ in range(max_rounds):
            moved = False
            for data, local, remote in self.client.datagrams_to_send(now=self.now):
                self.dispatcher.receive_datagram(data, remote, local, now=self.now)
                moved = True
                self.datagrams += 1
            for data, local, remote in self.dispatcher.datagrams_to_send(now=self.now):
                self.client.receive_datagram(data, remote, local, now=self.now)
                moved = True
                self.datagrams += 1
            self._collect()
            if not moved:
                return
        raise RuntimeError("the pair did not go quiet")

    def _collect(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.client_events.append(event)
        if self._servers:
            server = self._servers[0]
            while (event := server.next_event()) is not None:
                self.server_events.append(event)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass, firing timers and pumping as they come due."""
        end = self.now + seconds
        while True:
            self.pump()
            deadlines = [
                d
                for d in (self.client.next_deadline(), self.dispatcher.next_deadline())
                if d is not None and d <= end
            ]
            if not deadlines:
                break
            self.now = max(self.now, min(deadlines))
            self.client.handle_deadline(now=self.now)
            self.dispatcher.handle_deadline(now=self.now)
            self._collect()
        self.now = end
        self.pump()

    def handshake(self) -> MemoryPair:
        """Run until both sides completed the handshake; return self."""
        self.advance(0.5)
        if not (self.client.handshake_complete and self.server.handshake_complete):
            raise RuntimeError(f"handshake did not complete: {self.client_events}")
        return self

    def deliver_to_server(self, datagram: bytes) -> None:
        """Hand one datagram to the server side as if the client had sent it."""
        self.dispatcher.receive_datagram(datagram, SERVER_ADDR, CLIENT_ADDR, now=self.now)
        self._collect()

    def deliver_to_client(self, datagram: bytes) -> None:
        """Hand one datagram to the client as if the server had sent it."""
        self.client.receive_datagram(datagram, CLIENT_ADDR, SERVER_ADDR, now=self.now)
        self._collect()


def forge(
    sender: Connection,
    frames: Iterable,
    *,
    epoch: int = Epoch.APPLICATION,
    path_id: int = 0,
    now: float = 0.0,
) -> bytes:
    """
    A datagram carrying ``frames`` exactly as ``sender`` would seal it on ``path_id``.

    The sequence number is consumed from the sender's path (and recorded as sent), so its own later
    packets stay valid.  The frames bypass every check the sender's own logic would apply.
    """
    payload = encode_payload(list(frames), epoch)
    return seal_plaintext(
        sender,
        payload.plaintext,
        frame_count=payload.frame_count,
        packet_type=payload.packet_type,
        compression=payload.compression,
        epoch=epoch,
        path_id=path_id,
        now=now,
    )


def seal_plaintext(
    sender: Connection,
    plaintext: bytes,
    *,
    frame_count: int = 1,
    packet_type: int = PacketType.CONTROL,
    compression: int = CompressionInfo.NONE,
    epoch: int = Epoch.APPLICATION,
    path_id: int = 0,
    now: float = 0.0,
) -> bytes:
    """
    Seal an arbitrary plaintext as ``sender`` would on ``path_id``.

    The header says what the caller says (frame count, packet type, compression info), so a payload
    the frame encoders refuse to build (an unknown type, too many ACK ranges, wrong flags) is still
    authenticated.  The sequence number is consumed and recorded as sent, as in :func:`forge`.
    """
    path = sender.paths[path_id]
    seq = path.recovery.next_sequence_number
    long = epoch == Epoch.INITIAL
    header = Header(
        path.dcid or sender.peer_cid,
        path_id,
        seq,
        packet_type,
        frame_count,
        compression,
        epoch,
        sender.local_cid if long else None,
    )
    datagram = encode_packet(header, plaintext, sender.send_keys(epoch).seal)
    path.recovery.on_packet_sent(SentPacket(seq, now, len(datagram), False, False))
    return datagram
