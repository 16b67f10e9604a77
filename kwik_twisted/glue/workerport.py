"""
The worker side of :mod:`kwik_twisted.glue.workers`: a ``kwik:`` server endpoint in a worker
process adopts the UDP socket its parent bound, and drains on request.

Theory of operation.  :func:`~kwik_twisted.glue.workers.worker_environment` says whether this
process is a worker (``KWIK_WORKER_*``).  If so, :class:`~kwik_twisted.endpoints.KwikListeningPort`
calls :func:`adoptWorkerSocket` instead of binding: the socket inherited for its port number
becomes a :class:`~kwik_twisted.glue.udp.BatchingPort` (GRO and GSO as usual), and the server's
config gets the worker's index, count and config rotation (:func:`workerConfig`), from which its
connection IDs route back to it.  The first adopted port installs a handler for
:data:`~kwik_twisted.glue.workers.DRAIN_SIGNAL`: after a graceful restart the parent sends it to
the old workers, which then stop their reactor once no adopted port has a connection left (new
connections go to the new generation, so the count only falls).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
from weakref import WeakKeyDictionary

from twisted.internet import task
from twisted.internet.interfaces import IReactorFDSet
from twisted.logger import Logger

from ..errors import ConfigurationError
from .ports import MAX_DATAGRAM
from .udp import BatchingPort
from .workers import DRAIN_SIGNAL, WorkerEnvironment

#: Seconds between two checks of a draining worker's connection count.
DRAIN_CHECK = 0.5

log = Logger()


def workerConfig(config, worker: WorkerEnvironment):
    """``config`` with the worker's index, count and config rotation (its generation's)."""
    names = {f.name for f in dataclasses.fields(config)}
    values = {"worker_index": worker.index, "worker_count": worker.count,
              "config_rotation": worker.rotation}
    return dataclasses.replace(config, **{k: v for k, v in values.items() if k in names})


def _family(fd: int) -> int:
    probe = socket.socket(fileno=os.dup(fd))
    try:
        return probe.family
    finally:
        probe.close()


def adoptBatchingUDP(reactor, fd: int, protocol, maxPacketSize: int):
    """
    A listening UDP port on the already bound socket ``fd``, as a
    :class:`~kwik_twisted.glue.udp.BatchingPort` when the reactor has file descriptors (else the
    reactor's ``adoptDatagramPort``).  ``fd`` itself stays open (the port uses a duplicate), so a
    stopped port can adopt it again.
    """
    family = _family(fd)
    if not IReactorFDSet.providedBy(reactor):
        return reactor.adoptDatagramPort(fd, family, protocol, maxPacketSize)
    port = BatchingPort._fromListeningDescriptor(reactor, fd, family, protocol, maxPacketSize)
    port._preexistingSocket.setblocking(False)
    port.startListening()
    return port


def adoptWorkerSocket(reactor, worker: WorkerEnvironment, portNumber: int, protocol,
                      extraInterfaces, listening):
    """
    Adopt the socket the parent bound for ``portNumber``; ``listening`` (a port with
    ``connectionCount()``) joins the drain check.

    :raises ConfigurationError: the parent did not pre-bind this port, or ``extraInterfaces``
        were given (a worker has one socket per port).
    """
    fd = worker.fds.get(portNumber)
    if fd is None:
        raise ConfigurationError(
            f"worker {worker.index} of {worker.count}: kwik port {portNumber} was not pre-bound "
            f"by the parent (it shares {sorted(worker.fds)}): give the parent --port {portNumber}")
    if extraInterfaces:
        raise ConfigurationError("extraInterfaces do not go with worker processes")
    port = adoptBatchingUDP(reactor, fd, protocol, MAX_DATAGRAM)
    drain.add(reactor, listening)
    return port


class Drain:
    """
    The drain state of this process: the adopted ports, and once :data:`DRAIN_SIGNAL` came, a
    check every :data:`DRAIN_CHECK` seconds that stops the reactor when none has a connection.
    """

    def __init__(self) -> None:
        self.ports: WeakKeyDictionary = WeakKeyDictionary()
        self.reactor = None
        self.installed = False
        self.loop: task.LoopingCall | None = None

    def add(self, reactor, port) -> None:
        """Count ``port``'s connections when draining; install the signal handler once."""
        self.ports[port] = True
        self.reactor = reactor
        if not self.installed:
            self.installed = True
            try:
                signal.signal(DRAIN_SIGNAL, self._signalled)
            except ValueError:  # not the main thread: no draining by signal
                pass

    def _signalled(self, number, frame) -> None:
        self.reactor.callFromThread(self.start)

    def start(self) -> None:
        """Drain: stop the reactor once every adopted port's connections have ended."""
        if self.loop is not None:
            return
        log.info("draining: exiting once the last connection has ended")
        self.loop = task.LoopingCall(self._check)
        self.loop.clock = self.reactor
        self.loop.start(DRAIN_CHECK)

    def _check(self) -> None:
        if any(port.connectionCount() for port in list(self.ports)):
            return
        self.loop.stop()
        log.info("drained: no connection left, stopping")
        self.reactor.stop()


#: This process's drain state.
drain = Drain()

__all__ = ["Drain", "adoptBatchingUDP", "adoptWorkerSocket", "drain", "workerConfig"]
