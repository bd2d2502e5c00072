"""The webhook signing scheme, both directions (see ``docs/channels/webhook.md``).

A request carries two headers:

* ``X-IronClaw-Timestamp``: the sender's clock, in whole unix seconds;
* ``X-IronClaw-Signature``: ``v1=<hex>``, the lowercase hex HMAC-SHA256, keyed with the
  shared secret, of ``<timestamp>.<raw body bytes>``. Several ``v1=`` values may be
  given, comma-separated (while a secret is being rotated); one valid one suffices.

The receiver recomputes the HMAC over the exact bytes it received, compares in constant
time, and refuses a timestamp further than the tolerance from its own clock (a captured
request cannot be replayed later; within the window, the event id's duplicate check
catches a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "signature", "verify"]

SIGNATURE_HEADER = "X-IronClaw-Signature"
TIMESTAMP_HEADER = "X-IronClaw-Timestamp"
VERSION = "v1"
_TIMESTAMP = re.compile(r"\d{1,12}")
_MAX_SIGNATURES = 4


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, now: float) -> dict[str, str]:
    """The two headers for ``body`` sent at ``now`` (unix seconds)."""
    timestamp = str(int(now))
    return {TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: f"{VERSION}={signature(secret, timestamp, body)}"}


def verify(secret: bytes, timestamp: str | None, signatures: str | None, body: bytes, *,
           now: float, tolerance: float) -> str | None:
    """None when the request is authentic and fresh; otherwise why not (safe to show:
    it names no expected value)."""
    if not timestamp or not signatures:
        return f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required"
    if not _TIMESTAMP.fullmatch(timestamp):
        return f"{TIMESTAMP_HEADER} must be unix seconds"
    if abs(now - int(timestamp)) > tolerance:
        return f"{TIMESTAMP_HEADER} is outside the allowed window"
    expected = signature(secret, timestamp, body)
    offered = [item.strip() for item in signatures.split(",")][:_MAX_SIGNATURES]
    matched = False
    for item in offered:
        version, _, value = item.partition("=")
        if version == VERSION:
            # compare_digest on ASCII str; a non-ASCII value simply does not match.
            matched |= value.isascii() and hmac.compare_digest(value.lower(), expected)
    return None if matched else "the signature does not match"
