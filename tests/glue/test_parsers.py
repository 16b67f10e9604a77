"""
Tests for kwik_twisted.parsers: every ``kwik:`` endpoint-string argument, on both sides, parsed to
the right value and type, and every bad one refused with a ValueError that names it.

Most tests call :func:`parse_server_arguments` / :func:`parse_client_arguments` directly, with
the ``str`` values Twisted would pass; the last group goes through Twisted's own
``serverFromString`` / ``clientFromString`` (plugin lookup, ``:`` splitting, ``\\`` escapes) with
the endpoint classes replaced by recorders, so the keyword arguments they get are checked.
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.internet.testing import MemoryReactor
from twisted.plugin import IPlugin
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from kwik_twisted.config import KEEP_ALIVE_AUTO, ConnectionConfig
from kwik_twisted.core.congestion import available_controllers
from kwik_twisted.errors import ConfigurationError
from kwik_twisted.parsers import (
    CLIENT_ARGUMENTS,
    SERVER_ARGUMENTS,
    KwikClientParser,
    KwikServerParser,
    parse_client_arguments,
    parse_server_arguments,
)
from kwik_twisted.streams import Priority, QoSPolicy
from tests.certs import fixtures


def _certificates(pem: bytes) -> list[bytes]:
    from cryptography import x509

    return [
        c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(pem)
    ]


def _public_key(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class Files:
    """Certificate files made for these tests (in one temporary directory per test case)."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.fx = fixtures()
        self.dir = Path(tempfile.mkdtemp(prefix="kwik-parsers-"))
        case.addCleanup(_remove_tree, self.dir)
        self.key = str(self.fx.server.key_path)
        self.cert = str(self.fx.server.chain_path)
        self.ca = str(self.fx.ca_path)

    def write(self, name: str, data: bytes) -> str:
        path = self.dir / name
        path.write_bytes(data)
        return str(path)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


class Assertions(SynchronousTestCase):
    """Shared helpers."""

    def setUp(self) -> None:
        self.files = Files(self)

    def server(self, *args: str, **kwargs: str) -> dict[str, Any]:
        kwargs.setdefault("privateKey", self.files.key)
        kwargs.setdefault("certKey", self.files.cert)
        return parse_server_arguments(*args, **kwargs)

    def client(self, *args: str, **kwargs: str) -> dict[str, Any]:
        return parse_client_arguments(*args, **kwargs)

    def assertRefused(self, name: str, call: Any, /, *args: Any, **kwargs: Any) -> str:
        """``call`` raises a ConfigurationError (a ValueError) whose message names ``name``."""
        with self.assertRaises(ConfigurationError) as caught:  # kwargs may hold any name
            call(*args, **kwargs)
        error = caught.exception
        self.assertIsInstance(error, ValueError)
        self.assertIn(name, str(error))
        return str(error)


