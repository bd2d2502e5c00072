"""HTTP plumbing shared by the long-polling adapters (Telegram, Matrix).

One rule above all: nothing httpx raises may escape, because its text (or a traceback
chained to it) can name the request URL, and Telegram puts the bot token in the path.
Every transport failure becomes a :class:`PlatformUnreachable` whose text names only
what we were doing, raised ``from None``. Answers are read with a size cap, so a broken
or hostile endpoint cannot make us buffer without bound.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any, cast

import attrs
import httpx
import trio

from ..base import ChannelError, DeliveryFailed
from ..platform import retry_after_of

__all__ = [
    "MAX_ANSWER_BYTES",
    "Answer",
    "PlatformError",
    "PlatformUnreachable",
    "Upload",
    "bounded_sleep",
    "is_loopback_url",
    "request",
    "transport_failure",
]

MAX_ANSWER_BYTES = 16 * 1024 * 1024
# A platform asking us to wait longer than this on the receive side is capped: we poll
# again after this long, and it tells us again if it still means it.
MAX_RECEIVE_BACKOFF_S = 300.0


class PlatformError(ChannelError):
    """The platform answered, but not with what we can use. Text is log-safe."""


class PlatformUnreachable(ChannelError):
    """No usable answer: connection refused or cut, timeout, oversized answer."""


@attrs.frozen
class Upload:
    """A request body that carries a file: multipart ``fields`` and ``files`` (name ->
    ``(filename, bytes, media type)``), or ``raw`` bytes (a media upload)."""

    fields: Mapping[str, str] = attrs.field(factory=dict)
    files: Mapping[str, tuple[str, bytes, str]] = attrs.field(factory=dict)
    raw: bytes | None = None


@attrs.frozen
class Answer:
    """A platform's HTTP answer, read in full (within the cap)."""

    status: int
    headers: httpx.Headers
    content: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.content) if self.content else None
        except ValueError:
            return None

    def response(self) -> httpx.Response:
        """An ``httpx.Response`` view, for the helpers in ``..platform``."""
        return httpx.Response(self.status, headers=self.headers, content=self.content)

    def retry_after(self) -> float | None:
        return retry_after_of(self.response())


async def request(http: httpx.AsyncClient, method: str, url: str, *, what: str,
                  timeout_s: float, json_body: object = None,
                  params: Mapping[str, str | int] | None = None,
                  headers: Mapping[str, str] | None = None,
                  max_bytes: int = MAX_ANSWER_BYTES, upload: Upload | None = None) -> Answer:
    """Send one request on the shared client; raise :class:`PlatformUnreachable` (with
    a text naming ``what``, never the URL) when no complete answer arrived. ``upload``
    sends a file: as a multipart form, or as the raw body."""
    extra: dict[str, Any] = {}
    if upload is not None:
        extra = ({"content": upload.raw} if upload.raw is not None
                 else {"data": dict(upload.fields), "files": dict(upload.files)})
    try:
        async with http.stream(method, url, json=json_body, params=params, headers=headers,
                               timeout=timeout_s, **extra) as response:
            chunks: list[bytes] = []
            size = 0
            # httpx's iterator is an async generator: close it when we stop early.
            body = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
            async with aclosing(body):
                async for chunk in body:
                    size += len(chunk)
                    if size > max_bytes:
                        raise PlatformUnreachable(
                            f"{what}: answer larger than {max_bytes} bytes")
                    chunks.append(chunk)
            return Answer(response.status_code, response.headers, b"".join(chunks))
    except httpx.TimeoutException:
        raise PlatformUnreachable(f"{what}: timed out") from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        raise PlatformUnreachable(f"{what}: {type(exc).__name__}") from None


def transport_failure(error: PlatformUnreachable) -> DeliveryFailed:
    """A send that got no answer: maybe it arrived, maybe not; retrying is the caller's
    call (idempotent platforms dedup; others risk a duplicate over a loss)."""
    return DeliveryFailed(str(error), retryable=True)


async def bounded_sleep(seconds: float | None, *, default: float = 1.0) -> None:
    """Wait as a platform asked (429), within sane bounds: never spin, never hang."""
    delay = default if seconds is None or not math.isfinite(seconds) else seconds
    await trio.sleep(min(max(delay, 0.05), MAX_RECEIVE_BACKOFF_S))


def is_loopback_url(url: httpx.URL) -> bool:
    return url.host in ("127.0.0.1", "::1", "localhost")
