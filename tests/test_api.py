"""
The public API re-exported by ``kwik_twisted/__init__.py``.

Every name in ``kwik_twisted.__all__`` resolves (lazily, PEP 562) to the same object as in its
home module, ``dir(kwik_twisted)`` lists it, nothing public of the home modules is left out, and
``import kwik_twisted`` alone imports neither Twisted's reactor nor the core.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import kwik_twisted

#: The modules whose ``__all__`` the package re-exports in full.
REEXPORTED = ("endpoints", "parsers", "errors", "events", "interfaces", "streams")


class PublicAPITests(SynchronousTestCase):
    """kwik_twisted.__all__ is the public API, and every name in it works."""

    def test_every_name_in_all_resolves(self) -> None:
        """``getattr(kwik_twisted, name)`` works for every name in ``__all__``."""
        missing = [name for name in kwik_twisted.__all__ if not hasattr(kwik_twisted, name)]
        self.assertEqual(missing, [])

    def test_dir_lists_every_public_name(self) -> None:
        """``dir(kwik_twisted)`` lists every name in ``__all__`` (before they are loaded too)."""
        self.assertEqual(sorted(set(kwik_twisted.__all__) - set(dir(kwik_twisted))), [])

    def test_names_are_the_objects_of_their_home_modules(self) -> None:
        """A re-exported name is the very object its home module defines, not a copy."""
        from kwik_twisted.config import ConnectionConfig
        from kwik_twisted.endpoints import KwikClientEndpoint, KwikServerEndpoint
        from kwik_twisted.errors import KwikError, ProtocolError
        from kwik_twisted.events import StreamDataReceived
        from kwik_twisted.interfaces import (
            IKwikConnection,
            IKwikMessageProtocol,
            IKwikStreamTransport,
        )
        from kwik_twisted.streams import Priority, QoSPolicy, StreamProgress

        for obj in (ConnectionConfig, KwikClientEndpoint, KwikServerEndpoint, KwikError,
                    ProtocolError, StreamDataReceived, IKwikMessageProtocol, IKwikConnection,
                    IKwikStreamTransport, Priority, QoSPolicy, StreamProgress):
            self.assertIs(getattr(kwik_twisted, obj.__name__), obj)

    def test_the_public_modules_are_reexported_in_full(self) -> None:
        """Every name in the ``__all__`` of endpoints, parsers, errors, events, interfaces and
        streams is in ``kwik_twisted.__all__``, so a new error or event cannot be forgotten
        here."""
        for short in REEXPORTED:
            module = importlib.import_module(f"kwik_twisted.{short}")
            left_out = sorted(set(module.__all__) - set(kwik_twisted.__all__))
            self.assertEqual(left_out, [], f"kwik_twisted.{short}")

    def test_the_version_is_exported(self) -> None:
        """``__version__`` is a string and part of ``__all__``."""
        self.assertIn("__version__", kwik_twisted.__all__)
        self.assertIsInstance(kwik_twisted.__version__, str)

    def test_an_unknown_name_raises_attribute_error(self) -> None:
        """A name that is not exported raises AttributeError (so ``hasattr`` is false)."""
        self.assertRaises(AttributeError, getattr, kwik_twisted, "NoSuchName")
        self.assertFalse(hasattr(kwik_twisted, "protocol"))

    def test_the_stream_api_is_exported(self) -> None:
        """The stream API the issue names (Priority, QoSPolicy, StreamProgress and the two Kwik
        interfaces) is part of ``kwik_twisted.__all__``."""
        for name in ("Priority", "QoSPolicy", "StreamProgress", "IKwikStreamTransport",
                     "IKwikConnection", "IKwikMessageProtocol"):
            self.assertIn(name, kwik_twisted.__all__)

    def test_import_is_lazy(self) -> None:
        """
        ``import kwik_twisted`` in a fresh interpreter imports no Twisted module (so no reactor)
        and none of the core, the wire codecs, the glue or the endpoints; the first use of an
        endpoint class imports its module.
        """
        code = (
            "import sys\n"
            "import kwik_twisted\n"
            "loaded = sorted(m for m in sys.modules\n"
            "                if m.startswith(('twisted', 'kwik_twisted.')))\n"
            "print(loaded)\n"
            "kwik_twisted.KwikClientEndpoint\n"
            "print('kwik_twisted.endpoints' in sys.modules)\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True)
        before, after = result.stdout.splitlines()
        self.assertEqual(before, "[]")
        self.assertEqual(after, "True")
