"""
kwik_twisted: Kwik, a multipath, encrypted transport over UDP, for Twisted.

Applications use it through ``kwik:`` endpoint strings (see the README) or the endpoint classes
re-exported here; the sans-I/O protocol machinery lives in :mod:`kwik_twisted.wire` (codecs) and
:mod:`kwik_twisted.core` (the connection), and only :mod:`kwik_twisted.glue` and the public Twisted
modules (:mod:`~kwik_twisted.endpoints`, :mod:`~kwik_twisted.parsers`, :mod:`~kwik_twisted.tap`,
:mod:`~kwik_twisted.interfaces`) know the reactor.

The public API is re-exported lazily (PEP 562): ``import kwik_twisted`` imports neither Twisted's
reactor nor the core; ``kwik_twisted.KwikClientEndpoint`` imports :mod:`kwik_twisted.endpoints`
on first use.  Each name keeps its home module as its canonical import path
(``from kwik_twisted.endpoints import KwikClientEndpoint`` works as before).
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0.dev0"

#: Public name -> the module (relative to this package) it comes from.
_EXPORTS: dict[str, str] = {
    # endpoints
    "KwikClientEndpoint": ".endpoints",
    "KwikHandshakeError": ".endpoints",
    "KwikListeningPort": ".endpoints",
    "KwikServerEndpoint": ".endpoints",
    "POOL_LINGER": ".endpoints",
    "closeClientConnections": ".endpoints",
    # endpoint-string parsers
    "CLIENT_ARGUMENTS": ".parsers",
    "SERVER_ARGUMENTS": ".parsers",
    "KwikClientParser": ".parsers",
    "KwikServerParser": ".parsers",
    "parse_client_arguments": ".parsers",
    "parse_server_arguments": ".parsers",
    # configuration
    "ConnectionConfig": ".config",
    "KEEP_ALIVE_AUTO": ".config",
    "TlsConfig": ".core.crypto.handshake",
    # streams: what an application may ask of one stream
    "Priority": ".streams",
    "QoSPolicy": ".streams",
    "StreamProgress": ".streams",
    # interfaces: what stream transports and connections offer, what an application may provide
    "IKwikConnection": ".interfaces",
    "IKwikConnectionObserver": ".interfaces",
    "IKwikDatagramProtocol": ".interfaces",
    "IKwikQoSObserver": ".interfaces",
    "IKwikMessageProtocol": ".interfaces",
    "IKwikStreamTransport": ".interfaces",
    # errors
    "AeadLimitReached": ".errors",
    "ChecksumError": ".errors",
    "ChecksumMismatch": ".errors",
    "CompressionError": ".errors",
    "ConfigurationError": ".errors",
    "ConnectionIdLimitError": ".errors",
    "ConnectionRefusedByPeer": ".errors",
    "DatagramError": ".errors",
    "DatagramTooLarge": ".errors",
    "DatagramsUnsupported": ".errors",
    "DecryptionFailed": ".errors",
    "DroppedPacket": ".errors",
    "ErrorCode": ".errors",
    "FinalSizeError": ".errors",
    "FlowControlError": ".errors",
    "FrameEncodingError": ".errors",
    "HandshakeBufferExceeded": ".errors",
    "HandshakeFailed": ".errors",
    "InternalError": ".errors",
    "KwikError": ".errors",
    "MalformedPacket": ".errors",
    "NoViablePath": ".errors",
    "ProtocolError": ".errors",
    "ProtocolViolation": ".errors",
    "StreamLimitError": ".errors",
    "StreamStateError": ".errors",
    "TransportParameterError": ".errors",
    "TruncatedInput": ".errors",
    "UnknownConnection": ".errors",
    "UnknownExtensionError": ".errors",
    "UnsupportedVersion": ".errors",
    "UnknownConnectionId": ".errors",
    # events
    "AddressAdvertised": ".events",
    "ConnectionTerminated": ".events",
    "DatagramDropped": ".events",
    "DatagramReceived": ".events",
    "Event": ".events",
    "HandshakeCompleted": ".events",
    "PathAbandoned": ".events",
    "PathAdded": ".events",
    "PathEvent": ".events",
    "PathFailed": ".events",
    "PathRecovered": ".events",
    "PathValidated": ".events",
    "QoSViolated": ".events",
    "StopSendingReceived": ".events",
    "StreamClosed": ".events",
    "StreamDataReceived": ".events",
    "StreamOpened": ".events",
    "StreamReset": ".events",
    "StreamWritable": ".events",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    """Import a public name's module on first use (PEP 562) and cache the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's own names and every lazily exported one."""
    return sorted(set(globals()) | set(_EXPORTS))
