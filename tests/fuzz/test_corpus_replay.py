"""
The checked-in fuzz corpus, replayed through the harnesses' own targets in the default suite.

Every file under ``fuzz/corpus/<harness>/`` goes through the function atheris fuzzes
(:func:`fuzz.packet_decoder.target`, :func:`fuzz.payload.run_input` on a freshly handshaken pair):
the only allowed outcomes are success or an error of :mod:`kwik_twisted.errors` (for the payload
harness: a drop, a close with a typed code, or normal processing), each within a time bound.  A
few files have their outcome pinned, so a decoder or a connection that stops refusing a hostile
shape fails here even though it raises nothing.  Reproducers of open findings live in
``fuzz/findings/``, outside the replayed directories (see ``docs/fuzzing.rst``).
"""

from __future__ import annotations

import os
import time

from twisted.trial.unittest import SynchronousTestCase

from fuzz import packet_decoder, payload

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "fuzz", "corpus")
#: Seconds one corpus file may take (a fresh handshake is about 10 ms; this is a hang guard).
TIME_BOUND = 5.0
MAX_FILE_SIZE = 4096


def corpus(harness: str) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of every file in a harness's corpus directory, sorted."""
    directory = os.path.join(CORPUS, harness)
    files = []
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            files.append((name, f.read()))
    return files


class CorpusShapeTests(SynchronousTestCase):
    """The corpus is what docs/fuzzing.rst promises: small crafted files, a few dozen each."""

    def test_each_harness_has_a_few_dozen_small_files(self):
        """Both directories hold at least 30 ``.bin`` files, each under 4 KiB."""
        for harness in ("packet_decoder", "payload"):
            files = corpus(harness)
            self.assertGreaterEqual(len(files), 30, harness)
            for name, data in files:
                self.assertTrue(name.endswith(".bin"), name)
                self.assertLess(len(data), MAX_FILE_SIZE, name)


class ReplayMixin:
    """Runs every file of one harness's corpus and checks outcome and time."""

    harness: str
    #: Files whose outcome is pinned: name -> outcome string of the target.
    pinned: dict[str, str] = {}

    def run_target(self, data: bytes) -> str:
        raise NotImplementedError

    def replay(self) -> dict[str, str]:
        """Run every file; an untyped exception propagates and fails the test."""
        outcomes = {}
        for name, data in corpus(self.harness):
            started = time.perf_counter()
            outcomes[name] = self.run_target(data)
            elapsed = time.perf_counter() - started
            self.assertLess(elapsed, TIME_BOUND, f"{name} took {elapsed:.1f} s")
        return outcomes

    def test_every_file_ends_in_success_or_a_typed_error(self):
        """Each corpus file runs to success or a typed error, in bounded time."""
        outcomes = self.replay()
        self.assertEqual(len(outcomes), len(corpus(self.harness)))

    def test_pinned_files_keep_their_outcome(self):
        """The hostile shapes with a pinned outcome are still refused exactly that way."""
        outcomes = self.replay()
        for name, expected in self.pinned.items():
            self.assertEqual(outcomes[name], expected, name)


class PacketDecoderReplayTests(ReplayMixin, SynchronousTestCase):
    """``fuzz/corpus/packet_decoder``: datagrams, sealed payloads, frames, control bodies."""

    harness = "packet_decoder"
    pinned = {
        "raw_app_ping_datagram.bin": "ok",
        "raw_client_first_datagram.bin": "ok",
        "raw_bad_checksum.bin": "ChecksumMismatch",
        "raw_bad_version.bin": "UnsupportedVersion",
        "raw_version_negotiation.bin": "UnsupportedVersion",
        "raw_app_ping_key_phase_1.bin": "ok",
        "raw_initial_with_max_token.bin": "ok",
        "raw_no_fixed_bit.bin": "MalformedPacket",
        "raw_reserved_envelope_flags.bin": "MalformedPacket",
        "raw_long_reserved_bits.bin": "MalformedPacket",
        "raw_retry_is_not_a_packet.bin": "MalformedPacket",
        "raw_long_dcid_length_9.bin": "MalformedPacket",
        "raw_token_too_long.bin": "MalformedPacket",
        "sealed_initial_with_token.bin": "ok",
        "sealed_other_path_nonce.bin": "ok",
        "control_new_connection_id_path_over_2_32.bin": "FrameEncodingError",
        "sealed_every_control_frame.bin": "ok",
        "sealed_stream_lz4.bin": "ok",
        "sealed_ack_256_ranges.bin": "ok",
        "sealed_ack_huge_ranges.bin": "FrameEncodingError",
        "sealed_lz4_bomb_claims_more.bin": "CompressionError",
        "sealed_lz4_size_over_bound.bin": "CompressionError",
        "sealed_lz4_packet_bound_exceeded.bin": "CompressionError",
        "sealed_frame_checksum_mismatch.bin": "ChecksumError",
        "sealed_unknown_critical_extension.bin": "UnknownExtensionError",
        "sealed_stream_under_initial_keys.bin": "ProtocolViolation",
        "tampered_flip_dcid.bin": "DecryptionFailed",
        "tampered_flip_sequence_number.bin": "DecryptionFailed",
        "tampered_flip_key_phase.bin": "DecryptionFailed",
    }

    def run_target(self, data: bytes) -> str:
        return packet_decoder.target(data)


class PayloadReplayTests(ReplayMixin, SynchronousTestCase):
    """``fuzz/corpus/payload``: frames sealed with a live peer's keys, and initial-key packets."""

    harness = "payload"
    pinned = {
        "est_ping.bin": "open",
        "est_stream_lz4.bin": "open",
        "est_lz4_bomb.bin": "open",
        "est_ack_huge_ranges.bin": "closed:0x7",
        "est_ack_never_sent.bin": "closed:0xa",
        "est_lz4_packet_bound_exceeded.bin": "closed:0x12",
        "est_stream_beyond_window.bin": "closed:0x3",
        "est_path_abandon_only_path.bin": "closed:0xa",
        "est_path_abandon_only_path_then_error.bin": "closed:0xa",
        "est_stream_beyond_max_streams.bin": "closed:0x4",
        "est_final_size_changed.bin": "closed:0x6",
        "est_handshake_beyond_buffer.bin": "closed:0xd",
        "est_data_then_idle_timeout.bin": "closed:0x14",
        "init_client_hello.bin": "open",
        "init_stream_under_initial_keys.bin": "closed:0xa",
    }

    def run_target(self, data: bytes) -> str:
        return payload.run_input(data, fresh=True)
