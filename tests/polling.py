"""Waiting on the real reactor in tests over sockets."""

from __future__ import annotations

from twisted.internet import defer, reactor, task


def until(condition, timeout: float, interval: float = 0.01) -> defer.Deferred:
    """Fire when ``condition()`` holds, polling every ``interval`` s; fail after ``timeout`` s."""
    deadline = reactor.seconds() + timeout

    @defer.inlineCallbacks
    def poll():
        while not condition():
            if reactor.seconds() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            yield task.deferLater(reactor, interval, lambda: None)

    return poll()