class ServerArgumentTests(Assertions):
    """parse_server_arguments."""

    def test_positional_port_and_defaults(self) -> None:
        """``kwik:4433:...`` gives port 4433, all interfaces and the default settings."""
        result = self.server("4433")
        self.assertEqual(set(result), {"port", "interface", "config"})
        self.assertEqual(result["port"], 4433)
        self.assertIsInstance(result["port"], int)
        self.assertEqual(result["interface"], "")
        config = result["config"]
        self.assertIsInstance(config, ConnectionConfig)
        defaults = ConnectionConfig()
        for field in ("congestion_control", "idle_timeout", "keep_alive", "compression"):
            self.assertEqual(getattr(config, field), getattr(defaults, field))
        self.assertEqual(config.max_streams, defaults.max_streams)
        self.assertEqual(config.max_datagram_size, defaults.max_datagram_size)

    def test_port_keyword_and_port_zero(self) -> None:
        """``port=`` works as a keyword, and 0 (an ephemeral port) is allowed."""
        self.assertEqual(self.server(port="0")["port"], 0)
        self.assertEqual(self.server(port="65535")["port"], 65535)

    def test_bad_or_missing_port_is_refused(self) -> None:
        """A port that is missing, not a number or out of range is refused, naming ``port``."""
        for bad in ("65536", "-1", "https", "", "4433.0"):
            self.assertRefused("port", self.server, bad)
        self.assertRefused("port", self.server)

    def test_tls_identity_is_loaded_from_the_files(self) -> None:
        """certKey's certificates (leaf first) and privateKey's key go into the TlsConfig."""
        tls = self.server("4433")["config"].tls
        self.assertEqual(
            _certificates(tls.certificate_chain), _certificates(self.files.fx.server.chain_pem)
        )
        self.assertEqual(_public_key(tls.private_key), _public_key(self.files.fx.server.key_pem))
        self.assertFalse(tls.require_client_certificate)
        self.assertIsNone(tls.trust_roots)

    def test_one_file_may_hold_key_and_certificate(self) -> None:
        """Without certKey, the privateKey file must hold the certificate too (as in ``ssl:``)."""
        both = self.files.write(
            "both.pem", self.files.fx.server.chain_pem + self.files.fx.server.key_pem
        )
        tls = parse_server_arguments("1", privateKey=both)["config"].tls
        self.assertEqual(
            _certificates(tls.certificate_chain), _certificates(self.files.fx.server.chain_pem)
        )
        self.assertRefused(
            "no PEM certificate", parse_server_arguments, "1", privateKey=self.files.key
        )

    def test_extra_cert_chain_is_appended(self) -> None:
        """``extraCertChain`` certificates follow certKey's in the chain sent to clients."""
        leaf_only = self.files.write(
            "leaf.pem",
            self.files.fx.server.chain_pem.split(b"-----END CERTIFICATE-----")[0]
            + b"-----END CERTIFICATE-----\n",
        )
        tls = self.server("1", certKey=leaf_only, extraCertChain=self.files.ca)["config"].tls
        self.assertEqual(
            _certificates(tls.certificate_chain), _certificates(self.files.fx.server.chain_pem)
        )
        self.assertEqual(len(_certificates(tls.certificate_chain)), 2)

    def test_private_key_is_required(self) -> None:
        """A server string without privateKey is refused, naming it."""
        self.assertRefused("privateKey", parse_server_arguments, "4433", certKey=self.files.cert)

    def test_missing_files_are_named(self) -> None:
        """A missing certificate, key, chain or trust-root file is reported with its name."""
        missing = str(self.files.dir / "nowhere.pem")
        for name in ("privateKey", "certKey", "extraCertChain", "trustRoots", "caCertsDir"):
            message = self.assertRefused(name, self.server, "1", **{name: missing})
            self.assertIn("nowhere.pem", message)

    def test_unusable_file_contents_are_refused(self) -> None:
        """Garbage, a certificate for another key, and an encrypted key are refused by name."""
        garbage = self.files.write("garbage.pem", b"hello\n")
        self.assertRefused("privateKey", self.server, "1", privateKey=garbage)
        self.assertRefused("certKey", self.server, "1", certKey=garbage)
        other = self.files.write("other.key", self.files.fx.client.key_pem)
        message = self.assertRefused("does not match", self.server, "1", privateKey=other)
        self.assertIn("other.key", message)
        key = serialization.load_pem_private_key(self.files.fx.server.key_pem, None)
        encrypted = self.files.write(
            "encrypted.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ),
        )
        self.assertRefused("encrypted", self.server, "1", privateKey=encrypted)

    def test_trust_roots_require_client_certificates(self) -> None:
        """trustRoots (a PEM file) or caCertsDir (a directory of *.pem) require client certs."""
        by_file = self.server("1", trustRoots=self.files.ca)["config"].tls
        self.assertTrue(by_file.require_client_certificate)
        self.assertEqual(_certificates(by_file.trust_roots), _certificates(self.files.fx.ca_pem))
        directory = self.files.dir / "cas"
        directory.mkdir()
        (directory / "a.pem").write_bytes(self.files.fx.ca_pem)
        (directory / "b.pem").write_bytes(self.files.fx.other_ca_pem)
        (directory / "notes.txt").write_bytes(b"ignored")
        by_dir = self.server("1", caCertsDir=str(directory))["config"].tls
        self.assertTrue(by_dir.require_client_certificate)
        self.assertEqual(
            sorted(_certificates(by_dir.trust_roots)),
            sorted(_certificates(self.files.fx.ca_pem + self.files.fx.other_ca_pem)),
        )
        empty = self.files.dir / "empty"
        empty.mkdir()
        self.assertRefused("trustRoots", self.server, "1", trustRoots=str(empty))
        self.assertRefused(
            "caCertsDir", self.server, "1", trustRoots=self.files.ca, caCertsDir=self.files.ca
        )

    def test_interface(self) -> None:
        """``interface`` takes an IPv4 or IPv6 address (normalised), nothing else."""
        self.assertEqual(self.server("1", interface="127.0.0.1")["interface"], "127.0.0.1")
        self.assertEqual(self.server("1", interface="0:0::1")["interface"], "::1")
        self.assertRefused("interface", self.server, "1", interface="localhost")

    def test_server_id_and_config_rotation(self) -> None:
        """``serverId=HEX`` (1 to 3 bytes, optional ``0x``) and ``configRotation=0..6`` set the
        QUIC-LB fields of the config (defaults: no server ID, rotation 0); malformed, too long,
        odd-length or unroutable (7) values are refused by name, and a client refuses both."""
        defaults = self.server("1")["config"]
        self.assertEqual((defaults.server_id, defaults.config_rotation), (b"", 0))
        for text, value in (("c4", b"\xc4"), ("C4605E", b"\xc4\x60\x5e"), ("0x0a0b", b"\n\x0b")):
            self.assertEqual(self.server("1", serverId=text)["config"].server_id, value)
        for text in ("", "c", "c460x5", "c4605e01", "0x", "zz", "c4 60"):
            self.assertRefused("serverId", self.server, "1", serverId=text)
        for n in ("0", "3", "6"):
            self.assertEqual(self.server("1", configRotation=n)["config"].config_rotation, int(n))
        for bad in ("7", "-1", "one"):
            self.assertRefused("configRotation", self.server, "1", configRotation=bad)
        self.assertRefused("serverId", self.client, host="h", port="1", serverId="c4")
        self.assertRefused("configRotation", self.client, host="h", port="1", configRotation="1")

    def test_insecure_is_a_client_argument_only(self) -> None:
        """``insecure`` means nothing to a server, so it is an unknown argument there."""
        self.assertRefused("insecure", self.server, "1", insecure="yes")

    def test_unknown_argument_and_extra_positional_are_refused(self) -> None:
        """An unknown keyword, or a second positional value, is refused by name."""
        message = self.assertRefused("colour", self.server, "1", colour="blue")
        self.assertIn("privateKey", message)  # the message lists what is known
        self.assertRefused("9999", self.server, "1", "9999")


