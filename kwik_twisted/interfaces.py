"""
The Kwik side of the Twisted API: what a stream's transport and its connection offer beyond an
ordinary transport, and what an application's protocol may provide to hear more.

A stream's protocol is an ordinary :class:`~twisted.internet.interfaces.IProtocol`, connected to a
transport that provides :class:`~twisted.internet.interfaces.ITCPTransport` and
:class:`IKwikStreamTransport`: the stream's ID, priority, QoS policy and ordering, and its
progress.  ``transport.kwikConnection`` provides :class:`IKwikConnection`: it opens more streams
on the same connection (``openStream``) and manages its paths.  If the protocol also provides
:class:`IKwikConnectionObserver`, the glue tells it about the paths of the Kwik connection its
stream belongs to (see ``docs/endpoints.rst``, "Multipath").

Byte-stream integrity.  A protocol that provides only ``IProtocol`` always receives the exact
in-order byte stream through ``dataReceived``, whatever flags the peer sets: a server reassembles
in order every stream a client opens without the ORDERED flag, unless its factory's protocol
provides :class:`IKwikMessageProtocol`, and the glue resets (code
:data:`~kwik_twisted.glue.transport.UNORDERED_REFUSED`) a stream whose bytes would still reach
such a protocol out of order.  Only :class:`IKwikMessageProtocol` providers get unordered pieces.
"""

from __future__ import annotations

from twisted.internet.interfaces import IProtocol
from zope.interface import Attribute, Interface

from .streams import Priority


class IKwikConnectionObserver(Interface):
    """
    A stream protocol that wants the path events of its Kwik connection.

    Events come in the order the connection produced them, from the moment the stream is connected
    (``makeConnection``) until it lost its connection (``connectionLost``); events from before the
    stream was connected are not replayed (``transport.kwikConnection.pathMetrics()`` and
    ``transport.kwikConnection.core.paths`` show the current state).
    """

    def pathEvent(event):
        """
        A path of the connection changed.

        :param event: a :class:`~kwik_twisted.events.PathEvent`: ``PathAdded``,
            ``PathValidated``, ``PathFailed``, ``PathRecovered`` or ``PathAbandoned``, each with
            ``path_id``, ``local_addr`` and ``remote_addr``.  An exception raised here is logged
            and otherwise ignored.
        """


class IKwikQoSObserver(Interface):
    """
    A stream protocol that wants to know when the transport cannot keep its stream's QoS promise
    (docs/qos.rst).
    """

    def qosViolated(event):
        """
        The connection's paths cannot meet this stream's
        :class:`~kwik_twisted.streams.QoSPolicy` now; reported once per episode.

        :param event: a :class:`~kwik_twisted.events.QoSViolated` with ``stream_id``, ``metric``
            (``"max_latency"``, ``"loss_threshold"``, ``"max_jitter"`` or ``"min_bandwidth"``),
            ``measured`` (the best the paths offer) and ``bound`` (the policy's), in seconds, a
            fraction or bits per second.  An exception raised here is logged and ignored.
        """


class IKwikDatagramProtocol(Interface):
    """
    An object that receives the unreliable datagrams of a Kwik connection (RFC 9221 adapted;
    ``docs/endpoints.rst``, "Datagrams").

    Opt-in: datagrams go to the receiver set with :meth:`IKwikConnection.setDatagramReceiver`, or,
    while none is set, to every stream protocol of the connection that provides this interface.
    """

    def datagramReceived(data):
        """
        One datagram arrived (``bytes``, possibly empty).  Datagrams may be lost, duplicated by
        nobody but the peer, and arrive in any order.  An exception raised here is logged and
        ignored.
        """

    def datagramsDropped(count, reason):
        """
        ``count`` datagrams we had queued were dropped before they were sent: ``reason`` is
        ``"queue full"`` (the oldest went to make room), ``"unsupported"`` or ``"too large"``
        (the peer's transport parameters, known only after the handshake, refuse them).
        """


