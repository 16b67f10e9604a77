"""
An interactive stream beside a bulk one on the same Kwik connection (docs/howto-priority.rst).

Run it from a checkout or any environment with kwik_twisted installed::

    python docs/examples/prioritise.py            # the interactive stream is critical
    python docs/examples/prioritise.py normal     # the same at normal priority, to compare

A client pushes a few megabytes on a normal-priority stream, then opens a critical stream with a
latency requirement on the same connection and times five small round trips through it while the
bulk transfer is still queued.  The server echoes everything and prints what each stream asked for.
"""

import sys
import tempfile

from twisted.internet import defer, task
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.protocol import Factory, Protocol

from kwik_twisted import Priority, QoSPolicy, closeClientConnections
from kwik_twisted.tools.devcerts import write_pem_files

BULK = 8 * 1024 * 1024


class Echo(Protocol):
    """The server: echoes a stream, after saying what priority and QoS its opener asked for."""

    def connectionMade(self):
        stream = self.transport
        print(f"server: stream {stream.streamId}: priority {stream.priority.name}, "
              f"qos {stream.qos}")

    def dataReceived(self, data):
        self.transport.write(data)


class Bulk(Protocol):
    """Counts the echoed bulk bytes; ``done`` fires when all came back."""

    def connectionMade(self):
        self.received = 0
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.received += len(data)
        if self.received >= BULK and not self.done.called:
            self.done.callback(None)


class Interactive(Protocol):
    """Sends a short message and fires a Deferred with the round-trip time."""

    def ask(self, clock, message):
        self.started = clock.seconds()
        self.clock, self.answer = clock, defer.Deferred()
        self.transport.write(message)
        return self.answer

    def dataReceived(self, data):
        self.answer.callback(self.clock.seconds() - self.started)


async def main(reactor, priority=Priority.CRITICAL):
    certs = write_pem_files(tempfile.mkdtemp(prefix="kwik-example-"))
    server = serverFromString(
        reactor, f"kwik:0:interface=127.0.0.1:privateKey={certs.key}:certKey={certs.chain}")
    port = await server.listen(Factory.forProtocol(Echo))
    client = clientFromString(
        reactor, f"kwik:host=127.0.0.1:port={port.getHost().port}:trustRoots={certs.ca}")

    # The bulk stream: an ordinary connect(), normal priority, a backlog of 8 MiB.
    bulk = await client.connect(Factory.forProtocol(Bulk))
    bulk.transport.write(b"x" * BULK)

    # The interactive stream: opened on the bulk stream's connection, critical, 50 ms budget.
    chat = Interactive()
    connection = bulk.transport.kwikConnection
    connection.openStream(chat, priority=priority, qos=QoSPolicy(max_latency=0.05))
    for i in range(5):
        rtt = await chat.ask(reactor, b"ping %d" % i)
        print(f"client: round trip {i} took {rtt * 1000:.1f} ms; bulk progress "
              f"{bulk.transport.progress()}")

    await bulk.done
    print(f"client: bulk finished, {bulk.received} bytes echoed")
    await closeClientConnections(reactor)
    await port.stopListening()


if __name__ == "__main__":
    level = Priority[sys.argv[1].upper()] if len(sys.argv) > 1 else Priority.CRITICAL
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, level)))