class ClientArgumentTests(Assertions):
    """parse_client_arguments."""

    def test_keywords_and_defaults(self) -> None:
        """host and port by keyword; everything else defaults (timeout 30 s, reuse, verify)."""
        result = self.client(host="example.com", port="4433")
        self.assertEqual(set(result), {"host", "port", "config", "timeout", "bindAddress", "reuse",
                                       "resumption"})
        self.assertEqual(result["host"], "example.com")
        self.assertEqual(result["port"], 4433)
        self.assertEqual(result["timeout"], 30.0)
        self.assertIsInstance(result["timeout"], float)
        self.assertIsNone(result["bindAddress"])
        self.assertIs(result["reuse"], True)
        self.assertIs(result["resumption"], True)
        tls = result["config"].tls
        self.assertEqual(tls.server_name, "example.com")
        self.assertTrue(tls.verifies_peer(is_client=True))
        self.assertIsNone(tls.trust_roots)
        self.assertIsNone(tls.client_certificate)

    def test_positional_host_and_port(self) -> None:
        """``kwik:HOST:PORT`` and ``kwik:HOST:port=PORT`` work like ``tcp:``."""
        self.assertEqual(self.client("a.example", "1")["host"], "a.example")
        self.assertEqual(self.client("a.example", "1")["port"], 1)
        self.assertEqual(self.client("a.example", port="2")["port"], 2)
        self.assertEqual(self.client("3", host="b.example")["port"], 3)

    def test_missing_or_bad_host_and_port_are_refused(self) -> None:
        """No host, no port, port 0 or out of range: refused, naming the argument."""
        self.assertRefused("host", self.client, port="1")
        self.assertRefused("host", self.client, host="", port="1")
        self.assertRefused("port", self.client, host="h")
        for bad in ("0", "65536", "x"):
            self.assertRefused("port", self.client, host="h", port=bad)
        self.assertRefused("too many", self.client, "h", "1", "2")

    def test_hostname_overrides_the_name_checked(self) -> None:
        """``hostname`` is the name sent and verified; the default is ``host``."""
        tls = self.client(host="192.0.2.1", port="1", hostname="kwik.example")["config"].tls
        self.assertEqual(tls.server_name, "kwik.example")
        self.assertEqual(self.client(host="::1", port="1")["config"].tls.server_name, "::1")
        self.assertRefused("hostname", self.client, host="h", port="1", hostname="")

    def test_trust_roots_and_alias(self) -> None:
        """``trustRoots`` (or ``caCertsDir``) replaces the platform store with these CAs."""
        for name in ("trustRoots", "caCertsDir"):
            tls = self.client(host="h", port="1", **{name: self.files.ca})["config"].tls
            self.assertEqual(_certificates(tls.trust_roots), _certificates(self.files.fx.ca_pem))
            self.assertTrue(tls.verifies_peer(is_client=True))

    def test_client_certificate(self) -> None:
        """certKey (or ``certificate``) with privateKey give the client's identity."""
        fx = self.files.fx
        for name in ("certKey", "certificate"):
            tls = self.client(
                host="h",
                port="1",
                privateKey=str(fx.client.key_path),
                **{name: str(fx.client.chain_path)},
            )["config"].tls
            self.assertEqual(
                _certificates(tls.client_certificate), _certificates(fx.client.chain_pem)
            )
            self.assertEqual(_public_key(tls.client_private_key), _public_key(fx.client.key_pem))
        both = self.files.write("client-both.pem", fx.client.chain_pem + fx.client.key_pem)
        tls = self.client(host="h", port="1", certKey=both)["config"].tls
        self.assertEqual(_public_key(tls.client_private_key), _public_key(fx.client.key_pem))

    def test_bad_client_certificate_arguments(self) -> None:
        """privateKey alone, a mismatched pair, or a missing file are refused by name."""
        fx = self.files.fx
        self.assertRefused(
            "certKey", self.client, host="h", port="1", privateKey=str(fx.client.key_path)
        )
        self.assertRefused(
            "does not match",
            self.client,
            host="h",
            port="1",
            certKey=str(fx.client.chain_path),
            privateKey=str(fx.server.key_path),
        )
        self.assertRefused(
            "certKey", self.client, host="h", port="1", certKey=str(self.files.dir / "absent.pem")
        )

    def test_timeout(self) -> None:
        """``timeout`` is a positive number of seconds, fractions allowed."""
        self.assertEqual(self.client(host="h", port="1", timeout="2.5")["timeout"], 2.5)
        for bad in ("0", "-3", "soon", "inf", "nan"):
            self.assertRefused("timeout", self.client, host="h", port="1", timeout=bad)

    def test_bind_address(self) -> None:
        """``bindAddress`` is an IP address, bound with an ephemeral port (as ``tcp:`` does)."""
        self.assertEqual(
            self.client(host="h", port="1", bindAddress="127.0.0.1")["bindAddress"],
            ("127.0.0.1", 0),
        )
        self.assertEqual(
            self.client(host="h", port="1", bindAddress="::1")["bindAddress"], ("::1", 0)
        )
        self.assertRefused("bindAddress", self.client, host="h", port="1", bindAddress="eth0")

    def test_reuse(self) -> None:
        """``reuse`` is a yes/no flag."""
        self.assertIs(self.client(host="h", port="1", reuse="no")["reuse"], False)
        self.assertIs(self.client(host="h", port="1", reuse="YES")["reuse"], True)
        self.assertRefused("reuse", self.client, host="h", port="1", reuse="sometimes")

    def test_resumption(self) -> None:
        """``resumption`` (TLS session tickets) is a yes/no flag, on by default."""
        self.assertIs(self.client(host="h", port="1", resumption="no")["resumption"], False)
        self.assertIs(self.client(host="h", port="1", resumption="yes")["resumption"], True)
        self.assertRefused("resumption", self.client, host="h", port="1", resumption="maybe")

    def test_insecure(self) -> None:
        """``insecure=yes`` turns certificate verification off; it contradicts trustRoots."""
        tls = self.client(host="h", port="1", insecure="yes")["config"].tls
        self.assertFalse(tls.verifies_peer(is_client=True))
        tls = self.client(host="h", port="1", insecure="no")["config"].tls
        self.assertTrue(tls.verifies_peer(is_client=True))
        self.assertRefused("insecure", self.client, host="h", port="1", insecure="please")
        self.assertRefused(
            "trustRoots", self.client, host="h", port="1", insecure="yes", trustRoots=self.files.ca
        )

    def test_unknown_argument_is_refused(self) -> None:
        """An unknown keyword is refused by name, listing the known ones."""
        message = self.assertRefused(
            "extraCertChain", self.client, host="h", port="1", extraCertChain=self.files.ca
        )
        self.assertIn("trustRoots", message)


