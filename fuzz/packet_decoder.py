"""
Atheris harness: the wire decoders, from raw datagrams down to single control-frame bodies.

The first input byte picks a mode (``byte % 5``); the rest is carved by :class:`~.common.Reader`:

0. ``raw``: the bytes are a datagram: :func:`peek_dcid`, :func:`decode_packet` (whose header
   must have path 0 and the DCID peek_dcid found), then an AEAD open with a fixed key and with
   the initial keys of its DCID (which only a forgery of luck passes).
1. ``sealed``: a header chosen by the input (key epoch, path ID for the nonce (0 under initial
   keys), sequence number, key phase or token, packet type, frame count, compression info, or an
   *auto* header that agrees with the frames) seals the rest as plaintext with a fixed
   AES-128-GCM key; the datagram is decoded, opened with the path ID the receiver would know
   (the wire does not carry it) and its payload decoded, so the frame decoders run past the
   checksum and the AEAD.  A payload that decodes is re-encoded and must decode to the same
   frames.
2. ``tampered``: as ``sealed``, then the input XORs a mask over the datagram and the checksum is
   recomputed, so header corruption reaches the parser and the AEAD instead of the CRC.
3. ``control``: one control-frame body (type from the input) through its ``decode_body``; what
   decodes must round-trip through ``encode_body``.
4. ``frame``: :func:`~kwik_twisted.wire.frames.pull_frame` at offset 0, either key epoch and
   compression info.

Success and errors of :mod:`kwik_twisted.errors` are the allowed outcomes; any other exception,
and any round trip that changes the frames (:class:`~.common.Finding`), is a finding.

Run: ``python -m fuzz.packet_decoder [libFuzzer options] [corpus dirs]``.
"""

from __future__ import annotations

from zlib import crc32

from fuzz.common import Finding, Reader, auto_header, instrumented, run

with instrumented():
    from kwik_twisted.core.crypto.protection import PacketProtection, initial_protections
    from kwik_twisted.errors import KwikError
    from kwik_twisted.wire import (
        MAX_TOKEN_LENGTH,
        Epoch,
        Header,
        decode_packet,
        decode_payload,
        encode_header,
        encode_packet,
        encode_payload,
        peek_dcid,
    )
    from kwik_twisted.wire.control import CONTROL_FRAME_CLASSES
    from kwik_twisted.wire.frames import pull_frame

#: A fixed application key (16 bytes) and IV (12 bytes): the harness's "peer".
KEY = PacketProtection(bytes(range(16)), bytes(range(100, 112)))
DCID = bytes.fromhex("0102030405060708")
SCID = bytes.fromhex("a1a2a3a4a5a6a7a8")
MODES = ("raw", "sealed", "tampered", "control", "frame")


def target(data: bytes) -> str:
    """Run one input; return the outcome (``"ok"`` or the typed error's class name)."""
    if not data:
        return "empty"
    mode = MODES[data[0] % len(MODES)]
    try:
        _RUNNERS[mode](Reader(data[1:]))
    except KwikError as e:
        return type(e).__name__
    return "ok"


def _raw(reader: Reader) -> None:
    datagram = reader.rest()
    try:
        peeked = peek_dcid(datagram)
    except KwikError:
        peeked = None
    packet = decode_packet(datagram)
    header = packet.header
    if peeked != header.dcid or header.path_id != 0:
        raise Finding(f"peek_dcid gave {peeked!r}, decode_packet {header!r}")
    opener = KEY
    if header.epoch == Epoch.INITIAL:
        opener = initial_protections(header.dcid, is_client=False)[1]
    opener.open(header.path_id, header.seq, packet.aad, packet.payload)


