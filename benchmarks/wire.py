"""
Microseconds to encode and to decode one 1350-byte Kwik data packet carrying one STREAM frame.

Two figures each way: the codec alone (a stand-in seal that appends a 16-byte tag, so only the wire
format is measured) and the whole datagram path with AES-128-GCM.  Encoding is measured through
``encode_packet`` (a :class:`Header`) and through ``encode_application_packet`` (the sender's
per-packet call, ``encode_fast_*``).  The packet is a short-envelope (RFC 8999) application packet
on path 3: the path ID only enters the nonce, and the receiver opens with the path its DCID names.
Run: ``python benchmarks/wire.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kwik_twisted.core.crypto.protection import PacketProtection  # noqa: E402
from kwik_twisted.wire import (  # noqa: E402
    TAG_LENGTH,
    Epoch,
    Header,
    StreamFrame,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
)
from kwik_twisted.wire.packets import SHORT_BYTES, encode_application_packet  # noqa: E402

DATAGRAM = 1350
DCID = bytes(range(8))
#: The path the packets travel on: not on the wire, only in the nonce.
PATH_ID = 3


def _fake_seal(path_id: int, seq: int, aad: bytes, plaintext: bytes) -> bytes:
    return plaintext + bytes(TAG_LENGTH)


def _fake_open(path_id: int, seq: int, aad: bytes, ciphertext) -> memoryview:
    return ciphertext[:-TAG_LENGTH]


def _data_len() -> int:
    """Stream bytes that make the datagram exactly 1350 bytes."""
    for n in range(1400, 0, -1):
        payload = encode_payload([StreamFrame(4, 1 << 20, bytes(n))])
        header = Header(DCID, PATH_ID, 1000, payload.packet_type, payload.frame_count)
        if len(encode_packet(header, payload.plaintext, _fake_seal)) <= DATAGRAM:
            return n
    raise RuntimeError("no size fits")


def make_case(seal):
    data = os.urandom(_data_len())

    def encode() -> bytes:
        payload = encode_payload([StreamFrame(4, 1 << 20, data)])
        header = Header(
            DCID, PATH_ID, 1000, payload.packet_type, payload.frame_count, payload.compression
        )
        return encode_packet(header, payload.plaintext, seal)

    def encode_fast() -> bytes:
        payload = encode_payload([StreamFrame(4, 1 << 20, data)])
        return encode_application_packet(
            DCID, PATH_ID, 1000, payload.packet_type, payload.frame_count, payload.compression,
            payload.plaintext, seal,
        )

    return encode, encode_fast


def make_decode(datagram: bytes, open_):
    def decode():
        packet = decode_packet(datagram)
        h = packet.header
        # h.path_id is 0: the receiver knows the path from the DCID (its CID table).
        plaintext = open_(PATH_ID, h.seq, packet.aad, packet.payload)
        return decode_payload(
            plaintext,
            frame_count=h.frame_count,
            packet_type=h.packet_type,
            compression=h.compression,
            epoch=h.epoch,
        )

    return decode


def measure(fn, number: int, repeat: int) -> tuple[float, float]:
    """Median and spread (max - min) in microseconds per call."""
    fn()
    times = [t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=repeat)]
    return statistics.median(times), max(times) - min(times)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    aead = PacketProtection(bytes(16), bytes(12))
    results = {}
    for label, seal, open_ in (
        ("codec", _fake_seal, _fake_open),
        ("aes-gcm", aead.seal, aead.open),
    ):
        encode, encode_fast = make_case(seal)
        datagram = encode()
        assert len(datagram) == DATAGRAM, len(datagram)
        assert datagram == encode_fast(), "the two encoders must build the same datagram"
        assert datagram[0] in SHORT_BYTES, "a short-envelope packet"
        header = decode_packet(datagram).header
        assert (header.epoch, header.path_id) == (Epoch.APPLICATION, 0), header
        results[f"encode_{label}_us"] = measure(encode, args.number, args.repeat)
        results[f"encode_fast_{label}_us"] = measure(encode_fast, args.number, args.repeat)
        results[f"decode_{label}_us"] = measure(
            make_decode(datagram, open_), args.number, args.repeat
        )
    if args.json:
        print(json.dumps({k: v[0] for k, v in results.items()}))
    else:
        print(f"one {DATAGRAM}-byte data packet, one STREAM frame (median of {args.repeat} runs)")
        for name, (median, spread) in results.items():
            print(f"  {name:<22} {median:6.2f} us   (spread {spread:.2f})")
    return results


if __name__ == "__main__":
    main()
