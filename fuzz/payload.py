"""
Atheris harness: decrypted payloads handled by live connections.

The input is sealed with a real peer's keys, so it passes the checksum and the AEAD and reaches
frame decoding, the frame handlers, the streams, paths and recovery of a live
:class:`~kwik_twisted.core.connection.Connection`.  The first byte picks the target:

* even: an *established* :class:`~kwik_twisted.testing.pair.MemoryPair`.  Each record of the
  input is sealed as one packet by the client (to the server) or by the server (to the client),
  delivered, and the pair exchanges datagrams until quiet; a record may also let simulated time
  pass so that timers (loss detection, PTO, idle, path validation) run on the state it made.
* odd: a fresh :class:`~kwik_twisted.core.dispatcher.ServerDispatcher`, and records sealed with
  the *initial* keys of a fixed client CID: the unauthenticated front door (connection creation,
  the TLS ClientHello, initial-key frames).  Auto headers are padded to the 1,200 bytes a first
  datagram needs.

A record is ``control (1) | length (2, big-endian) | plaintext``; at most :data:`MAX_RECORDS`.
Control bits: 0x01 Compression Info = lz4; 0x02 explicit header (Packet Type from bits 4-6 and a
Frame Count byte after the length; else an *auto* header that agrees with the frames); 0x04 let
time pass afterwards (a byte after the plaintext: ``b * 10 ms`` below 200, else ``b - 199``
seconds, so idle timeouts are reachable); 0x08 server to client (established only).

Allowed outcomes: a datagram dropped and counted, a connection closed with a typed
:class:`~kwik_twisted.errors.ProtocolError` code (its ``ConnectionTerminated``), or normal
processing.  Any exception escaping ``receive_datagram``/``handle_deadline``/``datagrams_to_send``,
an INTERNAL_ERROR or unknown close code, or a pair that never goes quiet is a finding.

Speed: a TLS handshake costs about 7 ms, so established pairs are deep copies of a template pair
(its pyOpenSSL objects shared, not copied) renewed every :data:`TEMPLATE_USES` inputs; a finding on
a copy is re-run on a freshly handshaken pair to tell whether it reproduces.

Run: ``python -m fuzz.payload [libFuzzer options] [corpus dirs]``.
"""

from __future__ import annotations

import copy
import gc

from fuzz.common import Finding, Reader, auto_header, instrumented, is_typed_code, run

with instrumented():
    from OpenSSL import SSL

    from kwik_twisted.core.crypto.protection import initial_protections
    from kwik_twisted.core.dispatcher import ServerDispatcher
    from kwik_twisted.core.entropy import SeededEntropy
    from kwik_twisted.core.recovery.loss import SentPacket
    from kwik_twisted.errors import KwikError
    from kwik_twisted.events import ConnectionTerminated
    from kwik_twisted.testing.pair import (
        CLIENT_ADDR,
        SERVER_ADDR,
        MemoryPair,
        client_config,
        server_config,
    )
    from kwik_twisted.wire import Epoch, Header, PaddingFrame, encode_packet, encode_payload

MAX_RECORDS = 8
#: Inputs served by copies of one template pair before a new handshake makes the next template.
TEMPLATE_USES = 1000
#: Exchange rounds after which a pair that still moves datagrams counts as a ping-pong loop.
MAX_ROUNDS = 400
#: Timer firings per time step after which a deadline that never moves on counts as a hang.
MAX_WAKEUPS = 2000
MIN_INITIAL = 1200
CLIENT_DCID = bytes.fromhex("c0c1c2c3c4c5c6c7")
CLIENT_SCID = bytes.fromhex("d0d1d2d3d4d5d6d7")

_CONFIGS: dict[str, object] = {}


def _configs():
    if not _CONFIGS:
        # Keep-alive off on both sides: the default keeps a connection with an open stream alive
        # for as long as its peer answers, and the harness must still reach the idle timer.
        _CONFIGS["client"] = client_config(keep_alive=None)
        _CONFIGS["server"] = server_config(keep_alive=None)
        _CONFIGS["initial"] = initial_protections(CLIENT_DCID, is_client=True)[0]
    return _CONFIGS


