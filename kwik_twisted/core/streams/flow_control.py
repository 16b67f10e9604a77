"""
Credit-based flow control for a stream or a whole connection (RFC 9000 §4).

Flow control limits are absolute byte offsets.  :class:`SendCredit` holds the
limit the peer granted us (MAX_STREAM_DATA or MAX_DATA): it only ever rises
(§4.1, a smaller value is ignored) and reports once per limit value that we
are blocked, for a STREAM_DATA_BLOCKED / DATA_BLOCKED frame (§4.1, §19.12).

:class:`ReceiveWindow` holds the limit we granted the peer.  Data past it is a
FLOW_CONTROL_ERROR (§4.1).  As the application consumes bytes, a new limit
``consumed + window`` is due once half the window has been used (§4.2 leaves
the policy to us).  The window is auto-tuned as in quinn and Chromium's
QuicFlowController: when updates become due less than two round-trip times
apart, the window is the bottleneck, so it doubles, up to ``maximum``.

For the connection-level window, feed ``on_data`` the sum over streams of the
highest offsets received and ``on_consumed`` the bytes delivered on any stream.
"""

from __future__ import annotations

from kwik_twisted.errors import FlowControlError


class SendCredit:
    """
    The sending limit granted by the peer.

    :ivar limit: the highest offset (exclusive) we may send.
    """

    __slots__ = ("limit", "_blocked_reported")

    def __init__(self, initial: int) -> None:
        self.limit = initial
        self._blocked_reported: int | None = None

    def update(self, maximum: int) -> bool:
        """Apply a MAX_*DATA value; return whether it raised the limit."""
        if maximum <= self.limit:
            return False
        self.limit = maximum
        return True

    def available(self, sent: int) -> int:
        """How many more bytes may be sent when ``sent`` bytes already were."""
        return self.limit - sent if sent < self.limit else 0

    def blocked_at(self, sent: int) -> int | None:
        """
        The limit to report in a *_DATA_BLOCKED frame, once per limit value.

        :return: the limit when ``sent`` reached it and it was not reported
            yet, else ``None``.
        """
        if sent < self.limit or self._blocked_reported == self.limit:
            return None
        self._blocked_reported = self.limit
        return self.limit

    def blocked_lost(self, limit: int) -> None:
        """A *_DATA_BLOCKED frame for ``limit`` was lost: report it again if still blocked."""
        if limit == self._blocked_reported:
            self._blocked_reported = None


class ReceiveWindow:
    """
    The receiving limit we advertise, with window auto-tuning.

    :ivar window: the current window size (grows up to ``maximum``).
    :ivar maximum: the largest window auto-tuning may reach.
    :ivar max_data: the limit most recently advertised.
    :ivar received: the highest offset (or connection total) received.
    :ivar consumed: bytes the application has consumed.
    """

    __slots__ = ("window", "maximum", "max_data", "received", "consumed", "_due", "_last_due")

    def __init__(self, initial: int, maximum: int) -> None:
        self.window = initial
        self.maximum = max(initial, maximum)
        self.max_data = initial
        self.received = 0
        self.consumed = 0
        self._due = False
        self._last_due: float | None = None

    def on_data(self, end_offset: int) -> None:
        """
        Record data received up to ``end_offset``.

        :raises FlowControlError: ``end_offset`` is past the advertised limit.
        """
        if end_offset > self.max_data:
            raise FlowControlError(f"data up to {end_offset} past limit {self.max_data}")
        if end_offset > self.received:
            self.received = end_offset

    def on_consumed(self, n: int, *, now: float, rtt: float) -> None:
        """Record ``n`` bytes consumed by the application at time ``now``."""
        self.consumed += n
        if self._due or self.max_data - self.consumed > self.window // 2:
            return
        self._due = True
        last = self._last_due
        if last is not None and rtt > 0 and now - last < 2 * rtt:
            self.window = min(self.window * 2, self.maximum)
        self._last_due = now

    def update_due(self) -> int | None:
        """
        A new limit to advertise (MAX_STREAM_DATA / MAX_DATA), or ``None``.

        The returned limit counts as advertised from now on; if the frame
        carrying it is lost, re-send the current ``max_data``.
        """
        if not self._due:
            return None
        self._due = False
        new = self.consumed + self.window
        if new <= self.max_data:
            return None
        self.max_data = new
        return new


__all__ = ["ReceiveWindow", "SendCredit"]
