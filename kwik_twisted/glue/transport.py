"""
One Kwik stream as a Twisted transport: what an unmodified ``IProtocol`` is connected to.

Theory of operation.  A :class:`KwikStreamTransport` turns the protocol's calls into stream
operations on its :class:`~kwik_twisted.glue.connection.KwikConnection` (through
:class:`~kwik_twisted.glue.interfaces.IStreamConnection`) and the connection's stream events
(:class:`~kwik_twisted.glue.interfaces.IStreamEventSink`, which the transport provides) into
protocol calls, with the semantics of Twisted's TCP transport (``FileDescriptor``) wherever a
stream allows them:

* ``write`` queues bytes in the core's send buffer; it never refuses data.  A registered streaming
  producer is paused while the buffer is over its limit and resumed on ``StreamWritable``; a pull
  producer is asked for more whenever there is room.  So memory stays bounded however fast an
  application produces.
* ``loseConnection`` sends FIN after everything written and tells the peer we read no more
  (STOP_SENDING), as closing a TCP socket does; ``connectionLost(ConnectionDone)`` follows once the
  stream is fully closed (our FIN acknowledged, the peer's direction finished).  A pull producer
  still registered delays the FIN until it unregisters.  ``loseWriteConnection`` only sends FIN;
  reading goes on.
* A FIN from the peer ends the stream for an ordinary protocol (``connectionLost(ConnectionDone)``
  at once, our FIN follows what it wrote); an ``IHalfCloseableProtocol`` gets
  ``readConnectionLost`` instead, and ``connectionLost(ConnectionDone)`` when the stream is fully
  closed.
* ``abortConnection`` resets both directions (RESET_STREAM + STOP_SENDING) and delivers
  ``connectionLost(ConnectionAborted)`` on the next reactor turn.  A peer reset, or the connection
  ending (error, idle timeout, close by either side) before the stream closed, gives
  ``ConnectionLost``.
* Byte-stream integrity: ``dataReceived`` gets the exact in-order bytes of the stream, never a
  piece out of order.  The transport follows the offset of every piece; a piece that does not
  start where the previous one ended (only possible on a stream without the ORDERED flag) is not
  delivered: the stream is reset both ways with :data:`UNORDERED_REFUSED` and the protocol gets
  ``connectionLost(ConnectionLost)``.  On an unordered stream, a protocol providing
  :class:`~kwik_twisted.interfaces.IKwikMessageProtocol` gets every piece through
  ``pieceReceived(offset, data)`` instead, as it arrives.
* ``pauseProducing`` stops delivering data (the core stops reading, so flow control pushes back on
  the peer); events already queued are held and delivered, in order, on ``resumeProducing``.

The Kwik side of the transport (:class:`~kwik_twisted.interfaces.IKwikStreamTransport`: priority,
QoS policy, ordering, path assignment, progress, ``kwikConnection``) is the
:class:`~kwik_twisted.glue.controls.StreamControls` base class.

``connectionLost`` is called exactly once.  Addresses are ``IPv4Address``/``IPv6Address`` of type
``"UDP"``, the type Twisted's own UDP ports report.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    ITCPTransport,
    ITransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import IKwikMessageProtocol
from .controls import StreamControls
from .interfaces import IStreamEventSink

#: Code of the RESET_STREAM / STOP_SENDING that abortConnection sends.
ABORT_CODE = 0
#: Code of the STOP_SENDING that loseConnection sends (a clean close).
CLOSE_CODE = 0
#: Code of the RESET_STREAM / STOP_SENDING of a stream whose bytes would reach a protocol that
#: takes only in-order bytes (no :class:`~kwik_twisted.interfaces.IKwikMessageProtocol`) out of
#: order ("K" and 1; docs/endpoints.rst, "Ordered and unordered streams").
UNORDERED_REFUSED = 0x4B01

log = Logger()


@implementer(ITransport, ITCPTransport, IPushProducer, IConsumer, IStreamEventSink)
class KwikStreamTransport(StreamControls):
    """
    The transport of one stream.

    :param conn: the connection glue, an
        :class:`~kwik_twisted.glue.interfaces.IStreamConnection`; it calls this transport's
        :class:`~kwik_twisted.glue.interfaces.IStreamEventSink` methods, starting with
        :meth:`attached` once it registered the transport.
    :ivar streamId: the stream's ID.
    :ivar protocol: the protocol this transport is connected to.
    :ivar connected: true until ``connectionLost``.
    :ivar disconnecting: ``loseConnection`` was called.
    :ivar disconnected: ``connectionLost`` was called.
    :ivar producer: the registered producer, or ``None``.
    """

    def __init__(self, conn, streamId: int, host, peer, protocol, *, onLost=None) -> None:
        self._conn = conn
        self.streamId = streamId
        self._lastView = None
        self._host = host
        self._peer = peer
        self.protocol = protocol
        self._onLost = onLost
        self.connected = True
        self.disconnecting = False
        self.disconnected = False
        self.producer = None
        self.streamingProducer = False
        self.producerPaused = False
        self._pullOwed = False
        self._finWanted = False
        self._finQueued = False
        self._sendDead = False
        self._writeLostNotified = False
        self._readClosed = False
        self._coreClosed = False
        self._aborting = False
        self._paused = False
        self._held: list[tuple[int, bytes, bool]] = []
        self._readOffset = 0
        self._pieces: bool | None = None  # pieceReceived rather than dataReceived; None: not known
        self._noDelay = True
        self._keepAlive = False

    def attached(self) -> None:
        """Connect the protocol to this transport (``makeConnection``)."""
        self._view()  # keep the core's view of the stream (it answers after the stream closed)
        try:
            self.protocol.makeConnection(self)
        except Exception:
            self._protocolFailed(Failure())

    # -- ITransport ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data`` on the stream (ignored once the stream can no longer send)."""
        if not isinstance(data, bytes):
            raise TypeError(f"Data must be bytes, not {type(data).__name__}")
        if not data or self.disconnected or self._finQueued or self._sendDead or self._aborting:
            return
        self._conn.send(self.streamId, data)
        producer = self.producer
        if producer is None:
            return
        if not self.streamingProducer:
            self._pullOwed = True
            self._conn.requestPull(self)
        elif not self.producerPaused and not self._conn.writable(self.streamId):
            self.producerPaused = True
            producer.pauseProducing()

    def writeSequence(self, data) -> None:
        """Write each item of ``data`` (one queued write)."""
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Finish the stream after everything written; read no more."""
        if self.disconnected or self.disconnecting or self._aborting:
            return
        self.disconnecting = True
        self._held.clear()
        if self._paused:
            self._paused = False
            self._conn.pauseReading(self.streamId, False)
        if not self._readClosed:
            self._conn.stopSending(self.streamId, CLOSE_CODE)
        self._finWanted = True
        self._maybeSendFin()
        self._conn.scheduleTurn()

    def getPeer(self):
        """The peer's UDP address (``IPv4Address`` or ``IPv6Address``)."""
        return self._peer

    def getHost(self):
        """Our UDP address (``IPv4Address`` or ``IPv6Address``)."""
        return self._host

    # -- ITCPTransport ---------------------------------------------------------------

    def loseWriteConnection(self) -> None:
        """Send FIN after everything written; keep reading."""
        if self.disconnected or self._finWanted or self._aborting:
            return
        self._finWanted = True
        self._maybeSendFin()

    def abortConnection(self) -> None:
        """Reset both directions now; ``connectionLost(ConnectionAborted)`` on the next turn."""
        if self.disconnected or self._aborting:
            return
        self._aborting = True
        self._held.clear()
        conn, sid = self._conn, self.streamId
        conn.pauseReading(sid, False)
        conn.resetStream(sid, ABORT_CODE)
        conn.stopSending(sid, ABORT_CODE)
        conn.scheduleTurn()
        conn.reactor.callLater(0, self._lose, error.ConnectionAborted())

    def getTcpNoDelay(self) -> bool:
        """Kwik has no Nagle algorithm; the flag is remembered and has no effect."""
        return self._noDelay

    def setTcpNoDelay(self, enabled) -> None:
        """Remembered only (see :meth:`getTcpNoDelay`)."""
        self._noDelay = bool(enabled)

    def getTcpKeepAlive(self) -> bool:
        """Kwik's keep-alive is the connection's ``keep_alive``; this flag is remembered only."""
        return self._keepAlive

    def setTcpKeepAlive(self, enabled) -> None:
        """Remembered only (see :meth:`getTcpKeepAlive`)."""
        self._keepAlive = bool(enabled)

    # -- IPushProducer: the protocol pausing our delivery -------------------------------

    def pauseProducing(self) -> None:
        """Stop delivering data; unread data holds the peer's flow-control window shut."""
        if self.disconnected or self._paused:
            return
        self._paused = True
        self._conn.pauseReading(self.streamId, True)

    def resumeProducing(self) -> None:
        """Deliver again: held data first, on the next turn."""
        if self.disconnected or not self._paused:
            return
        self._paused = False
        self._conn.pauseReading(self.streamId, False)
        if self._held:
            self._conn.requestPull(self)

    def stopProducing(self) -> None:
        """As for TCP: close the stream."""
        self.loseConnection()

    # -- IConsumer: producers feeding us -----------------------------------------------

    def registerProducer(self, producer, streaming: bool) -> None:
        """Register a producer (see the module docstring for the flow control)."""
        if self.producer is not None:
            raise RuntimeError(
                f"Cannot register producer {producer}, because producer {self.producer} "
                "was never unregistered."
            )
        if self.disconnected:
            producer.stopProducing()
            return
        self.producer = producer
        self.streamingProducer = streaming
        self.producerPaused = False
        if not streaming:
            self._pullOwed = False
            producer.resumeProducing()
        elif not self._conn.writable(self.streamId):
            self.producerPaused = True
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        """Forget the producer; a FIN that waited for it goes now."""
        self.producer = None
        self._pullOwed = False
        if self._finWanted and not self.disconnected:
            self._maybeSendFin()

    # -- IStreamEventSink: events from the connection ------------------------------------

    def pull(self) -> None:
        """Deliver held data (after a resume), or ask a pull producer for more."""
        if self.disconnected:
            return
        if self._held and not self._paused:
            self._deliverHeld()
        producer = self.producer
        if (producer is not None and not self.streamingProducer and self._pullOwed
                and self._conn.writable(self.streamId)):
            self._pullOwed = False
            producer.resumeProducing()

    def dataReceivedAt(self, offset: int, data: bytes, fin: bool) -> None:
        """A piece of the stream at ``offset`` (``fin``: the stream's last), from the core."""
        if self.disconnected or self._aborting:
            return
        if self._paused or self._held:
            self._held.append((offset, data, fin))
            return
        self._deliver(offset, data, fin)

    def _deliverHeld(self) -> None:
        while self._held and not self._paused and not self.disconnected:
            self._deliver(*self._held.pop(0))
        self._maybeFinish()

    def _deliver(self, offset: int, data: bytes, fin: bool) -> None:
        if data and not self.disconnecting:
            if self._pieces is None:
                self._pieces = (IKwikMessageProtocol.providedBy(self.protocol)
                                and not self._conn.streamOrdered(self.streamId))
            if not self._pieces and offset != self._readOffset:
                self._refuseUnordered(offset)
                return
            self._readOffset = max(self._readOffset, offset + len(data))
            try:
                if self._pieces:
                    self.protocol.pieceReceived(offset, data)
                else:
                    self.protocol.dataReceived(data)
            except Exception:
                self._protocolFailed(Failure())
                return
        if fin and not self.disconnected:
            self._readEOF()

    def _refuseUnordered(self, offset: int) -> None:
        """A piece out of order for a protocol that takes only in-order bytes: reset the stream."""
        log.warn(
            "Kwik stream {sid}: bytes at offset {offset} arrived before those at {expected}, and "
            "{protocol} takes only in-order bytes (it does not provide IKwikMessageProtocol); "
            "stream reset with code {code}",
            sid=self.streamId, offset=offset, expected=self._readOffset, protocol=self.protocol,
            code=hex(UNORDERED_REFUSED),
        )
        conn, sid = self._conn, self.streamId
        conn.pauseReading(sid, False)
        conn.resetStream(sid, UNORDERED_REFUSED)
        conn.stopSending(sid, UNORDERED_REFUSED)
        conn.scheduleTurn()
        self._lose(error.ConnectionLost(
            f"stream data arrived out of order; stream reset (code {hex(UNORDERED_REFUSED)})"))

    def _readEOF(self) -> None:
        self._readClosed = True
        if self.disconnecting:
            self._maybeFinish()
            return
        half = IHalfCloseableProtocol(self.protocol, None)
        if half is None:
            self._finWanted = True
            self._maybeSendFin(force=True)
            self._lose(error.ConnectionDone())
            return
        try:
            half.readConnectionLost()
        except Exception:
            self._protocolFailed(Failure())
            return
        self._maybeFinish()

    def resetByPeer(self, code: int) -> None:
        """The peer reset its direction: reset ours and lose the connection (unless we closed)."""
        if self.disconnecting or self.disconnected or self._aborting:
            self._readClosed = True
            return  # the answer to our own STOP_SENDING
        self._conn.resetStream(self.streamId, code)
        self._lose(error.ConnectionLost(f"stream reset by the peer (error code {code})"))

    def stopSendingReceived(self, code: int) -> None:
        """The peer reads no more: our direction is reset (by the core); writes are dropped."""
        self._sendDead = True
        self._stopProducer()
        self._notifyWriteLost()

    def streamWritable(self) -> None:
        """Room in the send buffer: resume a paused streaming producer, or pull a pull one."""
        producer = self.producer
        if producer is None or self.disconnected:
            return
        if self.streamingProducer:
            if self.producerPaused:
                self.producerPaused = False
                producer.resumeProducing()
        else:
            self.pull()

    def streamClosed(self) -> None:
        """Both directions are finished: ``connectionLost(ConnectionDone)`` once delivered."""
        self._coreClosed = True
        self._maybeFinish()

    def connectionGone(self, reason: Exception) -> None:
        """The connection ended before the stream closed: lose the connection with ``reason``."""
        self._lose(reason)

    # -- ending ----------------------------------------------------------------------

    def _maybeSendFin(self, force: bool = False) -> None:
        if not self._finWanted or self._finQueued or self._sendDead or self._aborting:
            return
        if self.producer is not None and not self.streamingProducer and not force:
            return  # FileDescriptor semantics: a pull producer must unregister first
        self._finQueued = True
        self._conn.send(self.streamId, b"", True)
        if self.producer is not None:
            self._stopProducer()
        if IHalfCloseableProtocol(self.protocol, None) is not None and not self.disconnecting:
            self._conn.reactor.callLater(0, self._notifyWriteLost)

    def _notifyWriteLost(self) -> None:
        if self._writeLostNotified or self.disconnected:
            return
        self._writeLostNotified = True
        half = IHalfCloseableProtocol(self.protocol, None)
        if half is None:
            return
        try:
            half.writeConnectionLost()
        except Exception:
            self._protocolFailed(Failure())

    def _maybeFinish(self) -> None:
        if self._coreClosed and not self._held and not self.disconnected:
            self._lose(error.ConnectionDone())

    def _protocolFailed(self, failure: Failure) -> None:
        """The protocol raised: log, reset the stream, and report the exception (as TCP does)."""
        log.failure("Unhandled error in a protocol on Kwik stream {sid}", failure,
                    sid=self.streamId)
        if self.disconnected:
            return
        conn, sid = self._conn, self.streamId
        conn.pauseReading(sid, False)
        conn.resetStream(sid, ABORT_CODE)
        conn.stopSending(sid, ABORT_CODE)
        conn.scheduleTurn()
        self._lose(failure)

    def _stopProducer(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                producer.stopProducing()
            except Exception:
                log.failure("Producer failed to stop", Failure())

    def _lose(self, reason) -> None:
        if self.disconnected:
            return
        if self._aborting and not isinstance(reason, error.ConnectionAborted):
            return  # abortConnection's own report, already scheduled, wins (as in TCP)
        self.disconnected = True
        self.connected = False
        self._held.clear()
        self._conn.detach(self.streamId)
        self._stopProducer()
        failure = reason if isinstance(reason, Failure) else Failure(reason)
        try:
            self.protocol.connectionLost(failure)
        except Exception:
            log.failure("Unhandled error in connectionLost of Kwik stream {sid}", Failure(),
                        sid=self.streamId)
        if self._onLost is not None:
            self._onLost()

    def __repr__(self) -> str:
        return f"<KwikStreamTransport stream={self.streamId} peer={self._peer}>"


__all__ = ["ABORT_CODE", "CLOSE_CODE", "UNORDERED_REFUSED", "KwikStreamTransport"]
