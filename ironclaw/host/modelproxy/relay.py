"""Answering one admitted request: forward it upstream (httpx) or to the mock, and
stream the answer back through the redactor.

Failures map to plain JSON errors, never a stack trace: connect failures to 502,
timeouts to 504. Once the response has started, an upstream failure can no longer
become a status code; the connection is then cut without the final chunk
(:class:`Aborted`), so the sandbox sees a truncated response rather than a complete
one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterable, Sequence
from contextlib import suppress
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import cast

import attrs
import httpx
import trio

from ironclaw.host.sockets.http import RequestHead, ServerConnection

from . import mock
from .answers import AnswerReader
from .events import Outcome
from .providers import (
    ProviderEndpoint,
    request_headers_for_upstream,
    response_headers_for_sandbox,
)
from .redact import Redactor

__all__ = ["Aborted", "Tally", "forward", "new_client", "send_error", "serve_mock"]

PLAIN_ENCODINGS = frozenset({"", "identity", "gzip", "deflate", "x-gzip"})


class Aborted(Exception):
    """The response was cut short; the connection must be closed, not reused."""


@attrs.define
class Tally:
    """What one call did, accumulated as it goes (counts only)."""

    status: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    redactions: int = 0
    outcome: Outcome = Outcome.OK
    # Why the model stopped, or what the provider's error said (answers.py).
    stop: str = ""
    failure: str = ""


def new_client(*, connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    """The host's one upstream client: no environment proxies or netrc, no redirects,
    and a cookie jar that refuses every cookie, so nothing set for one session's call
    is ever sent on another's."""
    return httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=32),
    )


async def send_error(conn: ServerConnection, tally: Tally, status: int, outcome: Outcome,
                     detail: str, headers: Sequence[tuple[str, str]] = (), *,
                     close: bool = False) -> None:
    tally.status, tally.outcome = status, outcome
    if not conn.can_respond:
        raise Aborted()
    body = json.dumps({"error": outcome, "detail": detail}).encode()
    tally.response_bytes += len(body)
    await conn.respond(status, [("content-type", "application/json"), *headers], body,
                       close=close)


async def _relay(conn: ServerConnection, tally: Tally, status: int,
                 headers: Iterable[tuple[str, str]], source: AsyncGenerator[bytes, None],
                 redactor: Redactor) -> None:
    """Stream a response to the sandbox through the redactor. ``source`` is finished
    however this ends (a sandbox that hangs up mid-stream included)."""
    safe: list[tuple[str, str]] = []
    for name, value in headers:
        clean, count = redactor.redact_text(value)
        tally.redactions += count
        safe.append((name, clean))
    tally.status = status
    await conn.start(status, safe)
    scrubber = redactor.stream()
    content_type = next((value for name, value in safe if name == "content-type"), "")
    reader = AnswerReader(status, content_type)
    try:
        async for chunk in source:
            reader.feed(chunk)
            out = scrubber.feed(chunk)
            tally.response_bytes += len(out)
            await conn.send(out)
        out = scrubber.finish()
        tally.response_bytes += len(out)
        await conn.send(out)
        summary = reader.finish()
        tally.stop, tally.failure = summary.stop, summary.failure
    except BaseException:
        await _unwind(source)
        raise
    finally:
        tally.redactions += scrubber.count
    await conn.end()


async def _unwind(source: AsyncGenerator[bytes, None]) -> None:
    """Finish a half-read body generator from the inside.

    ``aclose()`` would stop only the outermost generator: httpcore reads the body with a
    generator nested in another, and the inner one would be left for the garbage
    collector (which Trio reports). Resumed under a cancelled scope instead, the first
    checkpoint inside the innermost generator raises and unwinds every level properly.
    """
    with trio.CancelScope() as scope:
        scope.cancel()
        with suppress(Exception, trio.Cancelled):
            while True:
                await source.__anext__()


async def forward(client: httpx.AsyncClient, endpoint: ProviderEndpoint, head: RequestHead,
                  body: bytes, conn: ServerConnection, tally: Tally,
                  redactor: Redactor) -> None:
    """Send the request to the endpoint's upstream (never where Host points) with the
    host's credential, and relay the answer."""
    try:
        request = client.build_request(
            head.method, endpoint.upstream_url(head.path, head.query),
            headers=[(name.encode("latin-1"), value.encode("latin-1"))  # byte-exact
                     for name, value in request_headers_for_upstream(head.headers, endpoint)],
            content=body)
    except (httpx.InvalidURL, ValueError):
        await send_error(conn, tally, 400, Outcome.BAD_REQUEST,
                         "the request cannot be forwarded as sent", close=True)
        return
    try:
        response = await client.send(request, stream=True)
    except httpx.TimeoutException:
        await send_error(conn, tally, 504, Outcome.UPSTREAM_TIMEOUT,
                         "the model provider did not answer in time")
        return
    except httpx.HTTPError:
        await send_error(conn, tally, 502, Outcome.UPSTREAM_UNREACHABLE,
                         "the model provider could not be reached")
        return
    try:
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in PLAIN_ENCODINGS:
            await send_error(conn, tally, 502, Outcome.UPSTREAM_ABORTED,
                             "the model provider used an unsupported content encoding")
            return
        headers = response_headers_for_sandbox(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in response.headers.raw)
        try:
            # httpx's aiter_bytes is an async generator; say so, so that it is closed.
            source = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
            await _relay(conn, tally, response.status_code, headers, source, redactor)
        except httpx.TimeoutException:
            tally.outcome = Outcome.UPSTREAM_TIMEOUT
            raise Aborted() from None
        except httpx.HTTPError:
            tally.outcome = Outcome.UPSTREAM_ABORTED
            raise Aborted() from None
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await response.aclose()


async def serve_mock(head: RequestHead, body: bytes, conn: ServerConnection, tally: Tally,
                     redactor: Redactor) -> None:
    """The mock provider, answered here: nothing leaves the host."""
    reply = mock.respond(head.method, head.path, body)

    async def chunks() -> AsyncGenerator[bytes, None]:
        for chunk in reply.chunks:
            yield chunk

    headers = [("content-type", reply.content_type)]
    if reply.content_type == "text/event-stream":
        headers.append(("cache-control", "no-cache"))
    await _relay(conn, tally, reply.status, headers, chunks(), redactor)

