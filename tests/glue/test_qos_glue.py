"""
The QoS data plane through the Twisted API, over the fake UDP reactor: ``congestionReport()`` on a
connection, and ``QoSViolated`` reaching a stream protocol that provides ``IKwikQoSObserver``.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from kwik_twisted import IKwikQoSObserver, QoSPolicy, QoSViolated
from kwik_twisted.core.qos.reports import CongestionReport

from .fakes import FakeKwik, Recorder


@implementer(IKwikQoSObserver)
class Observer(Recorder):
    """A recorder that also keeps the QoS violations of its stream."""

    def __init__(self) -> None:
        super().__init__()
        self.violations: list[QoSViolated] = []

    def qosViolated(self, event: QoSViolated) -> None:
        self.violations.append(event)


class QoSGlueTests(SynchronousTestCase):
    """What an application sees of the QoS data plane."""

    def setUp(self) -> None:
        self.kwik = FakeKwik(serverProtocol=Recorder)
        self.first = self.kwik.connect(Recorder)[0]
        self.conn = self.first.transport.kwikConnection

    def test_congestion_report_names_every_path(self) -> None:
        """``congestionReport()`` is a CongestionReport with one entry per live path, whose
        ``as_dict()`` is JSON."""
        self.first.transport.write(b"x" * 50_000)
        self.kwik.pump(0.5)
        report = self.conn.congestionReport()
        self.assertIsInstance(report, CongestionReport)
        self.assertEqual([p.path_id for p in report.paths], sorted(self.conn.core.paths))
        json.dumps(report.as_dict())

    def test_a_violation_reaches_the_observing_stream_only(self) -> None:
        """A QoSViolated for a stream goes to that stream's protocol when it provides
        IKwikQoSObserver (once, as emitted), and not to the other streams."""
        watcher = Observer()
        transport = self.conn.openStream(watcher, qos=QoSPolicy(max_latency=0.05))
        other = Observer()
        self.conn.openStream(other)
        transport.write(b"hello")
        self.kwik.pump()
        event = QoSViolated(transport.streamId, "max_latency", 0.08, 0.05)
        self.conn.core._events.append(event)
        self.conn._dispatchEvents()
        self.assertEqual(watcher.violations, [event])
        self.assertEqual(other.violations, [])

    def test_a_failing_observer_is_logged_not_raised(self) -> None:
        """An exception from qosViolated is logged; the connection goes on."""

        class Broken(Observer):
            def qosViolated(self, event):
                raise RuntimeError("boom")

        transport = self.conn.openStream(Broken())
        transport.write(b"hello")
        self.kwik.pump()
        self.conn.core._events.append(QoSViolated(transport.streamId, "max_jitter", 0.01, 0.005))
        self.conn._dispatchEvents()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        transport.write(b" again")
        self.kwik.pump()
