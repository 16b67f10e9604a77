"""
Testing an application over Kwik: pytest fixtures, and the plain helpers behind them.

Installing ``kwik_twisted[test]`` registers this module as a pytest plugin (named
``kwik_twisted``, through the ``pytest11`` entry point), so any project's tests can ask for:

``kwik_certs`` (session scope)
    :class:`KwikCertificates`: a throw-away CA and a server certificate for ``localhost``,
    ``127.0.0.1`` and ``::1``, written as PEM files into a temporary directory.
``kwik_harness``
    the :class:`KwikHarness` of the test: it listens, builds client endpoints and endpoint
    strings, and at teardown closes every client connection of the reactor and stops every port
    it started, waiting for both, so the reactor is left clean.
``kwik_listen``
    :meth:`KwikHarness.listen`: ``port = yield kwik_listen(factory)`` serves ``factory`` on a
    free loopback UDP port and fires with the listening port.
``kwik_client_endpoint``
    :meth:`KwikHarness.clientEndpoint`: ``kwik_client_endpoint(port)`` is a
    :class:`~kwik_twisted.endpoints.KwikClientEndpoint` towards that port, trusting the
    development CA.
``kwik_client_string`` / ``kwik_server_string``
    :meth:`KwikHarness.clientString` / :meth:`KwikHarness.serverString`: the same as ``kwik:``
    endpoint strings, for code that takes a description (``clientFromString``, ``twistd``).

The fixtures run on pytest-twisted (the ``twisted`` pytest plugin, also in the ``test`` extra):
write the tests with ``@pytest_twisted.inlineCallbacks`` or ``@pytest_twisted.ensureDeferred``,
which run them in the reactor.  Teardown waits for the cleanup with ``pytest_twisted.blockon``.

Trial's ``TestCase`` cannot use pytest fixtures; it uses the same :class:`KwikHarness` directly::

    def setUp(self):
        self.kwik = KwikHarness(reactor, writeCertificates(self.mktemp()))
        self.addCleanup(self.kwik.cleanup)

One more thing the plugin does.  pytest-twisted runs the reactor in a greenlet from the first
test it drives (any plain test function) to the end of the session; a trial ``TestCase`` that
waits on the reactor after that point fails, because trial starts and stops the reactor itself
(pytest-twisted issue 93).  In a session that holds both kinds, the plugin therefore runs the
tests of ``unittest``/trial classes first and the plain functions after them, each group in its
original order.  Set the ini option ``kwik_trial_first = false`` to turn that off.

Nothing is imported from Twisted or the reactor when pytest loads the plugin: the reactor is
installed later by pytest-twisted (``--reactor``), and projects that never use the fixtures pay
for nothing.
"""

from __future__ import annotations

import unittest
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from kwik_twisted.config import ConnectionConfig
    from kwik_twisted.endpoints import KwikClientEndpoint

#: The TLS name the development certificate carries (with ``127.0.0.1`` and ``::1``).
SERVER_NAME = "localhost"
#: Seconds a harness client endpoint waits for a connection before failing.
CLIENT_TIMEOUT = 10.0


class KwikCertificates(NamedTuple):
    """The development certificates, as files: a CA, a server chain (leaf then CA) and its key."""

    directory: Path
    ca: Path
    chain: Path
    key: Path

    def serverConfig(self, **settings: Any) -> ConnectionConfig:
        """A server :class:`~kwik_twisted.config.ConnectionConfig` with this certificate."""
        from kwik_twisted.config import ConnectionConfig
        from kwik_twisted.core.crypto.handshake import TlsConfig

        tls = TlsConfig(certificate_chain=self.chain.read_bytes(),
                        private_key=self.key.read_bytes())
        return ConnectionConfig(tls=tls, **settings)

    def clientConfig(self, serverName: str | None = SERVER_NAME,
                     **settings: Any) -> ConnectionConfig:
        """
        A client :class:`~kwik_twisted.config.ConnectionConfig` trusting only this CA.

        :param serverName: the name the server's certificate is checked against; ``None`` checks
            it against the host the endpoint connects to.
        """
        from kwik_twisted.config import ConnectionConfig
        from kwik_twisted.core.crypto.handshake import TlsConfig

        tls = TlsConfig(trust_roots=self.ca.read_bytes(), server_name=serverName)
        return ConnectionConfig(tls=tls, **settings)


