"""Sphinx configuration for the kwik_twisted documentation (no extensions that need a network)."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from kwik_twisted import __version__  # noqa: E402  (needs the path above)

project = "kwik_twisted"
author = "the kwik_twisted authors"
copyright = "the kwik_twisted authors"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"

root_doc = "index"
exclude_patterns = ["_build"]
nitpicky = False
html_theme = "alabaster"

suppress_warnings: list[str] = []
# protocol.rst (the wire specification) is written alongside the codecs.  Until it is in the
# tree, tolerate its toctree entry being missing so `sphinx-build -W` can run; once the file
# exists this does nothing and a broken toctree fails the build again.
if not (DOCS / "protocol.rst").exists():
    suppress_warnings.append("toc.not_readable")