class _Templates:
    """An established pair, handshaken once, copied for each input."""

    def __init__(self) -> None:
        self.pair: MemoryPair | None = None
        self.memo: dict[int, object] = {}
        self.uses = 0

    def fresh(self) -> MemoryPair:
        """A pair with a handshake of its own."""
        configs = _configs()
        return MemoryPair(configs["client"], configs["server"]).handshake()

    def copy(self) -> MemoryPair:
        """A deep copy of the template (renewed every :data:`TEMPLATE_USES` copies)."""
        if self.pair is None or self.uses >= TEMPLATE_USES:
            self.pair = self.fresh()
            self.memo = {id(o): o for o in _foreign(self.pair)}
            self.uses = 0
        self.uses += 1
        return copy.deepcopy(self.pair, dict(self.memo))


def _foreign(root: object) -> list[object]:
    """The pyOpenSSL connections reachable from ``root`` (they cannot be copied)."""
    found = []
    seen = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        if isinstance(obj, SSL.Connection):
            found.append(obj)
            continue
        stack.extend(gc.get_referents(obj))
    return found


TEMPLATES = _Templates()


def target(data: bytes) -> str:
    """Run one input on a copied pair; a finding is re-checked on a fresh one."""
    try:
        return run_input(data, fresh=False)
    except Exception as e:
        try:
            run_input(data, fresh=True)
        except Exception:
            raise e from None
        raise Finding(f"only on a copied pair (not reproduced fresh): {e!r}") from e


def run_input(data: bytes, *, fresh: bool = True) -> str:
    """
    Run one input; return a summary of the outcome (``"open"``, ``"closed:<code>"``...).

    :param fresh: handshake a new pair instead of copying the template (slow; the replay tests
        use it so that each file runs alone).
    """
    if not data:
        return "empty"
    reader = Reader(data[1:])
    if data[0] & 1:
        return _initial(reader)
    pair = TEMPLATES.fresh() if fresh else TEMPLATES.copy()
    return _established(pair, reader)


def _records(reader: Reader):
    """Yield ``(control, extra byte, plaintext, time step byte)`` records."""
    for _ in range(MAX_RECORDS):
        if not reader.left:
            return
        control = reader.byte()
        length = reader.uint(2)
        count = reader.byte() if control & 0x02 else None
        plaintext = reader.take(length)
        step = reader.byte() if control & 0x04 else None
        yield control, count, plaintext, step


def _established(pair: MemoryPair, reader: Reader) -> str:
    for control, count, plaintext, step in _records(reader):
        to_client = bool(control & 0x08)
        sender = pair.server if to_client else pair.client
        datagram = _seal_as(sender, plaintext, control, count, pair.now)
        if datagram is not None:
            if to_client:
                pair.deliver_to_client(datagram)
            else:
                pair.deliver_to_server(datagram)
        _exchange(pair)
        if step is not None:
            _advance(pair, _seconds(step))
    return _verdict(pair.server_events + pair.client_events)


def _seconds(step: int) -> float:
    """The time a record's step byte lets pass."""
    return 0.01 * step if step < 200 else float(step - 199)


def _header_fields(plaintext: bytes, control: int, count: int | None, epoch: int):
    compression = control & 0x01
    if count is not None:
        return count, (control >> 4) % 6, compression
    frame_count, packet_type = auto_header(plaintext, epoch, compression)
    return frame_count, packet_type, compression


def _seal_as(sender, plaintext: bytes, control: int, count: int | None, now: float) -> bytes | None:
    """Seal ``plaintext`` as ``sender`` would on its first path (as ``forge`` does)."""
    if not sender.paths:
        return None
    path_id = 0 if 0 in sender.paths else min(sender.paths)
    path = sender.paths[path_id]
    frame_count, packet_type, compression = _header_fields(
        plaintext, control, count, Epoch.APPLICATION
    )
    seq = path.recovery.next_sequence_number
    dcid = path.dcid or sender.peer_cid
    header = Header(dcid, path_id, seq, packet_type, frame_count, compression, Epoch.APPLICATION)
    try:
        datagram = encode_packet(header, plaintext, sender.send_keys(Epoch.APPLICATION).seal)
    except KwikError:
        return None
    path.recovery.on_packet_sent(SentPacket(seq, now, len(datagram), False, False))
    return datagram


