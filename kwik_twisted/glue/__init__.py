"""
The Twisted glue: the reactor-facing internals behind the public endpoints.

Everything that knows the reactor and is not public API lives here; applications use
:mod:`kwik_twisted.endpoints` (or ``kwik:`` endpoint strings), and a stream's protocol sees an
ordinary ``ITransport`` that also provides
:class:`~kwik_twisted.interfaces.IKwikStreamTransport`.

* :mod:`~kwik_twisted.glue.connection`: :class:`KwikConnection`, one core connection driven by
  the reactor (events to transports, datagrams out, one timer).
* :mod:`~kwik_twisted.glue.ports`, :mod:`~kwik_twisted.glue.server`,
  :mod:`~kwik_twisted.glue.client`: the UDP port protocols that own connections, and their extra
  sockets for multipath.
* :mod:`~kwik_twisted.glue.udp`: batched UDP I/O (GSO/GRO) on a Twisted UDP port.
* :mod:`~kwik_twisted.glue.transport`: one stream as a Twisted transport, and
  :mod:`~kwik_twisted.glue.controls`, its Kwik side (priority, QoS, paths, progress).
* :mod:`~kwik_twisted.glue.dualstack`: the client's name lookup (every IPv6 and IPv4 address) and
  the race of handshakes to them.
* :mod:`~kwik_twisted.glue.forwarding`: the relays behind ``twistd kwik``.
* :mod:`~kwik_twisted.glue.entropy`: the OS's CSPRNG for the core.
* :mod:`~kwik_twisted.glue.interfaces`: the contracts between all of these.

Layering: the glue imports the core, the wire codecs, the shared vocabulary (errors, events,
config), :mod:`kwik_twisted.interfaces` and Twisted; nothing under ``core/`` or ``wire/`` imports
the glue.  Importing this package imports none of its modules.
"""
