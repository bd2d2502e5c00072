"""The HTTP side of ironctl: one :class:`Api` per run, errors as exit codes.

The token travels only in the ``Authorization`` header, never in a URL. Redirects
are never followed and proxy settings from the environment are ignored, so the
token goes to the address the operator named and nowhere else. Ids from the
command line are percent-encoded into paths, so an id cannot walk to another route.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import attrs
import httpx

DEFAULT_ADDR = "http://127.0.0.1:8787"
ENV_ADDR = "IRONCLAW_API_ADDR"
ENV_TOKEN = "IRONCLAW_API_TOKEN"
MAX_ERROR_BODY = 300

# Exit codes.
OK = 0
FAILED = 1
USAGE = 2
AUTH = 3
NOT_FOUND = 4
CONFLICT = 5


class CliError(Exception):
    """A failure to report on stderr, with the exit code it maps to."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, USAGE)


def exit_code_for(status: int) -> int:
    if status in (401, 403):
        return AUTH
    if status == 404:
        return NOT_FOUND
    if status == 409:
        return CONFLICT
    return FAILED


class ApiFailure(CliError):
    """The API answered with an error status (its ``{error, detail}`` body)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {error}: {detail}", exit_code_for(status))
        self.status = status
        self.error = error
        self.detail = detail

    def as_json(self) -> dict[str, object]:
        return {"status": self.status, "error": self.error, "detail": self.detail}


def failure_from(status: int, body: bytes | str, reason: str = "") -> ApiFailure:
    """An :class:`ApiFailure` from an error response's status and body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    error, detail = reason or "error", " ".join(text.split())[:MAX_ERROR_BODY]
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        error = parsed["error"]
        found = parsed.get("detail")
        detail = found[:MAX_ERROR_BODY] if isinstance(found, str) else ""
    return ApiFailure(status, error, detail or error)


@attrs.frozen
class Target:
    """Where the API is: ``http(s)://host[:port][/prefix]``, checked."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, addr: str) -> Target:
        text = addr.strip()
        if "://" not in text:
            text = "http://" + text
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise UsageError(f"bad --addr: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise UsageError("--addr must be an http:// or https:// address")
        if parts.username is not None or parts.password is not None:
            raise UsageError("--addr must not carry credentials; use --token")
        if parts.query or parts.fragment or not parts.hostname:
            raise UsageError("--addr is scheme://host[:port][/prefix], nothing more")
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def check_token(token: str | None) -> str | None:
    if token is None:
        return None
    token = token.strip()
    if not token:
        return None
    if any(not 0x21 <= ord(ch) <= 0x7E for ch in token):
        # Never echo it: it may be a real token with a stray character.
        raise UsageError("the token must be printable ASCII without spaces")
    return token


def read_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(4096).strip()
    except OSError as exc:
        raise UsageError(f"cannot read the token file: {exc.strerror or exc}") from None


def path(*parts: str) -> str:
    """A ``/v1/...`` path with every dynamic part percent-encoded."""
    return "/".join(quote(p, safe="") if i else p for i, p in enumerate(parts))


class Api:
    """A thin async client for the control plane's HTTP API."""

    def __init__(self, target: Target, token: str | None, *, timeout: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.target = target
        self.token = token
        self.timeout = timeout
        headers = {"Accept": "application/json", "User-Agent": "ironctl"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.AsyncClient(
            base_url=target.base_url, headers=headers, timeout=timeout,
            transport=transport, follow_redirects=False, trust_env=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, url: str, *,
                      params: Mapping[str, object] | None = None,
                      body: object = None) -> httpx.Response:
        """The raw response; raises :class:`CliError` only when there is none."""
        try:
            return await self._client.request(
                method, url, params=_params(params),
                json=body if method != "GET" else None)
        except httpx.TimeoutException:
            raise CliError(f"timed out after {self.timeout:g} s waiting for "
                           f"{self.target.base_url}") from None
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the API at {self.target.base_url}: "
                           f"{_reason(exc)}") from None

    async def call(self, method: str, url: str, *,
                   params: Mapping[str, object] | None = None, body: object = None) -> Any:
        """The decoded JSON of a successful response; :class:`ApiFailure` otherwise."""
        response = await self.request(method, url, params=params, body=body)
        if response.status_code >= 400:
            raise failure_from(response.status_code, response.content,
                               response.reason_phrase)
        try:
            return response.json()
        except ValueError:
            raise CliError(f"the API answered {url} with something that is not "
                           "JSON") from None

    async def get(self, url: str, **params: object) -> Any:
        return await self.call("GET", url, params=params)

    async def post(self, url: str, body: object) -> Any:
        return await self.call("POST", url, body=body)

    async def delete(self, url: str, **params: object) -> Any:
        return await self.call("DELETE", url, params=params)

    @asynccontextmanager
    async def stream(self, url: str, **params: object) -> AsyncIterator[httpx.Response]:
        """A streamed GET (no read timeout: an export may take long)."""
        timeout = httpx.Timeout(self.timeout, read=None)
        try:
            async with self._client.stream("GET", url, params=_params(params),
                                           timeout=timeout) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    raise failure_from(response.status_code, body,
                                       response.reason_phrase)
                yield response
        except httpx.TimeoutException:
            raise CliError(f"timed out waiting for {self.target.base_url}") from None
        except httpx.HTTPError as exc:
            raise CliError(f"the stream from {self.target.base_url} failed: "
                           f"{_reason(exc)}") from None


def _params(params: Mapping[str, object] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (params or {}).items() if v is not None}


def _reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause or exc) or type(exc).__name__
    return " ".join(text.split())[:200]
