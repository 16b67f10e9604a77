"""
The pure helpers of ``benchmarks/multipath_netns.py`` and ``benchmarks/peers/netns.py``: why it
skips, the ideal failover time, the command line, the tbf arguments and the /proc parsers.  None
of it needs root, namespaces or a network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:  # the scripts import harness and peers as top-level modules
    sys.path.insert(0, str(BENCHMARKS))

import multipath_netns  # noqa: E402
from peers import netns  # noqa: E402


def _which_all(tool: str) -> str:
    return f"/usr/sbin/{tool}"


class SkipReasonTests(SynchronousTestCase):
    """:func:`netns.skip_reason` names the first missing requirement, or returns ""."""

    def setUp(self) -> None:
        self.sysctl = Path(self.mktemp())
        self.sysctl.write_text("1\n")

    def reason(self, **kw) -> str:
        args = {
            "platform": "linux",
            "euid": 0,
            "which": _which_all,
            "mptcp_sysctl": str(self.sysctl),
        }
        args.update(kw)
        return netns.skip_reason(**args)

    def test_everything_present_means_no_reason(self) -> None:
        """Linux, root, ip, tc and MPTCP enabled: nothing stops the benchmark."""
        self.assertEqual(self.reason(), "")

    def test_other_platforms_are_skipped(self) -> None:
        """On macOS the reason says Linux namespaces are needed and names the platform."""
        reason = self.reason(platform="darwin")
        self.assertIn("Linux", reason)
        self.assertIn("darwin", reason)

    def test_a_normal_user_is_skipped(self) -> None:
        """Without root the reason says root is needed."""
        self.assertIn("root", self.reason(euid=1000))

    def test_a_missing_tool_is_named(self) -> None:
        """Without ``tc`` on the PATH the reason names ``tc``."""
        reason = self.reason(which=lambda tool: None if tool == "tc" else _which_all(tool))
        self.assertIn("'tc'", reason)

    def test_a_kernel_without_mptcp_is_skipped_only_when_mptcp_runs(self) -> None:
        """No MPTCP sysctl: a reason when MPTCP is wanted, none for Kwik alone."""
        missing = str(self.sysctl) + ".absent"
        self.assertIn("MPTCP", self.reason(mptcp_sysctl=missing))
        self.assertEqual(self.reason(mptcp_sysctl=missing, mptcp=False), "")

    def test_disabled_mptcp_is_skipped(self) -> None:
        """``net.mptcp.enabled=0`` is a reason of its own."""
        self.sysctl.write_text("0\n")
        self.assertIn("disabled", self.reason())


class IdealTimeTests(SynchronousTestCase):
    """The line-rate ideals the goodput and the failover's time lost are measured against."""

    def test_ideal_is_size_at_the_sum_of_the_rates(self) -> None:
        """30 MB over 40 + 40 Mbit/s takes 3 s at line rate, and 3 s measured is 100%."""
        self.assertAlmostEqual(multipath_netns.ideal_seconds(30_000_000, (40, 40)), 3.0)
        self.assertAlmostEqual(multipath_netns.goodput_percent(30_000_000, 3.0, (40, 40)), 100.0)
        self.assertAlmostEqual(multipath_netns.goodput_percent(30_000_000, 4.0, (40, 10)), 120.0)

    def test_failover_moves_the_rest_at_the_survivors_rate(self) -> None:
        """Link 1 of 40 + 40 cut at 2 s: 160 Mbit before, the other 80 Mbit at 40: 4 s."""
        ideal = multipath_netns.ideal_failover_seconds(30_000_000, (40, 40), 2.0, 1)
        self.assertAlmostEqual(ideal, 4.0)

    def test_the_surviving_link_is_the_one_not_cut(self) -> None:
        """Of 40 + 10, cutting link 2 leaves 40 Mbit/s, cutting link 1 leaves 10."""
        self.assertAlmostEqual(
            multipath_netns.ideal_failover_seconds(30_000_000, (40, 10), 2.0, 2), 5.5
        )
        self.assertAlmostEqual(
            multipath_netns.ideal_failover_seconds(30_000_000, (40, 10), 2.0, 1), 16.0
        )

    def test_a_transfer_ending_before_the_cut_is_not_slowed(self) -> None:
        """1 MB over 80 Mbit/s ends at 0.1 s, before a cut at 2 s."""
        ideal = multipath_netns.ideal_failover_seconds(1_000_000, (40, 40), 2.0, 1)
        self.assertAlmostEqual(ideal, 0.1)


