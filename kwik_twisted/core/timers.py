"""
The connection's timers as one table: each kind, its deadline formula written once.

Theory of operation (quinn-proto's ``TimerTable`` and its one loop in ``handle_timeout`` are the
model).  A connection has one timer in its owner's hands; :func:`timers` yields every armed timer
of a connection (a :class:`TimerOwner`) as ``(kind, path, deadline)`` and both
:meth:`Connection.next_deadline` (the minimum) and :meth:`Connection.handle_deadline` (the due
ones, each to its handler by :class:`TimerKind`) walk it, so no deadline is computed in two
places.  The generator is lazy, and the order is the order handlers run in: a handler that changes
a path (a probe timeout failing it) is seen by the deadlines computed after it.

* While the connection is ending, only :attr:`TimerKind.CLOSE` (the end of CLOSING or DRAINING).
* Otherwise :attr:`TimerKind.IDLE` (RFC 9000 §10.1) and :attr:`TimerKind.KEEP_ALIVE` (see
  :meth:`IdleTimer.keep_alive_deadline`), then per path, in path order:
  :attr:`~TimerKind.LOSS_DETECTION` (RFC 9002 §6: loss time or PTO),
  :attr:`~TimerKind.PATH_PROBE` (a failed path's next probe or a silent path's,
  :meth:`~kwik_twisted.core.paths.manager.PathManager.deadline`),
  :attr:`~TimerKind.ACK_DELAY`, :attr:`~TimerKind.PATH_CHALLENGE` (three PTOs after a challenge)
  and :attr:`~TimerKind.PACING` (a wake-up only: sending happens in ``datagrams_to_send``).
* Last, :attr:`TimerKind.SHAPER` (no path): when the earliest stream parked by its rate cap may
  send again (:meth:`~kwik_twisted.core.qos.shaper.BandwidthShaper.next_refill`); a wake-up only,
  like PACING: the send round that follows puts the stream back in its queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from ..config import KEEP_ALIVE_AUTO
from .lifecycle import Lifecycle, State
from .paths.path import Path, PathPhase

if TYPE_CHECKING:  # pragma: no cover
    from .paths.manager import PathManager
    from .streams.manager import StreamManager


class TimerKind(Enum):
    """The kinds of timer a connection arms."""

    CLOSE = "close"
    IDLE = "idle"
    KEEP_ALIVE = "keep_alive"
    LOSS_DETECTION = "loss_detection"
    PATH_PROBE = "path_probe"
    ACK_DELAY = "ack_delay"
    PATH_CHALLENGE = "path_challenge"
    PACING = "pacing"
    SHAPER = "shaper"


class IdleTimer:
    """
    When the connection last heard and spoke, and so its idle and keep-alive deadlines.

    :param keep_alive: the configured keep-alive (seconds, ``None`` or
        :data:`~kwik_twisted.config.KEEP_ALIVE_AUTO`).
    :param streams_open: whether any stream is open (the automatic keep-alive pings only then).
    :ivar timeout: the idle timeout in force (ours, or the peer's if shorter).
    """

    __slots__ = ("timeout", "keep_alive", "streams_open", "last_received", "last_sent", "pinged")

    def __init__(
        self, timeout: float, keep_alive, streams_open: Callable[[], bool], *, now: float
    ) -> None:
        self.timeout = timeout
        self.keep_alive = keep_alive
        self.streams_open = streams_open
        self.last_received = now
        self.last_sent = now
        self.pinged = now

    def deadline(self) -> float:
        """When the connection idles out."""
        return self.last_received + self.timeout

    def keep_alive_deadline(self) -> float | None:
        """
        When the next keep-alive PING is due, or ``None`` when none is.

        An explicit ``keep_alive`` interval pings whenever the connection is quiet that long.  The
        default, :data:`~kwik_twisted.config.KEEP_ALIVE_AUTO`, pings at a third of the negotiated
        idle timeout while at least one stream is open: a connection with work in progress (a
        tunnel, an idle SSH session) ends only when the peer is really gone, while one with no
        stream still idles out.  Three pings per timeout survive two losses in a row.
        """
        interval = self.keep_alive
        if interval == KEEP_ALIVE_AUTO:
            if not self.streams_open():
                return None
            interval = self.timeout / 3
        elif interval is None:
            return None
        return max(self.last_sent, self.last_received, self.pinged) + interval


class TimerOwner(Protocol):
    """What :func:`timers` reads of a connection: the parts that arm timers."""

    lifecycle: Lifecycle
    idle: IdleTimer
    path_manager: PathManager
    streams: StreamManager


def timers(conn: TimerOwner, *, now: float) -> Iterator[tuple[TimerKind, Path | None, float]]:
    """Every armed timer of ``conn`` as ``(kind, path, deadline)``, lazily, in handling order."""
    lifecycle, idle, paths = conn.lifecycle, conn.idle, conn.path_manager
    if lifecycle.state is State.CLOSED:
        return
    if lifecycle.close_deadline is not None:
        yield TimerKind.CLOSE, None, lifecycle.close_deadline
        return
    yield TimerKind.IDLE, None, idle.deadline()
    if lifecycle.state is State.ESTABLISHED:
        keep_alive = idle.keep_alive_deadline()
        if keep_alive is not None:
            yield TimerKind.KEEP_ALIVE, None, keep_alive
    for path in list(paths.paths.values()):
        if path.phase is not PathPhase.ABANDONED:  # by a handler earlier in this walk
            yield from path_timers(path, paths, now=now)
    refill = conn.streams.send_queue.shaper.next_refill()
    if refill is not None:
        yield TimerKind.SHAPER, None, refill


def path_timers(
    path: Path, paths: PathManager, *, now: float
) -> Iterator[tuple[TimerKind, Path, float]]:
    """The armed timers of one path, in handling order."""
    deadline = path.recovery.deadline(now=now)
    if deadline is not None:
        yield TimerKind.LOSS_DETECTION, path, deadline
    deadline = paths.deadline(path)
    if deadline is not None:
        yield TimerKind.PATH_PROBE, path, deadline
    if path.ack.ack_deadline is not None:
        yield TimerKind.ACK_DELAY, path, path.ack.ack_deadline
    deadline = path.validation.deadline(path.recovery.rtt.pto_interval())
    if deadline is not None:
        yield TimerKind.PATH_CHALLENGE, path, deadline
    if path.pacing_deadline is not None:
        yield TimerKind.PACING, path, path.pacing_deadline
