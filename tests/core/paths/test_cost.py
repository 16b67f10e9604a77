"""Tests for path cost in scheduling (kwik_twisted.core.paths.scheduler.affordable_paths) and the
delay-aware window cap of the congestion controllers."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.congestion import create as create_controller
from kwik_twisted.core.paths.scheduler import affordable_paths

from .test_scheduler import MSS, make_path


class AffordablePathsTests(SynchronousTestCase):
    """A dearer path carries data only when the cheaper ones cannot."""

    def test_equal_costs_leave_every_path(self) -> None:
        """Paths of one cost (the default 0) are all affordable, in their order."""
        paths = [make_path(1, 0.02), make_path(2, 0.01)]
        self.assertEqual(affordable_paths(paths, backlog=10**9), paths)

    def test_the_cheap_path_alone_while_it_has_room(self) -> None:
        """With window room on the cheap path, the costly path is left out whatever waits."""
        cheap, costly = make_path(1, 0.03), make_path(2, 0.01, cost=5.0)
        self.assertEqual(affordable_paths([costly, cheap], backlog=10**9), [cheap])

    def test_a_full_cheap_path_with_a_small_backlog_is_waited_for(self) -> None:
        """An application-limited trickle (less than the cheap window waiting) waits for the
        cheap path even while its window is full."""
        cheap = make_path(1, 0.03, full=True, cwnd=10 * MSS)
        costly = make_path(2, 0.01, cost=5.0)
        self.assertEqual(affordable_paths([cheap, costly], backlog=5 * MSS), [cheap])

    def test_demand_beyond_the_cheap_window_brings_in_the_costly_path(self) -> None:
        """More than the cheap path's window waiting, and no room on it: both are affordable."""
        cheap = make_path(1, 0.03, full=True, cwnd=10 * MSS)
        costly = make_path(2, 0.01, cost=5.0)
        self.assertEqual(affordable_paths([cheap, costly], backlog=11 * MSS), [cheap, costly])

    def test_a_failing_cheap_path_brings_in_the_costly_path_at_once(self) -> None:
        """A cheap path whose probe timer fired (pto_count > 0) no longer holds the costly one
        back, even with room and nothing waiting."""
        cheap = make_path(1, 0.03)
        cheap.recovery.pto_count = 1
        costly = make_path(2, 0.01, cost=5.0)
        self.assertEqual(affordable_paths([cheap, costly], backlog=0), [cheap, costly])

    def test_tiers_open_one_at_a_time(self) -> None:
        """With three costs, the dearest joins only when both cheaper tiers are exhausted."""
        free = make_path(1, 0.03, full=True, cwnd=4 * MSS)
        mid = make_path(2, 0.02, cost=1.0)
        dear = make_path(3, 0.01, cost=9.0)
        self.assertEqual(affordable_paths([free, mid, dear], backlog=5 * MSS), [free, mid])
        mid.recovery.bytes_in_flight = mid.recovery.controller.cwnd
        self.assertEqual(
            affordable_paths([free, mid, dear], backlog=100 * MSS), [free, mid, dear]
        )


class WindowCapTests(SynchronousTestCase):
    """The QoS enforcer's cap bounds the window the sender sees, not the controller's state."""

    def test_the_cap_bounds_cwnd_can_send_and_available(self) -> None:
        """cwnd reads min(window, cap); can_send and available follow; lifting the cap restores
        the window."""
        for name in ("newreno", "cubic"):
            controller = create_controller(name, max_datagram_size=MSS)
            window = controller.cwnd
            controller.cap = 4 * MSS
            self.assertEqual(controller.cwnd, 4 * MSS, name)
            self.assertFalse(controller.can_send(4 * MSS), name)
            self.assertEqual(controller.available(3 * MSS), MSS, name)
            controller.cap = None
            self.assertEqual(controller.cwnd, window, name)

    def test_a_capped_window_stops_growing_at_twice_the_cap(self) -> None:
        """Slow start under a cap grows the hidden window to twice the cap and no further."""

        class Packet:
            size = MSS
            sent_time = 1.0

        class Rtt:
            smoothed_rtt = min_rtt = latest_rtt = 0.02

        controller = create_controller("newreno", max_datagram_size=MSS)
        controller.cap = 8 * MSS
        for _ in range(200):
            controller.on_packets_acked([Packet()], now=2.0, rtt=Rtt())
        self.assertEqual(controller.cwnd, 8 * MSS)
        self.assertLessEqual(controller._cwnd, 17 * MSS)
        controller.cap = None
        self.assertLessEqual(controller.cwnd, 17 * MSS)


class LooksDeadTests(SynchronousTestCase):
    """A cheaper path is failing when data in flight has waited more than one PTO for its ACK;
    packets that carry only ACKs (never acknowledged by themselves) do not count."""

    def recovery(self):
        from kwik_twisted.core.recovery.loss import LossRecovery

        recovery = LossRecovery(create_controller("newreno", max_datagram_size=MSS))
        recovery.rtt.update(0.05)
        return recovery

    def test_ack_only_packets_do_not_make_a_path_look_dead(self) -> None:
        """A path whose only outstanding packet is an old ACK-only one is not failing, however
        long ago it was sent; nor is a path with nothing outstanding."""
        from kwik_twisted.core.paths.scheduler import looks_dead
        from kwik_twisted.core.recovery.loss import SentPacket

        path = make_path(1, 0.05)
        path.recovery = self.recovery()
        self.assertFalse(looks_dead(path, 100.0))
        path.recovery.on_packet_sent(SentPacket(0, 0.0, 60, False, False, []))
        self.assertIsNone(path.recovery.oldest_unacked_time())
        self.assertFalse(looks_dead(path, 100.0))

    def test_data_unacknowledged_for_a_pto_makes_a_path_look_dead(self) -> None:
        """An ack-eliciting packet in flight for longer than srtt + 4 rttvar + max_ack_delay
        makes the path look dead; younger, it does not.  ACK-only packets ahead of it are
        skipped."""
        from kwik_twisted.core.paths.scheduler import looks_dead
        from kwik_twisted.core.recovery.loss import SentPacket

        path = make_path(1, 0.05)
        recovery = path.recovery = self.recovery()
        recovery.on_packet_sent(SentPacket(0, 0.5, 60, False, False, []))
        recovery.on_packet_sent(SentPacket(1, 1.0, MSS, True, True, []))
        self.assertEqual(recovery.oldest_unacked_time(), 1.0)
        pto = recovery.rtt.pto_interval(recovery.max_ack_delay)
        self.assertFalse(looks_dead(path, 1.0 + pto * 0.9))
        self.assertTrue(looks_dead(path, 1.0 + pto * 1.1))
