"""The few client-server API (v3) calls the Matrix adapter makes, with their errors.

Every request carries the access token in ``Authorization: Bearer``, never in the URL.
Errors are the spec's envelope ``{"errcode": "M_...", "error": "..."}``; our texts name
the endpoint and the ``errcode`` (a fixed vocabulary), not the server's free text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from ironclaw.host.attachments import (
    InboundAttachment,
    OutboundFile,
    origin_of,
    platform_attachment,
)

from ...base import DeliveryFailed
from ...platform import delivery_failure
from ...settings import Secret
from .._http import (
    Answer,
    PlatformError,
    PlatformUnreachable,
    Upload,
    bounded_sleep,
    request,
    transport_failure,
)
from .media import Media, mxc_parts

__all__ = ["MatrixApi", "MatrixError"]

CLIENT = "/_matrix/client/v3"
MEDIA_DOWNLOAD = "/_matrix/client/v1/media/download"
MEDIA_UPLOAD = "/_matrix/media/v3/upload"
_CALL_TIMEOUT_S = 30.0
_HTTP_MARGIN_S = 15.0
_ERRCODE_CHARS = 64


class MatrixError(PlatformError):
    """The homeserver refused or did not understand us; the text is log-safe."""


def errcode(answer: Answer) -> str | None:
    body = answer.json()
    code = body.get("errcode") if isinstance(body, dict) else None
    if isinstance(code, str) and code.isascii() and code.replace("_", "").isalnum():
        return code[:_ERRCODE_CHARS]
    return None


class MatrixApi:
    def __init__(self, http: httpx.AsyncClient, homeserver: str, token: Secret) -> None:
        self._http = http
        self._homeserver = homeserver.rstrip("/")
        self._token = token

    def _url(self, *segments: str) -> str:
        return self._homeserver + CLIENT + "".join("/" + quote(s, safe="") for s in segments)

    async def _call(self, method: str, segments: tuple[str, ...], *, what: str,
                    timeout_s: float = _CALL_TIMEOUT_S, body: object = None,
                    params: Mapping[str, str | int] | None = None) -> Answer:
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        return await request(self._http, method, self._url(*segments), what=what,
                             timeout_s=timeout_s, json_body=body, params=params,
                             headers=headers)

    @staticmethod
    def _body(answer: Answer, what: str) -> dict[str, Any]:
        body = answer.json()
        if answer.ok and isinstance(body, dict):
            return body
        code = errcode(answer)
        if answer.status == 401 or code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
            raise MatrixError(f"{what}: the access token was refused ({code or 401})")
        raise MatrixError(f"{what}: {code or 'error'} (HTTP {answer.status})")

    # -- who we are ----------------------------------------------------------------------

    async def whoami(self) -> str:
        body = self._body(await self._call("GET", ("account", "whoami"), what="whoami"),
                          "whoami")
        user_id = body.get("user_id")
        if not isinstance(user_id, str) or not user_id.startswith("@"):
            raise MatrixError("whoami: unexpected answer")
        return user_id

    async def display_name(self, user_id: str) -> str | None:
        answer = await self._call("GET", ("profile", user_id, "displayname"),
                                  what="displayname")
        if answer.status == 404:
            return None
        name = self._body(answer, "displayname").get("displayname")
        return name if isinstance(name, str) and name.strip() else None

    async def direct_rooms(self, user_id: str) -> Any:
        """The content of our ``m.direct`` account data, or None if we have none."""
        answer = await self._call("GET", ("user", user_id, "account_data", "m.direct"),
                                  what="account_data")
        if answer.status == 404:
            return None
        return self._body(answer, "account_data")

    async def joined_member_count(self, room_id: str) -> int | None:
        answer = await self._call("GET", ("rooms", room_id, "joined_members"),
                                  what="joined_members")
        if answer.status in (403, 404):  # not (or no longer) in the room
            return None
        joined = self._body(answer, "joined_members").get("joined")
        return len(joined) if isinstance(joined, dict) else None

    # -- receiving -----------------------------------------------------------------------

    async def sync(self, since: str | None, timeout_ms: int, sync_filter: str
                   ) -> dict[str, Any] | None:
        """One ``/sync``; None after waiting out a 429 (the caller just syncs again)."""
        params: dict[str, str | int] = {"timeout": timeout_ms, "filter": sync_filter}
        if since is not None:
            params["since"] = since
        answer = await self._call("GET", ("sync",), what="sync", params=params,
                                  timeout_s=timeout_ms / 1000 + _HTTP_MARGIN_S)
        if answer.status == 429:
            await bounded_sleep(answer.retry_after())
            return None
        body = self._body(answer, "sync")
        if not isinstance(body.get("next_batch"), str) or not body["next_batch"]:
            raise MatrixError("sync: answer without next_batch")
        return body

    async def messages_before(self, room_id: str, start: str, stop: str, limit: int,
                              event_filter: str) -> tuple[list[Any], str | None]:
        """One page of ``/messages`` going back from ``start`` towards ``stop``:
        ``(events newest first, token for the next page or None)``."""
        params: dict[str, str | int] = {"from": start, "to": stop, "dir": "b",
                                        "limit": limit, "filter": event_filter}
        answer = await self._call("GET", ("rooms", room_id, "messages"), what="messages",
                                  params=params)
        body = self._body(answer, "messages")
        chunk = body.get("chunk")
        end = body.get("end")
        return (chunk if isinstance(chunk, list) else [],
                end if isinstance(end, str) and end else None)

    async def join(self, room_id: str) -> None:
        self._body(await self._call("POST", ("join", room_id), what="join", body={}), "join")

    # -- media ---------------------------------------------------------------------------

    def download(self, media: Media) -> InboundAttachment:
        """The file, from our homeserver's authenticated media endpoint."""
        url = (self._homeserver + MEDIA_DOWNLOAD + "/" + quote(media.server, safe="") +
               "/" + quote(media.media_id, safe=""))
        origin = origin_of(self._homeserver)
        return platform_attachment(
            self._http, url, declared_name=media.name, declared_type=media.declared_type,
            origins=[origin] if origin else [],
            headers={"Authorization": f"Bearer {self._token.reveal()}"})

    async def upload(self, file: OutboundFile) -> str:
        """The ``mxc://`` URI of ``file`` uploaded to our homeserver."""
        try:
            answer = await request(
                self._http, "POST", self._homeserver + MEDIA_UPLOAD, what="upload",
                timeout_s=_CALL_TIMEOUT_S, params={"filename": file.name},
                headers={"Authorization": f"Bearer {self._token.reveal()}",
                         "Content-Type": file.media_type},
                upload=Upload(raw=file.data))
        except PlatformUnreachable as exc:
            raise transport_failure(exc) from None
        failure = delivery_failure(answer.response(), "upload")
        if failure is not None:
            raise failure
        body = answer.json()
        uri = body.get("content_uri") if isinstance(body, dict) else None
        if mxc_parts(uri) is None:
            raise DeliveryFailed("upload: answer without a content_uri", retryable=True)
        assert isinstance(uri, str)
        return uri

    # -- sending -------------------------------------------------------------------------

    async def send(self, room_id: str, txn_id: str, content: dict[str, Any]) -> str:
        """PUT the event under ``txn_id``: a retry with the same id is the same event
        (the homeserver answers with the first one's id). Raises ``DeliveryFailed``."""
        try:
            answer = await self._call(
                "PUT", ("rooms", room_id, "send", "m.room.message", txn_id),
                what="send", body=content)
        except PlatformUnreachable as exc:
            raise transport_failure(exc) from None
        failure = delivery_failure(answer.response(), "send")
        if failure is not None:
            code = errcode(answer)
            if code is not None:
                failure = DeliveryFailed(f"{failure} {code}", retryable=failure.retryable,
                                         retry_after=failure.retry_after)
            raise failure
        body = answer.json()
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if not isinstance(event_id, str):
            raise DeliveryFailed("send: answer without event_id", retryable=True)
        return event_id


def compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
