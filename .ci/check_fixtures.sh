#!/usr/bin/env bash
# Check that kwik_twisted's pytest fixtures work for another project, as a user gets them:
# a throwaway virtualenv, `pip install` of the working tree with the `test` extra only, then a
# tiny test file in a directory outside the checkout (no conftest, no pytest configuration) that
# asks for kwik_listen and kwik_client_endpoint under pytest-twisted, plus a trial TestCase after
# it.  pytest must find the fixtures through the pytest11 entry point and pass both tests.
# Prints one line; exits non-zero on any failure.
#
# As in check_install.sh, the working tree is copied first (tracked and untracked files, minus
# what .gitignore ignores) so that pip's build/ directory never lands in the checkout.
set -euo pipefail

REPO="$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")"
PYTHON="${PYTHON:-python3}"
START=$SECONDS
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kwik-fixtures-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK/src"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z -c -o --exclude-standard |
        xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
        tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
else
    tar -C "$REPO" --exclude=.venv --exclude=.tox --exclude=build --exclude='*.egg-info' \
        --exclude=__pycache__ --exclude=dropin.cache -cf - . | tar -xf - -C "$WORK/src"
fi

"$PYTHON" -m venv "$WORK/venv"
if ! "$WORK/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "$WORK/src[test]" >"$WORK/pip.log" 2>&1; then
    cat "$WORK/pip.log" >&2
    echo "check_fixtures: FAILED: pip install $REPO[test]" >&2
    exit 1
fi

mkdir "$WORK/project"
cat >"$WORK/project/test_over_kwik.py" <<'PY'
"""An application's tests, using kwik_twisted's fixtures and nothing else of its own."""

import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase


class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class Reply(Protocol):
    def connectionMade(self):
        self.received = defer.Deferred()

    def dataReceived(self, data):
        self.received.callback(data)


@pytest_twisted.inlineCallbacks
def test_echo_over_kwik(kwik_listen, kwik_client_endpoint):
    """A Kwik server and client from the fixtures echo a message."""
    port = yield kwik_listen(Factory.forProtocol(Echo))
    client = yield kwik_client_endpoint(port).connect(Factory.forProtocol(Reply))
    client.transport.write(b"hello over kwik")
    assert (yield client.received.addTimeout(10, reactor)) == b"hello over kwik"


class TrialStillWorks(TestCase):
    """A trial TestCase in the same session still gets the reactor."""

    def test_reactor(self):
        return task.deferLater(reactor, 0.01, lambda: None)
PY

cd "$WORK/project"
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP
if ! "$WORK/venv/bin/python" -I -m pytest -q -p no:cacheprovider test_over_kwik.py \
        >"$WORK/pytest.log" 2>&1 || ! grep -q "2 passed" "$WORK/pytest.log"; then
    cat "$WORK/pytest.log" >&2
    echo "check_fixtures: FAILED: pytest with kwik_twisted's fixtures" >&2
    exit 1
fi

echo "check_fixtures: OK: pip install kwik_twisted[test] in a fresh venv gives pytest the" \
     "kwik_listen/kwik_client_endpoint fixtures; $(tail -n 1 "$WORK/pytest.log" | tr -d '=')" \
     "($((SECONDS - START)) s)"
