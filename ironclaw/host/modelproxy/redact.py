"""Scrub credentials out of what upstream sends back, streaming, of any size.

The proxy knows every credential it holds; a provider that echoes one (an error message
quoting the request, a prompt-injected model repeating a header) must not hand it to the
sandbox. :class:`Redactor` replaces with ``[REDACTED]``:

- the literal value of every credential the host holds, raw and JSON-escaped (a body
  quoting a key that has a ``"``, ``\\`` or ``/`` in it escapes them);
- credential *shapes* the host does not hold (``sk-ant-api03-...``, ``sk-proj-...``,
  ``sk-or-v1-<hex>``, a legacy ``sk-<48 alnum>``), but only as whole tokens: a shape
  must start on a token boundary (not inside a word, so ``task-runner-...`` and
  ``disk-partitioning-...`` are left alone; a JSON escape such as ``\\n`` counts as a
  boundary) and its body must look random (a digit, an upper and a lower case letter;
  ``sk-learn-compatible-estimators`` is prose). Innocent text is never changed.

:class:`StreamRedactor` applies it to a byte stream chunk by chunk (JSON, plain text or
SSE alike) with bounded memory: it emits everything that can no longer be part of a
match and holds back only a tail that might still become one, namely the longest suffix
that is a prefix of a held credential and the trailing run of key-shaped characters
(with the byte before it, so the boundary test sees the same context whatever the chunk
boundaries). A secret split across any number of chunk boundaries is therefore still
caught. Bytes that are safe (an SSE event ending in a newline) go out at once, so
streaming stays live.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator

from .credentials import Secret

__all__ = ["REDACTED", "Redactor", "StreamRedactor", "encodings_of"]

REDACTED = b"[REDACTED]"
# Credentials shorter than this are not matched literally: they would corrupt ordinary
# text, and are too weak for the match to protect anything.
MIN_LITERAL = 8
_KEY_CLASS = rb"[A-Za-z0-9_\-]"
# A shape starts where no key character precedes it, or right after a JSON escape
# (``\n``, ``\t``, ...), whose letter is not part of the token.
_BOUNDARY = rb"(?:(?<![A-Za-z0-9_\-])|(?<=\\[nrtbf]))"
# Key-shaped tokens, bounded so that a match (and so the tail held back) stays bounded.
# Group "body" is the random part whose look is checked.
SHAPES = (
    rb"sk-ant-(?:api|admin|sid)\d\d-(?P<ant>" + _KEY_CLASS + rb"{20,512})",
    rb"sk-or-v1-(?P<or>[0-9a-f]{64})(?![A-Za-z0-9_\-])",
    rb"sk-(?:proj|svcacct|admin|None)-(?P<proj>" + _KEY_CLASS + rb"{20,512})",
    rb"sk-(?P<legacy>[A-Za-z0-9]{32,512})(?![A-Za-z0-9_\-])",
)
_KEY_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_HOLD = 4096
_DIGIT = re.compile(rb"[0-9]")
_UPPER = re.compile(rb"[A-Z]")
_LOWER = re.compile(rb"[a-z]")


def encodings_of(value: str) -> set[bytes]:
    """Every way a credential can appear in a response body: raw, and as the inside of
    a JSON string (with and without ``/`` escaped)."""
    raw = value.encode()
    escaped = json.dumps(value)[1:-1].encode()
    return {raw, escaped, escaped.replace(b"/", b"\\/")}


def _looks_random(match: re.Match[bytes]) -> bool:
    if match.group("or") is not None:
        return True  # 64 hex digits after a fixed prefix: nothing else looks like that
    body = match.group("ant") or match.group("proj") or match.group("legacy")
    if body is None:
        return True  # a literal credential the host holds
    return bool(_DIGIT.search(body) and _UPPER.search(body) and _LOWER.search(body))


class Redactor:
    """An immutable matcher for a set of credentials; cheap to share."""

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        literals: set[bytes] = set()
        for secret in secrets:
            if len(secret) >= MIN_LITERAL:
                literals |= encodings_of(secret.reveal())
        ordered = sorted(literals, key=len, reverse=True)
        self._literals = tuple(ordered)
        shapes = rb"|".join(SHAPES)
        alternatives = [re.escape(lit) for lit in ordered] + [_BOUNDARY + rb"(?:" + shapes
                                                               + rb")"]
        self._pattern = re.compile(b"|".join(alternatives))

    def matches(self, data: bytes) -> Iterator[tuple[int, int]]:
        """Spans to redact in ``data``, in order."""
        for match in self._pattern.finditer(data):
            if _looks_random(match):
                yield match.start(), match.end()

    def redact(self, data: bytes) -> tuple[bytes, int]:
        """Redact a complete value (a header, a whole small body)."""
        pieces: list[bytes] = []
        pos = count = 0
        for start, end in self.matches(data):
            pieces += [data[pos:start], REDACTED]
            pos = end
            count += 1
        if not count:
            return data, 0
        pieces.append(data[pos:])
        return b"".join(pieces), count

    def redact_text(self, text: str) -> tuple[str, int]:
        out, count = self.redact(text.encode("utf-8", "surrogateescape"))
        return out.decode("utf-8", "surrogateescape"), count

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)

    def literal_hold(self, buf: bytes) -> int:
        """Length of the longest suffix of ``buf`` that is a proper prefix of a literal."""
        best = 0
        for lit in self._literals:
            for size in range(min(len(lit) - 1, len(buf)), best, -1):
                if buf.endswith(lit[:size]):
                    best = size
                    break
        return best


def _key_run(buf: bytes) -> int:
    """Length of the trailing run of key-shaped characters, plus
    the byte before it, which decides whether a shape there starts on a boundary
    (at most MAX_HOLD in all)."""
    size = 0
    end = len(buf)
    while size < min(end, MAX_HOLD - 1) and buf[end - 1 - size] in _KEY_CHARS:
        size += 1
    if size and size < end:
        size += 1
    return size


class StreamRedactor:
    """Feed chunks, get redacted chunks back; ``finish`` flushes the held tail."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pending = b""
        # The last byte already emitted: the boundary test needs it when a held tail
        # starts a new buffer.
        self._before = b""
        self.count = 0

    def feed(self, data: bytes) -> bytes:
        buf = self._pending + data
        hold = max(self._redactor.literal_hold(buf), _key_run(buf))
        return self._emit(buf, len(buf) - min(hold, MAX_HOLD))

    def finish(self) -> bytes:
        buf, self._pending = self._pending, b""
        return self._emit(buf, len(buf), final=True)

    def _emit(self, buf: bytes, cut: int, *, final: bool = False) -> bytes:
        context = self._before
        scan = context + buf
        offset = len(context)
        pieces: list[bytes] = []
        pos = 0
        for start, end in self._redactor.matches(scan):
            start, end = start - offset, end - offset
            if start < 0:
                continue  # began in bytes already sent; cannot be taken back
            if start >= cut:
                break
            if end > cut and not final:
                # Straddles the cut: it may still grow. Hold it back whole.
                cut = start
                break
            pieces.append(buf[pos:start])
            pieces.append(REDACTED)
            self.count += 1
            pos = end
        pieces.append(buf[pos:cut])
        self._pending = buf[cut:]
        out = b"".join(pieces)
        if out:
            self._before = out[-1:]
        return out
