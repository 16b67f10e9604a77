"""
Credit-based flow control for a stream or a whole connection (RFC 9000 §4).

Flow control limits are absolute byte offsets.  :class:`SendCredit` holds the
limit the peer granted us (MAX_STREAM_DATA or MAX_DATA): it only ever rises
(§4.1, a smaller value is ignored) and reports once per limit value that we
are blocked, for a STREAM_DATA_BLOCKED / DATA_BLOCKED frame (§4.1, §19.12).

:class:`ReceiveWindow` holds the limit we granted the peer.  Data past it is a
FLOW_CONTROL_ERROR (§4.1).  §4.2 leaves the policy to the receiver; ours is
credit granted ahead of the reader from its measured rate (the seed's
PrefetchBuffer, made a transport mechanism: protocol.rst, "Reassembler parts
of the seed").

Theory of operation:

* *Early updates.*  A new limit ``consumed + window`` is due once a quarter
  of the window has been used (:data:`UPDATE_AT`), so three quarters of the
  window are still granted when the update leaves.
* *Credit ahead of the reader.*  The window measures the rate at which the
  application takes bytes, from the ``delivered`` count of the stream's
  progress (:class:`~.view.StreamProgress`), and grows so that
  ``window >= rate x (2 + AHEAD_MARGIN) x smoothed RTT``.  Two round trips
  are what an update needs: it travels to the sender in half of one, while
  the bytes the sender sent in the last one are still on their way to us.
  The margin covers what the receiver cannot see: a sender in slow start
  doubles its rate every round trip, a deep queue on the forward path makes
  its round trip longer than ours, and a loss holds bytes back from the
  reader until the retransmission arrives.
* *Measurement.*  A rate sample closes half a smoothed RTT
  (:data:`SAMPLE_RTTS`) after it opened, or earlier once the reader has
  taken half the window: the bytes delivered in it, but no more than the
  bytes that *arrived* in it, over its length or half an RTT, whichever is
  longer (so an early sample is a lower bound on the rate, and a clock that
  barely moves, as in an in-memory benchmark, still measures a fast reader).
  The cap on arrivals matters when a retransmission fills a gap and the
  reader takes a round trip of data at once: the sender did not send faster.
  A higher sample is taken at once (slow start); a lower one pulls the
  estimate down by :data:`RATE_GAIN` of the difference.  The window never
  shrinks.
* *No credit for data nobody reads.*  Nothing delivered means no growth: a
  paused reader's window stays where it was and the sender stays held at the
  limit already granted; a slow reader's window grows only to its own
  ``rate x 6 RTT`` (100 KB/s at 100 ms: 60 KB, less than the initial
  window).  Bytes credited without being delivered (the unread bytes of a
  stream the peer reset) count for the credit, not for the rate.
* *Bounds.*  Growth stops at ``maximum`` (``max_stream_data_window`` /
  ``max_data_window``), the bound the receive memory was already held to, so
  a peer that makes us read fast gets no more than it could before.

This replaces quinn's and Chromium's doubling (a window doubles when updates
fall due less than two round trips apart, sent at half the window): doubling
learns the window is short only once the sender was held back, then
overshoots by up to twice.  In the simulator (protocol.rst has the table:
seven paths, 20 MB each from 256 KiB / 1 MiB windows) the sender sent 74
blocked frames under doubling and 4 under this rule, and every transfer
finished within 1% of its time with windows larger than the file; doubling
with quarter-window updates blocked it 11 times and ended with a quarter
more window granted.

For the connection-level window, feed ``on_data`` the sum over streams of the
highest offsets received, and ``on_consumed`` the bytes credited on any stream
with ``delivered`` the sum of the streams' delivered counts.
"""

from __future__ import annotations

from kwik_twisted.errors import FlowControlError

#: An update is due once the credit left falls to this fraction of the window.
UPDATE_AT = 0.75
#: Round trips of credit kept ahead of the reader beyond the two an update needs.
AHEAD_MARGIN = 4.0
#: A rate sample spans this many smoothed RTTs (it closes early once half the window was taken).
SAMPLE_RTTS = 0.5
#: How far a lower rate sample pulls the estimate down.
RATE_GAIN = 0.25
_NEVER = float("-inf")


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
    The receiving limit we advertise, tuned from the reader's measured rate.

    :ivar window: the current window size (grows up to ``maximum``, never shrinks).
    :ivar maximum: the largest window tuning may reach.
    :ivar max_data: the limit most recently advertised.
    :ivar received: the highest offset (or connection total) received.
    :ivar consumed: bytes credited back: consumed by the application, or released by a reset.
    :ivar delivered: the application's delivered count at the latest :meth:`on_consumed`.
    :ivar rate: the measured consumption rate in bytes per second (0 before the first sample).
    """

    __slots__ = (
        "window",
        "maximum",
        "max_data",
        "received",
        "consumed",
        "delivered",
        "rate",
        "_due",
        "_mark",
        "_mark_delivered",
        "_mark_received",
    )

    def __init__(self, initial: int, maximum: int) -> None:
        self.window = initial
        self.maximum = max(initial, maximum)
        self.max_data = initial
        self.received = 0
        self.consumed = 0
        self.delivered = 0
        self.rate = 0.0
        self._due = False
        self._mark = _NEVER  # when the current rate sample started
        self._mark_delivered = 0  # the delivered count then
        self._mark_received = 0  # and the received one

    def on_data(self, end_offset: int) -> None:
        """
        Record data received up to ``end_offset``.

        :raises FlowControlError: ``end_offset`` is past the advertised limit.
        """
        if end_offset > self.max_data:
            raise FlowControlError(f"data up to {end_offset} past limit {self.max_data}")
        if end_offset > self.received:
            self.received = end_offset

    def on_consumed(self, n: int, *, now: float, rtt: float, delivered: int | None = None) -> None:
        """
        Credit ``n`` bytes back at time ``now``.

        :param delivered: the application's delivered count now (the stream's
            :class:`~.view.StreamProgress` ``delivered``); by default the bytes credited so far.
        :param rtt: the smoothed RTT; 0 (no sample yet) leaves the window as it is.
        """
        self.consumed += n
        self.delivered = self.consumed if delivered is None else delivered
        if rtt > 0 and (
            now - self._mark >= SAMPLE_RTTS * rtt
            or self.delivered - self._mark_delivered >= self.window >> 1
        ):
            self._measure(now, rtt)
        if not self._due and self.max_data - self.consumed <= self.window * UPDATE_AT:
            self._due = True

    def _measure(self, now: float, rtt: float) -> None:
        """Close the current rate sample, start the next, and grow the window to keep
        ``rate x (2 + AHEAD_MARGIN) x rtt`` of credit ahead of the reader."""
        mark, self._mark = self._mark, now
        delivered, self._mark_delivered = self._mark_delivered, self.delivered
        received, self._mark_received = self._mark_received, self.received
        if mark == _NEVER:
            return  # the first delivery starts the first sample
        taken = min(self.delivered - delivered, self.received - received)
        sample = taken / max(now - mark, SAMPLE_RTTS * rtt)
        rate = self.rate
        self.rate = rate = sample if sample > rate else rate + (sample - rate) * RATE_GAIN
        ahead = int(rate * (2 + AHEAD_MARGIN) * rtt)
        if ahead > self.window:
            self.window = min(ahead, self.maximum)

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


__all__ = ["AHEAD_MARGIN", "RATE_GAIN", "SAMPLE_RTTS", "UPDATE_AT", "ReceiveWindow", "SendCredit"]
