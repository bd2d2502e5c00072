"""A file's type, from its first bytes: what the sender declared is never asked.

Binary formats are recognised by their signatures (the ``filetype`` library, which
reads at most the first 8 KiB). Text is what no signature claims and what decodes as
UTF-8 without NUL or other control characters but tab, line and page breaks;
:class:`TextCheck` keeps checking that over the rest of the stream, so a text head
cannot smuggle a binary tail.
"""

from __future__ import annotations

import codecs

import filetype

__all__ = ["HEAD_BYTES", "TEXT", "TextCheck", "sniff"]

HEAD_BYTES = 8192
TEXT = "text/plain"
_ALLOWED_CONTROLS = frozenset("\t\n\r\f")


def _is_text(chunk: str) -> bool:
    return not any((ord(c) < 32 and c not in _ALLOWED_CONTROLS) or c == "\x7f" for c in chunk)


class TextCheck:
    """Incremental: feed every chunk, then ``finish``; False as soon as one is not text."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")

    def feed(self, chunk: bytes, *, final: bool = False) -> bool:
        try:
            return _is_text(self._decoder.decode(chunk, final=final))
        except UnicodeDecodeError:
            return False


def sniff(head: bytes, *, complete: bool) -> str | None:
    """The media type of a file that starts with ``head`` (``complete`` when ``head``
    is the whole file), or None when it is neither a known format nor text."""
    if not head:
        return TEXT
    kind = filetype.guess(head[:HEAD_BYTES])
    if kind is not None:
        return str(kind.mime)
    return TEXT if TextCheck().feed(head, final=complete) else None