class IKwikMessageProtocol(IProtocol):
    """
    A stream protocol that accepts the pieces of an *unordered* stream as they arrive.

    On a stream without the ORDERED flag (one the peer opened so, or one we opened unordered),
    every piece of data goes to :meth:`pieceReceived` with its offset, exactly once, in arrival
    order; the end of the stream is reported as for any protocol (``readConnectionLost`` or
    ``connectionLost``) once every byte up to the final size arrived.  On an ordered stream such a
    protocol gets ``dataReceived`` like any other.

    A server endpoint whose factory's ``protocol`` class implements this interface accepts
    unordered streams from its clients (``ConnectionConfig.accept_unordered``); any other server
    reassembles them in order.
    """

    def pieceReceived(offset, data):
        """
        A piece of an unordered stream arrived.

        :param offset: where ``data`` starts in the stream.
        :param data: the piece's bytes (never empty).
        """


class IKwikStreamTransport(Interface):
    """
    The Kwik side of a stream's transport (every stream transport provides it, alongside
    ``ITCPTransport``).

    Priority and QoS policy belong to the stream, both directions: the opener's choice travels
    with the stream (the QOS extension), the accepting side reads it here, and its replies on the
    stream keep it until it calls :meth:`setPriority` or :meth:`setQoS` itself.  Once the stream is
    gone, the attributes keep their last values and the setters do nothing.
    """

    streamId = Attribute("The stream's ID (an ``int``; even for client-opened streams).")
    priority = Attribute(
        "The stream's :class:`~kwik_twisted.streams.Priority`: the opener's choice, or what "
        ":meth:`setPriority` set since.")
    qos = Attribute(
        "The stream's :class:`~kwik_twisted.streams.QoSPolicy` (the opener's, or what "
        ":meth:`setQoS` set since), or ``None`` when it has none.")
    ordered = Attribute(
        "Whether the stream's bytes reach the protocol in order (``dataReceived``); ``False`` "
        "when they arrive as pieces (``IKwikMessageProtocol.pieceReceived``).")
    maxRate = Attribute(
        "The cap on our sending rate on the stream, bits per second (a ``float``), or ``None`` "
        "when it has none (see :meth:`setMaxRate`).")
    kwikConnection = Attribute(
        "The Kwik connection the stream belongs to, an :class:`IKwikConnection`.")

    def setPriority(priority):
        """
        Send the stream's data at ``priority`` (a :class:`~kwik_twisted.streams.Priority`, or
        0, 1 or 2) from now on.

        :raises ConfigurationError: ``priority`` is not a priority.
        """

    def setQoS(policy):
        """
        Ask for ``policy`` (a :class:`~kwik_twisted.streams.QoSPolicy`, or ``None`` for no
        requirement) on the stream from now on.

        :raises TypeError: ``policy`` is neither.
        """

    def setPaths(ids):
        """
        Pin the stream to the paths ``ids`` (path IDs; ``None`` lets it use every path): its
        frames use those paths while any of them works, the others only when none does.

        :raises ConfigurationError: a path ID is not one of the connection's paths.
        """

    def setMaxRate(bitsPerSecond):
        """
        Cap our sending rate on the stream at ``bitsPerSecond`` (retransmissions included), or
        lift the cap with ``None``.  Local only: the peer is not told.  The stream's data waits
        in its send buffer while the cap holds it back; the other streams use the capacity.

        :raises ConfigurationError: neither ``None`` nor a positive number.
        """

    def progress():
        """The stream's byte counts so far, a :class:`~kwik_twisted.streams.StreamProgress`."""


