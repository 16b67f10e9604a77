"""Tests for kwik_twisted.core.recovery.rtt, against values computed by hand from RFC 9002 §5."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.recovery.rtt import GRANULARITY, INITIAL_RTT, RttEstimator


class RttEstimatorTests(SynchronousTestCase):
    """RttEstimator follows RFC 9002 §5.1-§5.3 and §6.2.1."""

    def test_initial_values_derive_from_initial_rtt(self) -> None:
        """Before any sample, srtt is kInitialRtt and rttvar half of it (§6.2.2)."""
        rtt = RttEstimator()
        self.assertEqual(rtt.smoothed_rtt, INITIAL_RTT)
        self.assertEqual(rtt.rttvar, INITIAL_RTT / 2)
        self.assertFalse(rtt.has_sample)
        self.assertEqual(rtt.samples, 0)

    def test_initial_rtt_is_configurable(self) -> None:
        """A configured initial RTT replaces the 333 ms default."""
        rtt = RttEstimator(initial_rtt=0.1)
        self.assertEqual(rtt.smoothed_rtt, 0.1)
        self.assertEqual(rtt.rttvar, 0.05)

    def test_initial_pto_interval(self) -> None:
        """The first PTO is 0.333 + 4 * 0.1665 + max_ack_delay = 1.024 s with 25 ms."""
        self.assertAlmostEqual(RttEstimator().pto_interval(0.025), 1.024)

    def test_first_sample_sets_estimates_and_ignores_ack_delay(self) -> None:
        """The first sample sets srtt = min = latest and rttvar = sample / 2 (§5.3)."""
        rtt = RttEstimator()
        rtt.update(0.1, 0.05, max_ack_delay=0.025)
        self.assertEqual(
            (rtt.latest_rtt, rtt.min_rtt, rtt.smoothed_rtt, rtt.rttvar, rtt.samples),
            (0.1, 0.1, 0.1, 0.05, 1),
        )

    def test_ack_delay_is_capped_by_max_ack_delay_once_confirmed(self) -> None:
        """With the handshake confirmed, 30 ms of ACK delay counts as max_ack_delay (25 ms)."""
        rtt = RttEstimator()
        rtt.update(0.1)
        rtt.update(0.2, 0.03, max_ack_delay=0.025, handshake_confirmed=True)
        # adjusted = 0.2 - 0.025 = 0.175
        self.assertAlmostEqual(rtt.rttvar, 0.75 * 0.05 + 0.25 * 0.075)
        self.assertAlmostEqual(rtt.smoothed_rtt, 0.875 * 0.1 + 0.125 * 0.175)
        self.assertEqual(rtt.latest_rtt, 0.2)

    def test_ack_delay_is_not_capped_before_confirmation(self) -> None:
        """Before the handshake is confirmed the whole reported ACK delay is subtracted."""
        rtt = RttEstimator()
        rtt.update(0.1)
        rtt.update(0.2, 0.03, max_ack_delay=0.025, handshake_confirmed=False)
        self.assertAlmostEqual(rtt.rttvar, 0.75 * 0.05 + 0.25 * 0.07)
        self.assertAlmostEqual(rtt.smoothed_rtt, 0.875 * 0.1 + 0.125 * 0.17)

    def test_ack_delay_never_takes_sample_below_min_rtt(self) -> None:
        """A sample that would fall below min_rtt after the delay is used unadjusted."""
        rtt = RttEstimator()
        rtt.update(0.1)
        rtt.update(0.12, 0.05, max_ack_delay=0.1)
        self.assertAlmostEqual(rtt.smoothed_rtt, 0.875 * 0.1 + 0.125 * 0.12)
        self.assertAlmostEqual(rtt.rttvar, 0.75 * 0.05 + 0.25 * 0.02)

    def test_min_rtt_uses_raw_samples(self) -> None:
        """min_rtt takes the raw sample, not the one adjusted for ACK delay."""
        rtt = RttEstimator()
        rtt.update(0.1)
        rtt.update(0.08, 0.05, max_ack_delay=0.1)
        self.assertEqual(rtt.min_rtt, 0.08)

    def test_pto_interval_has_granularity_floor(self) -> None:
        """With a steady RTT, rttvar decays and the PTO is srtt + 1 ms + max_ack_delay."""
        rtt = RttEstimator()
        for _ in range(100):
            rtt.update(0.05)
        self.assertAlmostEqual(rtt.pto_interval(0.025), 0.05 + GRANULARITY + 0.025)

    def test_loss_delay_is_nine_eighths_of_larger_rtt(self) -> None:
        """The time threshold is 9/8 * max(srtt, latest_rtt) (§6.1.2)."""
        rtt = RttEstimator()
        rtt.update(0.1)
        rtt.update(0.2)
        self.assertAlmostEqual(rtt.loss_delay(), 1.125 * 0.2)

    def test_loss_delay_has_granularity_floor(self) -> None:
        """The time threshold is never below kGranularity."""
        rtt = RttEstimator()
        rtt.update(0.0001)
        self.assertEqual(rtt.loss_delay(), GRANULARITY)

    def test_jitter_and_sample_count(self) -> None:
        """Jitter moves by 1/16 of each difference between successive samples."""
        rtt = RttEstimator()
        rtt.update(0.1)
        rtt.update(0.2)
        self.assertAlmostEqual(rtt.jitter, 0.1 / 16)
        rtt.update(0.1)
        self.assertAlmostEqual(rtt.jitter, 0.1 / 16 + (0.1 - 0.1 / 16) / 16)
        self.assertEqual(rtt.samples, 3)

    def test_reset_forgets_samples(self) -> None:
        """reset() returns to the initial state."""
        rtt = RttEstimator(initial_rtt=0.2)
        rtt.update(0.05)
        rtt.reset()
        self.assertEqual((rtt.smoothed_rtt, rtt.samples, rtt.latest_rtt), (0.2, 0, 0.0))