def writeCertificates(directory: str | Path) -> KwikCertificates:
    """Make a new development CA and server certificate and write them into ``directory``."""
    from kwik_twisted.tools.devcerts import write_pem_files

    directory = Path(directory)
    paths = write_pem_files(directory, hostnames=(SERVER_NAME,), ips=("127.0.0.1", "::1"))
    return KwikCertificates(directory, paths.ca, paths.chain, paths.key)


def _quote(value: object) -> str:
    """Escape ``value`` for an endpoint string (``\\``, ``:`` and ``=`` get a backslash)."""
    return str(value).replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def _arguments(arguments: dict[str, Any]) -> str:
    return "".join(f":{name}={_quote(value)}" for name, value in arguments.items())


class KwikHarness:
    """
    Kwik servers and clients on loopback for one test, and their cleanup.

    :param reactor: the reactor to listen and connect with.
    :param certificates: the development certificates (:func:`writeCertificates`).
    :param interface: the address servers listen on unless told otherwise.
    """

    def __init__(self, reactor, certificates: KwikCertificates, *,
                 interface: str = "127.0.0.1") -> None:
        self.reactor = reactor
        self.certificates = certificates
        self.interface = interface
        self._ports: list = []
        self._reactors: list = [reactor]

    def serverConfig(self, **settings: Any) -> ConnectionConfig:
        """A server configuration with the development certificate."""
        return self.certificates.serverConfig(**settings)

    def clientConfig(self, serverName: str | None = SERVER_NAME,
                     **settings: Any) -> ConnectionConfig:
        """A client configuration trusting the development CA (``serverName`` as there)."""
        return self.certificates.clientConfig(serverName, **settings)

    def listen(self, factory, *, endpoint=None, interface: str | None = None,
               **endpointArgs: Any) -> Deferred:
        """
        Serve ``factory`` over Kwik; fire with the listening port, stopped at :meth:`cleanup`.

        :param endpoint: a server endpoint to listen with (one from ``serverFromString`` and
            :meth:`serverString`, say); by default a
            :class:`~kwik_twisted.endpoints.KwikServerEndpoint` on a free port of ``interface``
            with the development certificate.
        :param interface: the local address (default: the harness's, ``127.0.0.1``).
        :param endpointArgs: more keyword arguments of ``KwikServerEndpoint`` (``config=`` replaces
            the development configuration).
        """
        if endpoint is None:
            from kwik_twisted.endpoints import KwikServerEndpoint

            endpointArgs.setdefault("config", self.serverConfig())
            endpoint = KwikServerEndpoint(self.reactor, 0, interface=interface or self.interface,
                                          **endpointArgs)
        elif endpointArgs or interface is not None:
            raise TypeError("listen(endpoint=...) takes no endpoint arguments")

        def listening(port):
            self._ports.append(port)
            return port

        return endpoint.listen(factory).addCallback(listening)

    def clientEndpoint(self, port, *, host: str | None = None, reactor=None,
                       **endpointArgs: Any) -> KwikClientEndpoint:
        """
        A client endpoint towards ``port``, trusting the development CA.

        :param port: a listening port (from :meth:`listen`) or a port number.
        :param host: the address to connect to (default: the listening port's own address, else
            ``127.0.0.1``).
        :param reactor: another reactor (a fake resolver wrapping the real one, say); its client
            connections are closed at :meth:`cleanup` too.
        :param endpointArgs: more keyword arguments of
            :class:`~kwik_twisted.endpoints.KwikClientEndpoint` (``config=``, ``timeout=``,
            ``reuse=``, ``paths=``, ...); ``timeout`` defaults to :data:`CLIENT_TIMEOUT`.
        """
        from kwik_twisted.endpoints import KwikClientEndpoint

        if reactor is None:
            reactor = self.reactor
        elif reactor not in self._reactors:
            self._reactors.append(reactor)
        address, number = self._address(port)
        endpointArgs.setdefault("config", self.clientConfig())
        endpointArgs.setdefault("timeout", CLIENT_TIMEOUT)
        return KwikClientEndpoint(reactor, host or address, number, **endpointArgs)

    def clientString(self, port, *, host: str | None = None, **arguments: Any) -> str:
        """
        A ``kwik:`` client endpoint string towards ``port``, trusting the development CA.

        :param arguments: more endpoint-string arguments (``priority="high"``, ``timeout=5``...),
            escaped here.
        """
        address, number = self._address(port)
        base = {"host": host or address, "port": number, "trustRoots": self.certificates.ca,
                "hostname": SERVER_NAME, "timeout": int(CLIENT_TIMEOUT)}
        return "kwik" + _arguments({**base, **arguments})

    def serverString(self, port: int = 0, *, interface: str | None = None,
                     **arguments: Any) -> str:
        """A ``kwik:`` server endpoint string with the development certificate (port 0: free)."""
        base = {"port": port, "interface": interface or self.interface,
                "privateKey": self.certificates.key, "certKey": self.certificates.chain}
        return "kwik" + _arguments({**base, **arguments})

    def _address(self, port) -> tuple[str, int]:
        if isinstance(port, int):
            return "127.0.0.1", port
        host = port.getHost()
        return host.host, host.port

    def cleanup(self) -> Deferred:
        """
        Close every client connection of the reactor(s), then stop every port :meth:`listen`
        started; fire when all of it is done.  Safe to call more than once.
        """
        from twisted.internet import defer

        from kwik_twisted.endpoints import closeClientConnections

        reactors, self._reactors = self._reactors, [self.reactor]
        ports, self._ports = self._ports, []

        def stopPorts(_):
            return defer.gatherResults([port.stopListening() for port in ports],
                                       consumeErrors=True)

        closing = defer.gatherResults([closeClientConnections(r) for r in reactors],
                                      consumeErrors=True)
        return closing.addBoth(stopPorts).addCallback(lambda _: None)


