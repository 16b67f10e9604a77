"""
Peers the benchmarks compare Kwik with, and the Kwik side the benchmarks share.

* :mod:`.quic_asyncio`: aioquic and qh3 (the same asyncio API; qh3 is aioquic's fork with a Rust
  core), a server and a client in one process, one stream.
* :mod:`.baselines`: Twisted TCP and raw Twisted UDP on loopback, the ceilings.
* :mod:`.kwik`: Kwik through its Twisted endpoints (a sink, an echo server, a pusher).
* :mod:`.certs`: the development certificates as PEM files every peer (and child process) loads.

A peer library that is not installed raises :class:`PeerMissing`; the scripts print
"not installed" for it.
"""


class PeerMissing(Exception):
    """The peer's library cannot be imported (not installed in this environment)."""


class Stalled(Exception):
    """A transfer did not complete within its time limit (the message says how far it got)."""
