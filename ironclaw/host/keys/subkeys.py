"""Purpose sub-keys: one master, many independent keys.

``subkey = HMAC-SHA256(master, purpose label)``. HMAC is a PRF, so keys for
different labels are independent: leaking the host-db key reveals nothing about
the audit key or the master. Each label carries a version so a purpose can move
to a new key without colliding with the old one.
"""

from __future__ import annotations

from enum import StrEnum

from cryptography.hazmat.primitives import hashes, hmac

MASTER_KEY_BYTES = 32
SUBKEY_BYTES = 32
FINGERPRINT_BYTES = 16


class Purpose(StrEnum):
    """Every purpose a sub-key may serve. A key for any other label cannot be made."""

    # Raw SQLCipher key of the host's own database (host.db).
    HOST_DB = "ironclaw/host-db/v1"
    # HMAC key of the audit log's hash chain (docs/design.md, invariant 8).
    AUDIT_CHAIN = "ironclaw/audit-chain/v1"
    # Keyed hash of stored API bearer tokens, so a leaked host.db holds no usable token.
    API_TOKEN_HASH = "ironclaw/api-token-hash/v1"
    # AES-256-GCM key sealing per-session secrets. Custody-internal.
    SESSION_KEY_WRAP = "ironclaw/session-key-wrap/v1"
    # Public identifier of a master, written next to what it sealed. Custody-internal.
    MASTER_FINGERPRINT = "ironclaw/master-fingerprint/v1"


# Handing these out would let a caller unseal session secrets outside the store
# (wrap key) or treat a published value as a secret (fingerprint).
CUSTODY_ONLY_PURPOSES = frozenset({Purpose.SESSION_KEY_WRAP, Purpose.MASTER_FINGERPRINT})


def derive_subkey(master: bytes, purpose: Purpose | str) -> bytes:
    """The 32-byte sub-key of ``master`` for ``purpose``; deterministic."""
    if len(master) != MASTER_KEY_BYTES:
        raise ValueError(f"a master key is exactly {MASTER_KEY_BYTES} bytes")
    label = Purpose(purpose)
    mac = hmac.HMAC(master, hashes.SHA256())
    mac.update(label.value.encode("ascii"))
    return mac.finalize()


def master_fingerprint(master: bytes) -> str:
    """A public id of ``master`` (32 hex digits): tells masters apart, reveals nothing."""
    return derive_subkey(master, Purpose.MASTER_FINGERPRINT)[:FINGERPRINT_BYTES].hex()