class CommonArgumentTests(Assertions):
    """The connection settings both sides accept."""

    def both(self, **kwargs: str) -> list[ConnectionConfig]:
        return [
            self.server("1", **kwargs)["config"],
            self.client(host="h", port="1", **kwargs)["config"],
        ]

    def refusedByBoth(self, name: str, /, **kwargs: str) -> None:
        self.assertRefused(name, self.server, "1", **kwargs)
        self.assertRefused(name, self.client, host="h", port="1", **kwargs)

    def test_congestion(self) -> None:
        """``congestion`` takes every registered controller name, case-insensitively."""
        self.assertTrue({"cubic", "newreno", "lia", "olia"} <= set(available_controllers()))
        for name in available_controllers():
            for config in self.both(congestion=name.upper()):
                self.assertEqual(config.congestion_control, name)
        self.refusedByBoth("congestion", congestion="bbr9")

    def test_idle_timeout(self) -> None:
        """``idleTimeout`` is a positive float of seconds."""
        for config in self.both(idleTimeout="12.5"):
            self.assertEqual(config.idle_timeout, 12.5)
        for bad in ("0", "-1", "long", "inf"):
            self.refusedByBoth("idleTimeout", idleTimeout=bad)

    def test_keep_alive(self) -> None:
        """``keepAlive`` is a positive float of seconds, ``no`` for none, or ``auto``."""
        for config in self.both(keepAlive="5"):
            self.assertEqual(config.keep_alive, 5.0)
            self.assertIsInstance(config.keep_alive, float)
        for config in self.both(keepAlive="no"):
            self.assertIsNone(config.keep_alive)
        for config in self.both(keepAlive="Auto"):
            self.assertEqual(config.keep_alive, KEEP_ALIVE_AUTO)
        self.refusedByBoth("keepAlive", keepAlive="-5")
        self.refusedByBoth("keepAlive", keepAlive="sometimes")

    def test_key_update(self) -> None:
        """``keyUpdate=N`` sets the key update interval in packets on both endpoint kinds,
        1..2**22; without it the interval is 2**22."""
        for config in self.both(keyUpdate="5000"):
            self.assertEqual(config.key_update_interval, 5000)
        for config in self.both():
            self.assertEqual(config.key_update_interval, 2**22)
        for bad in ("0", "-1", str(2**22 + 1), "often"):
            self.refusedByBoth("keyUpdate", keyUpdate=bad)

    def test_retry(self) -> None:
        """``retry=yes|no|auto`` (booleans spelled any way) sets when a server sends Retry;
        ``auto`` by default; a client endpoint refuses it (only servers send Retry)."""
        for word, value in (("yes", "yes"), ("no", "no"), ("AUTO", "auto"), ("off", "no")):
            self.assertEqual(self.server("1", retry=word)["config"].retry, value)
        self.assertEqual(self.server("1")["config"].retry, "auto")
        self.assertRefused("retry", self.server, "1", retry="sometimes")
        self.assertRefused("retry", self.client, host="h", port="1", retry="yes")

    def test_keep_alive_defaults_to_auto(self) -> None:
        """
        Without ``keepAlive``, both sides keep connections with open streams alive
        (``"auto"``): an idle tunnel must not end after ``idleTimeout`` (issue 11, finding 8).
        """
        for config in self.both():
            self.assertEqual(config.keep_alive, KEEP_ALIVE_AUTO)

    def test_compression(self) -> None:
        """``compression`` is yes/no (true/false, on/off, 1/0 also work)."""
        for word, value in (("yes", True), ("no", False), ("True", True), ("off", False)):
            for config in self.both(compression=word):
                self.assertIs(config.compression, value)
        self.refusedByBoth("compression", compression="lz4")

    def test_max_streams(self) -> None:
        """``maxStreams`` is an integer of at least 1."""
        for config in self.both(maxStreams="17"):
            self.assertEqual(config.max_streams, 17)
        for bad in ("0", "1.5", "many"):
            self.refusedByBoth("maxStreams", maxStreams=bad)

    def test_datagram_size(self) -> None:
        """``mtu`` and its synonym ``maxDatagramSize`` take 1200..65527; not both at once."""
        for name in ("mtu", "maxDatagramSize"):
            for config in self.both(**{name: "1400"}):
                self.assertEqual(config.max_datagram_size, 1400)
            for bad in ("1199", "65528", "big"):
                self.refusedByBoth(name, **{name: bad})
        self.refusedByBoth("maxDatagramSize", mtu="1400", maxDatagramSize="1400")

    def test_scheduler(self) -> None:
        """``scheduler`` takes a scheduler name; a malformed one is refused."""
        for config in self.both(scheduler="lowest-rtt"):
            self.assertEqual(config.scheduler, "lowest-rtt")
        self.refusedByBoth("scheduler", scheduler="no such thing!")

    @settings(max_examples=40, deadline=None)
    @given(
        st.text(
            alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12
        )
    )
    def test_any_unknown_name_is_refused_by_name(self, name: str) -> None:
        """Any argument name the parsers do not know raises a ValueError naming it."""
        if name in SERVER_ARGUMENTS or name in CLIENT_ARGUMENTS:
            return
        self.refusedByBoth(name, **{name: "1"})


