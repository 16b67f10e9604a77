"""
``twistd kwik``: a tunnel between any two Twisted endpoints, usually TCP on one side and Kwik on
the other, or an echo server to try a ``kwik:`` endpoint with.

Each ``--listen`` endpoint becomes one
:class:`~twisted.application.internet.StreamServerEndpointService`, built with
:func:`twisted.application.strports.service` so that a port that cannot be bound stops ``twistd``
instead of being merely logged.  They all share one factory: a
:class:`~kwik_twisted.glue.forwarding.ForwardingFactory` for ``--forward`` or an
:class:`~kwik_twisted.glue.forwarding.EchoFactory` for ``--echo``.  Every endpoint string is parsed
while the options are checked, so a typo is a usage error, not a traceback at startup.
``--make-certificates`` writes a development CA and server certificate and prints the endpoint
strings that use them.  Recipes are in ``docs/twistd.rst``.

UDP goes through Kwik datagrams (:mod:`kwik_twisted.glue.udptunnel`): a ``--listen udp:PORT``
with a ``kwik:`` ``--forward`` is a tunnel entrance (a UDP port, not a stream endpoint), and a
``--forward udp:HOST:PORT`` makes every ``--listen`` a tunnel exit to that UDP target.
"""

from __future__ import annotations

import ipaddress
import shlex
import sys
from pathlib import Path
from typing import IO, Any

from twisted.application import strports
from twisted.application.internet import UDPServer
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.error import CannotListenError
from twisted.python import usage

from kwik_twisted.glue.forwarding import EchoFactory, ForwardingFactory
from kwik_twisted.glue.udptunnel import UDPTunnelEntrance, UDPTunnelExitFactory, parseUDP

#: The Kwik port the printed examples use.
EXAMPLE_PORT = 4433
DEFAULT_CERTIFICATE_NAMES = ("localhost", "127.0.0.1", "::1")
_ENDPOINT_ERRORS = (ValueError, TypeError, KeyError, OSError)


