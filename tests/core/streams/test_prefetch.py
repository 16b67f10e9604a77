"""
Credit granted ahead of the reader: the seed's PrefetchBuffer as flow control.

:class:`~kwik_twisted.core.streams.flow_control.ReceiveWindow` measures the rate at which the
application takes bytes (the ``delivered`` count of the stream's progress, capped by what arrived)
and keeps ``window >= rate x (2 + AHEAD_MARGIN) x smoothed RTT``, sending updates once a quarter of
the window is used.  These tests check the measurement and its bounds on the window alone, the
manager's feeding of it (delivered bytes, not credited ones), and end to end in simulated time that
a fast reader on a long fat path never holds the sender back while a paused one still does.
"""

from __future__ import annotations

from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.config import ConnectionConfig
from kwik_twisted.core.streams import flow_control
from kwik_twisted.core.streams.flow_control import AHEAD_MARGIN, ReceiveWindow
from kwik_twisted.core.streams.manager import StreamManager
from kwik_twisted.errors import FlowControlError
from kwik_twisted.testing.links import LinkConfig
from kwik_twisted.testing.pair import MemoryPair
from kwik_twisted.testing.transfer import TransferResult, run_transfers
from kwik_twisted.wire import MaxDataFrame, MaxStreamDataFrame, ResetStreamFrame, StreamFrame

RTT = 0.1
#: Round trips of credit the window keeps ahead of the reader's rate.
AHEAD = 2 + AHEAD_MARGIN


def feed(window: ReceiveWindow, chunk: int, *, now: float, rtt: float = RTT) -> int | None:
    """``chunk`` bytes arrive and are read at ``now``; return the update that fell due."""
    window.on_data(window.received + chunk)
    window.on_consumed(chunk, now=now, rtt=rtt)
    return window.update_due()