class MultipathArgumentTests(Assertions):
    """``paths``, ``backup``, ``maxPaths``, ``advertise``, several ``interface`` addresses and a
    checked ``scheduler``."""

    def paths(self, value: str, **kwargs: str) -> Any:
        return self.client(host="h", port="1", paths=value, **kwargs)["paths"]

    def test_a_path_is_a_local_address_to_the_same_server(self) -> None:
        """``paths=127.0.0.2`` is one extra path from 127.0.0.2 to the server's own address."""
        self.assertEqual(self.paths("127.0.0.2"), [("127.0.0.2", None, None)])
        self.assertEqual(
            self.client(host="h", port="1", path="127.0.0.2")["paths"], [("127.0.0.2", None, None)]
        )

    def test_paths_are_comma_separated_and_may_name_another_remote(self) -> None:
        """``LOCAL>REMOTE:PORT``, ``LOCAL>REMOTE`` and IPv6 in brackets or bare all parse."""
        self.assertEqual(
            self.paths("127.0.0.2,127.0.0.4>127.0.0.3:4434, 127.0.0.5>127.0.0.3", maxPaths="8"),
            [
                ("127.0.0.2", None, None),
                ("127.0.0.4", "127.0.0.3", 4434),
                ("127.0.0.5", "127.0.0.3", None),
            ],
        )
        self.assertEqual(
            self.paths("[::2]>[::1]:4434,::3>::1"), [("::2", "::1", 4434), ("::3", "::1", None)]
        )

    def test_no_paths_means_no_paths_key(self) -> None:
        """Without ``paths`` the endpoint gets no ``paths`` or ``backup`` argument at all."""
        result = self.client(host="h", port="1")
        self.assertNotIn("paths", result)
        self.assertNotIn("backup", result)

    def test_bad_paths_are_refused(self) -> None:
        """Host names, local ports, empty items, bad ports and a dangling '>' are refused."""
        for bad in (
            "example.com",
            "127.0.0.2:5000",
            "127.0.0.2,,127.0.0.3",
            "127.0.0.2>",
            "127.0.0.2>127.0.0.3:0",
            "127.0.0.2>127.0.0.3:http",
            "127.0.0.2>host.example:4434",
            "[::2",
            "[::2]x",
        ):
            self.assertRefused("paths", self.paths, bad)
        self.assertRefused("path", self.client, host="h", port="1", path="nonsense")
        self.assertRefused(
            "paths", self.client, host="h", port="1", path="127.0.0.2", paths="127.0.0.3"
        )

    def test_more_paths_than_max_paths_are_refused(self) -> None:
        """The handshake's path plus the extra ones may not exceed ``maxPaths`` (default 4)."""
        self.assertEqual(len(self.paths("127.0.0.2,127.0.0.3,127.0.0.4")), 3)
        self.assertRefused("maxPaths", self.paths, "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5")
        self.assertRefused("maxPaths", self.paths, "127.0.0.2", maxPaths="1")
        self.assertEqual(len(self.paths("127.0.0.2", maxPaths="2")), 1)

    def test_max_paths_is_a_setting_of_both_sides(self) -> None:
        """``maxPaths=N`` sets ConnectionConfig.max_paths; 0, 65 and words are refused."""
        for side in (self.server("1", maxPaths="8"), self.client(host="h", port="1", maxPaths="8")):
            self.assertEqual(side["config"].max_paths, 8)
        for bad in ("0", "65", "many"):
            self.assertRefused("maxPaths", self.server, "1", maxPaths=bad)
            self.assertRefused("maxPaths", self.client, host="h", port="1", maxPaths=bad)

    def test_backup_names_path_numbers(self) -> None:
        """``backup=1`` marks the first extra path; ``0`` is the handshake's; lists allowed."""
        result = self.client(host="h", port="1", paths="127.0.0.2,127.0.0.3", backup="2,0")
        self.assertEqual(result["backup"], (2, 0))
        self.assertEqual(
            self.client(host="h", port="1", paths="127.0.0.2", backup="1")["backup"], (1,)
        )

    def test_bad_backup_is_refused(self) -> None:
        """A path number beyond the paths given, a negative one or a word is refused."""
        for bad in ("2", "-1", "one", "1,"):
            self.assertRefused(
                "backup", self.client, host="h", port="1", paths="127.0.0.2", backup=bad
            )
        self.assertRefused("backup", self.client, host="h", port="1", backup="1")

    def test_advertise_sets_the_advertised_addresses(self) -> None:
        """``advertise=HOST:PORT`` (a list) fills config.advertise; a bare host takes our port."""
        config = self.server("4433", advertise="192.0.2.7:4434,[2001:db8::1]:443")["config"]
        self.assertEqual(config.advertise, (("192.0.2.7", 4434), ("2001:db8::1", 443)))
        config = self.server("4433", advertise="192.0.2.7")["config"]
        self.assertEqual(config.advertise, (("192.0.2.7", 4433),))
        self.assertEqual(self.server("4433")["config"].advertise, ())

    def test_bad_advertise_is_refused(self) -> None:
        """Host names, bad ports, a bare host on port 0 and a client-side advertise are refused."""
        for bad in ("example.com:4433", "192.0.2.7:0", "192.0.2.7:99999", "192.0.2.7,"):
            self.assertRefused("advertise", self.server, "4433", advertise=bad)
        self.assertRefused("advertise", self.server, "0", advertise="192.0.2.7")
        self.assertRefused("advertise", self.client, host="h", port="1", advertise="192.0.2.7:1")

    def test_use_advertised_is_a_client_boolean(self) -> None:
        """``useAdvertised=yes`` sets config.use_advertised (default off); a server refuses it."""
        config = self.client(host="h", port="1", useAdvertised="yes")["config"]
        self.assertTrue(config.use_advertised)
        self.assertFalse(self.client(host="h", port="1")["config"].use_advertised)
        self.assertRefused("useAdvertised", self.client, host="h", port="1", useAdvertised="maybe")
        self.assertRefused("useAdvertised", self.server, "4433", useAdvertised="yes")

    def test_several_interfaces(self) -> None:
        """``interface=A,B`` listens on A, with B as an extra interface; each must be an IP."""
        result = self.server("4433", interface="127.0.0.1,127.0.0.3")
        self.assertEqual(result["interface"], "127.0.0.1")
        self.assertEqual(result["extraInterfaces"], ("127.0.0.3",))
        self.assertNotIn("extraInterfaces", self.server("4433", interface="127.0.0.1"))
        self.assertRefused("interface", self.server, "4433", interface="127.0.0.1,localhost")
        self.assertRefused("interface", self.server, "4433", interface="127.0.0.1,")

    def test_scheduler_must_be_registered(self) -> None:
        """Every registered scheduler name is accepted (any case); a well-formed unknown is not."""
        from kwik_twisted.core.paths.scheduler import available_schedulers

        for name in available_schedulers():
            for side in (self.server("1", scheduler=name.upper()),
                         self.client(host="h", port="1", scheduler=name)):
                self.assertEqual(side["config"].scheduler, name)
        message = self.assertRefused("scheduler", self.client, host="h", port="1",
                                     scheduler="round-robin")
        self.assertIn("lowest-rtt", message)

    def test_paths_through_client_from_string(self) -> None:
        """Through clientFromString, ``\\:`` escapes the port of a path's remote address."""
        _, client = record_endpoints(self)
        clientFromString(
            MemoryReactor(),
            "kwik:host=127.0.0.1:port=4433:paths=127.0.0.2,127.0.0.2>127.0.0.3\\:4434:backup=2",
        )
        ((_, kwargs),) = client.calls
        self.assertEqual(
            kwargs["paths"], [("127.0.0.2", None, None), ("127.0.0.2", "127.0.0.3", 4434)]
        )
        self.assertEqual(kwargs["backup"], (2,))


