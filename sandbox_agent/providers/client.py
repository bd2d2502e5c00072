"""The one road to a model: HTTP over the model-proxy unix socket.

The sandbox has no network. Every request goes to ``model.sock``, a host-owned socket
whose far end is the model proxy. The request's Host header names the upstream
(``http://<provider.host>``); the proxy checks it against its allowlist, adds the
credentials the sandbox never sees, and speaks TLS upstream. So this client sends no
authorisation header of any kind, and the socket it connects to is the session's
identity: nothing in the request can claim to be another session.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from ironclaw.contract.jsonvalue import JSONRejected, parse_json

from .resilience import (
    CircuitBreaker,
    HostUnreachable,
    ProviderFailure,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
    RetryPolicy,
    parse_failure,
    should_retry,
)

log = logging.getLogger(__name__)

# A model answer is text and tool calls; anything near this size is a fault.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
# Generous read timeout: a long completion is normal, a silent proxy is not.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=30.0, pool=10.0)
USER_AGENT = "ironclaw-sandbox-agent"


class ModelClient:
    """POSTs JSON to the proxy with retries and a circuit breaker."""

    def __init__(self, http: httpx.AsyncClient, *, policy: RetryPolicy,
                 breaker: CircuitBreaker, rng: random.Random | None = None) -> None:
        self._http = http
        self.policy = policy
        self.breaker = breaker
        self._rng = rng or random.Random()

    async def post_json(self, path: str, body: Mapping[str, Any],
                        headers: Mapping[str, str] | None = None) -> Any:
        failure = "no attempt made"
        unreachable = False
        for attempt in range(self.policy.retries + 1):
            self.breaker.check()
            delay: float | None = None
            unreachable = False
            try:
                response = await self._http.post(path, json=body, headers=headers)
            except httpx.ConnectError:
                # The proxy's socket refuses us: the host, not the model, is away.
                failure, unreachable = "the model socket refused the connection", True
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                # The host-owned socket broke mid-call (reset, closed before an answer):
                # the proxy itself went away, as when the control plane is killed. An
                # upstream failure would have come back as an HTTP status instead.
                failure, unreachable = f"the model socket broke ({type(exc).__name__})", True
            except httpx.TransportError as exc:
                failure = f"transport error ({type(exc).__name__})"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        decoded = _decode(response)
                    except ProviderProtocolError:
                        self.breaker.record_failure()
                        raise
                    self.breaker.record_success()
                    return decoded
                parsed = _failure(response)
                if not should_retry(status, response.headers):
                    # The provider is up and answering; this request is what it refuses.
                    raise ProviderRejected(status, _snippet(response), parsed)
                failure = f"HTTP {status} ({parsed.kind})"
                delay = self.policy.server_delay(response.headers)
            if not unreachable:
                self.breaker.record_failure()
            log.info("model attempt %d failed: %s", attempt + 1, failure)
            if attempt == self.policy.retries:
                break
            await trio.sleep(delay if delay is not None
                             else self.policy.backoff(attempt, self._rng))
        if unreachable:
            raise HostUnreachable(failure)
        raise ProviderUnavailable(f"model unavailable after "
                                  f"{self.policy.retries + 1} attempts: {failure}")


def _decode(response: httpx.Response) -> Any:
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise ProviderProtocolError("model response too large")
    try:
        return parse_json(response.content, max_bytes=MAX_RESPONSE_BYTES)
    except JSONRejected as exc:
        raise ProviderProtocolError(f"model response is not JSON: {exc}") from None


def _failure(response: httpx.Response) -> ProviderFailure:
    try:
        body = parse_json(response.content, max_bytes=MAX_RESPONSE_BYTES)
    except JSONRejected:
        body = None
    return parse_failure(response.status_code, body)


def _snippet(response: httpx.Response) -> str:
    return response.text[:200].replace("\n", " ")


@asynccontextmanager
async def open_model_client(
        *, socket_path: Path, upstream_host: str, policy: RetryPolicy,
        breaker: CircuitBreaker, transport: httpx.AsyncBaseTransport | None = None,
        http_timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        rng: random.Random | None = None) -> AsyncIterator[ModelClient]:
    """A client bound to the proxy socket. ``transport`` replaces the socket in tests
    that need no real I/O (for a virtual clock)."""
    chosen = transport or httpx.AsyncHTTPTransport(uds=str(socket_path), retries=0)
    async with httpx.AsyncClient(
            transport=chosen, base_url=f"http://{upstream_host}", timeout=http_timeout,
            headers={"user-agent": USER_AGENT}, trust_env=False,
            follow_redirects=False) as http:
        yield ModelClient(http, policy=policy, breaker=breaker, rng=rng)
