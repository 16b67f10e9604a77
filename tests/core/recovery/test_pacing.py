"""Tests for kwik_twisted.core.recovery.pacing (RFC 9002 §7.7)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.recovery.pacing import PACING_GRANULARITY, Pacer

MDS = 1350


def send_all(pacer: Pacer, count: int, now: float) -> list[float]:
    """Send ``count`` datagrams as early as the pacer allows; return their send times."""
    times = []
    for _ in range(count):
        at = pacer.next_send_time(now=now)
        if at is not None:
            now = at
        times.append(now)
        pacer.on_packet_sent(MDS, now=now)
    return times


class PacerTests(SynchronousTestCase):
    """The pacer's rate, burst and token cap."""

    def test_pacer_spreads_a_window_over_the_rtt(self) -> None:
        """
        After a 10-datagram burst, a window of 100 datagrams leaves at 1.25
        windows per srtt: one datagram every 8 ms, all within 720 ms.
        """
        pacer = Pacer(cwnd=100 * MDS, srtt=1.0, max_datagram_size=MDS)
        times = send_all(pacer, 100, 0.0)
        self.assertEqual(times[:10], [0.0] * 10)
        gaps = [b - a for a, b in zip(times[10:], times[11:])]
        for gap in gaps:
            self.assertAlmostEqual(gap, 1.0 / 125)
        self.assertAlmostEqual(times[-1], 90 * 1.0 / 125)
        self.assertLess(times[-1], 1.0)

    def test_waits_below_the_timer_granularity_are_not_waits(self) -> None:
        """
        At 0.8 ms per datagram (below the 1 ms granularity an event loop can sleep), a datagram
        goes as soon as its wait would be under 1 ms: they leave in pairs every 1.6 ms, and the
        average rate is still the pacing rate.
        """
        pacer = Pacer(cwnd=100 * MDS, srtt=0.1, max_datagram_size=MDS)
        times = send_all(pacer, 100, 0.0)
        self.assertEqual(times[:11], [0.0] * 11)
        waits = [b - a for a, b in zip(times, times[1:]) if b > a]
        for wait in waits:
            self.assertGreaterEqual(wait, PACING_GRANULARITY)
        self.assertLessEqual(abs(times[-1] - 90 * 0.1 / 125), PACING_GRANULARITY)

    def test_tokens_are_capped_after_idle(self) -> None:
        """A long idle period allows only one burst, not a flood."""
        pacer = Pacer(cwnd=100 * MDS, srtt=1.0, max_datagram_size=MDS)
        send_all(pacer, 20, 0.0)
        times = send_all(pacer, 12, 10.0)
        self.assertEqual(times[:10], [10.0] * 10)
        self.assertGreater(times[10], 10.0)

    def test_burst_never_exceeds_window(self) -> None:
        """With a window of 4 datagrams, only 4 leave at once."""
        pacer = Pacer(cwnd=4 * MDS, srtt=0.1, max_datagram_size=MDS)
        times = send_all(pacer, 6, 0.0)
        self.assertEqual(times[:4], [0.0] * 4)
        self.assertGreater(times[4], 0.0)

    def test_update_changes_the_rate(self) -> None:
        """Doubling the window halves the spacing between datagrams."""
        pacer = Pacer(cwnd=100 * MDS, srtt=1.0, max_datagram_size=MDS)
        send_all(pacer, 10, 0.0)
        pacer.update(cwnd=200 * MDS, srtt=1.0)
        times = send_all(pacer, 3, 0.0)
        self.assertAlmostEqual(times[2] - times[1], 1.0 / 250)

    def test_on_packet_sent_returns_next_send_time(self) -> None:
        """on_packet_sent says when the next datagram may go; None while tokens remain."""
        pacer = Pacer(cwnd=10 * MDS, srtt=1.0, max_datagram_size=MDS)
        results = [pacer.on_packet_sent(MDS, now=0.0) for _ in range(10)]
        self.assertEqual(results[:9], [None] * 9)
        self.assertAlmostEqual(results[9], MDS / (1.25 * 10 * MDS / 1.0))

    def test_zero_rtt_means_no_pacing(self) -> None:
        """Without an RTT the pacer never delays a datagram."""
        pacer = Pacer(cwnd=2 * MDS, srtt=0.0, max_datagram_size=MDS)
        self.assertEqual(send_all(pacer, 50, 1.0), [1.0] * 50)
