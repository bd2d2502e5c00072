"""Slack's Web API, the three methods we call: ``auth.test``, ``apps.connections.open``
and ``chat.postMessage``.

Slack answers an error two ways: an HTTP status (429 with ``Retry-After`` when rate
limited, 5xx when it is unwell) or HTTP 200 with ``{"ok": false, "error": "<code>"}``
(``ratelimited`` included). Both become a :class:`SlackApiError`, which is a
:class:`DeliveryFailed` (so ``deliver`` raises it as is) carrying Slack's error code,
whether a retry may help and how long Slack asked us to wait. Its text names the method
and the code, never a token (tokens travel in the ``Authorization`` header, not the URL)
and never a URL.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

import httpx

from ...base import DeliveryFailed
from ...platform import delivery_failure, retry_after_of
from ...settings import Secret

__all__ = ["RATE_LIMITED", "SlackApiError", "SlackWebApi"]

DEFAULT_API_BASE = "https://slack.com/api"
API_TIMEOUT = 20.0
MAX_RESPONSE_BYTES = 1 << 20

RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
# Slack being unwell: the same call later may succeed.
_TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable",
                        "request_timeout", "http_error"})
# The token is wrong, revoked or lacks a scope: retrying will not help; a human must.
CREDENTIAL_ERRORS = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
    "no_permission", "missing_scope", "not_allowed_token_type", "team_access_not_granted",
    "ekm_access_denied", "org_login_required", "invalid_token"})
_CODE = re.compile(r"[a-z0-9_.]{1,64}")


class SlackApiError(DeliveryFailed):
    """A Web API call failed. ``error`` is Slack's error code (``http_<status>`` for an
    HTTP-level failure, ``transport`` when no answer came)."""

    def __init__(self, method: str, error: str, *, retryable: bool,
                 retry_after: float | None = None, detail: str = "") -> None:
        text = f"slack {method}: {error}" + (f" ({detail})" if detail else "")
        super().__init__(text, retryable=retryable, retry_after=retry_after)
        self.method = method
        self.error = error

    @property
    def rate_limited(self) -> bool:
        return self.error in RATE_LIMITED or self.error == "http_429"

    @property
    def credentials(self) -> bool:
        return self.error in CREDENTIAL_ERRORS or self.error in ("http_401", "http_403")


def _safe_code(value: object) -> str:
    return value if isinstance(value, str) and _CODE.fullmatch(value) else "unknown_error"


class SlackWebApi:
    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self._http = http
        self._base = base.rstrip("/")

    async def call(self, method: str, token: Secret, body: dict[str, Any] | None = None, *,
                   form: dict[str, str] | None = None) -> dict[str, Any]:
        """POST ``method`` with ``body`` as JSON (or ``form`` url-encoded, which some
        methods require); the decoded answer when ``ok``."""
        headers = {"Authorization": f"Bearer {token.reveal()}"}
        content = b""
        if body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
            content = json.dumps(body).encode()
        elif form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            content = urllib.parse.urlencode(form).encode()
        try:
            response = await self._http.post(f"{self._base}/{method}", content=content,
                                             headers=headers, timeout=API_TIMEOUT)
        except httpx.HTTPError as exc:
            # The exception's text names the URL; only its type is safe to repeat.
            raise SlackApiError(method, "transport", retryable=True,
                                detail=type(exc).__name__) from None
        failure = delivery_failure(response, f"slack {method}")
        if failure is not None:
            raise SlackApiError(method, f"http_{response.status_code}",
                                retryable=failure.retryable,
                                retry_after=failure.retry_after) from None
        try:
            answer = json.loads(response.content[:MAX_RESPONSE_BYTES])
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise SlackApiError(method, "bad_response", retryable=True)
        if answer.get("ok") is True:
            return answer
        error = _safe_code(answer.get("error"))
        if error in RATE_LIMITED:
            raise SlackApiError(method, error, retryable=True,
                                retry_after=retry_after_of(response) or 1.0)
        if error in CREDENTIAL_ERRORS:
            raise SlackApiError(method, error, retryable=False,
                                detail="the token was refused or lacks a scope")
        raise SlackApiError(method, error, retryable=error in _TRANSIENT)
