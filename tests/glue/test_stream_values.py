"""
The stream values of the public API (:mod:`kwik_twisted.streams`): Priority, QoSPolicy and its
mapping to the wire's QOS extension, StreamProgress.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.errors import ConfigurationError
from kwik_twisted.streams import Priority, QoSPolicy, StreamProgress
from kwik_twisted.wire import QosPolicy as WireQosPolicy


class PriorityTests(SynchronousTestCase):
    """Priority is the seed's three levels."""

    def test_levels_are_the_seeds(self) -> None:
        """NORMAL, HIGH and CRITICAL are 0, 1 and 2 (what the frames carry), in that order."""
        self.assertEqual([int(p) for p in Priority], [0, 1, 2])
        self.assertEqual([p.name for p in Priority], ["NORMAL", "HIGH", "CRITICAL"])
        self.assertLess(Priority.NORMAL, Priority.CRITICAL)


class QoSPolicyTests(SynchronousTestCase):
    """QoSPolicy is a frozen value object that refuses bad values, naming the field."""

    def test_every_field_defaults_to_no_requirement(self) -> None:
        """A policy made without arguments asks nothing (every field None)."""
        policy = QoSPolicy()
        self.assertEqual(dataclasses.astuple(policy), (None, None, None, None))

    def test_is_frozen_and_compares_by_value(self) -> None:
        """A policy cannot be changed; two policies with the same values are equal and hash
        alike."""
        policy = QoSPolicy(max_latency=0.05)
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, policy, "max_latency", 1)
        self.assertEqual(policy, QoSPolicy(max_latency=0.05))
        self.assertEqual(hash(policy), hash(QoSPolicy(max_latency=0.05)))

    def test_bad_values_are_refused_naming_the_field(self) -> None:
        """Negative, zero (except a loss threshold), infinite, NaN, boolean, non-numeric, a loss
        above 1 and values too large for the wire: ConfigurationError naming the field."""
        cases = {
            "min_bandwidth": (-1, 0, float("inf"), float("nan"), True, "2M", 2**80),
            "max_latency": (-0.1, 0, float("inf"), "50ms", False, 1e30),
            "max_jitter": (-0.1, 0.0, float("nan"), [1]),
            "loss_threshold": (-0.01, 1.01, float("inf"), "1%", True),
        }
        for field, values in cases.items():
            for bad in values:
                with self.assertRaises(ConfigurationError) as caught:
                    QoSPolicy(**{field: bad})
                self.assertIn(field, str(caught.exception))
                self.assertIsInstance(caught.exception, ValueError)

    def test_any_real_number_is_accepted(self) -> None:
        """Ints, floats and other real numbers (a Fraction) are fine; a loss of 0 and 1 too."""
        QoSPolicy(min_bandwidth=64_000, max_latency=Fraction(1, 20), max_jitter=0.01,
                  loss_threshold=0)
        QoSPolicy(loss_threshold=1)

    def test_to_wire_uses_kbps_ms_and_ppm(self) -> None:
        """The QOS extension carries kbps, milliseconds and parts per million."""
        policy = QoSPolicy(min_bandwidth=2_000_000, max_latency=0.05, max_jitter=0.01,
                           loss_threshold=0.01)
        self.assertEqual(policy.to_wire(), WireQosPolicy(2000, 50, 10, 10_000))

    def test_no_requirement_is_zero_on_the_wire(self) -> None:
        """A None field is 0 on the wire (the extension's "no requirement")."""
        self.assertEqual(QoSPolicy().to_wire(), WireQosPolicy(0, 0, 0, 0))
        self.assertEqual(QoSPolicy(max_latency=0.1).to_wire(), WireQosPolicy(0, 100, 0, 0))

    def test_rounding_is_to_nearest_but_never_to_zero(self) -> None:
        """Values round to the nearest wire unit; a requirement that would round to 0 (which
        the wire reads as none) is sent as 1, the strictest the wire can carry."""
        self.assertEqual(QoSPolicy(min_bandwidth=1_499).to_wire().min_bandwidth_kbps, 1)
        self.assertEqual(QoSPolicy(min_bandwidth=1_500).to_wire().min_bandwidth_kbps, 2)
        self.assertEqual(QoSPolicy(min_bandwidth=1).to_wire().min_bandwidth_kbps, 1)
        self.assertEqual(QoSPolicy(max_latency=0.0504).to_wire().max_latency_ms, 50)
        self.assertEqual(QoSPolicy(max_latency=0.0001).to_wire().max_latency_ms, 1)
        self.assertEqual(QoSPolicy(max_jitter=0.0026).to_wire().max_jitter_ms, 3)
        self.assertEqual(QoSPolicy(loss_threshold=0).to_wire().loss_threshold_ppm, 1)
        self.assertEqual(QoSPolicy(loss_threshold=1).to_wire().loss_threshold_ppm, 1_000_000)

    def test_from_wire_maps_units_back_and_zero_to_none(self) -> None:
        """from_wire is the inverse on wire units; 0 is None; no extension is no policy."""
        policy = QoSPolicy.from_wire(WireQosPolicy(2000, 50, 0, 10_000))
        self.assertEqual(policy, QoSPolicy(min_bandwidth=2_000_000, max_latency=0.05,
                                           loss_threshold=0.01))
        self.assertEqual(QoSPolicy.from_wire(WireQosPolicy()), QoSPolicy())
        self.assertIsNone(QoSPolicy.from_wire(None))

    def test_from_wire_accepts_anything_the_wire_carries(self) -> None:
        """A peer's extension with a loss above 100% or the largest varints still makes a valid
        policy (a loss threshold above 1 is read as 1)."""
        big = 2**62 - 1
        policy = QoSPolicy.from_wire(WireQosPolicy(big, big, big, big))
        self.assertEqual(policy.loss_threshold, 1.0)
        self.assertEqual(policy.min_bandwidth, big * 1000)

    @settings(max_examples=500, derandomize=True, database=None, deadline=None)
    @given(st.integers(0, 2**62 - 1), st.integers(0, 2**50), st.integers(0, 2**50),
           st.integers(0, 1_000_000))
    def test_wire_values_survive_a_round_trip(self, kbps, ms, jitter, ppm) -> None:
        """Every QOS extension (a loss of at most 100%, delays up to 2**50 ms) comes back
        unchanged through from_wire and to_wire."""
        wire = WireQosPolicy(kbps, ms, jitter, ppm)
        self.assertEqual(QoSPolicy.from_wire(wire).to_wire(), wire)

    def test_to_wire_never_leaves_the_wires_range(self) -> None:
        """The largest values a policy takes map to at most the largest varint."""
        big = 2**62 - 1
        policy = QoSPolicy.from_wire(WireQosPolicy(big, big, big, 0))
        self.assertEqual(policy.to_wire(), WireQosPolicy(big, big, big, 0))


class StreamProgressTests(SynchronousTestCase):
    """StreamProgress names the five byte counts."""

    def test_fields_in_order(self) -> None:
        """written, sent, acked, received, delivered; a tuple of five."""
        progress = StreamProgress(10, 9, 8, 7, 6)
        self.assertEqual(StreamProgress._fields,
                         ("written", "sent", "acked", "received", "delivered"))
        self.assertEqual((progress.written, progress.acked, progress.delivered), (10, 8, 6))
        self.assertEqual(tuple(progress), (10, 9, 8, 7, 6))