class CommandLineTests(SynchronousTestCase):
    """Rates, scenarios and the defaults a child must not inherit."""

    def test_rates_are_two_positive_numbers(self) -> None:
        """``40,10`` parses; one rate, a word or a zero rate is refused."""
        self.assertEqual(multipath_netns.parse_rates("40, 10"), (40.0, 10.0))
        for bad in ("40", "40,ten", "40,0", "1,2,3"):
            with self.assertRaises(argparse.ArgumentTypeError):
                multipath_netns.parse_rates(bad)

    def test_scenarios_are_separated_by_semicolons_or_spaces(self) -> None:
        """``40,40;40,10`` and ``40,40 40,10`` are the same two scenarios."""
        expected = [(40.0, 40.0), (40.0, 10.0)]
        self.assertEqual(multipath_netns.parse_scenarios("40,40;40,10"), expected)
        self.assertEqual(multipath_netns.parse_scenarios("40,40 40,10"), expected)

    def test_the_parent_cuts_at_two_seconds_and_quick_earlier(self) -> None:
        """The failover cut defaults to 2 s, 0.5 s with ``--quick`` (10 MB, one run)."""
        self.assertEqual(multipath_netns.parse_args([]).cut_at, 2.0)
        quick = multipath_netns.parse_args(["--quick"])
        self.assertEqual((quick.cut_at, quick.size, quick.runs), (0.5, 10.0, 1))

    def test_a_child_cuts_only_when_told(self) -> None:
        """A client child without ``--cut-at`` never takes a link down."""
        child = multipath_netns.parse_args(["--role", "kwik-client"])
        self.assertIsNone(child.cut_at)


class TestbedHelperTests(SynchronousTestCase):
    """The tbf arguments, the byte-counter arithmetic and the /proc parsers."""

    def test_tbf_burst_is_four_milliseconds_of_the_rate(self) -> None:
        """40 Mbit/s: 5 MB/s x 4 ms = 20000 bytes of burst, a 25 ms queue."""
        self.assertEqual(
            netns.tbf_args(40), ["tbf", "rate", "40000000bit", "burst", "20000", "latency", "25ms"]
        )

    def test_tbf_burst_has_a_floor(self) -> None:
        """At 1 Mbit/s the burst stays at 10000 bytes, several full frames."""
        self.assertEqual(netns.tbf_args(1)[4], "10000")

    def test_tbf_refuses_a_null_rate(self) -> None:
        """A zero rate is a mistake, not an unlimited link."""
        with self.assertRaises(ValueError):
            netns.tbf_args(0)

    def test_link_shares_are_of_the_client_to_server_bytes(self) -> None:
        """Counter differences per veth end; the shares split the client ends' bytes."""
        before = {"c1": 100, "c2": 100, "s1": 5}
        after = {"c1": 400, "c2": 200, "s1": 7}
        shares = multipath_netns.link_shares(before, after)
        self.assertEqual(shares["bytes"], {"c1": 300, "c2": 100, "s1": 2})
        self.assertEqual(shares["share"], [0.75, 0.25])

    def test_proc_net_dev_gives_rx_and_tx_bytes(self) -> None:
        """The first and ninth numbers after the interface name are rx and tx bytes."""
        text = (
            "Inter-|   Receive                            |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes ...\n"
            "    lo:     10       1    0    0    0     0          0         0       20"
            "       2    0    0    0     0       0          0\n"
            "  ktc1: 123456     100    0    0    0     0          0         0  987654"
            "     700    0    0    0     0       0          0\n"
        )
        table = netns.parse_proc_net_dev(text)
        self.assertEqual(table["ktc1"], (123456, 987654))
        self.assertEqual(table["lo"], (10, 20))

    def test_proc_stat_cpu_survives_a_command_name_with_spaces(self) -> None:
        """utime + stime (fields 14 and 15) in ticks, after a ``(comm)`` holding ") "."""
        fields = ["S"] + ["0"] * 10 + ["250", "150"] + ["0"] * 30
        text = "4242 (odd) name) " + " ".join(fields)
        self.assertAlmostEqual(netns.parse_proc_stat_cpu(text, ticks=100), 4.0)


class OwnGoodputIdealTests(SynchronousTestCase):
    """The failover ideal at the peer's own steady goodput, which removes header overhead."""

    def test_full_goodput_is_the_line_rate_ideal(self) -> None:
        """At 100% of the line rate the two ideals agree."""
        self.assertAlmostEqual(
            multipath_netns.own_goodput_ideal(30_000_000, (40, 40), 2.0, 1, 100.0), 4.0
        )

    def test_half_goodput_scales_both_links(self) -> None:
        """At 50%: 80 Mbit in the first 2 s, the other 160 Mbit at 20 Mbit/s, 10 s in all."""
        self.assertAlmostEqual(
            multipath_netns.own_goodput_ideal(30_000_000, (40, 40), 2.0, 1, 50.0), 10.0
        )
