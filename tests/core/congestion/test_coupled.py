"""Tests for kwik_twisted.core.congestion.coupled: LIA (RFC 6356) and OLIA."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.congestion import CongestionController, CoupledGroup, Lia, Olia, create

from .helpers import MDS, packets, steady_rtt


def in_avoidance(
    controller: CongestionController, segments: int, rtt: float, delivered: int = MDS
) -> CongestionController:
    """
    Bring ``controller`` (made with twice ``segments``) to congestion
    avoidance at ``segments`` with one loss at t = 0, then let it see an RTT
    of ``rtt`` through an ACK of ``delivered`` bytes sent before the loss.
    """
    controller.on_packets_lost(packets(1, -1.0), now=0.0)
    assert controller.cwnd == segments * MDS
    controller.on_packets_acked(packets(1, -0.5, size=delivered), now=0.0, rtt=steady_rtt(rtt))
    assert controller.cwnd == segments * MDS
    return controller


def make(
    cls: type[Lia] | type[Olia],
    segments: int,
    rtt: float,
    group: CoupledGroup,
    delivered: int = MDS,
) -> CongestionController:
    """A ``cls`` controller in ``group`` in congestion avoidance at ``segments``."""
    controller = cls(group=group, initial_window=2 * segments * MDS)
    return in_avoidance(controller, segments, rtt, delivered)


def growth_per_window(controller: CongestionController, rtt: float) -> float:
    """Ack one window, one segment per ACK, sent after the loss; return the growth in segments."""
    before = controller.cwnd
    estimator = steady_rtt(rtt)
    for packet in packets(before // MDS, 1.0):
        controller.on_packets_acked([packet], now=1.0 + rtt, rtt=estimator)
    return (controller.cwnd - before) / MDS


class CoupledTests(SynchronousTestCase):
    """Coupled increases across the paths of one connection."""

    def assertClose(self, first: float, second: float, delta: float) -> None:
        """Fail unless ``first`` and ``second`` differ by at most ``delta``."""
        self.assertTrue(abs(first - second) <= delta, f"{first!r} != {second!r} +- {delta!r}")

    def test_registered_by_name(self) -> None:
        """lia and olia are created by name, with a group of their own by default."""
        lia = create("lia")
        self.assertIsInstance(lia, Lia)
        self.assertEqual(lia.group.members, [lia])
        group = CoupledGroup()
        olia = create("olia", group=group)
        self.assertIsInstance(olia, Olia)
        self.assertEqual(group.members, [olia])

    def test_single_path_grows_like_reno(self) -> None:
        """Alone in its group, each grows about one segment per window acked."""
        for cls in (Lia, Olia):
            controller = make(cls, 20, 0.1, CoupledGroup())
            self.assertClose(growth_per_window(controller, 0.1), 1.0, 0.05)

    def test_lia_two_equal_paths_share_one_reno_increase(self) -> None:
        """With two equal paths, alpha is 1/2 and each path grows 1/4 segment per window."""
        group = CoupledGroup()
        first = make(Lia, 20, 0.1, group)
        make(Lia, 20, 0.1, group)
        self.assertClose(growth_per_window(first, 0.1), 0.25, 0.02)

    def test_lia_never_grows_faster_than_reno(self) -> None:
        """A path whose coupled increase exceeds 1/w grows at most as Reno would."""
        group = CoupledGroup()
        slow = make(Lia, 100, 1.0, group)
        make(Lia, 10, 0.1, group)
        growth = growth_per_window(slow, 1.0)
        self.assertLessEqual(growth, 1.0 + 1e-9)
        self.assertGreater(growth, 0.95)

    def test_olia_two_equal_paths(self) -> None:
        """With two equal paths, OLIA's alpha is 0 and each grows 1/4 segment per window."""
        group = CoupledGroup()
        first = make(Olia, 20, 0.1, group)
        make(Olia, 20, 0.1, group)
        self.assertClose(growth_per_window(first, 0.1), 0.25, 0.02)

    def test_olia_moves_window_to_best_path(self) -> None:
        """
        The best path (most bytes since its loss) without the largest window
        gets alpha = 1/2; the path with the largest window gets -1/2 and shrinks.
        """
        group = CoupledGroup()
        best = make(Olia, 10, 0.1, group, delivered=10**6)
        largest = make(Olia, 20, 0.1, group)
        # best: (10 / 0.01) / 300**2 + 0.5 / 10 per segment, times 10 segments.
        self.assertClose(growth_per_window(best, 0.1), 10 * (1000 / 90000 + 0.05), 0.05)
        self.assertLess(growth_per_window(largest, 0.1), 0.0)

    def test_leaving_the_group_uncouples(self) -> None:
        """After one path leaves, the other grows like Reno again."""
        group = CoupledGroup()
        first = make(Lia, 20, 0.1, group)
        second = make(Lia, 20, 0.1, group)
        second.leave()
        self.assertEqual(group.members, [first])
        self.assertClose(growth_per_window(first, 0.1), 1.0, 0.05)

    def test_loss_halves_only_the_losing_path(self) -> None:
        """A congestion event on one path leaves the other path's window alone."""
        group = CoupledGroup()
        first = make(Olia, 20, 0.1, group)
        second = make(Olia, 20, 0.1, group)
        first.on_packets_lost(packets(1, 1.0), now=1.1)
        self.assertEqual((first.cwnd, second.cwnd), (10 * MDS, 20 * MDS))
