"""
Per-stream building blocks of the core: reassembly, send buffer, flow control, state.

These are pure, sans-I/O objects; the connection owns one of each per stream
and feeds them STREAM-frame values (RFC 9000 §2-4).
"""

from kwik_twisted.core.streams.budget import ReceiveBudget
from kwik_twisted.core.streams.flow_control import ReceiveWindow, SendCredit
from kwik_twisted.core.streams.ranges import RangeSet
from kwik_twisted.core.streams.reassembly import Reassembler, UnorderedReassembler
from kwik_twisted.core.streams.sendbuffer import SendBuffer
from kwik_twisted.core.streams.state import (
    RecvState,
    RecvStateMachine,
    SendState,
    SendStateMachine,
    StreamEvent,
)
from kwik_twisted.core.streams.view import StreamProgress, StreamView

__all__ = [
    "RangeSet",
    "Reassembler",
    "ReceiveBudget",
    "ReceiveWindow",
    "RecvState",
    "RecvStateMachine",
    "SendBuffer",
    "SendCredit",
    "SendState",
    "SendStateMachine",
    "StreamEvent",
    "StreamProgress",
    "StreamView",
    "UnorderedReassembler",
]
