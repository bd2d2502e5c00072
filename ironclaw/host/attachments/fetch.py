"""Byte sources: an attachment's bytes from the platform's own servers, or from memory.

:func:`platform_attachment` is how an adapter describes a file behind a URL. The URL
comes from the platform's JSON, which a sender can shape (a Discord embed, a link in a
Matrix event), so it is fetched only when its scheme, host and port are one of the
platform's own origins (the adapter's configured API base, or the platform's documented
file host); anything else is refused before a connection is made, which is what keeps a
hostile message from turning the control plane into a client of its private network.
Redirects are not followed (one could leave the platform), the body is streamed raw
(``Accept-Encoding: identity``, no transparent decompression, so a small gzip cannot
expand in memory), and the caller caps the count of bytes it takes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping

import httpx

from .model import AttachmentRefused, ByteSource, InboundAttachment

__all__ = ["Origin", "bytes_source", "origin_of", "platform_attachment", "refused"]

Origin = tuple[str, str, int]  # scheme, host (lowercase), port
_CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin | None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.host or parsed.userinfo:
        return None
    return parsed.scheme, parsed.host.lower(), parsed.port or _DEFAULT_PORTS[parsed.scheme]


def refused(declared_name: str, reason: str,
            declared_type: str | None = None) -> InboundAttachment:
    return InboundAttachment(declared_name, declared_type, refused=reason)


def platform_attachment(http: httpx.AsyncClient, url: str, *, declared_name: str,
                        declared_type: str | None, origins: Iterable[Origin],
                        headers: Mapping[str, str] | None = None,
                        method: str = "GET") -> InboundAttachment:
    """An attachment fetched from ``url`` if it lies on one of ``origins``; a refused
    one otherwise. ``headers`` (a bearer token) go only to that origin."""
    origin = origin_of(url)
    if origin is None or origin not in set(origins):
        return refused(declared_name, "its URL points outside the platform", declared_type)

    @contextlib.asynccontextmanager
    async def source() -> AsyncIterator[AsyncIterator[bytes]]:
        request_headers = {"Accept-Encoding": "identity", **(headers or {})}
        try:
            async with http.stream(method, url, headers=request_headers,
                                   follow_redirects=False) as response:
                if response.status_code != 200:
                    raise AttachmentRefused(
                        f"the platform answered {response.status_code} for the file")
                yield response.aiter_raw(_CHUNK)
        except httpx.HTTPError as exc:
            # The text of an httpx error names the URL, which may carry a token.
            raise AttachmentRefused(f"the download failed ({type(exc).__name__})") from None

    return InboundAttachment(declared_name, declared_type, source=source)


def bytes_source(data: bytes) -> ByteSource:
    """A source over bytes already in hand (a MIME part, a webhook's base64 part)."""

    @contextlib.asynccontextmanager
    async def source() -> AsyncIterator[AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), _CHUNK):
                yield data[start:start + _CHUNK]

        yield chunks()

    return source
