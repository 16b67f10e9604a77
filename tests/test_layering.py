"""
Checks of the project's layering and packaging rules, done on the source tree.

* ``kwik_twisted/core`` and ``kwik_twisted/wire`` are sans-I/O: they may not import
  the reactor, sockets, clocks, randomness, the OS or threads.  Time enters as a
  ``now`` argument and randomness through an injected source, so this is checked
  by parsing every module's imports with :mod:`ast` (nothing is imported).
* ``twisted/plugins/`` belongs to Twisted: it must never get an ``__init__.py``,
  and our plugin file must not import the reactor.
* Generated files (``dropin.cache``, ``__pycache__``) are never tracked by git.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
SANS_IO_DIRS = ("kwik_twisted/core", "kwik_twisted/wire")
FORBIDDEN = frozenset(
    {
        "twisted",
        "socket",
        "time",
        "datetime",
        "random",
        "os",
        "secrets",
        "asyncio",
        "threading",
        "select",
    }
)
PLUGIN_DIR = ROOT / "twisted" / "plugins"
PLUGIN_FILE = PLUGIN_DIR / "kwik_twisted_plugins.py"


def imported_modules(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """
    Return ``(line, module)`` for every absolute import in ``source``.

    ``import a.b`` and ``from a.b import c`` both give ``a.b``; relative imports
    stay inside the package and are left out.
    """
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def forbidden_imports(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """Return the ``(line, module)`` imports of ``source`` whose top package is forbidden."""
    return [
        (line, module)
        for line, module in imported_modules(source, filename)
        if module.partition(".")[0] in FORBIDDEN
    ]


def sans_io_modules() -> list[Path]:
    """Every ``.py`` file under the sans-I/O packages, sorted."""
    return sorted(path for d in SANS_IO_DIRS for path in (ROOT / d).rglob("*.py"))


class SansIOImportTests(SynchronousTestCase):
    """The sans-I/O packages import nothing that does I/O, keeps time or draws randomness."""

    def test_checker_flags_forbidden_imports_in_every_form(self) -> None:
        """
        The import scanner catches plain, dotted, aliased, ``from`` and nested
        imports of forbidden modules, so a clean result below means something.
        """
        source = (
            "import struct\n"
            "import os.path\n"
            "import time as clock\n"
            "from twisted.internet import reactor\n"
            "from . import sibling\n"
            "def f():\n"
            "    from random import random\n"
            "    import socket\n"
        )
        self.assertEqual(
            sorted(forbidden_imports(source)),
            [(2, "os.path"), (3, "time"), (4, "twisted.internet"), (7, "random"), (8, "socket")],
        )

    def test_checker_allows_modules_whose_names_only_start_like_forbidden_ones(self) -> None:
        """``timeit``-like prefixes and relative imports are not mistaken for forbidden ones."""
        source = "import timeit\nimport osmosis\nfrom .time import x\nimport hashlib\n"
        self.assertEqual(forbidden_imports(source), [])

    def test_sans_io_packages_exist_and_hold_modules(self) -> None:
        """Both sans-I/O packages are where the scan looks, so it cannot pass vacuously."""
        for directory in SANS_IO_DIRS:
            modules = list((ROOT / directory).rglob("*.py"))
            self.assertTrue(modules, f"no modules found under {directory}")

    def test_core_and_wire_import_no_io_clock_or_randomness(self) -> None:
        """No module under kwik_twisted/core or kwik_twisted/wire imports a forbidden module."""
        offences = []
        for path in sans_io_modules():
            relative = path.relative_to(ROOT)
            source = path.read_text(encoding="utf-8")
            for line, module in forbidden_imports(source, str(relative)):
                offences.append(f"{relative}:{line}: imports {module}")
        self.assertEqual(offences, [], "sans-I/O violations:\n" + "\n".join(offences))


class PluginDirectoryTests(SynchronousTestCase):
    """twisted/plugins/ stays a plugin directory that Twisted can scan."""

    def test_plugin_directory_has_no_init_module(self) -> None:
        """
        twisted/plugins/ has no ``__init__.py`` (or ``.pyc`` of one): it would
        shadow Twisted's own ``twisted.plugins`` package for anyone importing
        from the checkout.
        """
        self.assertTrue(PLUGIN_DIR.is_dir(), f"{PLUGIN_DIR} is missing")
        shadows = sorted(p.name for p in PLUGIN_DIR.iterdir() if p.stem == "__init__")
        self.assertEqual(shadows, [])

    def test_plugin_file_does_not_import_the_reactor(self) -> None:
        """
        The plugin module never imports the reactor: Twisted imports every plugin
        while scanning, and installing a reactor there breaks reactor selection.
        """
        source = PLUGIN_FILE.read_text(encoding="utf-8")
        offences = []
        for node in ast.walk(ast.parse(source, str(PLUGIN_FILE))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            offences.extend(n for n in names if n.startswith("twisted.internet.reactor"))
        self.assertEqual(offences, [])


class TrackedFilesTests(SynchronousTestCase):
    """Generated files stay out of version control."""

    def tracked_files(self) -> list[str]:
        """The paths git tracks in this checkout; skip if this is not a git checkout."""
        git = shutil.which("git")
        if git is None:
            raise SkipTest("git is not installed")
        top = subprocess.run(
            [git, "rev-parse", "--show-toplevel"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
            raise SkipTest(f"{ROOT} is not the top of a git checkout")
        listing = subprocess.run(
            [git, "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        )
        return [p for p in listing.stdout.decode("utf-8").split("\0") if p]

    def test_no_generated_files_are_tracked(self) -> None:
        """No ``dropin.cache``, ``__pycache__`` directory or ``.pyc`` file is tracked by git."""
        generated = [
            path
            for path in self.tracked_files()
            if "__pycache__" in path.split("/")
            or path.rsplit("/", 1)[-1] == "dropin.cache"
            or path.endswith(".pyc")
        ]
        self.assertEqual(generated, [])
