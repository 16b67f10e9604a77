"""
The datagram half of a :class:`~kwik_twisted.glue.connection.KwikConnection`: unreliable
datagrams (RFC 9221 adapted; ``docs/endpoints.rst``, "Datagrams").

Theory of operation.  :meth:`DatagramControls.sendDatagram` hands the bytes to the core's
:class:`~kwik_twisted.core.datagrams.DatagramChannel` (``core.datagrams``) and schedules a service
turn, as a stream write does.  Received datagrams and local drops come back as core events
(:class:`~kwik_twisted.events.DatagramReceived`, :class:`~kwik_twisted.events.DatagramDropped`)
and go to the connection's *datagram receivers*:

* the one object set with :meth:`DatagramControls.setDatagramReceiver`, if any (a UDP tunnel, an
  application with no stream to hang them on);
* otherwise every stream protocol of the connection that provides
  :class:`~kwik_twisted.interfaces.IKwikDatagramProtocol` (each gets every datagram).

A datagram nobody receives is counted (``stats["datagrams_unclaimed"]``) and forgotten.  An
exception raised by a receiver is logged and otherwise ignored.  Kept apart from the connection
glue so that class stays small (the layering test bounds its methods), like
:mod:`~kwik_twisted.glue.pathcontrols`.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import DatagramsUnsupported
from ..events import DatagramDropped, DatagramReceived
from ..interfaces import IKwikDatagramProtocol

log = Logger()


class DatagramControls:
    """Mixin of :class:`~kwik_twisted.glue.connection.KwikConnection`: its datagram methods."""

    _datagramReceiver = None

    def sendDatagram(self, data: bytes) -> None:
        """
        Send ``data`` as one unreliable datagram (see
        :meth:`kwik_twisted.interfaces.IKwikConnection.sendDatagram`).

        :raises DatagramsUnsupported: the peer accepts none, or the connection is closed.
        :raises DatagramTooLarge: larger than the peer accepts or than one packet carries.
        """
        if self.dead or self.terminated is not None:
            raise DatagramsUnsupported("the Kwik connection is closed")
        self.core.datagrams.send(data)
        self.scheduleTurn()

    def setDatagramReceiver(self, receiver) -> None:
        """
        Send every datagram of the connection to ``receiver`` (an
        :class:`~kwik_twisted.interfaces.IKwikDatagramProtocol`) rather than to the stream
        protocols; ``None`` goes back to the stream protocols.

        :raises TypeError: ``receiver`` does not provide ``IKwikDatagramProtocol``.
        """
        if receiver is not None and not IKwikDatagramProtocol.providedBy(receiver):
            raise TypeError(f"{receiver!r} does not provide IKwikDatagramProtocol")
        self._datagramReceiver = receiver

    def _datagramReceivers(self) -> list:
        if self._datagramReceiver is not None:
            return [self._datagramReceiver]
        return [
            t.protocol for t in list(self.transports.values())
            if not t.disconnected and IKwikDatagramProtocol.providedBy(t.protocol)
        ]


def onDatagramReceived(connection: DatagramControls, event: DatagramReceived) -> None:
    """Hand a received datagram to the connection's datagram receivers."""
    receivers = connection._datagramReceivers()
    if not receivers:
        connection.core.stats["datagrams_unclaimed"] += 1
    for receiver in receivers:
        try:
            receiver.datagramReceived(event.data)
        except Exception:
            log.failure("datagramReceived of {receiver} failed", Failure(), receiver=receiver)


def onDatagramDropped(connection: DatagramControls, event: DatagramDropped) -> None:
    """Log a local drop of queued datagrams and tell the datagram receivers."""
    log.debug("Kwik dropped {count} queued datagrams ({reason})", count=event.count,
              reason=event.reason)
    for receiver in connection._datagramReceivers():
        try:
            receiver.datagramsDropped(event.count, event.reason)
        except Exception:
            log.failure("datagramsDropped of {receiver} failed", Failure(), receiver=receiver)


__all__ = ["DatagramControls", "onDatagramDropped", "onDatagramReceived"]