# --------------------------------------------------------------------------
# Through Twisted's endpoint-string machinery.


class Recorder:
    """Stands in for an endpoint class: records how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, reactor: Any, **kwargs: Any) -> Recorder:
        self.calls.append((reactor, kwargs))
        return self


def record_endpoints(case: SynchronousTestCase) -> tuple[Recorder, Recorder]:
    """
    Replace KwikServerEndpoint and KwikClientEndpoint by recorders: patched on the real
    kwik_twisted.endpoints module, or (until that module exists) on a stand-in module.
    """
    server, client = Recorder(), Recorder()
    try:
        from kwik_twisted import endpoints
    except ImportError:
        endpoints = types.ModuleType("kwik_twisted.endpoints")
        endpoints.KwikServerEndpoint = endpoints.KwikClientEndpoint = None
        sys.modules["kwik_twisted.endpoints"] = endpoints
        case.addCleanup(sys.modules.pop, "kwik_twisted.endpoints", None)
    case.patch(endpoints, "KwikServerEndpoint", server)
    case.patch(endpoints, "KwikClientEndpoint", client)
    return server, client


class EndpointStringTests(Assertions):
    """serverFromString / clientFromString with ``kwik:`` strings."""

    def test_parsers_provide_the_plugin_interfaces(self) -> None:
        """Both parsers are plugins with prefix ``kwik`` and the right parser interface."""
        self.assertTrue(IStreamServerEndpointStringParser.providedBy(KwikServerParser()))
        self.assertTrue(IStreamClientEndpointStringParserWithReactor.providedBy(KwikClientParser()))
        for parser in (KwikServerParser(), KwikClientParser()):
            self.assertTrue(IPlugin.providedBy(parser))
            self.assertEqual(parser.prefix, "kwik")

    def test_server_string_reaches_the_endpoint(self) -> None:
        """serverFromString passes the reactor and the parsed arguments to KwikServerEndpoint."""
        server, _ = record_endpoints(self)
        reactor = MemoryReactor()
        key = self.files.key.replace(":", "\\:")
        cert = self.files.cert.replace(":", "\\:")
        endpoint = serverFromString(
            reactor, f"kwik:4433:privateKey={key}:certKey={cert}:interface=\\:\\:1:mtu=1300"
        )
        self.assertIs(endpoint, server)
        ((got_reactor, kwargs),) = server.calls
        self.assertIs(got_reactor, reactor)
        self.assertEqual(kwargs["port"], 4433)
        self.assertEqual(kwargs["interface"], "::1")
        self.assertEqual(kwargs["config"].max_datagram_size, 1300)

    def test_ipv6_host_is_escaped_with_backslashes(self) -> None:
        """``host=\\:\\:1`` reaches the client endpoint as the IPv6 address ``::1``."""
        _, client = record_endpoints(self)
        reactor = MemoryReactor()
        clientFromString(reactor, "kwik:host=\\:\\:1:port=4433:congestion=olia:reuse=no")
        ((got_reactor, kwargs),) = client.calls
        self.assertIs(got_reactor, reactor)
        self.assertEqual(kwargs["host"], "::1")
        self.assertEqual(kwargs["port"], 4433)
        self.assertEqual(kwargs["config"].tls.server_name, "::1")
        self.assertEqual(kwargs["config"].congestion_control, "olia")
        self.assertIs(kwargs["reuse"], False)

    def test_bad_strings_raise_value_error_through_twisted(self) -> None:
        """Errors leave clientFromString/serverFromString as ValueError naming the argument."""
        record_endpoints(self)
        reactor = MemoryReactor()
        error = self.assertRaises(
            ValueError, clientFromString, reactor, "kwik:host=h:port=1:idleTimeout=never"
        )
        self.assertIn("idleTimeout", str(error))
        error = self.assertRaises(
            ValueError, serverFromString, reactor, "kwik:4433:privateKey=/no/such/server.key"
        )
        self.assertIn("/no/such/server.key", str(error))

    def test_parsers_build_real_endpoints(self) -> None:
        """With kwik_twisted.endpoints present, the parsers return its endpoint classes."""
        try:
            from kwik_twisted import endpoints
        except ImportError:
            raise SkipTest("kwik_twisted.endpoints is not written yet") from None
        reactor = MemoryReactor()
        server = KwikServerParser().parseStreamServer(
            reactor, "0", privateKey=self.files.key, certKey=self.files.cert
        )
        self.assertIsInstance(server, endpoints.KwikServerEndpoint)
        self.assertTrue(IStreamServerEndpoint.providedBy(server))
        client = KwikClientParser().parseStreamClient(reactor, host="::1", port="4433")
        self.assertIsInstance(client, endpoints.KwikClientEndpoint)
        self.assertTrue(IStreamClientEndpoint.providedBy(client))


class StreamArgumentTests(Assertions):
    """A client's ``priority`` and QoS arguments set the stream each ``connect()`` opens."""

    def stream(self, **kwargs: str) -> dict[str, Any]:
        return self.client(host="h", port="1", **kwargs)

    def test_no_stream_arguments_means_no_stream_keys(self) -> None:
        """Without the arguments, the endpoint gets neither ``priority`` nor ``qos``."""
        result = self.stream()
        self.assertNotIn("priority", result)
        self.assertNotIn("qos", result)

    def test_priority_names_any_case(self) -> None:
        """``priority=normal|high|critical`` (any case) is the Priority of that name."""
        for word, level in (("normal", Priority.NORMAL), ("HIGH", Priority.HIGH),
                            ("Critical", Priority.CRITICAL)):
            self.assertIs(self.stream(priority=word)["priority"], level)

    def test_bad_priority_is_refused_by_name(self) -> None:
        """Another word, a number or nothing is refused, naming ``priority``."""
        for bad in ("urgent", "2", "", "high,low"):
            message = self.assertRefused("priority", self.stream, priority=bad)
            self.assertIn("critical", message)

    def test_durations_take_ms_s_or_seconds(self) -> None:
        """``maxLatency`` and ``maxJitter``: ``50ms``, ``0.05s`` or a bare number of seconds."""
        for text, seconds in (("50ms", 0.05), ("0.05s", 0.05), ("0.05", 0.05), ("2", 2.0),
                              ("1.5 ms", 0.0015)):
            qos = self.stream(maxLatency=text, maxJitter=text)["qos"]
            self.assertAlmostEqual(qos.max_latency, seconds)
            self.assertAlmostEqual(qos.max_jitter, seconds)

    def test_bandwidth_takes_decimal_k_m_g(self) -> None:
        """``minBandwidth`` is bits per second with a decimal ``k``, ``M`` or ``G`` suffix."""
        for text, rate in (("2M", 2_000_000), ("500k", 500_000), ("1.5G", 1_500_000_000),
                           ("64000", 64_000), ("2.5k", 2_500)):
            self.assertEqual(self.stream(minBandwidth=text)["qos"].min_bandwidth, rate)

    def test_loss_threshold_takes_percent_or_fraction(self) -> None:
        """``lossThreshold=1%`` and ``lossThreshold=0.01`` are the same; 0 and 100% are fine."""
        for text, fraction in (("1%", 0.01), ("0.01", 0.01), ("0", 0.0), ("100%", 1.0)):
            qos = self.stream(lossThreshold=text)["qos"]
            self.assertAlmostEqual(qos.loss_threshold, fraction)

    def test_qos_arguments_make_one_policy(self) -> None:
        """All four QoS arguments together make one QoSPolicy; the others stay None."""
        qos = self.stream(priority="high", minBandwidth="2M", maxLatency="50ms",
                          maxJitter="10ms", lossThreshold="1%")["qos"]
        self.assertEqual(qos, QoSPolicy(min_bandwidth=2_000_000, max_latency=0.05,
                                        max_jitter=0.01, loss_threshold=0.01))
        self.assertEqual(self.stream(maxLatency="20ms")["qos"], QoSPolicy(max_latency=0.02))

    def test_bad_qos_values_are_refused_by_argument_name(self) -> None:
        """Malformed, non-positive, infinite, out-of-range or unit-less-for-the-wrong-kind
        values are ConfigurationErrors naming the endpoint argument."""
        cases = {
            "maxLatency": ("fast", "-5ms", "0", "0ms", "inf", "nan", "50us", "", "1e300"),
            "maxJitter": ("x", "-1", "0s", "10 m"),
            "minBandwidth": ("2T", "0", "-1M", "fast", "1e400", "2 Mbit"),
            "lossThreshold": ("150%", "1.5", "-1%", "%", "one"),
        }
        for name, values in cases.items():
            for bad in values:
                self.assertRefused(name, self.stream, **{name: bad})

    def test_stream_arguments_are_client_only(self) -> None:
        """A server endpoint refuses them: the accepting side reads the opener's choice."""
        self.assertRefused("priority", self.server, "4433", priority="high")
        self.assertRefused("maxLatency", self.server, "4433", maxLatency="50ms")

    def test_through_client_from_string(self) -> None:
        """Through clientFromString the arguments reach KwikClientEndpoint as values."""
        _, client = record_endpoints(self)
        clientFromString(MemoryReactor(), "kwik:host=h:port=1:priority=critical:"
                                          "maxLatency=50ms:minBandwidth=2M:lossThreshold=1%")
        ((_, kwargs),) = client.calls
        self.assertIs(kwargs["priority"], Priority.CRITICAL)
        self.assertEqual(kwargs["qos"], QoSPolicy(min_bandwidth=2_000_000, max_latency=0.05,
                                                  loss_threshold=0.01))

    def test_real_endpoint_takes_the_stream_arguments(self) -> None:
        """The parsed values are accepted by the real KwikClientEndpoint."""
        from kwik_twisted.endpoints import KwikClientEndpoint

        client = KwikClientParser().parseStreamClient(
            MemoryReactor(), host="::1", port="4433", priority="high", maxJitter="10ms")
        self.assertIsInstance(client, KwikClientEndpoint)


