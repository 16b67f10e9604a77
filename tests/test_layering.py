"""
Checks of the project's layering, size and packaging rules, done on the source tree.

Every check parses the modules with :mod:`ast` (nothing is imported).  Every import counts:
module level, inside functions, and under ``if TYPE_CHECKING:``; relative imports are resolved to
absolute names first (``from ..glue import x`` in ``kwik_twisted/core/a.py`` is an import of
``kwik_twisted.glue.x``), so a relative import cannot slip past a rule.

* Imports only go down, by folder: ``wire/`` imports only :mod:`kwik_twisted.errors` (and
  itself); ``core/`` only ``wire``, ``errors``, ``events`` and ``config`` (and itself); the shared
  vocabulary (``errors``, ``events``, ``config``) only itself.  Nothing under ``core/`` or
  ``wire/`` imports the glue.
* Only ``glue/``, the public Twisted modules (``endpoints``, ``parsers``, ``tap``,
  ``interfaces``), ``testing/``, ``tools/`` and ``twisted/plugins/`` import Twisted (or zope);
  production code (``glue/`` and the public modules but ``tap``'s ``--dev-certs``) imports neither
  ``testing/`` nor ``tools/``.
* ``kwik_twisted/core`` and ``kwik_twisted/wire`` are sans-I/O: they may not import the reactor,
  sockets, clocks, randomness, the OS or threads.  Time enters as a ``now`` argument and
  randomness through an injected source.
* No import cycle among the package's modules.
* Files stay readable: no module over :data:`MAX_MODULE_LINES` lines, no class with more than
  :data:`MAX_CLASS_METHODS` methods.
* ``twisted/plugins/`` belongs to Twisted: it must never get an ``__init__.py``, and our plugin
  file must not import the reactor.
* Generated files (``dropin.cache``, ``__pycache__``) are never tracked by git.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "kwik_twisted"
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
MAX_MODULE_LINES = 700
MAX_CLASS_METHODS = 40

#: Layer -> the package layers it may import (itself included).  A layer is the first name
#: under ``kwik_twisted`` (``core``, ``wire``, ``glue``, ``errors``...).
ALLOWED_LAYERS: dict[str, frozenset[str]] = {
    "wire": frozenset({"wire", "errors"}),
    "core": frozenset({"core", "wire", "errors", "events", "config"}),
    "errors": frozenset({"errors", "events", "config"}),
    "events": frozenset({"errors", "events", "config"}),
    "config": frozenset({"errors", "events", "config"}),
}
#: The layers that may import Twisted and zope: the glue and the public Twisted modules, plus
#: the test and development helpers.
TWISTED_LAYERS = frozenset(
    {"glue", "endpoints", "parsers", "tap", "interfaces", "testing", "tools"}
)
#: External top-level packages that belong to the Twisted side.
TWISTED_PACKAGES = frozenset({"twisted", "zope"})
#: Production layers, which import neither ``testing`` nor ``tools`` (``tap`` may use ``tools``
#: for ``--dev-certs``).
PRODUCTION_LAYERS = frozenset(
    {"glue", "endpoints", "parsers", "_values", "interfaces", "errors", "events", "config", "core",
     "wire"}
)


# -- reading imports ---------------------------------------------------------------------------


def module_name(path: Path, root: Path = ROOT) -> str:
    """The dotted module name of a ``.py`` file under ``root`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {
        module_name(path, root): path
        for path in sorted((root / PACKAGE).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def resolve_from(module: str, is_package: bool, level: int, target: str | None) -> str:
    """
    The absolute module a ``from`` import names.

    :param module: the importing module's dotted name.
    :param is_package: whether the importing module is a package's ``__init__``.
    :param level: the number of leading dots (0: absolute).
    :param target: the module after the dots (``None`` for ``from . import x``).
    """
    if level == 0:
        return target or ""
    parts = module.split(".")
    if not is_package:
        parts.pop()
    parts = parts[: len(parts) - (level - 1)]
    if target:
        parts.append(target)
    return ".".join(parts)


def imports_in(
    source: str,
    module: str = "kwik_twisted.example",
    is_package: bool = False,
    known: Iterable[str] = (),
    filename: str = "<source>",
) -> list[tuple[int, str]]:
    """
    Return ``(line, absolute module)`` for every import in ``source``, wherever it is.

    ``from a import b`` names ``a.b`` when ``a.b`` is in ``known`` (a module), else ``a``.
    """
    known = frozenset(known)
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(module, is_package, node.level, node.module)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if candidate in known else base))
    return sorted(set(found))


def package_imports(root: Path = ROOT) -> dict[str, list[tuple[int, str]]]:
    """Every package module's imports, resolved to absolute names."""
    files = package_files(root)
    return {
        name: imports_in(
            path.read_text(encoding="utf-8"),
            name,
            path.name == "__init__.py",
            files,
            str(path.relative_to(root)),
        )
        for name, path in files.items()
    }


def layer_of(module: str) -> str | None:
    """``core`` for ``kwik_twisted.core.x``, ``errors`` for ``kwik_twisted.errors``; else None."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else ""


def forbidden_imports(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """Return the ``(line, module)`` imports of ``source`` whose top package is forbidden."""
    return [
        (line, module)
        for line, module in imports_in(source, filename=filename)
        if module.partition(".")[0] in FORBIDDEN
    ]


def layering_offences(imports: Mapping[str, list[tuple[int, str]]]) -> list[str]:
    """Every import that breaks a layering rule, as ``module:line: imports target (why)``."""
    offences = []
    for module, found in sorted(imports.items()):
        layer = layer_of(module)
        for line, target in found:
            why = _breaks(layer, target)
            if why:
                offences.append(f"{module}:{line}: imports {target} ({why})")
    return offences


def _breaks(layer: str | None, target: str) -> str | None:
    """Why importing ``target`` from ``layer`` breaks a rule, or ``None``."""
    target_layer = layer_of(target)
    top = target.partition(".")[0]
    if layer in ALLOWED_LAYERS and target_layer is not None:
        if target_layer not in ALLOWED_LAYERS[layer]:
            return f"{layer} may import only {', '.join(sorted(ALLOWED_LAYERS[layer]))}"
    if top in TWISTED_PACKAGES and layer not in TWISTED_LAYERS:
        return f"only {', '.join(sorted(TWISTED_LAYERS))} import {top}"
    if layer in PRODUCTION_LAYERS and target_layer in ("testing", "tools"):
        return f"production code does not depend on {target_layer}"
    return None


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (module -> modules it imports): its strongly connected
    components of more than one module, or of one that imports itself, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in graph:
                continue
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def import_graph(imports: Mapping[str, list[tuple[int, str]]]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (external imports left out)."""
    return {
        module: {target for _, target in found if target in imports and target != module}
        for module, found in imports.items()
    }


def sans_io_modules() -> list[Path]:
    """Every ``.py`` file under the sans-I/O packages, sorted."""
    return sorted(path for d in SANS_IO_DIRS for path in (ROOT / d).rglob("*.py"))


# -- the checker's own tests -----------------------------------------------------------------


class CheckerTests(SynchronousTestCase):
    """The import scanner sees every form of import, so the clean results below mean something."""

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

    def test_relative_imports_resolve_to_absolute_modules(self) -> None:
        """
        ``from ...glue.connection import X`` in ``kwik_twisted/core/paths/manager.py`` is an
        import of ``kwik_twisted.glue.connection``; ``from . import x`` names the submodule when
        it exists (also in a package's ``__init__``), else the package itself.
        """
        known = {"kwik_twisted.core.paths.path", "kwik_twisted.errors"}
        source = (
            "from ...glue.connection import KwikConnection\n"
            "from . import path\n"
            "from ... import errors\n"
            "from .path import Path\n"
        )
        self.assertEqual(
            imports_in(source, "kwik_twisted.core.paths.manager", False, known),
            [(1, "kwik_twisted.glue.connection"), (2, "kwik_twisted.core.paths.path"),
             (3, "kwik_twisted.errors"), (4, "kwik_twisted.core.paths.path")],
        )
        self.assertEqual(
            imports_in("from . import path\nfrom .. import glue\n", "kwik_twisted.core.paths",
                       True, known),
            [(1, "kwik_twisted.core.paths.path"), (2, "kwik_twisted.core")],
        )
        self.assertEqual(
            imports_in("from ...glue import udp\n", "kwik_twisted.core.paths.manager"),
            [(1, "kwik_twisted.glue")],
        )

    def test_a_relative_import_from_core_into_the_glue_is_flagged(self) -> None:
        """
        The folder rules see through relative imports, and imports hidden in a function or
        under ``TYPE_CHECKING``: each of these lines in a core module is an offence.
        """
        source = (
            "from typing import TYPE_CHECKING\n"
            "from ..glue.connection import KwikConnection\n"
            "if TYPE_CHECKING:\n"
            "    from ..endpoints import KwikClientEndpoint\n"
            "def f():\n"
            "    from twisted.internet import reactor\n"
            "from ..wire import frames\n"
            "from ..errors import KwikError\n"
        )
        found = imports_in(source, "kwik_twisted.core.timers")
        offences = layering_offences({"kwik_twisted.core.timers": found})
        self.assertEqual([o.split(" (")[0] for o in offences], [
            "kwik_twisted.core.timers:2: imports kwik_twisted.glue.connection",
            "kwik_twisted.core.timers:4: imports kwik_twisted.endpoints",
            "kwik_twisted.core.timers:6: imports twisted.internet",
        ])

    def test_wire_may_import_only_errors(self) -> None:
        """A wire module importing the events (or the core) breaks the rules; errors does not."""
        found = imports_in("from ..errors import X\nfrom ..events import Y\nfrom ..core import z\n",
                           "kwik_twisted.wire.frames")
        offences = layering_offences({"kwik_twisted.wire.frames": found})
        self.assertEqual(len(offences), 2)
        self.assertIn("kwik_twisted.events", offences[0])
        self.assertIn("kwik_twisted.core", offences[1])

    def test_production_code_does_not_import_testing(self) -> None:
        """The glue importing the test helpers is an offence; the tools importing them is not."""
        source = "from ..testing.pair import server_config\n"
        glue = layering_offences({"kwik_twisted.glue.x": imports_in(source, "kwik_twisted.glue.x")})
        tools = layering_offences(
            {"kwik_twisted.tools.x": imports_in(source, "kwik_twisted.tools.x")})
        self.assertEqual((len(glue), tools), (1, []))

    def test_cycles_are_found_including_type_checking_ones(self) -> None:
        """
        An import under ``if TYPE_CHECKING:`` closes a cycle like any other; modules outside the
        graph and acyclic chains are not cycles.
        """
        modules = {
            "kwik_twisted.a": "from .b import B\n",
            "kwik_twisted.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from .a import A\n",
            "kwik_twisted.c": "from .a import A\nimport json\n",
        }
        imports = {name: imports_in(source, name, False, modules)
                   for name, source in modules.items()}
        self.assertEqual(find_cycles(import_graph(imports)),
                         [["kwik_twisted.a", "kwik_twisted.b"]])
        self.assertEqual(find_cycles({"x": {"y"}, "y": set()}), [])


# -- the package -----------------------------------------------------------------------------


class LayeringTests(SynchronousTestCase):
    """Imports only go down, folder by folder, and only the Twisted side imports Twisted."""

    def setUp(self) -> None:
        self.imports = package_imports()

    def test_the_scan_sees_every_layer(self) -> None:
        """The package has modules in every layer the rules name, so no rule passes vacuously."""
        layers = {layer_of(name) for name in self.imports}
        for layer in ("wire", "core", "glue", "errors", "events", "config", "endpoints",
                      "parsers", "tap", "interfaces", "testing", "tools"):
            self.assertIn(layer, layers)

    def test_imports_follow_the_folder_rules(self) -> None:
        """No package module imports across the layering rules (see the module docstring)."""
        offences = layering_offences(self.imports)
        self.assertEqual(offences, [], "layering violations:\n" + "\n".join(offences))

    def test_nothing_under_core_or_wire_imports_the_glue(self) -> None:
        """No import in core/ or wire/, relative or absolute, reaches kwik_twisted.glue."""
        offences = [
            f"{module}:{line}: imports {target}"
            for module, found in self.imports.items()
            if layer_of(module) in ("core", "wire")
            for line, target in found
            if layer_of(target) == "glue"
        ]
        self.assertEqual(offences, [])

    def test_the_plugin_file_imports_only_the_public_modules(self) -> None:
        """The twistd plugin file imports Twisted and the public parsers, not the glue."""
        found = imports_in(PLUGIN_FILE.read_text(encoding="utf-8"), "twisted.plugins.kwik")
        internal = sorted({target for _, target in found if layer_of(target) is not None})
        self.assertEqual(internal, ["kwik_twisted.parsers"])

    def test_nothing_logs_through_the_legacy_log_module(self) -> None:
        """No package module imports ``twisted.python.log``: the glue logs with twisted.logger."""
        legacy = []
        for module, path in package_files().items():
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                legacy.extend(f"{module}:{node.lineno}: {name}" for name in names
                              if name.startswith("twisted.python.log"))
        self.assertEqual(legacy, [])

    def test_no_import_cycles(self) -> None:
        """
        The package's import graph (every import, including those under ``TYPE_CHECKING`` and
        inside functions) has no cycle.
        """
        cycles = find_cycles(import_graph(self.imports))
        self.assertEqual(cycles, [], "import cycles:\n" + "\n".join(map(" <-> ".join, cycles)))


class SansIOImportTests(SynchronousTestCase):
    """The sans-I/O packages import nothing that does I/O, keeps time or draws randomness."""

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


class SizeTests(SynchronousTestCase):
    """Files and classes stay small enough to read."""

    def test_no_module_is_over_the_line_limit(self) -> None:
        """No module of the package is longer than MAX_MODULE_LINES lines."""
        long = [
            f"{path.relative_to(ROOT)}: {lines} lines"
            for path in package_files().values()
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
        ]
        self.assertEqual(long, [], f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long))

    def test_no_class_has_too_many_methods(self) -> None:
        """No class of the package defines more than MAX_CLASS_METHODS methods."""
        big = []
        for path in package_files().values():
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    count = sum(isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                                for item in node.body)
                    if count > MAX_CLASS_METHODS:
                        big.append(f"{path.relative_to(ROOT)}: {node.name}: {count} methods")
        self.assertEqual(big, [], f"classes over {MAX_CLASS_METHODS} methods:\n" + "\n".join(big))


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
