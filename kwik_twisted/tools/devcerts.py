"""
Development certificates: a throw-away CA and the certificates it signs.

Kwik always runs TLS 1.3, so even a quick local experiment needs a server
certificate that a client can verify.  These helpers make one with
:mod:`cryptography`: EC P-256 keys (fast to generate and to sign with), a
subjectAltName listing every host name and IP address (service_identity
ignores the commonName, as RFC 6125 section 6.4.4 allows), and both the
serverAuth and clientAuth extended key usages so the same helper makes client
certificates.  Validity is one year from now unless ``not_before`` and
``not_after`` say otherwise, which is how tests make expired certificates.

Nothing here is meant for production: the CA key lives only in memory unless
you write it out yourself.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: How long a development certificate lasts when no dates are given.
DEFAULT_LIFETIME = datetime.timedelta(days=365)
#: Certificates start a little in the past, to survive small clock differences.
BACKDATE = datetime.timedelta(minutes=5)


class CertificateAndKey(NamedTuple):
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


class PemPaths(NamedTuple):
    """The files :func:`write_pem_files` wrote."""

    ca: Path
    chain: Path
    key: Path


def _validity(
    not_before: datetime.datetime | None, not_after: datetime.datetime | None
) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    start = not_before if not_before is not None else now - BACKDATE
    end = not_after if not_after is not None else start + DEFAULT_LIFETIME
    return start, end


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime.datetime | None,
    not_after: datetime.datetime | None,
) -> x509.CertificateBuilder:
    start, end = _validity(not_before, not_after)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(
    common_name: str = "kwik development CA",
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> CertificateAndKey:
    """Make a self-signed certificate authority that may sign leaf certificates."""
    key = _new_key()
    name = _name(common_name)
    builder = _builder(name, name, key.public_key(), not_before, not_after)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    return CertificateAndKey(builder.sign(key, hashes.SHA256()), key)


def _alt_names(hostnames: Iterable[str], ips: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    return x509.SubjectAlternativeName(names)


def _leaf_extensions(
    builder: x509.CertificateBuilder, hostnames: tuple[str, ...], ips: tuple[str, ...]
) -> x509.CertificateBuilder:
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    if hostnames or ips:
        builder = builder.add_extension(_alt_names(hostnames, ips), critical=False)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    return builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)


def make_certificate(
    ca: CertificateAndKey | tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    hostnames: Iterable[str] = ("localhost",),
    ips: Iterable[str] = ("127.0.0.1", "::1"),
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    *,
    common_name: str | None = None,
) -> CertificateAndKey:
    """
    Make a leaf certificate signed by ``ca`` with a subjectAltName of
    ``hostnames`` and ``ips`` (an empty pair makes a certificate without one).
    """
    ca_cert, ca_key = ca
    hostnames, ips = tuple(hostnames), tuple(ips)
    key = _new_key()
    subject = _name(common_name or (hostnames[0] if hostnames else "kwik"))
    builder = _builder(subject, ca_cert.subject, key.public_key(), not_before, not_after)
    builder = _leaf_extensions(builder, hostnames, ips)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
    )
    return CertificateAndKey(builder.sign(ca_key, hashes.SHA256()), key)


def make_self_signed(
    hostnames: Iterable[str] = ("localhost",),
    ips: Iterable[str] = ("127.0.0.1", "::1"),
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> CertificateAndKey:
    """Make a self-signed leaf certificate (its own issuer, not a CA)."""
    hostnames, ips = tuple(hostnames), tuple(ips)
    key = _new_key()
    name = _name(hostnames[0] if hostnames else "kwik")
    builder = _builder(name, name, key.public_key(), not_before, not_after)
    builder = _leaf_extensions(builder, hostnames, ips)
    return CertificateAndKey(builder.sign(key, hashes.SHA256()), key)


def certificate_pem(*certificates: x509.Certificate) -> bytes:
    """PEM encoding of one certificate or a chain, leaf first."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM encoding of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def write_pem_files(
    directory: str | os.PathLike[str],
    hostnames: Iterable[str] = ("localhost",),
    ips: Iterable[str] = ("127.0.0.1", "::1"),
    *,
    ca: CertificateAndKey | None = None,
    prefix: str = "server",
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> PemPaths:
    """
    Write ``ca.pem``, ``<prefix>.pem`` (leaf then CA) and ``<prefix>.key``
    (mode 0600) into ``directory``, making a new CA unless one is given.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = ca or make_ca()
    leaf = make_certificate(ca, hostnames, ips, not_before, not_after)
    return PemPaths(
        ca=_write(directory / "ca.pem", certificate_pem(ca.certificate), 0o644),
        chain=_write(
            directory / f"{prefix}.pem", certificate_pem(leaf.certificate, ca.certificate), 0o644
        ),
        key=_write(directory / f"{prefix}.key", key_pem(leaf.key), 0o600),
    )


__all__ = [
    "CertificateAndKey",
    "PemPaths",
    "certificate_pem",
    "key_pem",
    "make_ca",
    "make_certificate",
    "make_self_signed",
    "write_pem_files",
]
