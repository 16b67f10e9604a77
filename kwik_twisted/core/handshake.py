"""
The handshake's progress on a connection: TLS bytes in and out, keys, confirmation, and the
exchange of transport parameters.

Theory of operation (protocol.rst, "Handshake" and "Transport parameters").  TLS 1.3 runs over
HANDSHAKE frames; the TLS session itself (:mod:`kwik_twisted.core.crypto.handshake`) only turns
bytes into bytes.  :class:`Handshake` feeds it the peer's in-order handshake bytes and queues its
answers, and when TLS completes:

* application keys are exported and installed in the
  :class:`~kwik_twisted.core.keys.KeySchedule`, and the connection is ESTABLISHED;
* our TRANSPORT_PARAMETERS go first in the control queue;
* the server's handshake is then *confirmed*: it sends HANDSHAKE_DONE, advertises its extra
  addresses, and trusts the client's address (no amplification limit); the client's is confirmed
  when HANDSHAKE_DONE arrives.  Confirmation retires the initial keys and tells every path's
  recovery.

The peer's TRANSPORT_PARAMETERS, once, bind us: flow-control limits (never below the spec's
minimums), ``max_paths`` (paths opened before them start now), ``max_datagram_size`` (never below
:data:`~kwik_twisted.config.MIN_DATAGRAM_SIZE`), the smaller idle timeout, and the peer's ACK
delay, and ``max_datagram_frame_size`` (whether, and how large, datagrams may be sent:
:mod:`~kwik_twisted.core.datagrams`).  Parameters that change later are a PROTOCOL_VIOLATION.

Server load.  A server's connections carry ``server_load`` (protocol.rst, "Transport parameters"):
the :class:`~kwik_twisted.core.dispatcher.ServerDispatcher` hands each of them a callable
(:attr:`Handshake.server_load`) that is asked for the load, in permille, when the handshake
completes, so the figure is the one of the moment the parameters go out.  It is sent once, at the
handshake, and never updated: a client uses it only to choose among a server's addresses for its
*next* connection, and every new connection brings a fresh figure.  The client records it (0..1) on
the :class:`~kwik_twisted.core.paths.manager.PathManager`, one value per connection (all its paths
reach the same server process).  A value above 1000, or one sent by a client, is a
TRANSPORT_PARAMETER_ERROR.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..config import MIN_DATAGRAM_SIZE, ConnectionConfig
from ..errors import (
    ConfigurationError,
    FlowControlError,
    HandshakeBufferExceeded,
    ProtocolViolation,
    TransportParameterError,
)
from ..events import Event, HandshakeCompleted
from ..wire import (
    HandshakeDoneFrame,
    HandshakeFrame,
    TransportParameter,
    TransportParametersFrame,
)
from .cids import DEFAULT_PEER_LIMIT
from .keys import KeySchedule
from .lifecycle import Lifecycle
from .paths.manager import DEFAULT_PEER_MAX_PATHS, PathManager
from .sending import PacketContext
from .streams.manager import (
    DEFAULT_MAX_DATA,
    DEFAULT_MAX_STREAM_DATA,
    DEFAULT_MAX_STREAMS,
    StreamManager,
)
from .streams.reassembly import Reassembler
from .streams.sendbuffer import SendBuffer
from .timers import IdleTimer

#: Handshake bytes buffered past the read offset at most (protocol.rst, HANDSHAKE).
MAX_HANDSHAKE_BUFFER = 64 * 1024
#: The peer's max_datagram_size until its transport parameters arrive.
DEFAULT_PEER_DATAGRAM_SIZE = 1350
#: ``server_load`` is in permille: this value is a fully loaded server.
FULL_LOAD = 1000


class Handshake:
    """
    Drives the TLS session of one connection and applies what the handshake settles.

    :param tls: the TLS session (``start``, ``receive``, ``complete``,
        ``application_protections``, ``alpn``, ``cipher``, ``peer_certificate``).
    :param send: the buffer of handshake bytes to send (the packet assembler takes from it).
    :param local_parameters: our transport parameters, asked for when the handshake completes.
    :ivar server_load: server side, set by the dispatcher: returns the server's load in permille
        (0..:data:`FULL_LOAD`), sent as ``server_load`` with our parameters; ``None``: not sent.
    """

    __slots__ = (
        "tls", "config", "is_client", "original_dcid", "keys", "lifecycle", "paths", "streams",
        "ctx", "idle", "control", "emit", "local_parameters", "send", "receive", "peer_parameters",
        "server_load"
    )

    def __init__(
        self,
        tls,
        *,
        config: ConnectionConfig,
        is_client: bool,
        original_dcid: bytes,
        send: SendBuffer,
        keys: KeySchedule,
        lifecycle: Lifecycle,
        paths: PathManager,
        streams: StreamManager,
        ctx: PacketContext,
        idle: IdleTimer,
        control: deque,
        emit: Callable[[Event], None],
        local_parameters: Callable[[], dict[int, int]],
    ) -> None:
        self.tls = tls
        self.config = config
        self.is_client = is_client
        self.original_dcid = original_dcid
        self.keys = keys
        self.lifecycle = lifecycle
        self.paths = paths
        self.streams = streams
        self.ctx = ctx
        self.idle = idle
        self.control = control
        self.emit = emit
        self.local_parameters = local_parameters
        self.send = send
        self.receive = Reassembler(MAX_HANDSHAKE_BUFFER)
        self.peer_parameters: dict[int, int] | None = None
        self.server_load: Callable[[], int] | None = None

    def start(self) -> None:
        """Client: queue the ClientHello.

        :raises HandshakeFailed: TLS could not start.
        """
        hello = self.tls.start()
        if hello:
            self.send.write(hello)

    def on_frame(self, frame: HandshakeFrame, *, now: float) -> None:
        """
        A HANDSHAKE frame arrived: feed TLS what is now in order, queue its answer.

        :raises HandshakeBufferExceeded: too much handshake data past the read offset.
        """
        try:
            self.receive.insert(frame.offset, frame.data)
        except FlowControlError:
            raise HandshakeBufferExceeded("more than 64 KiB of handshake data buffered") from None
        data = self.receive.read()
        if not data:
            return
        was_complete = self.tls.complete
        out = self.tls.receive(data)
        if out:
            self.send.write(out)
        if self.tls.complete and not was_complete:
            self._complete()

    def _complete(self) -> None:
        self.keys.install(  # key update: interval in packets, PTO for the old keys' discard
            *self.tls.application_protections(self._key_context()),
            interval=self.config.key_update_interval, pto=self.paths.pto)
        self.lifecycle.establish()
        parameters = self.local_parameters()
        if self.server_load is not None and not self.is_client:
            load = min(FULL_LOAD, max(0, int(self.server_load())))
            parameters = {**parameters, TransportParameter.SERVER_LOAD: load}
        self.control.appendleft(TransportParametersFrame(parameters))
        # CIDs for further paths go out with our parameters, as many as any peer accepts (2);
        # the rest when the peer's limit is known: a new path's first packets must not overtake
        # the CID the peer needs to answer on it (core/cids.py).
        self.paths.cids.start(DEFAULT_PEER_LIMIT)
        if not self.is_client:
            self.control.append(HandshakeDoneFrame())
            self.paths.advertise()
            self.paths.validate_addresses()
            self._confirm()
        cert = self.tls.peer_certificate
        subject = cert.subject.rfc4514_string() if cert is not None else None
        self.emit(HandshakeCompleted(self.tls.alpn, self.tls.cipher, subject))

    def _key_context(self) -> bytes:
        """The CIDs that bind the exported application keys to this connection."""
        ours, theirs = self.ctx.local_cid, self.ctx.peer_cid
        return self.original_dcid + (ours + theirs if self.is_client else theirs + ours)

    def on_done(self) -> None:
        """
        HANDSHAKE_DONE arrived: the client's handshake is confirmed.

        :raises ProtocolViolation: we are the server.
        """
        if not self.is_client:
            raise ProtocolViolation("a client sent HANDSHAKE_DONE")
        self._confirm()

    def _confirm(self) -> None:
        self.keys.confirm()
        self.paths.confirm()

    def on_parameters(self, frame: TransportParametersFrame, *, now: float) -> None:
        """
        The peer's TRANSPORT_PARAMETERS: apply them (once; a repeat must be identical).

        :raises TransportParameterError: a limit below the spec's minimums, or a
            ``server_load`` above :data:`FULL_LOAD` or from a client.
        :raises ProtocolViolation: they changed.
        """
        params = frame.parameters
        if self.peer_parameters is not None:
            if params != self.peer_parameters:
                raise ProtocolViolation("TRANSPORT_PARAMETERS changed")
            return
        self.peer_parameters = params
        self.streams.apply_peer_parameters(*_flow_control_limits(params))
        max_paths = params.get(TransportParameter.MAX_PATHS, DEFAULT_PEER_MAX_PATHS)
        datagram = params.get(TransportParameter.MAX_DATAGRAM_SIZE, DEFAULT_PEER_DATAGRAM_SIZE)
        if max_paths < 1 or datagram < MIN_DATAGRAM_SIZE:
            raise TransportParameterError("max_paths below 1 or max_datagram_size below 1200")
        load = params.get(TransportParameter.SERVER_LOAD)
        if load is not None and (not self.is_client or load > FULL_LOAD):
            raise TransportParameterError(
                "server_load from a client" if not self.is_client
                else f"server_load {load} above {FULL_LOAD} permille"
            )
        self.ctx.max_datagram_size = min(self.config.max_datagram_size, datagram)
        if self.ctx.datagrams is not None:  # RFC 9221: absent means no datagrams
            self.ctx.datagrams.on_peer_parameters(
                params.get(TransportParameter.MAX_DATAGRAM_FRAME_SIZE, 0),
                self.ctx.max_datagram_size,
            )
        idle = params.get(TransportParameter.MAX_IDLE_TIMEOUT_MS)
        if idle:
            self.idle.timeout = min(self.idle.timeout, idle / 1000)
        ack_delay = params.get(TransportParameter.MAX_ACK_DELAY_MS)
        cid_limit = params.get(TransportParameter.ACTIVE_CONNECTION_ID_LIMIT, DEFAULT_PEER_LIMIT)
        if cid_limit < DEFAULT_PEER_LIMIT:
            raise TransportParameterError("active_connection_id_limit below 2")
        self.paths.cids.start(cid_limit)  # NEW_CONNECTION_ID for further paths (core/cids.py)
        self.paths.on_peer_parameters(
            max_paths,
            None if ack_delay is None else ack_delay / 1000,
            now=now,
            server_load=None if load is None else load / FULL_LOAD,
            max_udp_payload=datagram,
        )


def local_parameters(config: ConnectionConfig) -> dict[int, int]:
    """The transport parameters we announce for ``config``."""
    return {
        TransportParameter.MAX_IDLE_TIMEOUT_MS: int(config.idle_timeout * 1000),
        TransportParameter.INITIAL_MAX_DATA: config.initial_max_data,
        TransportParameter.INITIAL_MAX_STREAM_DATA: config.initial_max_stream_data,
        TransportParameter.INITIAL_MAX_STREAMS: config.max_streams,
        TransportParameter.MAX_ACK_DELAY_MS: int(config.max_ack_delay * 1000),
        TransportParameter.ACTIVE_CONNECTION_ID_LIMIT: config.active_connection_id_limit,
        TransportParameter.MAX_PATHS: config.max_paths,
        # With PMTUD we receive what max_udp_payload allows (the glue reads 65535-byte buffers).
        TransportParameter.MAX_DATAGRAM_SIZE: (
            config.max_udp_payload if config.pmtud else config.max_datagram_size
        ),
        **({TransportParameter.MAX_DATAGRAM_FRAME_SIZE: config.max_datagram_frame_size}
           if config.max_datagram_frame_size else {}),
    }


def _flow_control_limits(params: dict[int, int]) -> tuple[int, int, int]:
    """
    The peer's (max_data, max_stream_data, max_streams).

    :raises TransportParameterError: one is below the spec's minimum.
    """
    max_data = params.get(TransportParameter.INITIAL_MAX_DATA, DEFAULT_MAX_DATA)
    stream_data = params.get(TransportParameter.INITIAL_MAX_STREAM_DATA, DEFAULT_MAX_STREAM_DATA)
    max_streams = params.get(TransportParameter.INITIAL_MAX_STREAMS, DEFAULT_MAX_STREAMS)
    if (
        max_data < DEFAULT_MAX_DATA
        or stream_data < DEFAULT_MAX_STREAM_DATA
        or max_streams < DEFAULT_MAX_STREAMS
    ):
        raise TransportParameterError("flow-control parameters below the spec's minimums")
    return max_data, stream_data, max_streams


def check_config(config: ConnectionConfig) -> None:
    """
    Refuse a configuration whose flow-control limits are below the spec's minimums.

    :raises ConfigurationError: one is.
    """
    if config.initial_max_data < DEFAULT_MAX_DATA:
        raise ConfigurationError(f"initial_max_data must be at least {DEFAULT_MAX_DATA}")
    if config.initial_max_stream_data < DEFAULT_MAX_STREAM_DATA:
        raise ConfigurationError(
            f"initial_max_stream_data must be at least {DEFAULT_MAX_STREAM_DATA}"
        )
    if config.max_streams < DEFAULT_MAX_STREAMS:
        raise ConfigurationError(f"max_streams must be at least {DEFAULT_MAX_STREAMS}")
