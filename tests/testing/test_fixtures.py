"""
Tests for :mod:`kwik_twisted.testing.fixtures`: the pytest fixtures and the harness behind them.

The plain functions use the fixtures with pytest-twisted, as an application's tests would; they run
under pytest only (trial does not know fixtures and collects nothing from functions).  The
``TestCase`` classes run under both: they check the harness's cleanup, and, in a child pytest,
that the plugin is registered through its entry point and keeps trial ``TestCase`` classes working
beside pytest-twisted tests in one session.  Everything is on loopback; every wait has a deadline.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap

import pytest
import pytest_twisted
from twisted.internet import defer, error, reactor
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kwik_twisted.endpoints import KwikClientEndpoint
from kwik_twisted.testing.fixtures import KwikHarness, writeCertificates
from tests.glue.fakes import Collect, Echo

#: Seconds any wait of these tests may take.
DEADLINE = 10


def echoed(protocol: Collect, data: bytes) -> defer.Deferred:
    """Write ``data``; fire with what came back once as many bytes arrived (or time out)."""
    protocol.expected = len(data)
    protocol.transport.write(data)
    return protocol.received.addTimeout(DEADLINE, reactor)


# -- the fixtures, with pytest-twisted -------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_echo_over_kwik_through_the_fixtures(kwik_listen, kwik_client_endpoint):
    """kwik_listen serves a factory on loopback; kwik_client_endpoint reaches it; bytes echo."""
    port = yield kwik_listen(Factory.forProtocol(Echo))
    assert port.getHost().host == "127.0.0.1"
    endpoint = kwik_client_endpoint(port)
    assert isinstance(endpoint, KwikClientEndpoint)
    client = yield endpoint.connect(Factory.forProtocol(Collect))
    data = os.urandom(100_000)
    assert (yield echoed(client, data)) == data


@pytest_twisted.ensureDeferred
async def test_endpoint_strings_from_the_fixtures(kwik_listen, kwik_server_string,
                                                  kwik_client_string):
    """A server from kwik_server_string and a client from kwik_client_string talk (async test)."""
    server = serverFromString(reactor, kwik_server_string())
    port = await kwik_listen(Factory.forProtocol(Echo), endpoint=server)
    description = kwik_client_string(port, timeout=5)
    assert description.startswith(f"kwik:host=127.0.0.1:port={port.getHost().port}:")
    client = await clientFromString(reactor, description).connect(Factory.forProtocol(Collect))
    assert await echoed(client, b"through strings") == b"through strings"


@pytest_twisted.inlineCallbacks
def test_listen_on_ipv6_loopback(kwik_listen, kwik_client_endpoint):
    """kwik_listen(interface='::1'): the client endpoint targets the port's own address."""
    try:
        port = yield kwik_listen(Factory.forProtocol(Echo), interface="::1")
    except error.CannotListenError:
        pytest.skip("cannot bind ::1")
    client = yield kwik_client_endpoint(port).connect(Factory.forProtocol(Collect))
    assert client.transport.getPeer().host == "::1"
    assert (yield echoed(client, b"six")) == b"six"


def test_certificates_are_pem_files(kwik_certs):
    """kwik_certs: a CA, a chain of leaf then CA, and a key readable only by its owner."""
    assert kwik_certs.ca.read_bytes().count(b"BEGIN CERTIFICATE") == 1
    assert kwik_certs.chain.read_bytes().count(b"BEGIN CERTIFICATE") == 2
    assert stat.S_IMODE(kwik_certs.key.stat().st_mode) == 0o600
    assert kwik_certs.directory in kwik_certs.key.parents


def test_harness_strings_escape_their_values(kwik_harness):
    """Colons in paths and IPv6 addresses are escaped, so Twisted splits the string right."""
    description = kwik_harness.serverString(interface="::1", congestion="newreno")
    assert ":interface=\\:\\:1:" in description
    assert description.endswith(":congestion=newreno")


# -- the harness under trial -----------------------------------------------------------------


class HarnessCleanupTests(TestCase):
    """KwikHarness.cleanup leaves nothing behind (trial would fail the test on any junk)."""

    timeout = 20

    @defer.inlineCallbacks
    def test_cleanup_closes_clients_and_stops_ports(self) -> None:
        """After cleanup the stream is lost and the port refuses new clients."""
        harness = KwikHarness(reactor, writeCertificates(self.mktemp()))
        self.addCleanup(harness.cleanup)
        port = yield harness.listen(Factory.forProtocol(Echo))
        client = yield harness.clientEndpoint(port).connect(Factory.forProtocol(Collect))
        yield echoed(client, b"before")
        yield harness.cleanup()
        yield client.lost.addTimeout(DEADLINE, reactor)
        late = harness.clientEndpoint(port.getHost().port, timeout=5)
        yield self.assertFailure(late.connect(Factory.forProtocol(Collect)),
                                 error.ConnectionRefusedError)

    @defer.inlineCallbacks
    def test_listen_with_an_endpoint_rejects_endpoint_arguments(self) -> None:
        """listen(endpoint=...) with endpoint arguments too is a TypeError (which applies?)."""
        harness = KwikHarness(reactor, writeCertificates(self.mktemp()))
        self.addCleanup(harness.cleanup)
        server = serverFromString(reactor, harness.serverString())
        with self.assertRaises(TypeError):
            harness.listen(Factory.forProtocol(Echo), endpoint=server, interface="::1")
        yield harness.cleanup()


CHILD_TESTS = '''
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase


class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class Reply(Protocol):
    def connectionMade(self):
        self.received = defer.Deferred()

    def dataReceived(self, data):
        self.received.callback(data)


@pytest_twisted.inlineCallbacks
def test_a_function_first(kwik_listen, kwik_client_endpoint):
    port = yield kwik_listen(Factory.forProtocol(Echo))
    client = yield kwik_client_endpoint(port).connect(Factory.forProtocol(Reply))
    client.transport.write(b"ping")
    assert (yield client.received) == b"ping"


class TrialAfterwards(TestCase):
    def test_waits_on_the_reactor(self):
        return task.deferLater(reactor, 0.01, lambda: None)
'''


class PluginTests(SynchronousTestCase):
    """The plugin as another project gets it: by its entry point, in a child pytest."""

    def runChild(self, *options: str) -> subprocess.CompletedProcess:
        """Run pytest on CHILD_TESTS in a fresh directory outside the checkout."""
        directory = tempfile.mkdtemp(prefix="kwik-fixtures-")
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        with open(os.path.join(directory, "test_child.py"), "w") as f:
            f.write(textwrap.dedent(CHILD_TESTS))
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options,
             "test_child.py"],
            cwd=directory, capture_output=True, text=True, timeout=120,
        )

    def test_fixtures_come_from_the_entry_point(self) -> None:
        """Without any conftest, the fixtures exist and a trial TestCase written after a
        pytest-twisted test still passes (the plugin runs trial classes first)."""
        child = self.runChild()
        self.assertEqual(child.returncode, 0, child.stdout + child.stderr)
        self.assertIn("2 passed", child.stdout)

    def test_ordering_can_be_turned_off(self) -> None:
        """With kwik_trial_first=false the trial TestCase runs after pytest-twisted took the
        reactor, and fails: the ordering is what keeps the two kinds working together."""
        child = self.runChild("-o", "kwik_trial_first=false")
        self.assertNotEqual(child.returncode, 0, child.stdout)
        self.assertIn("1 failed, 1 passed", child.stdout)