# -- the pytest plugin ----------------------------------------------------------------------


def _blockon(deferred) -> Any:
    """Wait for ``deferred`` in the reactor pytest-twisted runs."""
    try:
        import pytest_twisted
    except ImportError:  # pragma: no cover - the test extra brings it
        raise pytest.UsageError(
            "kwik_twisted's fixtures need pytest-twisted: pip install 'kwik_twisted[test]'"
        ) from None
    return pytest_twisted.blockon(deferred)


@pytest.fixture(scope="session")
def kwik_certs(tmp_path_factory) -> KwikCertificates:
    """Development certificates (CA, server chain, key) in a temporary directory, per session."""
    return writeCertificates(tmp_path_factory.mktemp("kwik-certs"))


@pytest.fixture
def kwik_harness(kwik_certs):
    """The test's :class:`KwikHarness`; its servers and client connections end at teardown."""
    from twisted.internet import reactor

    harness = KwikHarness(reactor, kwik_certs)
    yield harness
    _blockon(harness.cleanup())


@pytest.fixture
def kwik_listen(kwik_harness):
    """``kwik_listen(factory, **kw)``: a Deferred firing with a loopback Kwik listening port."""
    return kwik_harness.listen


@pytest.fixture
def kwik_client_endpoint(kwik_harness):
    """``kwik_client_endpoint(port, **kw)``: a client endpoint to ``port`` trusting the dev CA."""
    return kwik_harness.clientEndpoint


@pytest.fixture
def kwik_client_string(kwik_harness):
    """``kwik_client_string(port, **args)``: a ``kwik:`` client string to ``port``."""
    return kwik_harness.clientString


@pytest.fixture
def kwik_server_string(kwik_harness):
    """``kwik_server_string(port=0, **args)``: a ``kwik:`` server string with the dev cert."""
    return kwik_harness.serverString


def pytest_addoption(parser) -> None:
    """The ``kwik_trial_first`` ini option."""
    parser.addini(
        "kwik_trial_first",
        "run unittest/trial test classes before plain test functions when pytest-twisted is "
        "active (its reactor greenlet breaks trial TestCases that run after it)",
        type="bool",
        default=True,
    )


def _isTrialAsync(item) -> bool:
    from twisted.trial.unittest import TestCase

    cls = getattr(item, "cls", None)
    return cls is not None and issubclass(cls, TestCase)


def _isUnittest(item) -> bool:
    cls = getattr(item, "cls", None)
    return cls is not None and issubclass(cls, unittest.TestCase)


def pytest_collection_modifyitems(session, config, items) -> None:
    """Run unittest/trial classes before plain functions (see the module docstring)."""
    if not config.getini("kwik_trial_first") or not config.pluginmanager.has_plugin("twisted"):
        return
    if not any(map(_isTrialAsync, items)) or all(map(_isUnittest, items)):
        return
    items.sort(key=lambda item: not _isUnittest(item))  # stable: each group keeps its order


__all__ = [
    "CLIENT_TIMEOUT",
    "SERVER_NAME",
    "KwikCertificates",
    "KwikHarness",
    "kwik_certs",
    "kwik_client_endpoint",
    "kwik_client_string",
    "kwik_harness",
    "kwik_listen",
    "kwik_server_string",
    "writeCertificates",
]
