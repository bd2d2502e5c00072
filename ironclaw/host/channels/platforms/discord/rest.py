"""Discord's REST API, the calls we make: ``GET /gateway/bot``, ``GET /channels/{id}``
and ``POST /channels/{id}/messages``.

Rate limits are honoured, not just survived. Every answer's ``X-RateLimit-Remaining``
and ``X-RateLimit-Reset-After`` headers are remembered per route (the channel, for
messages): when a bucket is empty the next call on it waits until it refills. A 429
(JSON ``{"message", "retry_after", "global"}`` plus ``Retry-After``) closes the route,
or every route when ``global`` is true, for ``retry_after`` seconds. A wait up to
``MAX_INLINE_WAIT`` is slept through; a longer one fails a delivery as retryable with
``retry_after`` (the delivery pipeline waits), while the receive side (``patient``
calls) sleeps it out.

Errors are :class:`DiscordApiError` (a :class:`DeliveryFailed`): the text names the
call, the HTTP status and Discord's numeric error code, never the URL or the token.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs
import httpx
import trio

from ironclaw.host.attachments import OutboundFile

from ...base import DeliveryFailed
from ...platform import delivery_failure, retry_after_of
from ...settings import Secret

__all__ = ["DEFAULT_API_BASE", "DiscordApiError", "DiscordRest", "GatewayInfo"]

logger = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://discord.com/api/v10"
API_TIMEOUT = 20.0
MAX_RESPONSE_BYTES = 1 << 20
MAX_INLINE_WAIT = 5.0
MAX_PATIENT_WAIT = 3600.0
_GLOBAL = "*"


class DiscordApiError(DeliveryFailed):
    """A REST call failed; ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(self, message: str, *, status: int, retryable: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.status = status


@attrs.frozen
class GatewayInfo:
    url: str
    identify_remaining: int  # identifies left in the current window
    identify_reset_after: float  # seconds until the window resets


def _number(value: object, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content[:MAX_RESPONSE_BYTES])
    except ValueError:
        return None


class DiscordRest:
    def __init__(self, http: httpx.AsyncClient, base: str, token: Secret) -> None:
        self._http = http
        self._base = base.rstrip("/")
        self._token = token
        self._closed_until: dict[str, float] = {}  # route -> trio time it reopens

    async def _request(self, method: str, path: str, route: str, what: str, *,
                       body: dict[str, Any] | None = None, file: OutboundFile | None = None,
                       patient: bool = False) -> httpx.Response:
        while True:
            now = trio.current_time()
            wait = max(self._closed_until.get(route, 0.0),
                       self._closed_until.get(_GLOBAL, 0.0)) - now
            if wait <= 0:
                break
            if wait > (MAX_PATIENT_WAIT if patient else MAX_INLINE_WAIT):
                raise DiscordApiError(f"discord {what}: rate limited for {wait:.1f} s",
                                      status=429, retryable=True, retry_after=wait)
            await trio.sleep(wait)
        headers = {"Authorization": f"Bot {self._token.reveal()}",
                   "User-Agent": "DiscordBot (https://ironclaw.invalid, 1) IronClaw"}
        payload: dict[str, Any] = {"json": body}
        if file is not None:  # the JSON goes beside the file, as payload_json
            payload = {"data": {"payload_json": json.dumps(body)},
                       "files": {"files[0]": (file.name, file.data, file.media_type)}}
        try:
            response = await self._http.request(method, f"{self._base}{path}",
                                                headers=headers, timeout=API_TIMEOUT, **payload)
        except httpx.HTTPError as exc:
            raise DiscordApiError(f"discord {what}: no answer ({type(exc).__name__})",
                                  status=0, retryable=True) from None
        self._note_limits(response, route)
        return response

    def _note_limits(self, response: httpx.Response, route: str) -> None:
        now = trio.current_time()
        if response.status_code == 429:
            body = _json(response)
            is_global = (isinstance(body, dict) and body.get("global") is True) or (
                response.headers.get("x-ratelimit-global", "").lower() == "true")
            wait = retry_after_of(response) or 1.0
            key = _GLOBAL if is_global else route
            self._closed_until[key] = max(self._closed_until.get(key, 0.0), now + wait)
            return
        remaining = response.headers.get("x-ratelimit-remaining")
        reset_after = response.headers.get("x-ratelimit-reset-after")
        if remaining == "0" and reset_after is not None:
            try:
                seconds = min(max(float(reset_after), 0.0), MAX_PATIENT_WAIT)
            except ValueError:
                return
            self._closed_until[route] = now + seconds
        if len(self._closed_until) > 4096:  # forget reopened routes
            self._closed_until = {k: v for k, v in self._closed_until.items() if v > now}

    @staticmethod
    def _failure(response: httpx.Response, what: str) -> DiscordApiError | None:
        failure = delivery_failure(response, f"discord {what}")
        if failure is None:
            return None
        text = str(failure)
        body = _json(response)
        code = body.get("code") if isinstance(body, dict) else None
        if isinstance(code, int) and not isinstance(code, bool) and code:
            text += f" [discord code {code}]"
        return DiscordApiError(text, status=response.status_code,
                               retryable=failure.retryable, retry_after=failure.retry_after)

    async def _patiently(self, method: str, path: str, route: str, what: str
                         ) -> httpx.Response:
        """A receive-side call: rate limits are slept out, never spun on."""
        while True:
            response = await self._request(method, path, route, what, patient=True)
            if response.status_code != 429:
                return response
            logger.warning("discord %s: rate limited; waiting", what)

    async def gateway_bot(self) -> GatewayInfo:
        response = await self._patiently("GET", "/gateway/bot", "gateway", "GET /gateway/bot")
        if (failure := self._failure(response, "GET /gateway/bot")) is not None:
            raise failure
        body = _json(response)
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            raise DiscordApiError("discord GET /gateway/bot: no url in the answer",
                                  status=response.status_code, retryable=True)
        limit = body.get("session_start_limit") if isinstance(body, dict) else None
        limit = limit if isinstance(limit, dict) else {}
        return GatewayInfo(url, int(_number(limit.get("remaining"), 1)),
                           _number(limit.get("reset_after"), 0.0) / 1000.0)

    async def channel(self, channel_id: str) -> dict[str, Any] | None:
        """The channel object, or None when Discord will not show it to us (403/404)."""
        response = await self._patiently("GET", f"/channels/{channel_id}",
                                         f"channel-get:{channel_id}", "GET /channels")
        if response.status_code in (403, 404):
            return None
        if (failure := self._failure(response, "GET /channels")) is not None:
            raise failure
        body = _json(response)
        return body if isinstance(body, dict) else None

    async def create_message(self, channel_id: str, content: str, nonce: str, *,
                             file: OutboundFile | None = None) -> str:
        """Post ``content`` (and ``file``); Discord's message id. ``nonce`` with
        ``enforce_nonce`` makes Discord itself return the earlier message for a repeated
        nonce."""
        body: dict[str, Any] = {"content": content, "nonce": nonce, "enforce_nonce": True,
                                # The agent may ping users it names, never @everyone.
                                "allowed_mentions": {"parse": ["users"]}}
        if file is not None:
            body["attachments"] = [{"id": 0, "filename": file.name}]
        response = await self._request("POST", f"/channels/{channel_id}/messages",
                                       f"channel:{channel_id}", "POST /channels/messages",
                                       body=body, file=file)
        if (failure := self._failure(response, "POST /channels/messages")) is not None:
            raise failure
        answer = _json(response)
        message_id = answer.get("id") if isinstance(answer, dict) else None
        return message_id if isinstance(message_id, str) and message_id else "unknown"
