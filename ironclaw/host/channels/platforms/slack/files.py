"""Slack files, both ways.

In: a ``message`` event (subtype ``file_share``) lists its ``files``; each is fetched
from its ``url_private_download`` with the bot token as a bearer token, and only when
that URL is on Slack's own file host (``files.slack.com``) or on the configured API
base's origin, so neither the token nor a request ever goes anywhere a message names.

Out: Slack's external upload, in three calls: ``files.getUploadURLExternal``
(``filename``, ``length``) answers an ``upload_url`` (refused unless on those same
origins) and a ``file_id``; the bytes are POSTed there; ``files.completeUploadExternal``
shares the file into the channel (and thread) with the caption as ``initial_comment``.
The share is the post, so the whole sequence is one ledger entry: a retry after a
crash before the share uploads again and shares once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx

from ironclaw.host.attachments import (
    InboundAttachment,
    Origin,
    OutboundFile,
    origin_of,
    platform_attachment,
)

from ...base import DeliveryFailed
from ...platform import delivery_failure
from ...settings import Secret
from .webapi import API_TIMEOUT, SlackWebApi

__all__ = ["FILE_HOST", "MAX_FILES", "slack_attachments", "slack_origins", "upload_file"]

FILE_HOST: Origin = ("https", "files.slack.com", 443)
MAX_FILES = 10


def slack_origins(api_base: str) -> tuple[Origin, ...]:
    base = origin_of(api_base)
    return (FILE_HOST,) if base is None else (FILE_HOST, base)


def _text(value: object, limit: int = 2048) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def slack_attachments(event: object, http: httpx.AsyncClient, token: Secret,
                      origins: Iterable[Origin]) -> tuple[InboundAttachment, ...]:
    files = event.get("files") if isinstance(event, dict) else None
    if not isinstance(files, list):
        return ()
    found = []
    for item in files[:MAX_FILES]:
        if not isinstance(item, dict):
            continue
        url = _text(item.get("url_private_download")) or _text(item.get("url_private"))
        name = _text(item.get("name"), 255) or "file"
        if url is None:
            continue
        found.append(platform_attachment(
            http, url, declared_name=name, declared_type=_text(item.get("mimetype"), 128),
            origins=origins, headers={"Authorization": f"Bearer {token.reveal()}"}))
    return tuple(found)


async def upload_file(api: SlackWebApi, http: httpx.AsyncClient, token: Secret,
                      origins: Iterable[Origin], *, channel: str, thread_ts: str | None,
                      comment: str, file: OutboundFile) -> str:
    """Upload and share ``file``; the shared file's id."""
    ticket = await api.call("files.getUploadURLExternal", token,
                            form={"filename": file.name, "length": str(file.size)})
    upload_url, file_id = ticket.get("upload_url"), ticket.get("file_id")
    if not isinstance(upload_url, str) or not isinstance(file_id, str) or not file_id:
        raise DeliveryFailed("slack files.getUploadURLExternal: no upload URL",
                             retryable=True)
    if origin_of(upload_url) not in set(origins):
        raise DeliveryFailed("slack: the upload URL is not on Slack's file host",
                             retryable=False)
    try:
        response = await http.post(upload_url, content=file.data, timeout=API_TIMEOUT,
                                   headers={"Content-Type": "application/octet-stream"})
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"slack upload: {type(exc).__name__}", retryable=True) from None
    failure = delivery_failure(response, "slack upload")
    if failure is not None:
        raise failure
    share: dict[str, Any] = {"files": json.dumps([{"id": file_id, "title": file.name}]),
                             "channel_id": channel}
    if thread_ts:
        share["thread_ts"] = thread_ts
    if comment.strip():
        share["initial_comment"] = comment
    await api.call("files.completeUploadExternal", token, form=share)
    return file_id
