"""Telegram files: which parts of a message are files, and how one is fetched.

A message may carry a ``document``, ``audio``, ``voice``, ``video`` or ``photo`` (a
list of sizes; the largest is taken). Each names a ``file_id``; the Bot API's
``getFile`` turns it into a ``file_path``, downloaded from
``<api_base>/file/bot<token>/<file_path>``. Only the configured API base's origin is
ever contacted (the file path is Telegram's, but a URL built from it that left the
origin would be refused). Outbound, a file goes with ``sendDocument`` as a multipart
form, its caption cut at Telegram's 1024 characters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from ironclaw.host.attachments import (
    AttachmentRefused,
    InboundAttachment,
    origin_of,
    platform_attachment,
)

__all__ = ["CAPTION_LIMIT", "FileRef", "file_refs", "telegram_attachment"]

CAPTION_LIMIT = 1024
_KINDS = (("document", None), ("audio", "audio"), ("voice", "voice.ogg"),
          ("video", "video.mp4"))

# (file_id, declared name, declared type)
FileRef = tuple[str, str, str | None]


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def file_refs(message: dict[str, Any]) -> list[FileRef]:
    refs: list[FileRef] = []
    for kind, default_name in _KINDS:
        item = message.get(kind)
        if isinstance(item, dict) and (file_id := _string(item.get("file_id"))):
            name = _string(item.get("file_name")) or default_name or kind
            refs.append((file_id, name, _string(item.get("mime_type"))))
    photo = message.get("photo")
    largest = photo[-1] if isinstance(photo, list) and photo else None
    if isinstance(largest, dict) and (file_id := _string(largest.get("file_id"))):
        refs.append((file_id, "photo.jpg", "image/jpeg"))
    return refs


def telegram_attachment(http: httpx.AsyncClient, api_base: str, token: str, ref: FileRef,
                        get_file: Callable[[str], Awaitable[str]]) -> InboundAttachment:
    """An attachment whose bytes are fetched (getFile, then the download) only when the
    inbox asks for them. ``get_file`` answers a file id with its ``file_path``."""
    file_id, name, declared = ref
    origin = origin_of(api_base)

    @asynccontextmanager
    async def source() -> AsyncIterator[AsyncIterator[bytes]]:
        path = await get_file(file_id)
        url = f"{api_base}/file/bot{token}/{path}"
        download = platform_attachment(http, url, declared_name=name,
                                       declared_type=declared,
                                       origins=[origin] if origin else [])
        if download.source is None:
            raise AttachmentRefused(download.refused or "not downloadable")
        async with download.source() as chunks:
            yield chunks

    return InboundAttachment(name, declared, source=source)
