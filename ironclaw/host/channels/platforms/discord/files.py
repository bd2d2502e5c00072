"""Discord files, both ways.

In: a message's ``attachments`` each name a ``url`` on Discord's CDN (signed, fetched
without the bot token). Only Discord's own file hosts (``cdn.discordapp.com``,
``media.discordapp.net``) and the configured API base's origin are contacted; an
attachment elsewhere is refused before any request.

Out: a message created as ``multipart/form-data``, ``payload_json`` (the caption, the
nonce) beside ``files[0]``; the nonce with ``enforce_nonce`` lets Discord itself answer a
repeat with the earlier message, as for text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from ironclaw.host.attachments import InboundAttachment, Origin, origin_of, platform_attachment

__all__ = ["CDN_ORIGINS", "MAX_FILES", "discord_attachments", "discord_origins"]

CDN_ORIGINS: tuple[Origin, ...] = (("https", "cdn.discordapp.com", 443),
                                   ("https", "media.discordapp.net", 443))
MAX_FILES = 10


def discord_origins(api_base: str) -> tuple[Origin, ...]:
    base = origin_of(api_base)
    return CDN_ORIGINS if base is None else (*CDN_ORIGINS, base)


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def discord_attachments(message: dict[str, Any], http: httpx.AsyncClient,
                        origins: Iterable[Origin]) -> tuple[InboundAttachment, ...]:
    items = message.get("attachments")
    if not isinstance(items, list):
        return ()
    found = []
    for item in items[:MAX_FILES]:
        if not isinstance(item, dict) or (url := _text(item.get("url"), 2048)) is None:
            continue
        found.append(platform_attachment(
            http, url, declared_name=_text(item.get("filename"), 255) or "file",
            declared_type=_text(item.get("content_type"), 128), origins=origins))
    return tuple(found)
