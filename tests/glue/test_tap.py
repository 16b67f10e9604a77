"""
Tests for kwik_twisted.tap, the ``twistd kwik`` plugin: option parsing and its errors,
``--make-certificates``, and the services ``makeService`` builds (started on a MemoryReactor, so
nothing really listens; the relays themselves are tested over loopback in test_forwarding).
"""

from __future__ import annotations

import io
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted import tap
from kwik_twisted.glue.forwarding import EchoFactory, ForwardingFactory
from kwik_twisted.parsers import parse_client_arguments
from tests.certs import fixtures
from tests.glue.test_parsers import record_endpoints


def _options(*argv: str, reactor: Any = None, stdout: Any = None) -> tap.Options:
    options = tap.Options(reactor=reactor or MemoryReactor(), stdout=stdout)
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    """Parsing the ``twistd kwik`` command line."""

    def test_listen_and_echo(self) -> None:
        """``--listen ENDPOINT --echo`` is accepted."""
        options = _options("--listen", "tcp:0", "--echo")
        self.assertEqual(options["listen"], ["tcp:0"])
        self.assertTrue(options["echo"])
        self.assertIsNone(options["forward"])

    def test_listen_is_repeatable_with_forward(self) -> None:
        """``--listen`` may be repeated; ``--forward`` takes a client endpoint string."""
        options = _options(
            "--listen", "tcp:8080", "--listen=tcp:8081", "--forward", "tcp:host=10.0.0.1:port=80"
        )
        self.assertEqual(options["listen"], ["tcp:8080", "tcp:8081"])
        self.assertEqual(options["forward"], "tcp:host=10.0.0.1:port=80")
        self.assertFalse(options["echo"])

    def assertUsageError(self, fragment: str, *argv: str) -> None:
        error = self.assertRaises(usage.UsageError, _options, *argv)
        self.assertIn(fragment, str(error))

    def test_listen_is_required(self) -> None:
        """Without ``--listen`` there is nothing to do: a usage error says so."""
        self.assertUsageError("--listen", "--echo")

    def test_exactly_one_of_echo_and_forward(self) -> None:
        """Both ``--echo`` and ``--forward``, or neither, is a usage error."""
        self.assertUsageError("exactly one", "--listen", "tcp:0")
        self.assertUsageError("exactly one", "--listen", "tcp:0", "--echo", "--forward", "tcp:a:1")

    def test_bad_endpoint_strings_are_usage_errors(self) -> None:
        """A malformed --listen or --forward string is a usage error quoting it."""
        self.assertUsageError("'tcp:http'", "--listen", "tcp:http", "--echo")
        self.assertUsageError("'nosuch:1'", "--listen", "nosuch:1", "--echo")
        self.assertUsageError(
            "--forward 'tcp:host=a:port=x'", "--listen", "tcp:0", "--forward", "tcp:host=a:port=x"
        )
        self.assertUsageError("--listen", "--listen", "tcp:1:2:3:4:5", "--echo")

    def test_bad_kwik_strings_are_usage_errors_naming_the_argument(self) -> None:
        """A kwik: string with a bad argument or a missing file names it in the usage error."""
        self.assertUsageError("privateKey", "--listen", "kwik:4433", "--echo")
        self.assertUsageError(
            "/no/such.key", "--listen", "kwik:4433:privateKey=/no/such.key", "--echo"
        )
        self.assertUsageError(
            "congestion", "--listen", "tcp:0", "--forward", "kwik:host=h:port=1:congestion=x"
        )

    def test_the_same_listen_twice_is_refused(self) -> None:
        """Listening twice on the same endpoint string is a usage error."""
        self.assertUsageError("twice", "--listen", "tcp:1", "--listen", "tcp:1", "--echo")

    def test_hostname_without_make_certificates_is_refused(self) -> None:
        """``--hostname`` only applies to ``--make-certificates``."""
        self.assertUsageError(
            "--make-certificates", "--hostname", "a", "--listen", "tcp:0", "--echo"
        )

    def test_help_describes_every_option(self) -> None:
        """``--help`` text mentions each option and where endpoint strings are documented."""
        text = str(tap.Options())
        for option in ("--listen", "--forward", "--echo", "--make-certificates", "--hostname"):
            self.assertIn(option, text)
        self.assertIn("docs/endpoints.rst", text)