def _header(reader: Reader) -> tuple[Header, bytes]:
    """A header and a plaintext carved from the input.

    Flags byte: 0x01 initial keys, 0x02 lz4, 0x04 explicit Packet Type and Frame Count, 0x08
    one-byte path ID (else four; ignored under initial keys: path 0), 0x10 one-byte sequence
    number (else eight), 0x20 key phase 1 (application) or a token (initial: a length byte, then
    the token, at most :data:`MAX_TOKEN_LENGTH` bytes).
    """
    flags = reader.byte()
    epoch = Epoch.INITIAL if flags & 0x01 else Epoch.APPLICATION
    compression = (flags >> 1) & 0x01
    path_id = reader.byte() if flags & 0x08 else reader.uint(4)
    seq = reader.uint(1 if flags & 0x10 else 8)
    key_phase, token = 0, b""
    if flags & 0x20:
        if epoch == Epoch.INITIAL:
            token = reader.take(reader.byte() % (MAX_TOKEN_LENGTH + 1))
        else:
            key_phase = 1
    if flags & 0x04:  # explicit Packet Type and Frame Count
        packet_type = reader.byte() % 6
        frame_count = reader.byte()
        plaintext = reader.rest()
    else:
        plaintext = reader.rest()
        frame_count, packet_type = auto_header(plaintext, epoch, compression)
    scid = None
    if epoch == Epoch.INITIAL:
        scid, path_id = SCID, 0  # a long envelope is always path 0
    header = Header(
        DCID, path_id, seq, packet_type, frame_count, compression, epoch, scid,
        key_phase=key_phase, token=token,
    )
    return header, plaintext


def _decode_sealed(datagram: bytes, path_id: int) -> None:
    """Decode and open ``datagram`` as a receiver that knows its DCID is on ``path_id``."""
    packet = decode_packet(datagram)
    header = packet.header
    plaintext = KEY.open(path_id, header.seq, packet.aad, packet.payload)
    frames = decode_payload(
        plaintext,
        frame_count=header.frame_count,
        packet_type=header.packet_type,
        compression=header.compression,
        epoch=header.epoch,
    )
    _round_trip(frames, header.epoch)


def _round_trip(frames: list, epoch: int) -> None:
    """Frames that decoded must re-encode, and decode to themselves."""
    payload = encode_payload(frames, epoch)
    again = decode_payload(
        payload.plaintext,
        frame_count=payload.frame_count,
        packet_type=payload.packet_type,
        compression=payload.compression,
        epoch=epoch,
    )
    if again != frames:
        raise Finding(f"payload round trip changed the frames: {frames!r} -> {again!r}")


def _sealed(reader: Reader) -> None:
    header, plaintext = _header(reader)
    _decode_sealed(encode_packet(header, plaintext, KEY.seal), header.path_id)


def _tampered(reader: Reader) -> None:
    mask_length = reader.byte() % 48
    mask = reader.take(mask_length)
    header, plaintext = _header(reader)
    datagram = bytearray(encode_packet(header, plaintext, KEY.seal))
    _, at = encode_header(header, len(plaintext) + 16)
    for i, value in enumerate(mask):
        if i < len(datagram) and not at <= i < at + 4:
            datagram[i] ^= value
    checksum = crc32(datagram[at + 4 :], crc32(datagram[:at]))
    datagram[at : at + 4] = checksum.to_bytes(4, "big")
    _decode_sealed(bytes(datagram), header.path_id)


def _control(reader: Reader) -> None:
    cls = CONTROL_FRAME_CLASSES.get(reader.byte() % 0x18)
    if cls is None:
        return
    body = memoryview(reader.rest())
    frame = cls.decode_body(body, 0, len(body))
    buf = bytearray()
    frame.encode_body(buf)
    again = cls.decode_body(memoryview(bytes(buf)), 0, len(buf))
    if again != frame:
        raise Finding(f"control body round trip changed {frame!r} into {again!r}")


def _frame(reader: Reader) -> None:
    flags = reader.byte()
    epoch = Epoch.INITIAL if flags & 0x01 else Epoch.APPLICATION
    compression = (flags >> 1) & 0x01
    data = memoryview(reader.rest())
    pos = 0
    for _ in range(64):
        if pos >= len(data):
            break
        _, pos, _ = pull_frame(data, pos, epoch, compression)


_RUNNERS = {
    "raw": _raw,
    "sealed": _sealed,
    "tampered": _tampered,
    "control": _control,
    "frame": _frame,
}


def main() -> None:
    """Fuzz :func:`target` with atheris (libFuzzer options on the command line)."""
    run(target)


if __name__ == "__main__":
    main()
