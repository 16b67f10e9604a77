"""
The development certificates (CA, chain for localhost/127.0.0.1, key) as files.

Kwik's :func:`~kwik_twisted.testing.pair.dev_certificates` makes a fresh CA per process; a child
process must trust the parent's, and aioquic/qh3 load PEM files, so the parent writes them once
into a directory (:func:`write`) and everyone reads them back (:func:`load`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from kwik_twisted.testing.pair import DevCertificates, dev_certificates

_written: dict[str, Path] = {}


def write(directory: str | Path | None = None) -> Path:
    """Write ``ca.pem``, ``chain.pem``, ``key.pem`` (once per process); return the directory."""
    key = str(directory)
    if key in _written:
        return _written[key]
    path = Path(directory or tempfile.mkdtemp(prefix="kwik-bench-certs-"))
    certs = dev_certificates("localhost")
    (path / "ca.pem").write_bytes(certs.ca)
    (path / "chain.pem").write_bytes(certs.chain)
    (path / "key.pem").write_bytes(certs.key)
    _written[key] = path
    return path


def load(directory: str | Path) -> DevCertificates:
    """Read the certificates :func:`write` wrote."""
    path = Path(directory)
    return DevCertificates(
        (path / "ca.pem").read_bytes(), (path / "chain.pem").read_bytes(),
        (path / "key.pem").read_bytes(),
    )
