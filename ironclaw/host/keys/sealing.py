"""Sealing one session's secret: AES-256-GCM bound to the session id.

Blob layout: ``nonce (12) || ciphertext || tag (16)``. The associated data names
the format version and the session id, so a blob copied under another session's
entry, or replayed into a future format, fails to authenticate instead of
handing one session's queue keys to another.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ironclaw.contract.ids import SessionId
from ironclaw.host.keys.errors import UnsealError

SEAL_FORMAT_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
_AAD_PREFIX = f"ironclaw/sealed-session-secret/v{SEAL_FORMAT_VERSION}|".encode("ascii")


def _associated_data(session_id: SessionId) -> bytes:
    # "|" is outside the session id alphabet, so prefix and id cannot be confused.
    return _AAD_PREFIX + session_id.encode("ascii")


def seal_session_secret(wrap_key: bytes, session_id: SessionId, secret: bytes) -> bytes:
    # A random 96-bit nonce per seal; rotation resets the key long before the
    # ~2**32 seals where random nonces would risk a collision.
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(wrap_key).encrypt(nonce, secret, _associated_data(session_id))


def unseal_session_secret(wrap_key: bytes, session_id: SessionId, blob: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise UnsealError(f"sealed secret of {session_id} is truncated")
    nonce, sealed = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
    try:
        return AESGCM(wrap_key).decrypt(nonce, sealed, _associated_data(session_id))
    except InvalidTag:
        raise UnsealError(
            f"sealed secret of {session_id} does not authenticate: "
            "wrong master, or the blob was tampered with or moved"
        ) from None


_ROOT_AAD = f"ironclaw/sealed-root-secret/v{SEAL_FORMAT_VERSION}".encode("ascii")


def seal_root_secret(wrap_key: bytes, secret: bytes) -> bytes:
    """The root secret that purpose sub-keys derive from, sealed like a session's but
    under its own associated data, so no session blob can pass for it."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(wrap_key).encrypt(nonce, secret, _ROOT_AAD)


def unseal_root_secret(wrap_key: bytes, blob: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise UnsealError("sealed root secret is truncated")
    try:
        return AESGCM(wrap_key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _ROOT_AAD)
    except InvalidTag:
        raise UnsealError("sealed root secret does not authenticate: wrong master, "
                          "or the store was tampered with") from None
