"""
The contracts between the pieces of the Twisted glue, as zope interfaces.

Theory of operation.  Three kinds of object meet in the glue, and each expects something of the
others; these interfaces say exactly what, so that a fake in a test and the real thing provide the
same methods, and ``zope.interface.verify.verifyObject`` checks both::

    BatchingPort (a UDP port)        --IReadBatchObserver-->  port protocol / PathSocket
    port protocol                    --IBatchingUDPTransport-> BatchingPort (when it has it)
    PathSocket                       --IPathSocketOwner-->    port protocol
    KwikConnection (connection glue) --IConnectionOwner-->    port protocol (server or client)
    KwikClientProtocol               --IClientPortOwner-->    the client endpoint's connection
    KwikStreamTransport              --IStreamConnection-->   KwikConnection
    KwikConnection                   --IStreamEventSink-->    KwikStreamTransport

Read an arrow as "calls the methods of".  None of these is public API: an application sees the
stream transport as an ordinary ``ITransport`` that also provides
:class:`~kwik_twisted.interfaces.IKwikStreamTransport`, and the connection through
``transport.kwikConnection`` (:class:`~kwik_twisted.interfaces.IKwikConnection`; see
:mod:`kwik_twisted.interfaces`).  Method names are camelCase, as in Twisted's own interfaces.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IReadBatchObserver(Interface):
    """A datagram protocol that wants to know when its port finished reading a batch."""

    def readBatchEnded():
        """
        The port read what its socket had (one bounded batch of ``datagramReceived`` calls).

        Called once after every read that delivered at least one datagram, so the protocol can
        flush once per batch rather than on the next reactor turn.  An exception raised here is
        logged by the port.
        """


class IBatchingUDPTransport(Interface):
    """A UDP port that sends several datagrams in one call (UDP GSO where the kernel has it)."""

    def sendBatch(datagrams, addr=None):
        """
        Send ``datagrams`` (a sequence of ``bytes``) to ``addr``.

        :param addr: ``(host, port)``, or ``None`` (or the connected address) on a connected
            port.
        :returns: how many datagrams the kernel took; the rest were dropped, as UDP may.
        :raises InvalidAddressError: ``addr`` is not usable on this port.
        """


class IPathSocketOwner(IReadBatchObserver):
    """The port protocol that owns extra UDP sockets (one per local address of a path)."""

    def datagramReceivedOn(local, data, addr):
        """
        A datagram arrived on the socket bound to ``local``.

        :param local: the receiving socket's ``(host, port)``.
        :param data: the datagram.
        :param addr: the sender's ``(host, port)``.
        """


class IConnectionOwner(Interface):
    """
    What the connection glue (:class:`~kwik_twisted.glue.connection.KwikConnection`) expects of
    the port protocol that owns it: sending datagrams, addresses, paths, and being told of the
    connection's life.  The server and client port protocols provide it.
    """

    received = Attribute(
        "An ordered set (a dict with ``None`` values) of the connections that received "
        "datagrams in the current read batch, serviced when it ends; or ``None`` when the "
        "port has no end-of-batch hook (a connection then services on the next turn)."
    )

    def sendDatagrams(out):
        """
        Send datagrams, each from the socket bound to its local address.

        :param out: a list of ``(data, local, remote)`` triples, as the core's
            ``datagrams_to_send`` returns them.
        :return: ``(size, local, remote)`` for each datagram the kernel refused as too big for
            its route (EMSGSIZE; path MTU discovery hears of it), or ``None``.
        """

    def hostAddress():
        """The local UDP address (an ``IPv4Address`` or ``IPv6Address``)."""

    def openPath(localHost, remote):
        """
        Bind a socket to ``localHost`` and open a path from it to ``remote`` (``None``: the
        server's address).

        :returns: the new path's ID.
        :raises ConfigurationError: the owner cannot open paths (a server), or the core refused.
        :raises CannotListenError: ``localHost`` cannot be bound.
        """

    def streamOpenedByPeer(conn, streamId):
        """The peer opened stream ``streamId`` on ``conn``: attach a protocol or refuse it."""

    def handshakeCompleted(conn):
        """``conn`` completed its handshake."""

    def pathChanged(conn, event):
        """A path of ``conn`` changed (a :class:`~kwik_twisted.events.PathEvent`)."""

    def addressAdvertised(conn, event):
        """The peer advertised an address (:class:`~kwik_twisted.events.AddressAdvertised`)."""

    def connectionTerminated(conn, event):
        """
        ``conn`` ended (:class:`~kwik_twisted.events.ConnectionTerminated`); its core may still
        drain for a while before :meth:`connectionGone`.
        """

    def streamsIdle(conn):
        """``conn`` has no live streams left."""

    def connectionGone(conn):
        """``conn``'s core state is gone: forget it.  Called exactly once."""


class IClientPortOwner(Interface):
    """What a client port protocol tells the endpoint's record of its connection."""

    def handshakeCompleted():
        """The connection is usable: streams may be opened on it."""

    def connectionFailed(failure):
        """The connection failed before its handshake completed (a ``ConnectError`` failure)."""

    def terminated():
        """The connection ended after its handshake: no new streams may join it."""

    def idle():
        """The connection has no streams left."""

    def gone():
        """The connection's core state is gone: stop the UDP port."""


class IStreamConnection(Interface):
    """
    What a stream transport calls on its connection glue.  A stream already gone is not an
    error: the calls then do nothing.
    """

    reactor = Attribute("The reactor (the transport schedules ``callLater(0)`` calls on it).")

    def send(streamId, data, fin=False):
        """Queue ``data`` (and a FIN) on a stream; returns whether the core took it."""

    def writable(streamId):
        """Whether the stream's send buffer has room."""

    def streamOrdered(streamId):
        """Whether the core delivers the stream's bytes in order (``True`` for a stream gone)."""

    def streamView(streamId):
        """
        The core's read-only view of a stream (``priority``, ``qos``, ``ordered``, ``paths``,
        ``progress``: see ``Connection.stream``), or ``None`` once the core forgot it.
        """

    def updateStream(streamId, **changes):
        """
        Change a stream's ``priority`` (0, 1 or 2), ``qos`` (the wire's ``QosPolicy`` or
        ``None``) or ``paths`` (a tuple of path IDs or ``None``), as the core takes them.

        :raises ConfigurationError: a path ID is not one of the connection's paths.
        """

    def resetStream(streamId, code):
        """Abandon our direction of a stream (RESET_STREAM with ``code``)."""

    def stopSending(streamId, code):
        """Ask the peer to stop sending on a stream (STOP_SENDING with ``code``)."""

    def pauseReading(streamId, paused):
        """Stop (``paused``) or resume delivering a stream's data."""

    def requestPull(transport):
        """Call ``transport.pull()`` on the next service turn."""

    def scheduleTurn():
        """Service the connection on the next reactor turn (sends what was queued)."""

    def detach(streamId):
        """The transport of ``streamId`` lost its protocol: forget it."""


class IStreamEventSink(Interface):
    """
    The stream events a stream transport takes from its connection glue (the core's stream
    events, and the glue's own calls), in the order they happened.
    """

    def attached():
        """The transport was registered with its connection: connect the protocol to it."""

    def pull():
        """A turn the transport asked for: deliver held data, or ask a pull producer for more."""

    def dataReceivedAt(offset, data, fin):
        """
        A piece of the stream arrived.

        :param offset: where ``data`` starts in the stream.
        :param data: the piece (may be empty when it only carries the FIN).
        :param fin: whether the piece ends the stream.
        """

    def resetByPeer(code):
        """The peer reset its direction of the stream (RESET_STREAM with ``code``)."""

    def stopSendingReceived(code):
        """The peer reads no more (STOP_SENDING with ``code``): our direction is reset."""

    def streamWritable():
        """The stream's send buffer has room again."""

    def streamClosed():
        """The core forgot the stream: both directions are finished."""

    def connectionGone(reason):
        """The connection ended before the stream closed (``reason``: an exception)."""


__all__ = [
    "IBatchingUDPTransport",
    "IClientPortOwner",
    "IConnectionOwner",
    "IPathSocketOwner",
    "IReadBatchObserver",
    "IStreamConnection",
    "IStreamEventSink",
]
