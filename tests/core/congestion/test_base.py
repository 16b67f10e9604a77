"""Tests for kwik_twisted.core.congestion.base: the registry and the shared window rules."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.congestion import (
    CongestionController,
    Cubic,
    NewReno,
    available_controllers,
    create,
    is_coupled,
    register,
    unregister,
)
from kwik_twisted.core.congestion.base import default_initial_window
from kwik_twisted.errors import ConfigurationError

from .helpers import MDS, packets, steady_rtt


class RegistryTests(SynchronousTestCase):
    """Controllers are found by name."""

    def test_known_controllers_are_listed(self) -> None:
        """newreno and cubic are registered."""
        names = available_controllers()
        self.assertIn("newreno", names)
        self.assertIn("cubic", names)
        self.assertEqual(names, sorted(names))

    def test_create_by_name(self) -> None:
        """create() makes an instance of the named class, case-insensitively."""
        self.assertIsInstance(create("newreno"), NewReno)
        self.assertIsInstance(create("CUBIC"), Cubic)
        self.assertEqual(create("cubic").name, "cubic")

    def test_create_passes_max_datagram_size(self) -> None:
        """The datagram size sets the initial and minimum windows."""
        controller = create("newreno", max_datagram_size=1200)
        self.assertEqual(controller.cwnd, 12000)
        self.assertEqual(controller.minimum_window, 2400)

    def test_unknown_name_is_a_configuration_error_listing_known_names(self) -> None:
        """An unknown name raises ConfigurationError naming every known controller."""
        error = self.assertRaises(ConfigurationError, create, "vegas")
        self.assertIn("vegas", str(error))
        for name in available_controllers():
            self.assertIn(name, str(error))

    def test_bad_options_are_a_configuration_error(self) -> None:
        """Options a controller does not take raise ConfigurationError."""
        self.assertRaises(ConfigurationError, create, "newreno", colour="blue")
        self.assertRaises(ConfigurationError, create, "newreno", max_datagram_size=0)

    def test_registering_a_taken_name_fails(self) -> None:
        """A second class cannot take an existing name."""

        class Other(NewReno):
            """A stand-in controller."""

        self.assertRaises(ConfigurationError, register("newreno"), Other)
        self.assertIs(type(create("newreno")), NewReno)

    def test_register_adds_a_controller(self) -> None:
        """A registered class is listed and can be created."""

        self.addCleanup(unregister, "test-fixed")

        @register("test-fixed")
        class Fixed(CongestionController):
            """A controller whose window never moves."""

            def increase(self, acked_bytes, *, now, rtt):  # type: ignore[no-untyped-def]
                """Do not grow."""

            def on_congestion_event(self, *, now):  # type: ignore[no-untyped-def]
                """Do not shrink."""

        self.assertIn("test-fixed", available_controllers())
        self.assertIsInstance(create("test-fixed"), Fixed)
        unregister("test-fixed")
        self.assertNotIn("test-fixed", available_controllers())


    def test_only_lia_and_olia_are_coupled(self) -> None:
        """is_coupled is true for the controllers that share a group across paths, only them."""
        self.assertEqual(
            {name: is_coupled(name) for name in available_controllers()},
            {"cubic": False, "lia": True, "newreno": False, "olia": True},
        )
        self.assertTrue(is_coupled("LIA"))

    def test_is_coupled_follows_the_class_attribute(self) -> None:
        """A registered controller is coupled exactly when its class says ``coupled = True``."""
        self.addCleanup(unregister, "test-coupled")
        register("test-coupled")(type("Coupled", (NewReno,), {"coupled": True}))
        self.assertTrue(is_coupled("test-coupled"))

    def test_is_coupled_of_an_unknown_name_is_a_configuration_error(self) -> None:
        """An unknown name raises the ConfigurationError create() raises for it."""
        error = self.assertRaises(ConfigurationError, is_coupled, "vegas")
        self.assertEqual(str(error), str(self.assertRaises(ConfigurationError, create, "vegas")))


class SlowStartTests(SynchronousTestCase):
    """Slow start is one rule for every controller (RFC 9002 §7.3.1)."""

    def test_every_controller_grows_by_the_bytes_acked_up_to_ssthresh(self) -> None:
        """Below ssthresh each controller adds exactly the bytes acked, then stops at ssthresh
        and hands the rest to congestion avoidance (which adds less than the rest)."""
        rtt = steady_rtt(0.1)
        for name in available_controllers():
            controller = create(name)
            controller.on_packets_lost(packets(1, 0.0), now=0.05)  # a finite ssthresh
            controller.on_persistent_congestion(now=0.06)
            ssthresh = int(controller.ssthresh)
            self.assertEqual(controller.cwnd, 2 * MDS, name)
            controller.on_packets_acked(packets(2, 0.1), now=0.2, rtt=rtt)
            self.assertEqual(controller.cwnd, 4 * MDS, name)
            self.assertTrue(controller.in_slow_start, name)
            acked = ssthresh - 4 * MDS + 100
            controller.on_packets_acked(packets(1, 0.2, acked), now=0.3, rtt=rtt)
            self.assertGreaterEqual(controller.cwnd, ssthresh, name)
            self.assertLess(controller.cwnd, ssthresh + 100, name)
            self.assertFalse(controller.in_slow_start, name)


class WindowRuleTests(SynchronousTestCase):
    """Rules every controller shares (RFC 9002 §7.2, §7.3.2, §7.8)."""

    def test_initial_window_follows_rfc_9002(self) -> None:
        """The initial window is min(10 * mds, max(14720, 2 * mds))."""
        self.assertEqual(default_initial_window(1350), 13500)
        self.assertEqual(default_initial_window(1500), 14720)
        self.assertEqual(default_initial_window(9000), 18000)
        self.assertEqual(NewReno(max_datagram_size=1500).cwnd, 14720)

    def test_can_send_and_available(self) -> None:
        """can_send and available compare bytes in flight with the window."""
        controller = NewReno()
        self.assertTrue(controller.can_send(13499))
        self.assertFalse(controller.can_send(13500))
        self.assertEqual(controller.available(13000), 500)
        self.assertEqual(controller.available(20000), 0)

    def test_app_limited_sender_does_not_grow_the_window(self) -> None:
        """After on_app_limited, acks leave cwnd alone until a send fills the window again."""
        controller = NewReno()
        rtt = steady_rtt(0.1)
        controller.on_app_limited(now=0.0)
        controller.on_packet_sent(MDS, now=0.0, bytes_in_flight=MDS)
        controller.on_packets_acked(packets(1, 0.0), now=0.1, rtt=rtt)
        self.assertEqual(controller.cwnd, 13500)
        self.assertTrue(controller.app_limited)
        controller.on_packet_sent(MDS, now=0.1, bytes_in_flight=7 * MDS)
        self.assertFalse(controller.app_limited)
        controller.on_packets_acked(packets(1, 0.1), now=0.2, rtt=rtt)
        self.assertEqual(controller.cwnd, 13500 + MDS)

    def test_persistent_congestion_collapses_to_minimum_window(self) -> None:
        """on_persistent_congestion sets cwnd to 2 * mds, for every controller."""
        for name in ("newreno", "cubic"):
            controller = create(name)
            controller.on_persistent_congestion(now=1.0)
            self.assertEqual(controller.cwnd, 2 * MDS)
