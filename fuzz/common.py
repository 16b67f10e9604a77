"""
What the atheris harnesses share: instrumentation, a byte reader, header guessing, the verdicts.

A harness module imports :mod:`kwik_twisted` inside :func:`instrumented`, which turns on atheris'
coverage instrumentation of ``kwik_twisted`` only when a harness runs as a program
(``python -m fuzz.<harness>``); imported by the replay tests, it is a plain import and atheris
need not be installed.

The targets take raw bytes and carve them with :class:`Reader`, not atheris' FuzzedDataProvider,
so the corpus replay test runs the very same code without atheris.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

HARNESSES = ("packet_decoder", "payload")


def fuzzing() -> bool:
    """Whether the running program is one of the harnesses (``python -m fuzz.<name>``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name in {"fuzz." + name for name in HARNESSES}


def instrumented() -> contextlib.AbstractContextManager:
    """A context in which imports of ``kwik_twisted`` are instrumented, when fuzzing."""
    if not fuzzing():
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=["kwik_twisted"])


with instrumented():
    from kwik_twisted.errors import ErrorCode, KwikError
    from kwik_twisted.wire import PacketType, classify
    from kwik_twisted.wire.frames import pull_frame


class Finding(AssertionError):
    """A broken invariant that is not an exception of the code under test (a harness check)."""


class Reader:
    """Carves fields off the front of a fuzz input; reads past the end give zeros."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        """One byte (0 once the input is exhausted)."""
        pos = self.pos
        self.pos += 1
        return self.data[pos] if pos < len(self.data) else 0

    def uint(self, size: int) -> int:
        """A big-endian unsigned integer of ``size`` bytes."""
        return int.from_bytes(self.take(size).ljust(size, b"\0"), "big")

    def take(self, size: int) -> bytes:
        """Up to ``size`` bytes."""
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def rest(self) -> bytes:
        """Everything not read yet."""
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    @property
    def left(self) -> int:
        """How many bytes remain."""
        return max(0, len(self.data) - self.pos)


def auto_header(plaintext: bytes, epoch: int, compression: int) -> tuple[int, int]:
    """
    The Frame Count and Packet Type a header should carry for ``plaintext``.

    Decodes frames until the first error; the harnesses use it so that inputs reach the frame
    handlers instead of failing the header-consistency checks.
    """
    view = memoryview(plaintext)
    frames = []
    pos = 0
    try:
        while pos < len(view) and len(frames) < 4096:
            frame, pos, _ = pull_frame(view, pos, epoch, compression)
            frames.append(frame)
    except KwikError:
        pass
    if not frames:
        return 1, PacketType.DATA
    return len(frames), int(classify(frames))


def checked(target: Callable[[bytes], str]) -> Callable[[bytes], None]:
    """Wrap ``target`` for atheris: typed errors are fine, anything else propagates."""

    def one_input(data: bytes) -> None:
        target(data)

    return one_input


def is_typed_code(code: int) -> bool:
    """Whether ``code`` is a wire error code of ``errors.py`` (INTERNAL_ERROR excepted)."""
    if code == ErrorCode.INTERNAL_ERROR:
        return False
    try:
        ErrorCode(code)
    except ValueError:
        return 0x100 <= code <= 0x1FF
    return True


def run(target: Callable[[bytes], str], argv: list[str] | None = None) -> None:
    """Hand ``target`` to atheris with the command-line options (libFuzzer's)."""
    import atheris

    atheris.Setup(sys.argv if argv is None else argv, checked(target))
    atheris.Fuzz()


__all__ = [
    "HARNESSES",
    "Finding",
    "Reader",
    "auto_header",
    "checked",
    "fuzzing",
    "instrumented",
    "is_typed_code",
    "run",
]
