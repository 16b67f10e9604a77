"""
Development tools: not used by a running connection.

* :mod:`~kwik_twisted.tools.devcerts`: a throwaway CA and certificates for tests, the demo and
  ``twistd kwik --dev-certs``.
* :mod:`~kwik_twisted.tools.demo`: ``make demo`` (``python -m kwik_twisted.tools.demo``), a Kwik
  server and client on loopback moving a payload through ``kwik:`` endpoints.
"""