class MakeCertificatesTests(SynchronousTestCase):
    """``--make-certificates DIR``."""

    def setUp(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="kwik-tap-"))
        self.addCleanup(shutil.rmtree, self.base, True)
        # A colon in the path checks that printed endpoint strings escape it.
        self.directory = self.base / "dev:certs"

    def make(self, *extra: str) -> str:
        out = io.StringIO()
        error = self.assertRaises(
            SystemExit, _options, "--make-certificates", str(self.directory), *extra, stdout=out
        )
        self.assertEqual(error.code, 0)
        return out.getvalue()

    def printed(self, text: str, label: str) -> str:
        (line,) = [line for line in text.splitlines() if line.startswith(label)]
        return line[len(label) :].strip()

    def test_writes_ca_certificate_and_private_key(self) -> None:
        """ca.pem, server.pem and server.key (mode 0600) appear in DIR; the program exits 0."""
        self.make()
        for name in ("ca.pem", "server.pem", "server.key"):
            self.assertTrue((self.directory / name).is_file(), name)
        mode = stat.S_IMODE((self.directory / "server.key").stat().st_mode)
        self.assertEqual(mode, 0o600)

    def test_printed_endpoint_strings_work(self) -> None:
        """The printed server and client strings parse (colons escaped) and use those files."""
        text = self.make()
        recorder, _ = record_endpoints(self)
        server = self.printed(text, "Server endpoint:")
        serverFromString(MemoryReactor(), server)
        ((_, kwargs),) = recorder.calls
        chain = x509.load_pem_x509_certificates(kwargs["config"].tls.certificate_chain)
        on_disk = x509.load_pem_x509_certificates((self.directory / "server.pem").read_bytes())
        self.assertEqual(chain, on_disk)
        client = self.printed(text, "Client endpoint:")
        self.assertIn("dev\\:certs", client)
        self.assertIn("trustRoots=", client)

    def test_hostnames_go_into_the_certificate(self) -> None:
        """``--hostname`` names and addresses become the certificate's subjectAltName."""
        text = self.make("--hostname", "tunnel.example", "--hostname", "192.0.2.7")
        leaf = x509.load_pem_x509_certificates((self.directory / "server.pem").read_bytes())[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["tunnel.example"])
        self.assertEqual([str(ip) for ip in san.get_values_for_type(x509.IPAddress)], ["192.0.2.7"])
        self.assertIn("host=tunnel.example", self.printed(text, "Client endpoint:"))

    def test_existing_files_are_not_overwritten(self) -> None:
        """A second run into the same directory is refused instead of replacing the key."""
        self.make()
        key = (self.directory / "server.key").read_bytes()
        error = self.assertRaises(
            usage.UsageError, _options, "--make-certificates", str(self.directory)
        )
        self.assertIn("already exists", str(error))
        self.assertEqual((self.directory / "server.key").read_bytes(), key)

    def test_does_not_combine_with_listen(self) -> None:
        """``--make-certificates`` with ``--listen`` is a usage error."""
        error = self.assertRaises(
            usage.UsageError,
            _options,
            "--make-certificates",
            str(self.directory),
            "--listen",
            "tcp:0",
        )
        self.assertIn("--listen", str(error))