class CostArgumentTests(Assertions):
    """A client's ``cost``: path costs by path number, as ``backup`` names paths."""

    def costs(self, value: str, paths: str = "127.0.0.2,127.0.0.3") -> Any:
        return self.client(host="h", port="1", paths=paths, cost=value)["costs"]

    def test_cost_names_path_numbers_and_their_costs(self) -> None:
        """``cost=0:0,1:2.5`` gives path 0 cost 0 and path 1 cost 2.5; ``N=COST`` is the same;
        without ``cost`` there is no ``costs`` key."""
        self.assertEqual(self.costs("0:0,1:2.5"), {0: 0.0, 1: 2.5})
        self.assertEqual(self.costs("2=7, 1 = 1e1"), {2: 7.0, 1: 10.0})
        self.assertEqual(self.client(host="h", port="1", cost="0:3")["costs"], {0: 3.0})
        self.assertNotIn("costs", self.client(host="h", port="1", paths="127.0.0.2"))

    def test_bad_costs_are_refused_by_name(self) -> None:
        """A path number beyond the paths, a negative, infinite or non-numeric cost, an item
        without a cost and a path given twice are refused, naming ``cost``."""
        for bad in ("3:1", "-1:1", "x:1", "1:-0.5", "1:inf", "1:nan", "1:cheap", "1", "1:",
                    "1:2,1:3", "1:2,", ":2"):
            self.assertRefused("cost", self.costs, bad)

    def test_cost_through_client_from_string(self) -> None:
        """Through clientFromString, ``\\:`` escapes the colon of an item (and ``=`` needs no
        escape); the endpoint gets ``costs``."""
        _, client = record_endpoints(self)
        clientFromString(MemoryReactor(),
                         "kwik:host=127.0.0.1:port=4433:paths=127.0.0.2:cost=0\\:1,1=5")
        ((_, kwargs),) = client.calls
        self.assertEqual(kwargs["costs"], {0: 1.0, 1: 5.0})

    def test_real_endpoint_takes_the_costs(self) -> None:
        """The parsed costs are accepted by the real KwikClientEndpoint, which keeps them as
        sorted (path number, cost) pairs."""
        from kwik_twisted.endpoints import KwikClientEndpoint

        client = KwikClientParser().parseStreamClient(
            MemoryReactor(), host="::1", port="4433", paths="::1", cost="1:5,0:0.5")
        self.assertIsInstance(client, KwikClientEndpoint)
        self.assertEqual(client._costs, ((0, 0.5), (1, 5.0)))

    def test_cost_is_a_client_argument_only(self) -> None:
        """A server endpoint string refuses ``cost``: the server does not open paths."""
        self.assertRefused("cost", self.server, "4433", cost="0:1")
