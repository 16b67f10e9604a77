"""
Batched UDP socket I/O for the Twisted glue: Linux UDP GSO and GRO, with a plain fallback.

Theory of operation.  :class:`BatchingPort` is Twisted's UDP port with two additions.  Reading,
it drains the socket in one loop like Twisted's (bounded by ``maxThroughput`` bytes and
``maxReads`` system calls); with ``UDP_GRO`` enabled the kernel may hand several datagrams of one
flow over in one ``recvmsg``, with their segment size in a control message, and the port splits
them back, in order, before ``datagramReceived``.  Once the loop ends, a protocol that provides
:class:`~kwik_twisted.glue.interfaces.IReadBatchObserver` is told (``readBatchEnded()``), so it
can flush once per batch at once instead of on the next reactor turn.  Sending,
:meth:`BatchingPort.sendBatch` hands runs of equal-sized datagrams to one destination (the last
may be shorter) to one ``sendmsg`` with a ``UDP_SEGMENT`` control message; the kernel (or the NIC)
cuts them into datagrams.  Anything else goes out one ``sendto`` each.
The port provides :class:`~kwik_twisted.glue.interfaces.IBatchingUDPTransport`, which is how the
glue knows it may hand it a batch (:func:`send_batch`).

Linux ABI: ``SOL_UDP`` (17), ``UDP_SEGMENT`` (103, kernel 4.18; cmsg an unsigned short),
``UDP_GRO`` (104, kernel 5.0; cmsg an int).  A GSO send carries at most 64 segments (older kernels'
limit; recent ones take 128) and 65507 bytes of payload (65527 over IPv6).  The kernel refuses
a GSO send it cannot segment with EINVAL (segment larger than the route's MTU, too many segments,
checksums disabled) or EIO (UDP-Lite, IPsec, no checksum offload on older kernels): the port
resends that batch unsegmented and stops using GSO (for that segment size and larger on EINVAL with
a segment over :data:`SAFE_SEGMENT`, else for good).  Elsewhere (another OS, an older kernel, a
reactor without file descriptors) everything takes the plain path.  See ``udp(7)`` and the kernel's
``tools/testing/selftests/net/udpgso*.c``.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from twisted.internet import abstract, error, udp
from twisted.internet.interfaces import IHalfCloseableDescriptor, IReactorFDSet
from twisted.logger import Logger
from zope.interface import implementer

from .interfaces import IBatchingUDPTransport, IReadBatchObserver

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
#: Segments per GSO send (UDP_MAX_SEGMENTS: 64 on older kernels, 128 on recent ones).
MAX_SEGMENTS = 64
#: UDP payload of one GSO send: 65535 - 20 (IPv4 header) - 8 (UDP header); IPv6 allows 65527.
MAX_GSO_PAYLOAD = {socket.AF_INET: 65507, socket.AF_INET6: 65527}
#: A segment size every path carries (IPv6 minimum MTU 1280 - 48 - headroom): an EINVAL for a
#: segment this small cannot be the MTU's doing, so GSO is off for good.
SAFE_SEGMENT = 1200
#: Read buffer when GRO may coalesce: the largest UDP payload.
GRO_BUFFER = 65535
#: Socket buffers asked of the kernel (it caps them at net.core.[rw]mem_max).
SOCKET_BUFFER = 4 * 1024 * 1024
#: Linux socket options that forbid IP fragmentation (``ip(7)``, ``ipv6(7)``): with
#: ``IP_PMTUDISC_DO`` the kernel sets DF and refuses with EMSGSIZE a datagram larger than the
#: route's MTU as it knows it (the interface's, or less once an ICMP "fragmentation needed" /
#: "packet too big" arrived): the feedback path MTU discovery gets through Twisted.
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DO = getattr(socket, "IP_PMTUDISC_DO", 2)
IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
IPV6_PMTUDISC_DO = getattr(socket, "IPV6_PMTUDISC_DO", 2)
IPV6_DONTFRAG = getattr(socket, "IPV6_DONTFRAG", 62)
#: EMSGSIZE sizes a port remembers until the glue collects them.
MAX_TOO_BIG = 64

_GRO_CMSG_SPACE = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
_READ_IGNORE = frozenset((errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR))
_SEND_DROP = frozenset((errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS))
_GSO_REFUSED = frozenset((errno.EIO, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOPROTOOPT))
_SEGMENT_CMSG: dict[int, list] = {}
_support: dict[str, bool] = {}

log = Logger()


def _probe(name: str, attempt) -> bool:
    if name not in _support:
        ok = False
        if sys.platform.startswith("linux") and hasattr(socket.socket, "sendmsg"):
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    attempt(sock)
                ok = True
            except OSError:
                ok = False
        _support[name] = ok
    return _support[name]


def gso_supported() -> bool:
    """Whether this kernel knows ``UDP_SEGMENT`` (Linux 4.18+); probed once, then cached."""
    return _probe("gso", lambda sock: sock.getsockopt(SOL_UDP, UDP_SEGMENT))


def gro_supported() -> bool:
    """Whether this kernel accepts ``UDP_GRO`` (Linux 5.0+); probed once, then cached."""
    return _probe("gro", lambda sock: sock.setsockopt(SOL_UDP, UDP_GRO, 1))


def _segment_cmsg(size: int) -> list:
    cmsg = _SEGMENT_CMSG.get(size)
    if cmsg is None:
        cmsg = _SEGMENT_CMSG[size] = [(SOL_UDP, UDP_SEGMENT, struct.pack("H", size))]
    return cmsg


def _gro_segment(ancdata: list) -> int:
    """The GRO segment size a ``recvmsg`` reported, or 0."""
    for level, kind, value in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
            return int.from_bytes(value[:4], sys.byteorder)
    return 0


@dataclass(slots=True)
class BatchStats:
    """What a :class:`BatchingPort` did (counts since it was made)."""

    #: Datagrams handed to ``datagramReceived``.
    datagramsRead: int = 0
    #: ``doRead`` calls that delivered at least one datagram (each ends with ``readBatchEnded``).
    readBatches: int = 0
    #: Reads that carried more than one datagram (GRO coalesced them).
    coalescedReads: int = 0
    #: ``sendmsg`` calls with ``UDP_SEGMENT`` that the kernel accepted.
    sendmsgCalls: int = 0
    #: Datagrams sent inside those calls.
    gsoSegments: int = 0
    #: Datagrams sent one system call each.
    plainSends: int = 0
    #: GSO sends the kernel refused, resent unsegmented.
    fallbacks: int = 0
    #: Datagrams not sent: full buffers (EAGAIN, ENOBUFS), too large (EMSGSIZE), refused.
    dropped: int = 0
    #: Of those, the ones too large for the route (EMSGSIZE), reported to path MTU discovery.
    tooBig: int = 0

    def as_dict(self) -> dict:
        """The counters as a dict."""
        return asdict(self)


@implementer(IHalfCloseableDescriptor, IBatchingUDPTransport)
class BatchingPort(udp.Port):
    """
    A UDP port reading and writing in batches: GRO when reading, GSO in :meth:`sendBatch`.

    It also survives what closes Twisted's own port under the poll and epoll reactors (Twisted
    issue 6287): an ICMP error on a connected socket raises only POLLERR, which those reactors take
    for the end of the descriptor; here it becomes ``connectionRefused()`` and reading goes on.

    :ivar groEnabled: whether the socket has ``UDP_GRO`` on (known once listening).
    :ivar gsoEnabled: whether :meth:`sendBatch` still uses ``UDP_SEGMENT``.
    :ivar gsoLimit: segments of this size or more are not sent with GSO (the kernel refused one).
    :ivar stats: the :class:`BatchStats` counters.
    :ivar tooBig: sizes of the datagrams refused with EMSGSIZE since the glue last took them
        (:func:`take_too_big`), at most :data:`MAX_TOO_BIG`.
    :ivar maxReads: system calls per ``doRead``, besides Twisted's ``maxThroughput`` bytes.
    """

    maxReads = 256

    def __init__(
        self,
        port: int,
        proto,
        interface: str = "",
        maxPacketSize: int = 65535,
        reactor=None,
        *,
        gro: bool = True,
        gso: bool = True,
    ) -> None:
        super().__init__(port, proto, interface, maxPacketSize, reactor)
        self.groWanted = gro
        self.gsoWanted = gso
        self.groEnabled = False
        self.gsoEnabled = False
        self.gsoLimit = 1 << 16
        self.stats = BatchStats()
        self.tooBig: list[int] = []

    def _bindSocket(self) -> None:
        super()._bindSocket()
        self.gsoEnabled = bool(self.gsoWanted and gso_supported())
        if self.groWanted and gro_supported() and _GRO_CMSG_SPACE:
            try:
                self.socket.setsockopt(SOL_UDP, UDP_GRO, 1)
                self.groEnabled = True
            except OSError:
                self.groEnabled = False

    # -- reading ---------------------------------------------------------------------

    def doRead(self) -> None:
        """Read what the socket has (a bounded batch), then call ``readBatchEnded()``."""
        stats = self.stats
        before = stats.datagramsRead
        try:
            if self.groEnabled:
                self._readCoalesced()
            else:
                self._readPlain()
        finally:
            if stats.datagramsRead != before:
                stats.readBatches += 1
                self._batchEnded()

    def _batchEnded(self) -> None:
        protocol = self.protocol
        if IReadBatchObserver.providedBy(protocol):
            try:
                protocol.readBatchEnded()
            except BaseException:
                log.failure("readBatchEnded of {protocol} failed", protocol=protocol)

    def _readPlain(self) -> None:
        recvfrom, size = self.socket.recvfrom, self.maxPacketSize
        v6 = self.addressFamily == socket.AF_INET6
        read = calls = 0
        while read < self.maxThroughput and calls < self.maxReads:
            try:
                data, addr = recvfrom(size)
            except OSError as e:
                self._readFailed(e)
                return
            read += len(data)
            calls += 1
            self._deliver(data, addr[:2] if v6 else addr)

    def _readCoalesced(self) -> None:
        recvmsg, size = self.socket.recvmsg, max(self.maxPacketSize, GRO_BUFFER)
        v6 = self.addressFamily == socket.AF_INET6
        read = calls = 0
        while read < self.maxThroughput and calls < self.maxReads:
            try:
                data, ancdata, flags, addr = recvmsg(size, _GRO_CMSG_SPACE)
            except OSError as e:
                self._readFailed(e)
                return
            read += len(data)
            calls += 1
            if v6:
                addr = addr[:2]
            segment = _gro_segment(ancdata) if ancdata else 0
            if segment and len(data) > segment:
                self._deliverSegments(data, segment, flags, addr)
            else:
                self._deliver(data, addr)

    def _deliverSegments(self, data: bytes, segment: int, flags: int, addr: tuple) -> None:
        end = len(data)
        if flags & socket.MSG_TRUNC:
            end -= end % segment  # the last segment was cut: drop it
        self.stats.coalescedReads += 1
        for start in range(0, end, segment):
            self._deliver(data[start : start + segment], addr)

    def _deliver(self, data: bytes, addr: tuple) -> None:
        self.stats.datagramsRead += 1
        try:
            self.protocol.datagramReceived(data, addr)
        except BaseException:
            log.failure("datagramReceived of {protocol} failed", protocol=self.protocol)

    def readConnectionLost(self, reason) -> None:
        """
        The reactor saw an error condition and no data: a pending ICMP error, not the end.

        Reading it (``SO_ERROR``) clears it; ECONNREFUSED on a connected port becomes
        ``connectionRefused()``.  With no pending error to clear, the port closes as Twisted's.
        """
        if not self.connected:
            return
        try:
            code = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            code = 0
        if not code:
            self.connectionLost(reason)
            return
        self.startReading()
        if code == errno.ECONNREFUSED and self._connectedAddr:
            self.protocol.connectionRefused()

    def _readFailed(self, e: OSError) -> None:
        if e.errno in _READ_IGNORE:
            return
        if e.errno == errno.ECONNREFUSED:
            if self._connectedAddr:
                self.protocol.connectionRefused()
            return
        raise e

    # -- writing ---------------------------------------------------------------------

    def sendBatch(self, datagrams: Sequence[bytes], addr: tuple | None = None) -> int:
        """
        Send ``datagrams`` to ``addr`` (``None`` or the connected address on a connected port).

        Runs of equal sizes (the last may be shorter) go in one GSO ``sendmsg`` each; the rest one
        ``sendto`` each.  Datagrams the kernel cannot take (full buffers, too large, refused) are
        dropped and counted, as UDP would; other socket errors are raised, as ``write`` does, the
        datagrams before them sent.  Returns how many datagrams the kernel took.

        :raises InvalidAddressError: ``addr`` is not an IP address of the port's family, or not
            the connected address.
        """
        target = self._target(addr)
        n = len(datagrams)
        if not self.gsoEnabled or n < 2:
            return sum(self._sendOne(data, target) for data in datagrams)
        sent = i = 0
        while i < n:
            j, size = self._run(datagrams, i)
            if j - i > 1:
                sent += self._sendSegmented(datagrams[i:j], size, target)
            else:
                sent += self._sendOne(datagrams[i], target)
            i = j
        return sent

    def _run(self, datagrams: Sequence[bytes], i: int) -> tuple[int, int]:
        """The end of the GSO run starting at ``i`` and its segment size."""
        size = len(datagrams[i])
        if not size or size >= self.gsoLimit:
            return i + 1, size
        cap = i + min(MAX_SEGMENTS, MAX_GSO_PAYLOAD[self.addressFamily] // size)
        n = min(len(datagrams), cap)
        j = i + 1
        while j < n and len(datagrams[j]) == size:
            j += 1
        if (
            j < len(datagrams)
            and j - i < MAX_SEGMENTS
            and 0 < len(datagrams[j]) < size
            and (j - i) * size + len(datagrams[j]) <= MAX_GSO_PAYLOAD[self.addressFamily]
        ):  # a shorter last segment, if the whole still fits one GSO send
            j += 1
        return j, size

    def _target(self, addr: tuple | None) -> tuple | None:
        connected = self._connectedAddr
        if connected:
            if addr is not None and addr != connected:
                raise error.InvalidAddressError(addr[0], f"the port is connected to {connected}")
            return None
        if addr is None:
            raise error.InvalidAddressError(None, "an unconnected port needs an address")
        host = addr[0]
        if self.addressFamily == socket.AF_INET6:
            ok = abstract.isIPv6Address(host)
        else:
            ok = abstract.isIPAddress(host)
        if not ok:
            raise error.InvalidAddressError(host, "not an IP address of the port's family")
        return addr

    def _sendOne(self, data: bytes, target: tuple | None) -> int:
        while True:
            try:
                if target is None:
                    self.socket.send(data)
                else:
                    self.socket.sendto(data, target)
                self.stats.plainSends += 1
                return 1
            except OSError as e:
                if e.errno != errno.EINTR:
                    return self._sendFailed(e, 1, len(data))

    def _sendSegmented(self, chunk: Sequence[bytes], size: int, target: tuple | None) -> int:
        cmsg = _segment_cmsg(size)
        while True:
            try:
                if target is None:
                    self.socket.sendmsg(chunk, cmsg)
                else:
                    self.socket.sendmsg(chunk, cmsg, 0, target)
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                if e.errno in _GSO_REFUSED or e.errno == errno.EMSGSIZE:
                    return self._unsegmented(chunk, size, target, e)
                return self._sendFailed(e, len(chunk))
            stats = self.stats
            stats.sendmsgCalls += 1
            stats.gsoSegments += len(chunk)
            return len(chunk)

    def _unsegmented(self, chunk: Sequence[bytes], size: int, target, e: OSError) -> int:
        """The kernel refused a GSO send: stop using GSO as far as needed; resend one by one."""
        if e.errno in _GSO_REFUSED:
            log.info(
                "UDP GSO refused ({error}) for {size}-byte segments; sending them unsegmented",
                error=errno.errorcode.get(e.errno, e.errno), size=size,
            )
            if e.errno == errno.EINVAL and size > SAFE_SEGMENT:
                self.gsoLimit = min(self.gsoLimit, size)
            else:
                self.gsoEnabled = False
        self.stats.fallbacks += 1
        return sum(self._sendOne(data, target) for data in chunk)

    def _sendFailed(self, e: OSError, count: int, size: int = 0) -> int:
        if e.errno == errno.EMSGSIZE:
            self.stats.dropped += count
            self.stats.tooBig += count
            if size and len(self.tooBig) < MAX_TOO_BIG:
                self.tooBig.append(size)
            return 0
        if e.errno in _SEND_DROP:
            self.stats.dropped += count
            return 0
        if e.errno == errno.ECONNREFUSED:
            self.stats.dropped += count
            if self._connectedAddr:
                self.protocol.connectionRefused()
            return 0
        raise e


def listenBatchingUDP(
    reactor,
    port: int,
    protocol,
    interface: str = "",
    maxPacketSize: int = 65535,
    gro: bool = True,
    gso: bool = True,
):
    """
    Listen on UDP ``port`` with a :class:`BatchingPort`, as ``reactor.listenUDP`` would.

    A reactor without file descriptors (``IReactorFDSet``: IOCP...) gets its own port from
    ``listenUDP``; :func:`send_batch` sends through either.

    :raises CannotListenError: the address cannot be bound.
    """
    if not IReactorFDSet.providedBy(reactor):
        return reactor.listenUDP(port, protocol, interface=interface, maxPacketSize=maxPacketSize)
    p = BatchingPort(port, protocol, interface, maxPacketSize, reactor, gro=gro, gso=gso)
    p.startListening()
    return p


def send_batch(transport, datagrams: Sequence[bytes], addr: tuple | None = None) -> int:
    """
    Send ``datagrams`` through any UDP transport: ``sendBatch`` if it provides
    :class:`~kwik_twisted.glue.interfaces.IBatchingUDPTransport`, else ``write`` each.
    """
    if IBatchingUDPTransport.providedBy(transport):
        return transport.sendBatch(datagrams, addr)
    for data in datagrams:
        transport.write(data, addr)
    return len(datagrams)


def enlarge_buffers(port) -> None:
    """Ask for large socket buffers: a burst of datagrams must not overflow the receiver's queue.
    Also forbid IP fragmentation (:func:`forbid_fragmentation`)."""
    sock = getattr(port, "socket", None)
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        except OSError:
            pass
    forbid_fragmentation(sock)


def forbid_fragmentation(sock) -> bool:
    """
    Set DF on ``sock``'s datagrams (RFC 9000 §14: QUIC datagrams are never fragmented): a datagram
    larger than the route's MTU is refused with EMSGSIZE, which path MTU discovery hears of
    (:func:`take_too_big`), instead of going out in fragments.  Linux only; elsewhere (or if the
    kernel refuses) nothing changes.  Returns whether it was set.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_DONTFRAG, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    except (OSError, AttributeError):
        return False
    return True


def take_too_big(transport) -> list[int]:
    """The sizes of the datagrams ``transport`` refused with EMSGSIZE since the last call (only a
    :class:`BatchingPort` tells; another transport gives ``[]``)."""
    sizes = getattr(transport, "tooBig", None)
    if not sizes or not isinstance(sizes, list):
        return []
    taken = sizes[:]
    sizes.clear()
    return taken

def report_too_big(core, refused: list, *, now: float) -> None:
    """Tell path MTU discovery of each path of ``core`` named by ``refused`` (the ``(size,
    local, remote)`` triples :meth:`~kwik_twisted.glue.ports.PortMixin.sendDatagrams` returns)
    that its route refused ``size`` bytes."""
    for size, local, remote in refused:
        core.stats["pmtud_too_big"] += 1
        for path in core.paths.values():
            if path.remote_addr == remote and path.local_addr == local:
                path.mtu.on_too_big(size, now=now)