class RateMeasurementTests(SynchronousTestCase):
    """The consumption rate a :class:`ReceiveWindow` measures, and the window it grants."""

    def test_fast_reader_gets_rate_times_six_rtt(self) -> None:
        """A reader taking 10 MB/s at 100 ms gets a 6 MB window (rate x 6 RTT) from a 256 KiB
        start within a few samples, while the maximum allows it."""
        window = ReceiveWindow(256 * 1024, 16 << 20)
        for step in range(40):  # 5 ms apart: 50,000 bytes per step is 10 MB/s
            feed(window, 50_000, now=step * 0.005)
        self.assertAlmostEqual(window.rate, 10_000_000)
        self.assertEqual(window.window, int(10_000_000 * AHEAD * RTT))

    def test_slow_reader_window_stays(self) -> None:
        """A reader taking 100 KB/s at 100 ms needs 60 KB: its 256 KiB window never grows, however
        long it reads, though every update is still granted."""
        window = ReceiveWindow(256 * 1024, 16 << 20)
        updates = 0
        for step in range(200):  # 10 s
            updates += feed(window, 5_000, now=step * 0.05) is not None
        self.assertAlmostEqual(window.rate, 100_000)
        self.assertEqual(window.window, 256 * 1024)
        self.assertGreater(updates, 10)
        self.assertGreaterEqual(window.max_data - window.consumed, 3 * 256 * 1024 // 4)

    def test_burst_read_after_a_gap_counts_at_the_arrival_rate(self) -> None:
        """Bytes held behind a gap and read at once count no faster than they arrived: with
        200 kB held when the sample starts, 100 kB more arriving in 100 ms, and all of it read
        when the gap fills, the rate is 1 MB/s (window 600 kB), not 3 MB/s (1.8 MB)."""
        window = ReceiveWindow(512 * 1024, 16 << 20)
        window.on_data(201_000)  # byte 1000 onwards arrived, bytes 1000-1999 are missing
        window.on_consumed(1000, now=0.0, rtt=RTT)  # the first sample starts here
        for step in range(1, 11):  # 10 kB every 10 ms arrive, none can be read
            window.on_data(201_000 + step * 10_000)
        window.on_consumed(300_000, now=0.1, rtt=RTT)  # the gap fills: everything is read
        self.assertAlmostEqual(window.rate, 1_000_000)
        self.assertEqual(window.window, 600_000)

    def test_frozen_clock_still_measures_a_fast_reader(self) -> None:
        """Half a window read within no time at all closes a sample over half an RTT: the rate
        is a lower bound (128 KiB / 50 ms), and the window grows from it."""
        window = ReceiveWindow(256 * 1024, 16 << 20)
        feed(window, 1000, now=5.0)
        feed(window, 128 * 1024, now=5.0)
        self.assertAlmostEqual(window.rate, 128 * 1024 / (RTT / 2))
        self.assertEqual(window.window, int(window.rate * AHEAD * RTT))

    def test_lower_samples_pull_the_rate_down_slowly_and_the_window_never_shrinks(self) -> None:
        """After 10 MB/s, a reader at 2 MB/s moves the estimate a quarter of the way per sample;
        the window granted stays."""
        window = ReceiveWindow(4 << 20, 64 << 20)
        now = 0.0
        for _ in range(3):
            feed(window, 500_000, now=now)
            now += RTT / 2
        grown = window.window
        self.assertAlmostEqual(window.rate, 10_000_000)
        self.assertEqual(grown, int(10_000_000 * AHEAD * RTT))
        feed(window, 100_000, now=now)
        self.assertAlmostEqual(window.rate, 8_000_000)
        self.assertEqual(window.window, grown)

    def test_credit_without_delivery_is_not_reading(self) -> None:
        """Bytes credited back without being delivered (a reset released them) return the credit
        but measure no rate: the window does not grow."""
        window = ReceiveWindow(256 * 1024, 16 << 20)
        window.on_data(200_000)
        window.on_consumed(1000, now=0.0, rtt=RTT, delivered=1000)
        window.on_consumed(199_000, now=0.05, rtt=RTT, delivered=1000)
        self.assertEqual(window.rate, 0)
        self.assertEqual(window.window, 256 * 1024)
        self.assertEqual(window.update_due(), 200_000 + 256 * 1024)

    def test_no_rtt_no_growth(self) -> None:
        """Without an RTT estimate the rate is not measured and the window keeps its size."""
        window = ReceiveWindow(256 * 1024, 16 << 20)
        for step in range(20):
            feed(window, 100_000, now=step * 0.01, rtt=0.0)
        self.assertEqual((window.rate, window.window), (0, 256 * 1024))

    def test_growth_stops_at_the_maximum(self) -> None:
        """However fast the reader (here 1 GB/s), the window stops at its maximum."""
        window = ReceiveWindow(256 * 1024, 4 << 20)
        for step in range(10):
            feed(window, window.max_data - window.consumed, now=step * 0.05)
        self.assertEqual(window.window, 4 << 20)
        self.assertLessEqual(window.max_data - window.consumed, 4 << 20)


def manager(**config) -> tuple[StreamManager, list]:
    """A server-side stream manager with a 100 ms smoothed RTT, and the events it emits."""
    events: list = []
    streams = StreamManager(is_client=False, emit=events.append, config=ConnectionConfig(**config))
    streams.rtt = RTT
    return streams, events


def updates(streams: StreamManager, kind: type) -> list:
    """The MAX_DATA or MAX_STREAM_DATA frames waiting to be sent."""
    return [frame for frame in streams.pending_control() if isinstance(frame, kind)]


class ManagerFeedTests(SynchronousTestCase):
    """The stream manager feeds both windows the stream's delivered progress."""

    def test_paused_stream_pins_its_window_while_a_read_one_grows(self) -> None:
        """Two streams receive 1 MB/s for a second; the application reads only stream 0.  Stream
        4's window keeps its initial size and limit, data past that limit is a
        FLOW_CONTROL_ERROR; stream 0's window grows to its rate x 6 RTT."""
        initial = 256 * 1024
        streams, _ = manager(initial_max_stream_data=initial)
        streams.on_stream_frame(StreamFrame(4, 0, b"x"), now=0.0)
        streams.pause(4, True, now=0.0)
        offsets = {0: 0, 4: 1}
        now = 0.0
        while offsets[4] + 10_000 <= initial:
            for sid in (0, 4):
                streams.on_stream_frame(StreamFrame(sid, offsets[sid], b"d" * 10_000), now=now)
                offsets[sid] += 10_000
            now += 0.01
        read, paused = streams.streams[0], streams.streams[4]
        self.assertAlmostEqual(read.window.rate, 1_000_000, delta=20_000)
        self.assertGreater(read.window.window, 5 * 1_000_000 * RTT)
        self.assertEqual((paused.window.window, paused.window.max_data), (initial, initial))
        self.assertEqual(paused.window.rate, 0)
        self.assertNotIn(4, [frame.stream_id for frame in updates(streams, MaxStreamDataFrame)])
        self.assertRaises(
            FlowControlError,
            streams.on_stream_frame,
            StreamFrame(4, offsets[4], b"d" * (initial - offsets[4] + 1)),
            now=now,
        )

    def test_reset_streams_return_credit_but_no_rate(self) -> None:
        """A peer that opens streams and resets them with 200 kB final sizes, 50 of them in half
        a second, gets its connection credit back (MAX_DATA) but the connection window measures
        no reading and does not grow."""
        streams, _ = manager()
        initial = streams.window.window
        for i in range(50):
            now = i * 0.01
            sid = 4 * i
            streams.on_stream_frame(StreamFrame(sid, 0, b"x"), now=now)
            streams.pause(sid, True, now=now)
            streams.on_reset_stream(ResetStreamFrame(sid, 0, 200_000), now=now)
        self.assertEqual(streams.window.consumed, 50 * 200_000)
        self.assertEqual(streams.window.delivered, 50)
        self.assertLess(streams.window.rate, 200)
        self.assertEqual(streams.window.window, initial)
        self.assertTrue(updates(streams, MaxDataFrame))


LONG_FAT = LinkConfig(delay=0.05, rate_bps=100e6, queue_bytes=1_250_000)  # 100 ms RTT, 1 BDP queue
#: The smallest windows the configuration allows: a fifth of the path's 1.25 MB BDP per stream.
SMALL_WINDOWS = {"initial_max_data": 1 << 20, "initial_max_stream_data": 256 << 10}
#: Windows larger than the transfer: flow control never binds, the ideal to compare with.
NO_LIMIT = {"initial_max_data": 64 << 20, "initial_max_stream_data": 32 << 20}
SIZE = 8_000_000


class BlockedFrames:
    """A qlog tracer that keeps the times of the DATA_BLOCKED / STREAM_DATA_BLOCKED we send."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def event(self, time: float, name: str, data: dict) -> None:
        """Note each blocked frame in a sent packet."""
        if name == "quic:packet_sent":
            for frame in data["frames"]:
                if frame["frame_type"] in ("data_blocked", "stream_data_blocked"):
                    self.times.append(time)


def upload(server_options: dict) -> tuple[TransferResult, list[float]]:
    """Upload :data:`SIZE` bytes over :data:`LONG_FAT`; return the result and the times of the
    sender's blocked frames."""
    tracers: list[BlockedFrames] = []

    def new_tracer(odcid: bytes, is_client: bool) -> BlockedFrames | None:
        if not is_client:
            return None
        tracers.append(BlockedFrames())
        return tracers[-1]

    result = run_transfers(
        size=SIZE, link=LONG_FAT, server_options=server_options, new_tracer=new_tracer
    )
    return result, tracers[0].times


class LongFatPathTests(SynchronousTestCase):
    """End to end in simulated time: 8 MB over 100 Mbit/s with a 100 ms RTT, small windows."""

    def test_fast_reader_never_blocks_the_sender(self) -> None:
        """From 256 KiB / 1 MiB windows, the transfer finishes within 1% of the time it takes
        with windows larger than the file, and the sender never sends a blocked frame."""
        ideal, _ = upload(NO_LIMIT)
        result, blocked = upload(SMALL_WINDOWS)
        self.assertTrue(result.all_intact)
        self.assertEqual(blocked, [])
        self.assertLess(result.duration, ideal.duration * 1.01)

    def test_without_credit_ahead_the_sender_stalls(self) -> None:
        """The same transfer with the rate rule switched off (no margin, no growth): the sender
        is held at every window for the whole transfer, which takes more than three times as
        long.  This is what the test above would see on a broken implementation."""
        with mock.patch.object(flow_control, "AHEAD_MARGIN", -2.0):
            result, blocked = upload(SMALL_WINDOWS)
        self.assertTrue(result.all_intact)
        self.assertGreater(len(blocked), 100)
        self.assertGreater(max(blocked), result.duration * 0.9)
        ideal, _ = upload(NO_LIMIT)
        self.assertGreater(result.duration, 3 * ideal.duration)

    def test_paused_reader_holds_the_sender_at_the_initial_window(self) -> None:
        """A receiver that pauses reading a stream leaves the sender at the stream's initial
        limit for as long as it stays paused, with no window growth; once it reads again every
        byte arrives."""
        pair = MemoryPair().handshake()
        client, server = pair.client, pair.server
        sid = client.open_stream()
        client.send_stream_data(sid, b"x")
        pair.pump()
        server.pause_reading(sid)
        client.send_stream_data(sid, b"d" * (4 << 20), end_stream=True)
        initial = server.config.initial_max_stream_data
        for _ in range(20):
            pair.advance(0.1)
        progress = server.stream(sid).progress
        self.assertEqual((progress.received, progress.delivered), (initial, 1))
        self.assertEqual(client.stream(sid).progress.sent, initial)
        window = server.streams.streams[sid].window
        self.assertEqual((window.window, window.max_data), (initial, initial))
        server.pause_reading(sid, False)
        for _ in range(50):
            pair.advance(0.1)
        self.assertEqual(server.stream(sid).progress.delivered, 1 + (4 << 20))
