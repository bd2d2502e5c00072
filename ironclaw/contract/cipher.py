"""Pinned SQLCipher parameters and the session key hand-off format.

Both sides import these constants, so the writer and the reader can never disagree
on a cipher setting (a disagreement is not an error message, it is a file that
silently fails to decrypt). Keys are raw 256-bit values given as ``x'<hex>'``: no
passphrase KDF runs on open, which costs ~0.1 ms instead of ~200 ms.
"""

from __future__ import annotations

import re
import secrets

import attrs

CIPHER_COMPATIBILITY = 4
CIPHER_PAGE_SIZE = 4096
KEY_BYTES = 32
BUSY_TIMEOUT_MS = 5000

# The in-sandbox path of the key file; the host binds it read-only from a tmpfs.
SANDBOX_KEY_PATH = "/run/ironclaw/session.key"

_HEX_KEY = re.compile(r"[0-9a-f]{64}")


class InvalidKey(ValueError):
    """Key material is malformed."""


@attrs.frozen(repr=False)
class RawKey:
    """A 256-bit SQLCipher raw key. ``repr`` never shows the material."""

    material: bytes = attrs.field()

    @material.validator
    def _check(self, _attribute: object, value: bytes) -> None:
        if not isinstance(value, bytes) or len(value) != KEY_BYTES:
            raise InvalidKey(f"a raw key is exactly {KEY_BYTES} bytes")

    @classmethod
    def generate(cls) -> RawKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_hex(cls, text: str) -> RawKey:
        if not _HEX_KEY.fullmatch(text):
            raise InvalidKey("a raw key is 64 lowercase hex digits")
        return cls(bytes.fromhex(text))

    def hex(self) -> str:
        return self.material.hex()

    def pragma(self) -> str:
        """The statement that keys a connection. It must be the first statement."""
        return f"PRAGMA key = \"x'{self.hex()}'\""

    def __repr__(self) -> str:
        return "RawKey(<redacted>)"


@attrs.frozen(repr=False)
class SessionKeys:
    """One key per queue file. Each file has its own key, so a leak of one file's key
    (say from a host-side log of the inbound writer) does not open the other."""

    inbound: RawKey
    outbound: RawKey

    @classmethod
    def generate(cls) -> SessionKeys:
        return cls(RawKey.generate(), RawKey.generate())

    @classmethod
    def from_secret(cls, secret: bytes) -> SessionKeys:
        """Split the 64-byte session secret the host's key store seals."""
        if len(secret) != 2 * KEY_BYTES:
            raise InvalidKey(f"a session secret is exactly {2 * KEY_BYTES} bytes")
        return cls(RawKey(secret[:KEY_BYTES]), RawKey(secret[KEY_BYTES:]))

    def secret(self) -> bytes:
        return self.inbound.material + self.outbound.material

    def render_file(self) -> str:
        """The key file's text: two lines, ``inbound=<hex>`` and ``outbound=<hex>``."""
        return f"inbound={self.inbound.hex()}\noutbound={self.outbound.hex()}\n"

    @classmethod
    def parse_file(cls, text: str) -> SessionKeys:
        fields: dict[str, str] = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or name not in ("inbound", "outbound") or name in fields:
                raise InvalidKey("malformed session key file")
            fields[name] = value.strip()
        if set(fields) != {"inbound", "outbound"}:
            raise InvalidKey("session key file needs inbound= and outbound= lines")
        return cls(RawKey.from_hex(fields["inbound"]), RawKey.from_hex(fields["outbound"]))

    def __repr__(self) -> str:
        return "SessionKeys(<redacted>)"
