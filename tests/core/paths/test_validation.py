"""
Path validation state (:class:`kwik_twisted.core.paths.validation.PathValidation`).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kwik_twisted.core.paths.validation import (
    CHALLENGE_PTOS,
    MAX_CHALLENGE_ATTEMPTS,
    PathValidation,
)

TOKEN = b"12345678"


class ChallengeTests(SynchronousTestCase):
    """Our PATH_CHALLENGE: due, sent, timed out, answered."""

    def test_a_new_validation_has_nothing_to_send(self) -> None:
        """Fresh state: no challenge, no responses, no deadline."""
        validation = PathValidation()
        self.assertFalse(validation.in_progress)
        self.assertFalse(validation.has_frames)
        self.assertIsNone(validation.deadline(1.0))

    def test_a_started_challenge_is_due_until_sent(self) -> None:
        """start() makes the challenge due; sending it arms the deadline at 3 PTOs."""
        validation = PathValidation()
        validation.start(TOKEN)
        self.assertTrue(validation.challenge_due)
        self.assertTrue(validation.has_frames)
        validation.on_challenge_sent(10.0)
        self.assertFalse(validation.challenge_due)
        self.assertFalse(validation.has_frames)
        self.assertEqual(validation.deadline(0.5), 10.0 + CHALLENGE_PTOS * 0.5)

    def test_timeouts_resend_until_the_attempts_run_out(self) -> None:
        """Each timeout makes the challenge due again, until MAX_CHALLENGE_ATTEMPTS sends."""
        validation = PathValidation()
        validation.start(TOKEN)
        for attempt in range(1, MAX_CHALLENGE_ATTEMPTS + 1):
            validation.on_challenge_sent(float(attempt))
            failed = validation.on_timeout()
            self.assertEqual(failed, attempt == MAX_CHALLENGE_ATTEMPTS)
            if not failed:
                self.assertTrue(validation.challenge_due)

    def test_only_the_matching_response_validates(self) -> None:
        """A wrong PATH_RESPONSE is ignored; the right one ends the validation."""
        validation = PathValidation()
        validation.start(TOKEN)
        validation.on_challenge_sent(1.0)
        self.assertFalse(validation.on_response(b"87654321"))
        self.assertTrue(validation.in_progress)
        self.assertTrue(validation.on_response(TOKEN))
        self.assertFalse(validation.in_progress)
        self.assertIsNone(validation.deadline(1.0))
        self.assertFalse(validation.on_response(TOKEN))  # a duplicate answers nothing

    def test_a_restart_resets_the_attempts(self) -> None:
        """start() again (a rebinding) counts attempts from zero."""
        validation = PathValidation()
        validation.start(TOKEN)
        validation.on_challenge_sent(1.0)
        validation.start(b"abcdefgh")
        self.assertEqual(validation.attempts, 0)
        self.assertTrue(validation.challenge_due)


class ResponseTests(SynchronousTestCase):
    """The PATH_RESPONSEs we owe the peer."""

    def test_only_the_newest_challenge_is_answered(self) -> None:
        """A flood of challenges leaves one response owed, the newest."""
        validation = PathValidation()
        for i in range(5):
            validation.on_challenge(bytes([i]) * 8)
        self.assertEqual(list(validation.responses), [bytes([4]) * 8])
        self.assertTrue(validation.has_frames)
