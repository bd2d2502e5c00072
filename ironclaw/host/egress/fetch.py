"""One fetch or search, from a checked target to a bounded answer.

Redirects are followed by hand, at most ``max_redirects`` hops, and each hop is a new
target that passes :func:`~ironclaw.host.egress.policy.check_target` again (allowlist,
https, port) before anything is sent to it, and the address check when it connects. A
hop that fails is refused (403 ``redirect_not_allowed``) rather than handed back, so a
redirect is never a way around the allowlist. Credentials go to their own origin only;
a 303 (and a 301/302 after POST) continues as a body-less GET, as browsers do.

The body is read up to the cap and no further: the read stops (and the connection is
dropped) at ``max_response_bytes + 1`` bytes, after decompression when the upstream
compressed anyway (we ask for identity; gzip and deflate are inflated with a bounded
output size, anything else is refused), so a small compressed body cannot expand into
a large one in memory.
"""

from __future__ import annotations

import codecs
import zlib
from collections.abc import Sequence
from urllib.parse import quote

import attrs
import httpx
import trio

from ironclaw.contract.jsonvalue import JSONRejected, parse_json

from .events import Outcome
from .policy import (
    Allowlist,
    LocalService,
    Refused,
    Target,
    check_target,
    normalize_host,
    parse_url,
    redirect_headers,
    response_headers,
    upstream_headers,
)
from .upstream import AddressRefused
from .wire import FetchRequest, SearchRequest, SearchResult

__all__ = ["Fetched", "Tally", "fetch", "search"]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_TITLE_CHARS = 300
MAX_SNIPPET_CHARS = 1000
MAX_RESULT_URL_CHARS = 2048


@attrs.define
class Tally:
    """What one request did, accumulated as it goes (names and counts only)."""

    host: str = ""
    final_host: str = ""
    method: str = "<other>"
    status: int = 0
    outcome: Outcome = Outcome.OK
    upstream: bool = False
    request_bytes: int = 0
    response_bytes: int = 0
    redirects: int = 0


@attrs.frozen
class Fetched:
    status: int
    headers: dict[str, str]
    body: str
    truncated: bool
    url: str


@attrs.frozen
class Policy:
    """What a request is checked against: the group's allowlist, read fresh for this
    request, and the operator's local services."""

    allowlist: Allowlist
    services: Sequence[LocalService] = ()
    max_redirects: int = 5
    max_response_bytes: int = 256 * 1024


class _Inflater:
    def __init__(self, encoding: str) -> None:
        encoding = encoding.strip().lower()
        self._raw_fallback = encoding == "deflate"
        if encoding in ("", "identity"):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(wbits=31)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(wbits=15)
        else:
            raise Refused(502, Outcome.UPSTREAM_ERROR,
                          "the upstream used a content encoding the broker does not read")
        self._started = False

    def feed(self, data: bytes, room: int) -> tuple[bytes, bool]:
        """Up to ``room`` bytes of output, and whether there was more than that."""
        if self._zlib is None:
            return data[:room], len(data) > room
        if not self._started and self._raw_fallback:
            # "deflate" is zlib-wrapped by the RFC and raw in practice.
            self._started = True
            try:
                probe = zlib.decompressobj(wbits=15)
                out = probe.decompress(data, room)
                self._zlib = probe
                return out, bool(probe.unconsumed_tail)
            except zlib.error:
                self._zlib = zlib.decompressobj(wbits=-15)
        out = self._zlib.decompress(data, room)
        return out, bool(self._zlib.unconsumed_tail)


async def _read(response: httpx.Response, cap: int) -> tuple[bytes, bool, int]:
    """The decoded body up to ``cap`` bytes, whether it was cut, and the raw bytes read.

    Stopping early is done by cancelling a scope around the loop and letting the next
    step of the body iterator unwind: that finishes every generator httpx and httpcore
    nest inside it, instead of leaving them for the garbage collector."""
    inflater = _Inflater(response.headers.get("content-encoding", ""))
    parts: list[bytes] = []
    size = raw = 0
    truncated = False
    broken = False
    with trio.CancelScope() as stop:
        async for chunk in response.aiter_raw():
            if stop.cancel_called:
                continue
            raw += len(chunk)
            try:
                out, more = inflater.feed(chunk, cap - size)
            except zlib.error:
                broken = True
                stop.cancel()
                continue
            parts.append(out)
            size += len(out)
            if more:
                truncated = True
                stop.cancel()
    if broken:
        raise Refused(502, Outcome.UPSTREAM_ERROR, "the upstream sent a corrupt compressed body")
    return b"".join(parts), truncated, raw


def _text(response: httpx.Response, data: bytes, truncated: bool) -> str:
    encoding = response.charset_encoding or "utf-8"
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(data, final=not truncated)


def _redirect_target(current: Target, location: str, policy: Policy, tally: Tally) -> Target:
    try:
        url = current.url.join(location)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise Refused(502, Outcome.UPSTREAM_ERROR,
                      "the upstream sent a redirect that does not parse") from None
    host = normalize_host(url.raw_host.decode("ascii", "replace")) or "<invalid>"
    tally.final_host = host
    try:
        return check_target(url, policy.allowlist, policy.services)
    except Refused as exc:
        raise Refused(403, Outcome.REDIRECT_NOT_ALLOWED,
                      f"the upstream redirected to {host!r:.200}, which this session may not "
                      f"reach ({exc.outcome}); the redirect was not followed") from None