def quote_endpoint_value(value: str) -> str:
    """Escape ``value`` for an endpoint string (``\\`` and ``:`` get a backslash)."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


class Options(usage.Options):
    """Command line of ``twistd kwik``."""

    synopsis = (
        "--listen ENDPOINT [--listen ENDPOINT ...] (--forward ENDPOINT | --echo)\n"
        "   or: twistd [options] kwik --make-certificates DIR [--hostname NAME ...]"
    )
    longdesc = (
        "Accept connections on every --listen endpoint and relay each one to a new connection "
        "made with the --forward endpoint (or, with --echo, send every byte back).  Endpoints "
        "are Twisted endpoint strings: tcp:8080, tcp:port=8080:interface=127.0.0.1, "
        "kwik:4433:privateKey=server.key:certKey=server.pem, "
        "kwik:host=example.com:port=4433:trustRoots=ca.pem, ... (see docs/endpoints.rst).  "
        "Back-pressure works both ways, so a slow side slows the other instead of filling "
        "memory.  Example, a TCP port 8080 tunnelled over Kwik to a web server on the far host: "
        "here `twistd -n kwik --listen tcp:8080 --forward kwik:host=far.example:port=4433:"
        "trustRoots=ca.pem`, there `twistd -n kwik --listen kwik:4433:privateKey=server.key:"
        "certKey=server.pem --forward tcp:127.0.0.1:80`.  UDP travels as Kwik datagrams: "
        "--listen udp:PORT with a kwik: --forward here, --forward udp:HOST:PORT there.  Start "
        "with --make-certificates to get a development CA and server certificate."
    )
    optFlags = [
        ["echo", None, "Echo every accepted connection back (to test an endpoint)."],
    ]
    optParameters = [
        [
            "forward",
            None,
            None,
            "Client endpoint string to relay every accepted connection to, e.g. tcp:host=...:"
            "port=... or kwik:host=...:port=...:trustRoots=ca.pem.",
        ],
        [
            "make-certificates",
            None,
            None,
            "Write a development CA (ca.pem), a server certificate (server.pem) and its key "
            "(server.key) into DIR, print the endpoint strings that use them, and exit.  Not for "
            "production.",
        ],
        [
            "metrics",
            None,
            None,
            "Server endpoint string to serve live metrics on, e.g. tcp:9464:interface=127.0.0.1: "
            "Prometheus text at /metrics and a JSON status at /status (needs prometheus_client: "
            "pip install kwik_twisted[metrics]).",
        ],
        [
            "qlog-dir",
            None,
            None,
            "Write a qlog trace of every Kwik connection into DIR (qlog=DIR on each kwik: "
            "endpoint that has none; default: the QLOGDIR environment variable).",
        ],
        [
            "workers",
            None,
            1,
            "Run N worker processes sharing each kwik: --listen port, datagrams steered to "
            "workers by connection ID (Linux; SIGHUP: graceful restart; docs/deployment.rst).",
            int,
        ],
    ]

    def __init__(self, reactor: Any = None, stdout: IO[str] | None = None) -> None:
        super().__init__()
        self.reactor = reactor
        self.stdout = stdout
        self["listen"] = []
        self["hostname"] = []

    def opt_listen(self, description: str) -> None:
        self["listen"].append(description)

    def opt_hostname(self, name: str) -> None:
        self["hostname"].append(name)

    # usage.Options shows these docstrings as --help text, so each is one line of words.
    opt_listen.__doc__ = (
        "Server endpoint string to accept connections on (repeatable), e.g. tcp:8080 or "
        "kwik:4433:privateKey=server.key:certKey=server.pem."
    )
    opt_hostname.__doc__ = (
        "With --make-certificates: a host name or IP address the server certificate is for "
        "(repeatable; default: localhost, 127.0.0.1 and ::1)."
    )

    def postOptions(self) -> None:
        """Check the combination of options and parse every endpoint string."""
        if self["make-certificates"] is not None:
            self._refuseWith("--make-certificates", ("listen", "forward", "echo"))
            self.makeCertificates(self["make-certificates"])
            raise SystemExit(0)
        if self["hostname"]:
            raise usage.UsageError("--hostname only goes with --make-certificates")
        if not self["listen"]:
            raise usage.UsageError("give at least one --listen ENDPOINT")
        if len(set(self["listen"])) != len(self["listen"]):
            raise usage.UsageError("the same --listen endpoint is given twice")
        if self["echo"] == (self["forward"] is not None):
            raise usage.UsageError("give exactly one of --forward ENDPOINT and --echo")
        if self["qlog-dir"] is not None:
            self["listen"] = [with_qlog(d, self["qlog-dir"]) for d in self["listen"]]
            if self["forward"] is not None:
                self["forward"] = with_qlog(self["forward"], self["qlog-dir"])
        self._checkEndpoints()
        if self["workers"] != 1:
            self._checkWorkers()

    def _checkWorkers(self) -> None:
        """``--workers N``: only kwik: listens on fixed ports, no --metrics, a capable kernel."""
        from kwik_twisted.errors import ConfigurationError
        from kwik_twisted.glue.workers import MAX_WORKERS, check_supported

        if not 1 <= self["workers"] <= MAX_WORKERS:
            raise usage.UsageError(f"--workers must be 1..{MAX_WORKERS}")
        if self["metrics"] is not None:
            raise usage.UsageError("--metrics does not go with --workers (one port per process)")
        ports, offsets = [], set()
        for description in self["listen"]:
            endpoint = serverFromString(self.getReactor(), description)
            if not description.startswith("kwik:") or not hasattr(endpoint, "_extraInterfaces"):
                raise usage.UsageError(f"--workers shares kwik: ports only, not {description!r}")
            if endpoint._port == 0 or endpoint._extraInterfaces:
                raise usage.UsageError(
                    f"--workers needs a fixed port and one interface per --listen: {description!r}")
            ports.append((endpoint._port, endpoint._interface))
            offsets.add(1 + len(getattr(endpoint._config, "server_id", b"") or b""))
        if len(offsets) > 1:
            raise usage.UsageError("--workers needs the same serverId length on every --listen")
        try:
            check_supported()
        except ConfigurationError as e:
            raise usage.UsageError(f"--workers {self['workers']}: {e}") from None
        self.workerPorts = ports
        self.routeOffset = offsets.pop()

    def workerArguments(self) -> list[str]:
        """The ``twistd kwik`` options a worker runs with: these, without ``--workers``."""
        arguments = []
        for description in self["listen"]:
            arguments += ["--listen", description]
        arguments += ["--echo"] if self["echo"] else ["--forward", self["forward"]]
        return arguments

    def _refuseWith(self, option: str, others: tuple[str, ...]) -> None:
        for other in others:
            if self[other]:
                raise usage.UsageError(f"{option} does not go with --{other}")

    def getReactor(self) -> Any:
        """The reactor given to the constructor, else the global one."""
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        return self.reactor

    def _checkEndpoints(self) -> None:
        reactor = self.getReactor()
        self._checkUDP()
        for description in self["listen"]:
            try:
                if description.startswith("udp:"):
                    parseUDP(description, listen=True)
                    continue
                serverFromString(reactor, description)
            except _ENDPOINT_ERRORS as e:
                raise usage.UsageError(f"--listen {description!r}: {e}") from None
        if self["forward"] is not None:
            try:
                if self["forward"].startswith("udp:"):
                    parseUDP(self["forward"], listen=False)
                else:
                    clientFromString(reactor, self["forward"])
            except _ENDPOINT_ERRORS as e:
                raise usage.UsageError(f"--forward {self['forward']!r}: {e}") from None
        if self["metrics"] is not None:
            self._checkMetrics(reactor)

    def _checkUDP(self) -> None:
        """A UDP ``--listen`` needs a ``kwik:`` ``--forward``; a UDP ``--forward``, no UDP
        ``--listen``."""
        forward = self["forward"] or ""
        if any(d.startswith("udp:") for d in self["listen"]) and not forward.startswith("kwik:"):
            raise usage.UsageError("--listen udp:... needs a --forward kwik:... endpoint")
        if forward.startswith("udp:") and not all(d.startswith("kwik:") for d in self["listen"]):
            raise usage.UsageError("--forward udp:... goes with --listen kwik:... endpoints only")

    def _checkMetrics(self, reactor: Any) -> None:
        """``--metrics``: a server endpoint string, and prometheus_client installed."""
        try:
            serverFromString(reactor, self["metrics"])
        except _ENDPOINT_ERRORS as e:
            raise usage.UsageError(f"--metrics {self['metrics']!r}: {e}") from None
        if self["metrics"] in self["listen"]:
            raise usage.UsageError("--metrics needs an endpoint of its own, not a --listen one")
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise usage.UsageError(
                "--metrics needs prometheus_client: pip install 'kwik_twisted[metrics]'"
            ) from None

    def makeCertificates(self, directory: str) -> None:
        """Write the development CA, certificate and key; print how to use them."""
        from kwik_twisted.tools import devcerts

        target = Path(directory).absolute()
        for name in ("ca.pem", "server.pem", "server.key"):
            if (target / name).exists():
                raise usage.UsageError(f"{target / name} already exists; not overwriting it")
        names = self["hostname"] or list(DEFAULT_CERTIFICATE_NAMES)
        hostnames, ips = _split_names(names)
        try:
            paths = devcerts.write_pem_files(target, hostnames, ips)
        except OSError as e:
            raise usage.UsageError(f"--make-certificates {directory!r}: {e}") from None
        out = self.stdout if self.stdout is not None else sys.stdout
        out.write(certificate_instructions(paths, hostnames[0] if hostnames else ips[0]))


def with_qlog(description: str, directory: str) -> str:
    """``description`` with ``:qlog=DIRECTORY`` when it is a ``kwik:`` endpoint without one."""
    if not description.startswith("kwik:") or "qlog=" in description:
        return description
    return f"{description}:qlog={quote_endpoint_value(directory)}"


def _split_names(names: list[str]) -> tuple[list[str], list[str]]:
    hostnames, ips = [], []
    for name in names:
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            hostnames.append(name)
    return hostnames, ips


def certificate_instructions(paths: Any, host: str) -> str:
    """The text ``--make-certificates`` prints: what was written and the endpoint strings."""
    key, chain, ca = (quote_endpoint_value(str(p)) for p in (paths.key, paths.chain, paths.ca))
    server = f"kwik:{EXAMPLE_PORT}:privateKey={key}:certKey={chain}"
    client = f"kwik:host={quote_endpoint_value(host)}:port={EXAMPLE_PORT}:trustRoots={ca}"
    return "\n".join(
        [
            f"Wrote {paths.ca} (the development CA: clients trust it with trustRoots=),",
            f"      {paths.chain} (the server certificate, then the CA),",
            f"      {paths.key} (the server's private key, mode 0600).",
            "These are for development only.",
            "",
            f"Server endpoint: {server}",
            f"Client endpoint: {client}",
            "",
            "For example, serve an echo on Kwik and tunnel TCP port 8080 to it:",
            f"  twistd -n kwik --listen {shlex.quote(server)} --echo",
            f"  twistd -n kwik --listen tcp:8080 --forward {shlex.quote(client)}",
            "",
        ]
    )


def makeService(options: Options) -> IService:
    """One StreamServerEndpointService per ``--listen``, sharing the echo or forwarding factory
    (and one more for ``--metrics``, a twisted.web site)."""
    reactor = options.getReactor()
    if options["workers"] != 1:
        return _workersService(reactor, options)
    forward = options["forward"]
    if options["echo"]:
        factory: Any = EchoFactory()
    elif forward.startswith("udp:"):
        factory = UDPTunnelExitFactory(reactor, *parseUDP(forward, listen=False))
    else:
        factory = ForwardingFactory(clientFromString(reactor, forward), forward)
    top = _ListeningServices()
    for description in options["listen"]:
        if description.startswith("udp:"):
            host, port = parseUDP(description, listen=True)
            entrance = UDPTunnelEntrance(reactor, clientFromString(reactor, forward))
            service: Any = UDPServer(port, entrance, interface=host, reactor=reactor)
        else:
            service = strports.service(description, factory, reactor=reactor)
        service.setName(description)
        service.setServiceParent(top)
    if options["metrics"] is not None:
        from kwik_twisted.glue.metrics import metricsSite

        site = metricsSite(reactor=reactor)
        service = strports.service(options["metrics"], site, reactor=reactor)
        service.setName("metrics")
        service.setServiceParent(top)
    return top


def _workersService(reactor: Any, options: Options) -> IService:
    """``--workers N``: a supervisor running ``twistd kwik`` workers with the other options."""
    from kwik_twisted.glue.workers import TWISTD_PROGRAM, WorkerSupervisor

    argv = [sys.executable, "-c", TWISTD_PROGRAM, "-n", "--pidfile=", "kwik",
            *options.workerArguments()]
    supervisor = WorkerSupervisor(reactor, argv, options["workers"], options.workerPorts,
                                  route_offset=options.routeOffset)
    supervisor.setName("workers")
    top = _ListeningServices()  # a port that cannot be bound: one clear line
    supervisor.setServiceParent(top)
    return top


class _ListeningServices(MultiService):
    """
    The listening services; a port that cannot be bound ends ``twistd`` with one clear line.

    (twistd would otherwise print the whole traceback of the ``CannotListenError``.)
    """

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise SystemExit(f"twistd kwik: {e}") from None

    def startService(self) -> None:
        try:
            super().startService()
        except CannotListenError as e:
            raise SystemExit(f"twistd kwik: {e}") from None


__all__ = [
    "Options",
    "certificate_instructions",
    "makeService",
    "quote_endpoint_value",
    "with_qlog",
]
