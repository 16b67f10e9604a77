"""
Path validation: one path's PATH_CHALLENGE in flight and the PATH_RESPONSEs it owes (RFC 9000 §8.2).

Theory of operation.  Each :class:`~kwik_twisted.core.paths.path.Path` has one
:class:`PathValidation` (quinn-proto's ``PathData`` challenge fields and ``PathResponses`` are the
model), and all validation state is written here:

* our side: :meth:`PathValidation.start` sets a fresh challenge; the packet assembler sends it
  (:meth:`~PathValidation.on_challenge_sent`); if no matching PATH_RESPONSE arrives within three
  PTOs (:meth:`~PathValidation.deadline`) it is sent again, and after
  :data:`MAX_CHALLENGE_ATTEMPTS` sends :meth:`~PathValidation.on_timeout` reports the validation
  failed.  A response that matches ends it (:meth:`~PathValidation.on_response`); any other is
  stale or forged and ignored.
* the peer's side: each PATH_CHALLENGE received queues its answer, at most
  :data:`MAX_PENDING_RESPONSES` (only the newest is answered: a challenge flood costs the flooder,
  not us, protocol.rst "Path validation").
"""

from __future__ import annotations

from collections import deque
from typing import Any

#: PATH_RESPONSEs queued per path: only the newest challenge is answered (protocol.rst: at most one
#: answer per path per packet, so a challenge flood costs the flooder, not us).
MAX_PENDING_RESPONSES = 1
#: The responses owed on a path the peer never challenged: empty, shared.
_NO_RESPONSES: Any = ()
#: Times a PATH_CHALLENGE is sent (each after 3 PTOs of silence) before validation fails.
MAX_CHALLENGE_ATTEMPTS = 3
#: PTOs a sent challenge waits for its response before it is sent again.
CHALLENGE_PTOS = 3


class PathValidation:
    """
    The challenge we sent on one path and the responses we owe on it.

    :ivar challenge: the 8 bytes of our outstanding PATH_CHALLENGE (``None``: not validating).
    :ivar sent_at: when it was last sent (``None``: not sent yet, or due again).
    :ivar attempts: how many times it was sent.
    :ivar responses: the data of the peer's challenges still to answer, oldest first.
    """

    __slots__ = ("challenge", "sent_at", "attempts", "responses")

    def __init__(self) -> None:
        self.challenge: bytes | None = None
        self.sent_at: float | None = None
        self.attempts = 0
        # made for the peer's first challenge (an empty deque holds a 1 KiB block)
        self.responses: deque[bytes] = _NO_RESPONSES

    # -- our challenge ---------------------------------------------------------------

    def start(self, challenge: bytes) -> None:
        """Validate (again) with ``challenge``: it is due in the next packet."""
        self.challenge = challenge
        self.sent_at = None
        self.attempts = 0

    def stop(self) -> None:
        """Give up or finish: no challenge outstanding."""
        self.challenge = self.sent_at = None

    @property
    def in_progress(self) -> bool:
        """Whether a challenge is outstanding."""
        return self.challenge is not None

    @property
    def challenge_due(self) -> bool:
        """Whether the challenge must go in the next packet on the path."""
        return self.challenge is not None and self.sent_at is None

    def on_challenge_sent(self, now: float) -> None:
        """The challenge went out in a packet at ``now``."""
        self.sent_at = now
        self.attempts += 1

    def deadline(self, pto: float) -> float | None:
        """When the sent challenge counts as unanswered (``None``: none is waiting)."""
        if self.sent_at is None:
            return None
        return self.sent_at + CHALLENGE_PTOS * pto

    def on_timeout(self) -> bool:
        """
        The sent challenge went unanswered: send it again, or, after
        :data:`MAX_CHALLENGE_ATTEMPTS`, return ``True`` (validation failed; the caller stops it).
        """
        if self.attempts >= MAX_CHALLENGE_ATTEMPTS:
            return True
        self.sent_at = None
        return False

    def on_response(self, data: bytes) -> bool:
        """A PATH_RESPONSE arrived: return whether it answers our challenge (which then ends)."""
        if self.challenge is None or data != self.challenge:
            return False  # stale or forged: ignore
        self.stop()
        return True

    # -- the peer's challenges ---------------------------------------------------------

    def on_challenge(self, data: bytes) -> None:
        """The peer challenged us: owe it a PATH_RESPONSE (only the newest one is kept)."""
        if self.responses is _NO_RESPONSES:
            self.responses = deque(maxlen=MAX_PENDING_RESPONSES)
        self.responses.append(data)

    @property
    def has_frames(self) -> bool:
        """Whether a PATH_RESPONSE or our PATH_CHALLENGE waits for the next packet."""
        return bool(self.responses) or self.challenge_due
