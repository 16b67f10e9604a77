"""
Names for TLS alerts and X.509 verification errors, for error messages.

A failed handshake is reported as ``HANDSHAKE_FAILED`` with code
``0x100 + alert`` (RFC 8446 section 6 lists the alerts); the reason a human
reads names the alert, and for certificate failures the X.509 verification
error OpenSSL reported (the ``X509_V_ERR_*`` codes of ``openssl verify``).
"""

from __future__ import annotations

ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}

VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    4: "unable to decrypt certificate's signature",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    13: "format error in certificate's notBefore field",
    14: "format error in certificate's notAfter field",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    22: "certificate chain too long",
    23: "certificate revoked",
    24: "invalid CA certificate",
    25: "path length constraint exceeded",
    26: "unsupported certificate purpose",
    27: "certificate not trusted",
    28: "certificate rejected",
    62: "hostname mismatch",
    64: "IP address mismatch",
}


def alert_name(alert: int) -> str:
    """The RFC 8446 name of a TLS alert, or ``"alert N"`` for unknown ones."""
    return ALERT_NAMES.get(alert, f"alert {alert}")


def verify_error_string(errno: int) -> str:
    """OpenSSL's wording for an X.509 verification error code."""
    return VERIFY_ERRORS.get(errno, f"X.509 verification error {errno}")


__all__ = ["ALERT_NAMES", "VERIFY_ERRORS", "alert_name", "verify_error_string"]