async def _exchange(client: httpx.AsyncClient, target: Target, method: str,
                    headers: list[tuple[str, str]], body: bytes, policy: Policy,
                    tally: Tally, *, read_body: bool = True) -> Fetched:
    tally.host = tally.final_host = target.host
    for hop in range(policy.max_redirects + 1):
        tally.final_host = target.host
        request = client.build_request(method, target.url, headers=headers,
                                       content=body if body else None)
        try:
            response = await client.send(request, stream=True)
        except AddressRefused as exc:
            # Refused before any connection was attempted.
            raise Refused(403, Outcome.ADDRESS_NOT_ALLOWED,
                          f"host {exc.host!r:.200} resolves to an address the broker does "
                          "not connect to (private, loopback, link-local or reserved)"
                          ) from None
        except httpx.TimeoutException:
            tally.upstream = True
            raise Refused(504, Outcome.UPSTREAM_TIMEOUT,
                          f"host {target.host!r:.200} did not answer in time") from None
        except httpx.HTTPError:
            tally.upstream = True
            raise Refused(502, Outcome.UPSTREAM_UNREACHABLE,
                          f"host {target.host!r:.200} could not be reached (connection or "
                          "TLS failure)") from None
        tally.upstream = True
        tally.request_bytes += len(body)
        try:
            location = response.headers.get("location")
            if response.status_code in REDIRECTS and location is not None:
                if hop == policy.max_redirects:
                    raise Refused(502, Outcome.TOO_MANY_REDIRECTS,
                                  f"more than {policy.max_redirects} redirects")
                following = _redirect_target(target, location, policy, tally)
                tally.redirects += 1
                drop_body = response.status_code == 303 or (
                    response.status_code in (301, 302) and method == "POST")
                if drop_body:
                    method = "GET" if method != "HEAD" else method
                    body = b""
                same = (following.url.scheme, following.host, following.port) == (
                    target.url.scheme, target.host, target.port)
                headers = redirect_headers(headers, same_origin=same, keep_body=not drop_body)
                target = following
                continue
            data, truncated = b"", False
            if read_body and method != "HEAD":
                try:
                    data, truncated, raw = await _read(response, policy.max_response_bytes)
                except httpx.TimeoutException:
                    raise Refused(504, Outcome.UPSTREAM_TIMEOUT,
                                  "the upstream stopped sending mid-body") from None
                except httpx.HTTPError:
                    raise Refused(502, Outcome.UPSTREAM_UNREACHABLE,
                                  "the upstream connection failed mid-body") from None
                tally.response_bytes += raw
            tally.status = response.status_code
            return Fetched(response.status_code, response_headers(response.headers.raw),
                           _text(response, data, truncated), truncated, str(target.url))
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await response.aclose()
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


async def fetch(client: httpx.AsyncClient, request: FetchRequest, policy: Policy,
                tally: Tally) -> Fetched:
    tally.method = request.method
    url = parse_url(request.url)
    tally.host = tally.final_host = (
        normalize_host(url.raw_host.decode("ascii", "replace")) or "<invalid>")
    target = check_target(url, policy.allowlist, policy.services)
    return await _exchange(client, target, request.method, upstream_headers(request.headers),
                           request.body, policy, tally)


async def search(client: httpx.AsyncClient, request: SearchRequest, search_url: str | None,
                 policy: Policy, tally: Tally) -> list[SearchResult]:
    tally.method = "GET"
    if search_url is None:
        raise Refused(501, Outcome.NO_SEARCH_BACKEND,
                      "no web search backend is configured on this host")
    url = parse_url(search_url.replace("{query}", quote(request.query, safe="")))
    tally.host = tally.final_host = (
        normalize_host(url.raw_host.decode("ascii", "replace")) or "<invalid>")
    try:
        target = check_target(url, policy.allowlist, policy.services)
    except Refused as exc:
        if exc.outcome is Outcome.HOST_NOT_ALLOWED:
            raise Refused(403, exc.outcome,
                          f"the search backend {tally.host!r:.200} is not on this agent "
                          "group's egress allowlist; a human must approve an 'egress' "
                          "change naming it first") from None
        raise
    fetched = await _exchange(client, target, "GET", [("accept", "application/json"),
                                                      ("accept-encoding", "identity")],
                              b"", policy, tally)
    if fetched.status != 200:
        raise Refused(502, Outcome.UPSTREAM_ERROR,
                      f"the search backend answered {fetched.status}")
    try:
        if fetched.truncated:
            raise JSONRejected("truncated")
        document = parse_json(fetched.body, max_bytes=policy.max_response_bytes * 4)
    except JSONRejected:
        raise Refused(502, Outcome.UPSTREAM_ERROR,
                      "the search backend's answer is not the expected JSON") from None
    return _results(document, request.max_results)


def _results(document: object, limit: int) -> list[SearchResult]:
    items = document.get("results") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise Refused(502, Outcome.UPSTREAM_ERROR,
                      "the search backend's answer has no result list")
    found: list[SearchResult] = []
    for item in items:
        if len(found) >= limit:
            break
        if not isinstance(item, dict):
            continue
        url, title = item.get("url"), item.get("title")
        snippet = item.get("content", item.get("snippet", ""))
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            continue
        if len(url) > MAX_RESULT_URL_CHARS:
            continue
        found.append(SearchResult(
            title=title[:MAX_TITLE_CHARS] if isinstance(title, str) else "",
            url=url,
            snippet=snippet[:MAX_SNIPPET_CHARS] if isinstance(snippet, str) else ""))
    return found