class MakeServiceTests(SynchronousTestCase):
    """makeService builds one endpoint service per --listen around one shared factory."""

    def build(self, *argv: str) -> tuple[MemoryReactor, MultiService]:
        reactor = MemoryReactor()
        service = tap.makeService(_options(*argv, reactor=reactor))
        return reactor, service

    def test_forwarding_services(self) -> None:
        """Each --listen gets a StreamServerEndpointService; all share a ForwardingFactory."""
        reactor, top = self.build(
            "--listen", "tcp:1234", "--listen", "tcp:1235:interface=127.0.0.1",
            "--forward", "tcp:host=10.0.0.1:port=80",
        )  # fmt: skip
        self.assertIsInstance(top, MultiService)
        children = list(top)
        self.assertEqual([c.name for c in children], ["tcp:1234", "tcp:1235:interface=127.0.0.1"])
        for child in children:
            self.assertIsInstance(child, StreamServerEndpointService)
        top.startService()
        self.addCleanup(top.stopService)
        listening = [(port, interface) for port, _, _, interface in reactor.tcpServers]
        self.assertEqual(listening, [(1234, ""), (1235, "127.0.0.1")])
        factories = {id(factory) for _, factory, _, _ in reactor.tcpServers}
        self.assertEqual(len(factories), 1)
        factory = reactor.tcpServers[0][1]
        self.assertIsInstance(factory, ForwardingFactory)
        self.assertEqual(factory.description, "tcp:host=10.0.0.1:port=80")

    def test_forwarding_factory_connects_to_the_forward_endpoint(self) -> None:
        """An accepted connection makes the factory connect to the --forward address."""
        reactor, top = self.build("--listen", "tcp:1234", "--forward", "tcp:host=10.0.0.1:port=80")
        top.startService()
        self.addCleanup(top.stopService)
        factory = reactor.tcpServers[0][1]
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        host, port = reactor.tcpClients[0][:2]
        self.assertEqual((host, port), ("10.0.0.1", 80))

    def test_echo_service(self) -> None:
        """With --echo the shared factory echoes what it receives."""
        reactor, top = self.build("--listen", "tcp:7", "--echo")
        top.startService()
        self.addCleanup(top.stopService)
        factory = reactor.tcpServers[0][1]
        self.assertIsInstance(factory, EchoFactory)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"hello")
        self.assertEqual(transport.value(), b"hello")

    def test_the_twistd_plugin_builds_the_same_service(self) -> None:
        """The ``kwik`` service maker found by twistd builds the service through makeService."""
        (maker,) = [m for m in getPlugins(IServiceMaker) if m.tapname == "kwik"]
        options = maker.options(reactor=MemoryReactor())
        options.parseOptions(["--listen", "tcp:0", "--echo"])
        top = maker.makeService(options)
        (child,) = list(top)
        self.assertIsInstance(child, StreamServerEndpointService)

    def test_kwik_forward_string_is_parsed_with_its_arguments(self) -> None:
        """A kwik: --forward string reaches KwikClientEndpoint with its parsed arguments."""
        _, client = record_endpoints(self)
        ca = str(fixtures().ca_path).replace(":", "\\:")
        forward = f"kwik:host=\\:\\:1:port=4433:trustRoots={ca}"
        reactor, top = self.build("--listen", "tcp:0", "--forward", forward)
        reactor_seen, kwargs = client.calls[-1]
        self.assertIs(reactor_seen, reactor)
        expected = parse_client_arguments(
            host="::1", port="4433", trustRoots=str(fixtures().ca_path)
        )
        self.assertEqual(kwargs["host"], expected["host"])
        self.assertEqual(kwargs["config"].tls, expected["config"].tls)

    def test_kwik_forward_string_takes_stream_priority_and_qos(self) -> None:
        """``--forward kwik:...:priority=high:maxLatency=50ms`` gives every relayed stream that
        priority and QoS policy (the client endpoint gets them)."""
        from kwik_twisted.streams import Priority, QoSPolicy

        _, client = record_endpoints(self)
        forward = "kwik:host=127.0.0.1:port=4433:priority=high:maxLatency=50ms:minBandwidth=2M"
        self.build("--listen", "tcp:0", "--forward", forward)
        _, kwargs = client.calls[-1]
        self.assertIs(kwargs["priority"], Priority.HIGH)
        self.assertEqual(kwargs["qos"], QoSPolicy(min_bandwidth=2_000_000, max_latency=0.05))

    def test_bad_forward_priority_is_a_usage_error_naming_it(self) -> None:
        """A bad ``priority=`` in --forward is a usage error naming the argument."""
        error = self.assertRaises(
            usage.UsageError, _options, "--listen", "tcp:0", "--forward",
            "kwik:host=h:port=1:priority=urgent", reactor=MemoryReactor())
        self.assertIn("priority", str(error))
