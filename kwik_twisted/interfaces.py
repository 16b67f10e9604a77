"""
Interfaces an application may provide to hear more from Kwik than an ordinary transport says.

A stream's protocol is an ordinary :class:`~twisted.internet.interfaces.IProtocol`; if it also
provides :class:`IKwikConnectionObserver`, the glue tells it about the paths of the Kwik connection
its stream belongs to (see ``docs/endpoints.rst``, "Multipath").

Byte-stream integrity.  A protocol that provides only ``IProtocol`` always receives the exact
in-order byte stream through ``dataReceived``, whatever flags the peer sets: a server reassembles
in order every stream a client opens without the ORDERED flag, unless its factory's protocol
provides :class:`IKwikMessageProtocol`, and the glue resets (code
:data:`~kwik_twisted.glue.transport.UNORDERED_REFUSED`) a stream whose bytes would still reach
such a protocol out of order.  Only :class:`IKwikMessageProtocol` providers get unordered pieces.
"""

from __future__ import annotations

from twisted.internet.interfaces import IProtocol
from zope.interface import Interface


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


__all__ = ["IKwikConnectionObserver", "IKwikMessageProtocol"]