def _exchange(pair: MemoryPair) -> None:
    """Move datagrams both ways until neither side sends; a loop that never ends is a finding."""
    for _ in range(MAX_ROUNDS):
        moved = False
        for data, local, remote in pair.client.datagrams_to_send(now=pair.now):
            pair.dispatcher.receive_datagram(data, remote, local, now=pair.now)
            moved = True
        for data, local, remote in pair.dispatcher.datagrams_to_send(now=pair.now):
            pair.client.receive_datagram(data, remote, local, now=pair.now)
            moved = True
        if not moved:
            pair.pump(max_rounds=1)  # nothing left to move: this only collects the events
            return
    raise Finding(f"the pair still exchanges datagrams after {MAX_ROUNDS} rounds")


def _advance(pair: MemoryPair, seconds: float) -> None:
    """Let ``seconds`` pass, firing due timers; a deadline that never moves on is a finding."""
    end = pair.now + seconds
    stuck = 0
    while True:
        due = [
            d
            for d in (pair.client.next_deadline(), pair.dispatcher.next_deadline())
            if d is not None and d <= end
        ]
        if not due:
            break
        at = max(pair.now, min(due))
        stuck = stuck + 1 if at == pair.now else 0
        if stuck > MAX_WAKEUPS:
            raise Finding(f"a deadline stays due at {at} after {MAX_WAKEUPS} firings")
        pair.now = at
        pair.client.handle_deadline(now=at)
        pair.dispatcher.handle_deadline(now=at)
        _exchange(pair)
    pair.now = end
    _exchange(pair)


def _initial(reader: Reader) -> str:
    configs = _configs()
    servers = []
    dispatcher = ServerDispatcher(
        configs["server"], entropy=SeededEntropy(2), on_connection=servers.append
    )
    now = 1000.0
    seal = configs["initial"].seal
    for seq, (control, count, plaintext, step) in enumerate(_records(reader)):
        if count is None:
            plaintext = _padded(plaintext)
        frame_count, packet_type, compression = _header_fields(
            plaintext, control, count, Epoch.INITIAL
        )
        header = Header(
            CLIENT_DCID,
            0,
            seq,
            packet_type,
            frame_count,
            compression,
            Epoch.INITIAL,
            CLIENT_SCID,
        )
        try:
            datagram = encode_packet(header, plaintext, seal)
        except KwikError:
            continue
        dispatcher.receive_datagram(datagram, SERVER_ADDR, CLIENT_ADDR, now=now)
        dispatcher.datagrams_to_send(now=now)
        if step is not None:
            now = _advance_dispatcher(dispatcher, now, now + _seconds(step))
    events = []
    for conn in servers:
        while (event := conn.next_event()) is not None:
            events.append(event)
    return _verdict(events)


def _padded(plaintext: bytes) -> bytes:
    """``plaintext`` and a PADDING frame, at least :data:`MIN_INITIAL` bytes together."""
    missing = MIN_INITIAL - len(plaintext) - 40
    if missing <= 0:
        return plaintext
    return plaintext + encode_payload([PaddingFrame(missing)], Epoch.INITIAL).plaintext


def _advance_dispatcher(dispatcher: ServerDispatcher, now: float, end: float) -> float:
    for _ in range(MAX_WAKEUPS):
        deadline = dispatcher.next_deadline()
        if deadline is None or deadline > end:
            return end
        now = max(now, deadline)
        dispatcher.handle_deadline(now=now)
        dispatcher.datagrams_to_send(now=now)
    raise Finding(f"the dispatcher's timers fire {MAX_WAKEUPS} times without reaching {end}")


def _verdict(events: list) -> str:
    """Check every close we made has a typed code; summarise."""
    outcome = "open"
    for event in events:
        if not isinstance(event, ConnectionTerminated) or event.by_peer or event.application:
            continue
        if not is_typed_code(event.error_code):
            raise Finding(f"connection closed with an untyped or internal code: {event!r}")
        outcome = f"closed:0x{event.error_code:x}"
    return outcome


def main() -> None:
    """Fuzz :func:`target` with atheris (libFuzzer options on the command line)."""
    run(target)


if __name__ == "__main__":
    main()
