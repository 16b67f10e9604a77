"""
Interfaces an application may provide to hear more from Kwik than an ordinary transport says.

A stream's protocol is an ordinary :class:`~twisted.internet.interfaces.IProtocol`; if it also
provides :class:`IKwikConnectionObserver`, the glue tells it about the paths of the Kwik connection
its stream belongs to (see ``docs/endpoints.rst``, "Multipath").
"""

from __future__ import annotations

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


__all__ = ["IKwikConnectionObserver"]
