"""
``python -m kwik_twisted.workers -n N [--port PORT[@INTERFACE] ...] -- CMD ARGS...``: run N
copies of any Twisted application that listens on ``kwik:`` endpoints, sharing each UDP port,
every datagram steered to the worker that owns its connection ID.

Each ``--port`` is a UDP port the parent binds (a ``SO_REUSEPORT`` group) before starting the
workers; the application's ``kwik:`` server endpoint must name the same port number (a worker's
endpoint adopts the inherited socket instead of binding).  Example::

    python -m kwik_twisted.workers -n 2 --port 4433 -- \\
        twistd -n web --listen kwik:4433:privateKey=server.key:certKey=server.pem

SIGHUP starts a new generation of workers and lets the old one drain (graceful restart);
SIGTERM or SIGINT stops every worker.  ``--route-offset`` is ``1 + len(serverId)`` when the
endpoints have a ``serverId=``.  Linux only.  The implementation is
:mod:`kwik_twisted.glue.workers`; ``docs/deployment.rst`` explains what each piece guarantees.
"""

from __future__ import annotations

import sys

from .glue.workers import (
    DEFAULT_ROUTE_OFFSET,
    DRAIN_SIGNAL,
    SO_ATTACH_REUSEPORT_CBPF,
    WorkerEnvironment,
    WorkerSupervisor,
    attach_program,
    bind_group,
    check_supported,
    main,
    parse_port,
    run_program,
    steering_program,
    worker_environment,
)

__all__ = [
    "DEFAULT_ROUTE_OFFSET", "DRAIN_SIGNAL", "SO_ATTACH_REUSEPORT_CBPF", "WorkerEnvironment",
    "WorkerSupervisor", "attach_program", "bind_group", "check_supported", "main", "parse_port",
    "run_program",
    "steering_program", "worker_environment",
]

if __name__ == "__main__":
    sys.exit(main())
