"""File names a chat sender chose, made safe to create in a workspace and to show.

A name comes from a stranger. What survives :func:`safe_name`: its last path component
only, NFC-normalised, without control, format (bidi overrides, zero-width) or
unassigned characters, without the characters shells and other systems treat
specially, with no leading dot or dash and no trailing dot or space, at most
``MAX_NAME_BYTES`` of UTF-8 with the extension kept. An extension that does not match
the sniffed type gets the type's own appended, so ``photo.exe`` holding a PNG lands as
``photo.exe.png``.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_NAME_BYTES", "extension_for", "numbered", "safe_name"]

MAX_NAME_BYTES = 120
_MAX_EXTENSION = 12
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_REPLACED = frozenset('/\\:*?"<>|$`;&')
_EXTENSIONS = {
    "text/plain": (".txt", ".md", ".csv", ".log", ".json", ".yaml", ".yml", ".text"),
    "application/pdf": (".pdf",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "audio/ogg": (".ogg", ".oga", ".opus"),
    "audio/mpeg": (".mp3",),
}


def extension_for(media_type: str) -> str:
    known = _EXTENSIONS.get(media_type)
    if known:
        return known[0]
    subtype = media_type.rpartition("/")[2]
    cleaned = "".join(c for c in subtype if c.isascii() and c.isalnum())[:_MAX_EXTENSION]
    return f".{cleaned}" if cleaned else ".bin"


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    kept = []
    for char in text:
        if unicodedata.category(char) in _DROPPED_CATEGORIES:
            continue
        kept.append("_" if char in _REPLACED else (" " if char.isspace() else char))
    return " ".join("".join(kept).split())  # runs of whitespace become one space


def _cap(stem: str, extension: str) -> str:
    budget = MAX_NAME_BYTES - len(extension.encode())
    raw = stem.encode()[:budget]
    return raw.decode("utf-8", "ignore").rstrip(" .") + extension


def safe_name(declared: str, media_type: str | None = None) -> str:
    """``declared`` made safe as described above; ``file`` plus an extension if
    nothing usable is left."""
    last = declared.replace("\\", "/").rsplit("/", 1)[-1]
    name = _clean(last).lstrip(" .-").rstrip(" .")
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > _MAX_EXTENSION:
        stem, extension = name, ""
    else:
        extension = "." + extension
    if media_type is not None and extension.lower() not in _EXTENSIONS.get(media_type, ()):
        stem, extension = stem + extension, extension_for(media_type)
    if not stem:
        stem = "file"
    return _cap(stem, extension)


def numbered(name: str, number: int) -> str:
    """``report.pdf`` as ``report (2).pdf``: the same name, made unique in its folder."""
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        stem, extension = name, ""
    else:
        extension = "." + extension
    suffix = f" ({number})"
    capped = _cap(stem, suffix + extension)
    return capped if capped.endswith(suffix + extension) else f"file{suffix}{extension}"
