"""
Tests for :mod:`kwik_twisted.core.streams.flow_control`.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.streams.flow_control import ReceiveWindow, SendCredit
from kwik_twisted.errors import FlowControlError


class SendCreditTests(SynchronousTestCase):
    """The peer-granted sending limit."""

    def test_limit_only_rises(self) -> None:
        """A smaller or equal MAX_*DATA value is ignored; a larger one raises the limit."""
        credit = SendCredit(1000)
        self.assertFalse(credit.update(500))
        self.assertFalse(credit.update(1000))
        self.assertEqual(credit.limit, 1000)
        self.assertTrue(credit.update(2000))
        self.assertEqual(credit.limit, 2000)

    def test_available_is_never_negative(self) -> None:
        """available() is the remaining credit, and zero at or past the limit."""
        credit = SendCredit(1000)
        self.assertEqual(credit.available(300), 700)
        self.assertEqual(credit.available(1000), 0)
        self.assertEqual(credit.available(1200), 0)

    def test_blocked_reported_once_per_limit(self) -> None:
        """A blocked sender reports each limit value once, and again after an increase."""
        credit = SendCredit(1000)
        self.assertIsNone(credit.blocked_at(999))
        self.assertEqual(credit.blocked_at(1000), 1000)
        self.assertIsNone(credit.blocked_at(1000))
        credit.update(1500)
        self.assertIsNone(credit.blocked_at(1000))
        self.assertEqual(credit.blocked_at(1500), 1500)
        self.assertIsNone(credit.blocked_at(1500))

    def test_lost_blocked_frame_is_reported_again(self) -> None:
        """Losing the BLOCKED frame for the current limit re-arms the report."""
        credit = SendCredit(1000)
        self.assertEqual(credit.blocked_at(1000), 1000)
        credit.blocked_lost(900)
        self.assertIsNone(credit.blocked_at(1000))
        credit.blocked_lost(1000)
        self.assertEqual(credit.blocked_at(1000), 1000)


class ReceiveWindowTests(SynchronousTestCase):
    """The advertised receive limit and its auto-tuning."""

    def test_data_past_limit_is_an_error(self) -> None:
        """Data up to the limit is fine; one byte past it raises FlowControlError."""
        window = ReceiveWindow(1000, 8000)
        window.on_data(1000)
        self.assertEqual(window.received, 1000)
        self.assertRaises(FlowControlError, window.on_data, 1001)

    def test_received_tracks_highest_offset(self) -> None:
        """received keeps the highest offset, whatever order data arrives in."""
        window = ReceiveWindow(1000, 8000)
        window.on_data(800)
        window.on_data(300)
        self.assertEqual(window.received, 800)

    def test_update_due_after_a_quarter_of_the_window(self) -> None:
        """No update until a quarter of the window is consumed; then consumed + window."""
        window = ReceiveWindow(1000, 8000)
        window.on_data(1000)
        window.on_consumed(249, now=0.0, rtt=0.1)
        self.assertIsNone(window.update_due())
        window.on_consumed(1, now=0.0, rtt=0.1)
        self.assertEqual(window.update_due(), 1250)
        self.assertEqual(window.max_data, 1250)
        self.assertIsNone(window.update_due())
        window.on_data(1250)

    def test_slow_consumer_keeps_window(self) -> None:
        """Updates due more than two RTTs apart leave the window unchanged."""
        window = ReceiveWindow(1000, 8000)
        now = 0.0
        for _ in range(5):
            window.on_consumed(500, now=now, rtt=0.1)
            self.assertIsNotNone(window.update_due())
            now += 1.0
        self.assertEqual(window.window, 1000)
        self.assertEqual(window.max_data, window.consumed + 1000)

    def test_fast_consumer_grows_window_up_to_maximum(self) -> None:
        """A consumer taking 20,000 bytes/s at a 0.1 s RTT gets rate x 6 RTT = 12,000 bytes of
        window after its first half-RTT sample, and no more while its rate stays; a maximum of
        8000 stops the growth there."""
        for maximum, grown in ((100_000, 12_000), (8000, 8000)):
            window = ReceiveWindow(1000, maximum)
            now = 0.0
            sizes = []
            for _ in range(6):
                window.on_data(window.max_data)
                window.on_consumed(1000, now=now, rtt=0.1)
                window.update_due()
                sizes.append(window.window)
                now += 0.05
            self.assertEqual(sizes, [1000] + [grown] * 5)
            self.assertAlmostEqual(window.rate, 20_000)
            # Updates fall due each quarter window: at least three quarters stay granted.
            self.assertGreaterEqual(window.max_data - window.consumed, grown * 3 // 4)

    def test_no_tuning_without_rtt_sample(self) -> None:
        """Without an RTT estimate (zero), the window is not tuned."""
        window = ReceiveWindow(1000, 8000)
        for _ in range(3):
            window.on_consumed(600, now=0.0, rtt=0.0)
            window.update_due()
        self.assertEqual(window.window, 1000)