class IKwikConnection(Interface):
    """
    A Kwik connection, as its streams' ``transport.kwikConnection`` shows it to an application.
    """

    def openStream(protocol, *, priority=Priority.NORMAL, qos=None, ordered=True, compress=None,
                   paths=None):
        """
        Open a new stream on this connection and connect ``protocol`` to it.

        :param protocol: an ``IProtocol``; with ``ordered=False`` it must provide
            :class:`IKwikMessageProtocol`.
        :param priority: a :class:`~kwik_twisted.streams.Priority` (or 0, 1 or 2).
        :param qos: a :class:`~kwik_twisted.streams.QoSPolicy`, or ``None``.
        :param ordered: ``False`` lets both sides deliver the stream's pieces as they arrive.
        :param compress: lz4-compress the stream's data (``None``: the connection's
            ``compression`` setting).
        :param paths: path IDs to pin the stream to (see ``IKwikStreamTransport.setPaths``), or
            ``None``.
        :returns: the new stream's transport (an :class:`IKwikStreamTransport`); ``protocol``
            was connected to it (``makeConnection``) before this returns.
        :raises TypeError: ``ordered=False`` with a protocol that does not provide
            :class:`IKwikMessageProtocol`, or a ``qos`` that is not a ``QoSPolicy``.
        :raises ConfigurationError: a bad ``priority`` or path ID.
        :raises KwikError: the peer's stream limit does not allow another stream now, or the
            connection is closed.
        """

    def congestionReport():
        """
        The seed's CongestionReport: each path's congestion level and type (delay, loss, standing
        queue), queueing delay now and predicted one smoothed RTT ahead, loss rate against its
        baseline, delivery rate; the global level; the QoS actions in force
        (a :class:`~kwik_twisted.core.qos.detector.CongestionReport`; ``as_dict()`` gives JSON).
        """

    def updateKeys():
        """
        Update this connection's application keys (protocol.rst, "Key update") as soon as the
        rules allow: with the next packet sent, once the peer answered the previous update.  Keys
        also update by themselves every ``keyUpdate=N`` packets.

        :returns: ``False`` before the handshake completed (there are no keys to update yet).
        """

    def pathMetrics():
        """
        A snapshot of every live path's metrics, ``{path_id: PathMetrics}`` (RTT, bandwidth,
        loss, congestion window, bytes in flight, packets and bytes sent and received...).
        """

    def openPath(localHost, remote=None):
        """
        Open another path (client only) from ``localHost`` to ``remote`` (``(host, port)``;
        ``None``: the server's address).

        :returns: the new path's ID.
        """

    def setPathBackup(pathId, backup=True):
        """Make path ``pathId`` a backup (used only while no other path works), or not."""

    def setPathCost(pathId, cost):
        """
        Set what sending on path ``pathId`` costs, a finite number >= 0 (0 by default; a metered
        link is dearer): a path with a cost carries data only when cheaper paths cannot meet the
        demand or the streams' QoS.  Local only: the peer is not told.

        :raises ConfigurationError: no such path, or a bad ``cost``.
        """

    def abandonPath(pathId):
        """Stop using path ``pathId`` for good; its data moves to the other paths."""

    def close(code=0, reason=""):
        """Close the whole connection (every stream) with an application error ``code``."""

    def sendDatagram(data):
        """
        Send ``data`` (bytes) as one unreliable datagram: sent at most once, never retransmitted,
        ahead of stream data and within the congestion window.  Datagrams sent before the
        handshake completed wait for it; a bounded queue drops its oldest datagram when full
        (reported through ``IKwikDatagramProtocol.datagramsDropped``).

        :raises DatagramsUnsupported: the peer does not accept datagrams, or the connection is
            closed.
        :raises DatagramTooLarge: ``data`` is larger than the peer accepts or one packet carries.
        """

    def setDatagramReceiver(receiver):
        """
        Deliver the connection's datagrams to ``receiver`` (an :class:`IKwikDatagramProtocol`)
        instead of its stream protocols; ``None`` goes back to the stream protocols.

        :raises TypeError: ``receiver`` does not provide :class:`IKwikDatagramProtocol`.
        """


__all__ = [
    "IKwikConnection",
    "IKwikConnectionObserver",
    "IKwikDatagramProtocol",
    "IKwikMessageProtocol",
    "IKwikQoSObserver",
    "IKwikStreamTransport",
]
