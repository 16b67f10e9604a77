"""
Tests that Twisted finds kwik_twisted's plugins: the ``kwik:`` endpoint-string parsers and the
``twistd kwik`` service maker, and that the plugin module obeys the rules for plugin files
(cheap to import, no reactor, no ``__init__.py`` next to it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted import tap
from kwik_twisted.parsers import KwikClientParser, KwikServerParser

ROOT = Path(__file__).resolve().parents[2]


def _kwik(plugins: object) -> list[object]:
    return [p for p in plugins if getattr(p, "prefix", getattr(p, "tapname", None)) == "kwik"]


class DiscoveryTests(SynchronousTestCase):
    """twisted.plugin.getPlugins finds exactly one of each kwik plugin."""

    def test_server_parser_is_found(self) -> None:
        """IStreamServerEndpointStringParser plugins include one KwikServerParser."""
        found = _kwik(getPlugins(IStreamServerEndpointStringParser))
        self.assertEqual(len(found), 1)
        self.assertIsInstance(found[0], KwikServerParser)

    def test_client_parser_is_found(self) -> None:
        """IStreamClientEndpointStringParserWithReactor plugins include one KwikClientParser."""
        found = _kwik(getPlugins(IStreamClientEndpointStringParserWithReactor))
        self.assertEqual(len(found), 1)
        self.assertIsInstance(found[0], KwikClientParser)

    def test_service_maker_is_found(self) -> None:
        """The ``kwik`` IServiceMaker uses kwik_twisted.tap's Options and makeService."""
        found = _kwik(getPlugins(IServiceMaker))
        self.assertEqual(len(found), 1)
        maker = found[0]
        self.assertIs(maker.options, tap.Options)
        self.assertEqual(maker.name, "Kwik tunnel")
        self.assertTrue(maker.description)


class PluginFileTests(SynchronousTestCase):
    """The plugin module follows the rules for files in twisted/plugins/."""

    def test_plugin_directory_has_no_init(self) -> None:
        """twisted/plugins/ in the checkout has no __init__.py (it would shadow Twisted's)."""
        directory = ROOT / "twisted" / "plugins"
        self.assertTrue((directory / "kwik_twisted_plugins.py").is_file())
        self.assertFalse((directory / "__init__.py").exists())
        self.assertFalse((ROOT / "twisted" / "__init__.py").exists())

    def test_importing_the_plugin_module_is_cheap(self) -> None:
        """
        A fresh interpreter importing the plugin module loads neither the reactor nor the
        protocol core nor cryptography (Twisted imports plugin modules while scanning).
        """
        code = (
            "import sys, twisted.plugins.kwik_twisted_plugins as p\n"
            "assert p.kwikServer.prefix == 'kwik'\n"
            "heavy = ['twisted.internet.reactor', 'kwik_twisted.core', 'cryptography',"
            " 'kwik_twisted.endpoints']\n"
            "print(','.join(m for m in heavy if m in sys.modules))\n"
        )
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONPATH": path},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "")
