"""Matrix files: ``m.file``, ``m.image``, ``m.audio`` and ``m.video`` events, both ways.

In: the event's ``url`` is an ``mxc://<server>/<media id>`` URI. Both parts are checked
against the spec's grammar, and the bytes are fetched from OUR homeserver's
authenticated media endpoint (``/_matrix/client/v1/media/download/<server>/<id>``, with
the access token), never from a URL an event names; a remote server's media is fetched
by our homeserver, which applies its own limits. Per the spec, ``body`` is a caption
when ``filename`` is present and differs from it; otherwise it is the file's name.

Out: the bytes go to ``/_matrix/media/v3/upload``; the ``content_uri`` it answers is
sent as an ``m.file`` (or ``m.image``/``m.audio``) event under the part's transaction id,
so a retry after a crash posts the event once (a retried upload leaves at most an
unreferenced copy on the server, never a second message).
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from ironclaw.host.attachments import OutboundFile

__all__ = ["MEDIA_MSGTYPES", "Media", "file_event", "media_of", "mxc_parts"]

MEDIA_MSGTYPES = ("m.file", "m.image", "m.audio", "m.video")
# A server name starts with a letter, a digit or "[" (an IPv6 literal): never "." or
# "..", which, as a segment of the download path, would climb out of it.
_SERVER = re.compile(r"[A-Za-z0-9\[][A-Za-z0-9.:\[\]-]{0,254}")
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")


@attrs.frozen
class Media:
    server: str
    media_id: str
    name: str
    declared_type: str | None


def mxc_parts(uri: object) -> tuple[str, str] | None:
    if not isinstance(uri, str) or not uri.startswith("mxc://"):
        return None
    server, _, media_id = uri[len("mxc://"):].partition("/")
    if not _SERVER.fullmatch(server) or not _MEDIA_ID.fullmatch(media_id):
        return None
    return server, media_id


def media_of(content: dict[str, Any]) -> tuple[Media, str] | None:
    """The file an event's content carries and its caption ("" if none), or None."""
    if content.get("msgtype") not in MEDIA_MSGTYPES:
        return None
    parts = mxc_parts(content.get("url"))
    if parts is None:
        return None
    raw_body = content.get("body")
    body = raw_body if isinstance(raw_body, str) else ""
    filename = content.get("filename")
    if isinstance(filename, str) and filename and filename != body:
        name, caption = filename, body
    else:
        name, caption = body or "file", ""
    info = content.get("info")
    declared = info.get("mimetype") if isinstance(info, dict) else None
    return Media(*parts, name[:255], declared if isinstance(declared, str) else None), caption


def file_event(file: OutboundFile, content_uri: str, caption: str) -> dict[str, Any]:
    kind = file.media_type.partition("/")[0]
    msgtype = {"image": "m.image", "audio": "m.audio"}.get(kind, "m.file")
    content: dict[str, Any] = {"msgtype": msgtype, "body": caption or file.name,
                               "filename": file.name, "url": content_uri,
                               "info": {"mimetype": file.media_type, "size": file.size},
                               "m.mentions": {}}
    return content
