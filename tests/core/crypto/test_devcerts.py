"""Tests for the development certificate helpers (kwik_twisted.tools.devcerts)."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import stat
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.tools import devcerts

UTC = datetime.UTC


def alt_names(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses (as strings) of a certificate's subjectAltName."""
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return san.get_values_for_type(x509.DNSName), ips


class DevCertTests(SynchronousTestCase):
    """Making a development CA and the certificates it signs."""

    def test_ca_is_a_self_signed_certificate_authority(self) -> None:
        """make_ca gives a CA certificate, signed by its own P-256 key."""
        ca = devcerts.make_ca("test CA")
        constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(constraints.value.ca)
        self.assertEqual(ca.certificate.issuer, ca.certificate.subject)
        self.assertIsInstance(ca.key.curve, ec.SECP256R1)
        ca.certificate.verify_directly_issued_by(ca.certificate)

    def test_leaf_has_default_alt_names_and_is_signed_by_the_ca(self) -> None:
        """A default leaf names localhost, 127.0.0.1 and ::1 and verifies against its CA."""
        ca = devcerts.make_ca()
        leaf = devcerts.make_certificate(ca)
        self.assertEqual(alt_names(leaf.certificate), (["localhost"], ["127.0.0.1", "::1"]))
        leaf.certificate.verify_directly_issued_by(ca.certificate)
        basic = leaf.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertFalse(basic.value.ca)

    def test_leaf_with_chosen_names(self) -> None:
        """Host names and addresses given are all in the subjectAltName."""
        leaf = devcerts.make_certificate(
            devcerts.make_ca(), ["a.example", "b.example"], ["10.1.2.3"]
        )
        self.assertEqual(alt_names(leaf.certificate), (["a.example", "b.example"], ["10.1.2.3"]))
        self.assertEqual(ipaddress.ip_address("10.1.2.3").version, 4)

    def test_validity_dates_can_be_in_the_past(self) -> None:
        """Explicit not_before/not_after make expired certificates possible."""
        start = datetime.datetime(2001, 1, 1, tzinfo=UTC)
        end = datetime.datetime(2001, 2, 1, tzinfo=UTC)
        leaf = devcerts.make_certificate(devcerts.make_ca(), not_before=start, not_after=end)
        self.assertEqual(leaf.certificate.not_valid_before_utc, start)
        self.assertEqual(leaf.certificate.not_valid_after_utc, end)

    def test_self_signed_leaf_is_its_own_issuer(self) -> None:
        """make_self_signed gives a non-CA certificate that verifies against itself."""
        cert = devcerts.make_self_signed(["self.example"], []).certificate
        self.assertEqual(cert.issuer, cert.subject)
        self.assertEqual(alt_names(cert), (["self.example"], []))
        cert.verify_directly_issued_by(cert)

    def test_write_pem_files(self) -> None:
        """write_pem_files writes the CA, a leaf-then-CA chain and a key only we can read."""
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, directory)
        paths = devcerts.write_pem_files(directory / "sub", ["host.example"], [])
        self.assertEqual([p.name for p in paths], ["ca.pem", "server.pem", "server.key"])
        ca = x509.load_pem_x509_certificate(paths.ca.read_bytes())
        chain = x509.load_pem_x509_certificates(paths.chain.read_bytes())
        self.assertEqual([c.subject for c in chain[1:]], [ca.subject])
        chain[0].verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
        self.assertEqual(key.public_key(), chain[0].public_key())
        self.assertEqual(stat.S_IMODE(paths.key.stat().st_mode) & 0o077, 0)
