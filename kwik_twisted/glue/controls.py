"""
The Kwik side of a stream transport: priority, QoS policy, rate cap, ordering, path assignment,
progress.

Theory of operation.  :class:`StreamControls` is the half of
:class:`~kwik_twisted.glue.transport.KwikStreamTransport` that provides
:class:`~kwik_twisted.interfaces.IKwikStreamTransport` (the other half is the Twisted transport).
It keeps no stream state of its own: it reads the core's read-only view of the stream
(``IStreamConnection.streamView``, which reads the live stream, taken when the transport is
attached) and changes the stream through ``IStreamConnection.updateStream``, converting between
the application's values (:class:`~kwik_twisted.streams.Priority`,
:class:`~kwik_twisted.streams.QoSPolicy`, :class:`~kwik_twisted.streams.StreamProgress`) and the
core's (integers, the wire's ``QosPolicy``).  Once the core forgot the stream the view still
answers, with the final figures: the attributes keep their last values and the setters do
nothing, as the other calls on a finished stream do.  The rate cap (``setMaxRate``, bits per
second) is local only: ``updateStream(max_rate=...)`` hands it to the core, whose shaper applies it
(:mod:`kwik_twisted.core.qos.shaper`).

:func:`streamOptions` checks what ``openStream`` is given, before any stream is opened.
"""

from __future__ import annotations

from zope.interface import implementer

from ..core.qos.shaper import check_rate
from ..errors import ConfigurationError
from ..interfaces import IKwikMessageProtocol, IKwikStreamTransport
from ..streams import Priority, QoSPolicy, StreamProgress, as_priority

#: What a stream that the core never showed reports.
NO_PROGRESS = StreamProgress(0, 0, 0, 0, 0)


def checkQoS(policy) -> QoSPolicy | None:
    """:raises TypeError: ``policy`` is neither a :class:`QoSPolicy` nor ``None``."""
    if policy is not None and not isinstance(policy, QoSPolicy):
        raise TypeError(f"qos must be a kwik_twisted.QoSPolicy or None, not {policy!r}")
    return policy


def checkPaths(paths) -> tuple | None:
    """
    ``paths`` as a tuple of path IDs (``None`` stays ``None``: every path); the core checks
    that each is a path of the connection.

    :raises ConfigurationError: the list is empty.
    """
    if paths is None:
        return None
    ids = tuple(paths)
    if not ids:
        raise ConfigurationError("paths: give at least one path ID, or None for every path")
    return ids


def streamOptions(protocol, *, priority, qos, ordered, compress, paths) -> dict:
    """
    Check the options of ``openStream`` and return the core's ``open_stream`` arguments.

    :raises TypeError: ``ordered=False`` for a protocol that does not provide
        :class:`~kwik_twisted.interfaces.IKwikMessageProtocol`, or a ``qos`` of the wrong type.
    :raises ConfigurationError: a bad priority, or an empty list of paths.
    """
    if not ordered and not IKwikMessageProtocol.providedBy(protocol):
        raise TypeError(
            f"ordered=False needs a protocol providing IKwikMessageProtocol (pieceReceived); "
            f"{protocol!r} takes only the in-order byte stream")
    policy = checkQoS(qos)
    return {
        "priority": int(as_priority(priority)),
        "ordered": bool(ordered),
        "compress": None if compress is None else bool(compress),
        "qos": None if policy is None else policy.to_wire(),
        "paths": checkPaths(paths),
    }


def progressOf(view) -> StreamProgress:
    """The :class:`StreamProgress` of a core stream view (its ``progress``)."""
    progress = view.progress
    if isinstance(progress, tuple):
        return StreamProgress(*progress)
    return StreamProgress(*(int(getattr(progress, name)) for name in StreamProgress._fields))


@implementer(IKwikStreamTransport)
class StreamControls:
    """
    The :class:`~kwik_twisted.interfaces.IKwikStreamTransport` half of a stream transport.

    A subclass sets ``self._conn`` (an ``IStreamConnection``) and ``self.streamId``, and
    ``self._lastView = None``, before anything reads these attributes.
    """

    _conn = None
    _lastView = None
    streamId: int

    def _view(self):
        """
        The core's view of the stream, kept from the first time it is read: the view reads the
        live stream, so it keeps answering (with the final figures) once the core forgot it.
        ``None`` when the stream was gone before the first read.
        """
        if self._lastView is None:
            self._lastView = self._conn.streamView(self.streamId)
        return self._lastView

    @property
    def kwikConnection(self):
        """
        The Kwik connection this stream belongs to (an
        :class:`~kwik_twisted.interfaces.IKwikConnection`, the
        :class:`kwik_twisted.glue.connection.KwikConnection`).

        Its ``openStream()`` opens more streams on it, ``pathMetrics()`` gives each path's metrics
        (RTT, bandwidth, loss, congestion window...), ``openPath()``, ``setPathBackup()`` and
        ``abandonPath()`` manage paths (a client's), and its ``core`` attribute is the sans-I/O
        :class:`~kwik_twisted.core.connection.Connection`, whose ``paths`` and ``stats`` an
        application may read to observe the transport.  A protocol providing
        :class:`~kwik_twisted.interfaces.IKwikConnectionObserver` is told of every path event.
        """
        return self._conn

    @property
    def priority(self) -> Priority:
        """The stream's :class:`~kwik_twisted.streams.Priority` (the opener's, or as set)."""
        view = self._view()
        return Priority.NORMAL if view is None else Priority(view.priority)

    @property
    def qos(self) -> QoSPolicy | None:
        """The stream's :class:`~kwik_twisted.streams.QoSPolicy`, or ``None``."""
        view = self._view()
        return None if view is None else QoSPolicy.from_wire(view.qos)

    @property
    def ordered(self) -> bool:
        """Whether the protocol gets the stream's bytes in order (else as pieces)."""
        view = self._view()
        if view is None:
            return self._conn.streamOrdered(self.streamId)
        return bool(view.ordered)

    def setPriority(self, priority) -> None:
        """Send the stream's data at ``priority`` from now on (both sides keep their own)."""
        self._conn.updateStream(self.streamId, priority=int(as_priority(priority)))

    def setQoS(self, policy) -> None:
        """Ask for ``policy`` (a :class:`~kwik_twisted.streams.QoSPolicy` or ``None``)."""
        policy = checkQoS(policy)
        self._conn.updateStream(self.streamId,
                                qos=None if policy is None else policy.to_wire())

    def setPaths(self, ids) -> None:
        """Pin the stream to the paths ``ids`` (``None``: every path)."""
        self._conn.updateStream(self.streamId, paths=checkPaths(ids))

    @property
    def maxRate(self) -> float | None:
        """The cap on our sending rate on the stream, bits per second, or ``None`` (no cap)."""
        view = self._view()
        return None if view is None else view.max_rate

    def setMaxRate(self, bitsPerSecond) -> None:
        """
        Cap our sending rate on the stream at ``bitsPerSecond`` (``None``: no cap), local only.

        :raises ConfigurationError: neither ``None`` nor a positive number.
        """
        self._conn.updateStream(self.streamId, max_rate=check_rate(bitsPerSecond))

    def progress(self) -> StreamProgress:
        """The stream's byte counts so far (the last ones once the stream is gone)."""
        view = self._view()
        return NO_PROGRESS if view is None else progressOf(view)


__all__ = ["StreamControls", "checkPaths", "checkQoS", "progressOf", "streamOptions"]
