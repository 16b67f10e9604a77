"""
Shared certificate fixtures for the tests, made once per process.

Generating EC keys and certificates takes a few milliseconds each; tests ask
:func:`fixtures` and get the same set every time.  The PEM files live in a
temporary directory removed when the process exits.  Expired certificates are
dated in the past rather than by touching any clock.
"""

from __future__ import annotations

import atexit
import datetime
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kwik_twisted.tools import devcerts


@dataclass(frozen=True)
class Identity:
    """A certificate chain and key, as PEM bytes and as files."""

    chain_pem: bytes
    key_pem: bytes
    chain_path: Path
    key_path: Path


@dataclass(frozen=True)
class Fixtures:
    """Every certificate the tests use."""

    directory: Path
    ca_pem: bytes
    ca_path: Path
    other_ca_pem: bytes
    server: Identity
    expired: Identity
    self_signed: Identity
    no_san: Identity
    client: Identity


def _identity(
    directory: Path, name: str, leaf: devcerts.CertificateAndKey, *chain: object
) -> Identity:
    chain_pem = devcerts.certificate_pem(leaf.certificate, *chain)  # type: ignore[arg-type]
    key_pem = devcerts.key_pem(leaf.key)
    chain_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    chain_path.write_bytes(chain_pem)
    key_path.write_bytes(key_pem)
    return Identity(chain_pem, key_pem, chain_path, key_path)


@cache
def fixtures() -> Fixtures:
    """Make (once) and return the test CAs, certificates and their files."""
    directory = Path(tempfile.mkdtemp(prefix="kwik-test-certs-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    ca = devcerts.make_ca("kwik test CA")
    other_ca = devcerts.make_ca("some other CA")
    long_ago = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    expired = devcerts.make_certificate(
        ca, not_before=long_ago, not_after=long_ago + datetime.timedelta(days=30)
    )
    paths = devcerts.write_pem_files(directory / "server-files", ca=ca)
    return Fixtures(
        directory=directory,
        ca_pem=devcerts.certificate_pem(ca.certificate),
        ca_path=paths.ca,
        other_ca_pem=devcerts.certificate_pem(other_ca.certificate),
        server=Identity(paths.chain.read_bytes(), paths.key.read_bytes(), paths.chain, paths.key),
        expired=_identity(directory, "expired", expired, ca.certificate),
        self_signed=_identity(directory, "self-signed", devcerts.make_self_signed()),
        no_san=_identity(directory, "no-san", devcerts.make_certificate(ca, (), ())),
        client=_identity(
            directory,
            "client",
            devcerts.make_certificate(ca, ("client.example",), ()),
            ca.certificate,
        ),
    )
