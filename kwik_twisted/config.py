"""
Settings of a Kwik connection, with their defaults and the reasons for them.

One :class:`ConnectionConfig` is handed to each connection.  Endpoint strings and ``twistd kwik``
options map onto these fields (``docs/endpoints.rst``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError

#: The smallest UDP payload a Kwik endpoint must support: a client's first datagram is padded to
#: it, a server creates no connection for a shorter one, and no ``max_datagram_size`` (ours or the
#: peer's) may be below it (protocol.rst, "Handshake").
MIN_DATAGRAM_SIZE = 1200
#: The largest ``max_udp_payload``: 65535 minus the UDP header (IPv6; over IPv4 only 65507 fit).
#: The default stays far below: one lost 64 KiB datagram costs 48 packets of 1350 bytes, a GSO
#: batch carries at most 64 KiB in all, and beyond about 16 KiB the per-packet saving is small.
MAX_UDP_PAYLOAD_LIMIT = 65527
#: ``keep_alive`` value: PING at a third of the idle timeout while a stream is open.
KEEP_ALIVE_AUTO = "auto"
#: The longest ``server_id`` (QUIC-LB, protocol.rst "Connection IDs for load balancers"): an
#: 8-byte CID is the first octet, the server ID and at least 4 nonce bytes (the route byte and
#: random bytes).
MAX_SERVER_ID_LENGTH = 3
#: The largest ``config_rotation``: QUIC-LB reserves 0b111 for unroutable CIDs.
MAX_CONFIG_ROTATION = 6
#: The most worker processes: a worker's route byte is one byte, ``byte % count == index``.
MAX_WORKER_COUNT = 255


@dataclass(slots=True)
class ConnectionConfig:
    """
    Per-connection settings.

    :ivar tls: a :class:`kwik_twisted.core.crypto.handshake.TlsConfig`.
    :ivar congestion_control: a registered controller name (``"cubic"``, ``"newreno"``, ...).
    :ivar scheduler: a registered path scheduler name.
    :ivar idle_timeout: seconds of silence after which the connection ends (the smaller of both
        sides').
    :ivar keep_alive: seconds between PINGs on an otherwise idle connection; ``None`` for none;
        :data:`KEEP_ALIVE_AUTO` (the default) for PINGs at a third of the negotiated idle timeout
        while at least one stream is open, so a connection (a tunnel, an SSH or database session)
        ends only when its peer is really gone, as a TCP connection would.
    :ivar max_datagram_size: the largest UDP payload we send.  1350 fits every common path MTU with
        room for IPv6 and tunnel headers.
    :ivar initial_max_data: the connection receive window we start with; it grows (auto-tuning) up
        to ``max_data_window`` when the application reads fast.
    :ivar initial_max_stream_data: the same, per stream, growing up to ``max_stream_data_window``.
    :ivar max_streams: how many streams the peer may have open at once.
    :ivar max_ack_delay: the longest we delay an acknowledgement.
    :ivar compression: lz4-compress stream data by default (off: see the CRIME caveat in the spec).
    :ivar stream_send_buffer: bytes a stream buffers before it reports itself not writable.
    :ivar max_paths: paths we accept at once.
    :ivar initial_rtt: the RTT assumed before the first sample.
    :ivar advertise: (server) further ``(host, port)`` addresses announced with ADD_ADDRESS.
    :ivar use_advertised: (client) open a path to each advertised address.
    :ivar accept_unordered: deliver the streams a peer opens without the ORDERED flag as pieces
        with their offsets.  Off (the default), every peer stream is reassembled in order whatever
        its flags say: the flag is the sender's permission, not an obligation of the receiver
        (protocol.rst, "Streams").  The Twisted glue turns it on only for factories whose protocol
        opts in to pieces.
    :ivar max_datagram_frame_size: the largest unreliable datagram (DATAGRAM frame payload) we
        accept, announced as the ``max_datagram_frame_size`` transport parameter; 0 refuses them
        (the peer then sends none).  Whether we may send them is the peer's parameter.
    """

    tls: Any = None
    congestion_control: str = "cubic"
    scheduler: str = "lowest-rtt"
    idle_timeout: float = 30.0
    keep_alive: float | str | None = "auto"
    max_datagram_size: int = 1350
    initial_max_data: int = 4 * 1024 * 1024
    max_data_window: int = 32 * 1024 * 1024
    initial_max_stream_data: int = 1024 * 1024
    max_stream_data_window: int = 16 * 1024 * 1024
    max_streams: int = 256
    max_ack_delay: float = 0.025
    compression: bool = False
    stream_send_buffer: int = 1024 * 1024
    max_paths: int = 4
    initial_rtt: float = 0.333
    active_connection_id_limit: int = 4
    #: Server: other ``(host, port)`` addresses to advertise with ADD_ADDRESS after the handshake.
    advertise: tuple = ()
    #: Client: open a path to every address the server advertises (from path 0's local address).
    use_advertised: bool = False
    accept_unordered: bool = False
    max_datagram_frame_size: int = 1200
    #: Packets sealed under one application key generation before we update the keys
    #: (protocol.rst, "Key update"): 2**22, half the AES-GCM confidentiality limit.
    key_update_interval: int = 2**22
    #: Path MTU discovery (protocol.rst, "Path MTU discovery"): probe each path for datagrams
    #: larger than ``max_datagram_size``, up to ``max_udp_payload`` and the peer's limit.
    pmtud: bool = True
    #: The largest UDP payload we try (PMTUD's ceiling) and, with ``pmtud`` on, announce we can
    #: receive.  16384: big datagrams cut the per-packet Python cost on loopback and jumbo-frame
    #: LANs, and the gain flattens beyond (see :data:`MAX_UDP_PAYLOAD_LIMIT` for the hard cap).
    max_udp_payload: int = 16384
    #: 32 bytes the stateless reset tokens of our CIDs (and a server's Retry tokens) derive from;
    #: ``None``: a fresh one per connection (clients) or per dispatcher (servers).  A Twisted
    #: server derives it from its TLS private key, so it survives restarts (protocol.rst,
    #: "Stateless reset").
    static_secret: bytes | None = None
    #: Server: ask clients to prove their address with a Retry first: ``"yes"`` always, ``"no"``
    #: never, ``"auto"`` once many handshakes are half open (a flood of spoofed Initials).
    retry: str = "auto"
    #: Server: the QUIC-LB server ID (0 to 3 bytes, ``serverId=HEX``) every CID we issue
    #: carries after its first octet, for a CID-routing load balancer in front of several
    #: machines; empty: none (protocol.rst, "Connection IDs for load balancers").
    server_id: bytes = b""
    #: Server: the QUIC-LB config rotation codepoint (0..6) in the top 3 bits of our CIDs.
    config_rotation: int = 0
    #: Server worker process: its index among ``worker_count`` workers sharing a port; every CID
    #: it issues has a route byte ``% worker_count == worker_index``.  ``None``: not a worker.
    worker_index: int | None = None
    worker_count: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_datagram_size < MIN_DATAGRAM_SIZE:
            raise ConfigurationError(
                f"max_datagram_size must be at least {MIN_DATAGRAM_SIZE} bytes"
            )
        if not self.max_datagram_size <= self.max_udp_payload <= MAX_UDP_PAYLOAD_LIMIT:
            raise ConfigurationError(
                f"max_udp_payload must be between max_datagram_size and {MAX_UDP_PAYLOAD_LIMIT}"
            )
        if self.idle_timeout <= 0:
            raise ConfigurationError("idle_timeout must be positive")
        if self.keep_alive != KEEP_ALIVE_AUTO and self.keep_alive is not None:
            if isinstance(self.keep_alive, str) or self.keep_alive <= 0:
                raise ConfigurationError('keep_alive must be positive, None or "auto"')
        if self.max_streams < 1:
            raise ConfigurationError("max_streams must be at least 1")
        if self.key_update_interval < 1:
            raise ConfigurationError("key_update_interval must be at least 1 packet")
        if self.active_connection_id_limit < 2:
            raise ConfigurationError("active_connection_id_limit must be at least 2")
        if self.static_secret is not None and len(self.static_secret) < 16:
            raise ConfigurationError("static_secret must be at least 16 bytes")
        if self.max_datagram_frame_size < 0:
            raise ConfigurationError("max_datagram_frame_size must be 0 (off) or positive")
        self._check_routing()

    def _check_routing(self) -> None:
        """The QUIC-LB and worker fields (see their comments)."""
        if not isinstance(self.server_id, bytes) or len(self.server_id) > MAX_SERVER_ID_LENGTH:
            raise ConfigurationError(
                f"server_id must be at most {MAX_SERVER_ID_LENGTH} bytes (an 8-byte CID keeps "
                "4 nonce bytes)"
            )
        if not 0 <= self.config_rotation <= MAX_CONFIG_ROTATION:
            raise ConfigurationError(
                f"config_rotation must be 0..{MAX_CONFIG_ROTATION} (7 marks unroutable CIDs)"
            )
        if not 1 <= self.worker_count <= MAX_WORKER_COUNT:
            raise ConfigurationError(f"worker_count must be 1..{MAX_WORKER_COUNT}")
        if self.worker_index is not None and not 0 <= self.worker_index < self.worker_count:
            raise ConfigurationError("worker_index must be 0..worker_count-1 (or None)")
