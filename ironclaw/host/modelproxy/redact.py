"""Scrub credentials out of what upstream sends back, streaming, of any size.

The proxy knows every credential it holds; a provider that echoes one (an error message
quoting the request, a prompt-injected model repeating a header) must not hand it to the
sandbox. :class:`Redactor` matches the literal values of those credentials plus the
common key shapes (``sk-ant-...``, ``sk-proj-...``, ``sk-or-...``, ``sk-...``) and
replaces each match with ``[REDACTED]``.

:class:`StreamRedactor` applies it to a byte stream chunk by chunk (JSON, plain text or
SSE alike) with bounded memory: it emits everything that can no longer be part of a
match and holds back only a tail that might still become one, namely the longest suffix
that is a prefix of a held credential and the trailing run of key-shaped characters. A
secret split across any number of chunk boundaries is therefore still caught. Bytes
that are safe (an SSE event ending in a newline) go out at once, so streaming stays
live.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .credentials import Secret

__all__ = ["REDACTED", "Redactor", "StreamRedactor"]

REDACTED = b"[REDACTED]"
# Credentials shorter than this are not matched literally: they would corrupt ordinary
# text, and are too weak for the match to protect anything.
MIN_LITERAL = 8
# Key-shaped tokens: a known prefix and 20 or more key characters, bounded so that a
# match (and so the tail held back) stays bounded.
SHAPES = (
    rb"sk-ant-[A-Za-z0-9_\-]{20,512}",
    rb"sk-(?:proj-|or-v1-|svcacct-)?[A-Za-z0-9_\-]{20,512}",
)
_KEY_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_HOLD = 4096


class Redactor:
    """An immutable matcher for a set of credentials; cheap to share."""

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        literals = sorted(
            {s.reveal().encode() for s in secrets if len(s) >= MIN_LITERAL},
            key=len, reverse=True,
        )
        self._literals = tuple(literals)
        alternatives = [re.escape(lit) for lit in literals] + list(SHAPES)
        self._pattern = re.compile(b"|".join(alternatives))

    def redact(self, data: bytes) -> tuple[bytes, int]:
        """Redact a complete value (a header, a whole small body)."""
        return self._pattern.subn(REDACTED, data)

    def redact_text(self, text: str) -> tuple[str, int]:
        out, count = self.redact(text.encode("utf-8", "surrogateescape"))
        return out.decode("utf-8", "surrogateescape"), count

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)

    def _literal_hold(self, buf: bytes) -> int:
        """Length of the longest suffix of ``buf`` that is a proper prefix of a literal."""
        best = 0
        for lit in self._literals:
            for size in range(min(len(lit) - 1, len(buf)), best, -1):
                if buf.endswith(lit[:size]):
                    best = size
                    break
        return best


def _key_run(buf: bytes) -> int:
    """Length of the trailing run of key-shaped characters (capped at MAX_HOLD)."""
    size = 0
    end = len(buf)
    while size < min(end, MAX_HOLD) and buf[end - 1 - size] in _KEY_CHARS:
        size += 1
    return size


class StreamRedactor:
    """Feed chunks, get redacted chunks back; ``finish`` flushes the held tail."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pending = b""
        self.count = 0

    def feed(self, data: bytes) -> bytes:
        buf = self._pending + data
        hold = max(self._redactor._literal_hold(buf), _key_run(buf))
        return self._emit(buf, len(buf) - min(hold, MAX_HOLD))

    def finish(self) -> bytes:
        buf, self._pending = self._pending, b""
        return self._emit(buf, len(buf), final=True)

    def _emit(self, buf: bytes, cut: int, *, final: bool = False) -> bytes:
        pieces: list[bytes] = []
        pos = 0
        for match in self._redactor._pattern.finditer(buf):
            if match.start() >= cut:
                break
            if match.end() > cut and not final:
                # Straddles the cut: it may still grow. Hold it back whole.
                cut = match.start()
                break
            pieces.append(buf[pos:match.start()])
            pieces.append(REDACTED)
            self.count += 1
            pos = match.end()
        pieces.append(buf[pos:cut])
        self._pending = buf[cut:]
        return b"".join(pieces)
