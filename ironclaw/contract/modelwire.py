"""What a model provider's answer means, in one vocabulary both sides share.

The agent acts on why the model stopped and on what an error body says; the model proxy
counts the same things for ``/metrics`` and tells the operator when a provider keeps
failing. Both read provider words (Anthropic Messages, OpenAI Chat Completions and the
servers that copy it) through these tables, so they cannot disagree.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

__all__ = ["FailureKind", "ProviderFailure", "StopKind", "classify_stop", "parse_failure"]

MAX_ERROR_MESSAGE = 300


class StopKind(enum.StrEnum):
    """Why the model stopped, in our words."""

    COMPLETE = "complete"  # it finished its answer
    TOOL_USE = "tool_use"  # it wants its tool calls run
    TRUNCATED = "truncated"  # cut off by the output limit: the answer is incomplete
    REFUSED = "refused"  # the model declined
    FILTERED = "filtered"  # the provider's content filter withheld the answer
    UNKNOWN = "unknown"


# Anthropic's stop_reason and OpenAI's finish_reason words (they do not collide).
STOP_REASONS: Mapping[str, StopKind] = {
    "end_turn": StopKind.COMPLETE, "stop_sequence": StopKind.COMPLETE,
    "stop": StopKind.COMPLETE, "tool_use": StopKind.TOOL_USE,
    "tool_calls": StopKind.TOOL_USE, "function_call": StopKind.TOOL_USE,
    "max_tokens": StopKind.TRUNCATED, "length": StopKind.TRUNCATED,
    "model_context_window_exceeded": StopKind.TRUNCATED,
    # A paused server-side tool loop: what came back is not the whole answer.
    "pause_turn": StopKind.TRUNCATED,
    "refusal": StopKind.REFUSED, "content_filter": StopKind.FILTERED,
}


def classify_stop(stop_reason: str) -> StopKind:
    return STOP_REASONS.get(stop_reason, StopKind.UNKNOWN)


class FailureKind(enum.StrEnum):
    """What a provider's error body says went wrong."""

    OVERLOADED = "overloaded"
    RATE_LIMITED = "rate_limited"
    QUOTA = "quota"
    AUTH = "auth"
    PERMISSION = "permission"
    INVALID_REQUEST = "invalid_request"
    CONFLICT = "conflict"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    SERVER = "server"
    UNKNOWN = "unknown"


# Anthropic's error.type and OpenAI's error.type / error.code words.
_KINDS: Mapping[str, FailureKind] = {
    "overloaded_error": FailureKind.OVERLOADED, "rate_limit_error": FailureKind.RATE_LIMITED,
    "rate_limit_exceeded": FailureKind.RATE_LIMITED, "requests": FailureKind.RATE_LIMITED,
    "tokens": FailureKind.RATE_LIMITED, "insufficient_quota": FailureKind.QUOTA,
    "billing_error": FailureKind.QUOTA, "authentication_error": FailureKind.AUTH,
    "invalid_api_key": FailureKind.AUTH, "permission_error": FailureKind.PERMISSION,
    "invalid_request_error": FailureKind.INVALID_REQUEST,
    "not_found_error": FailureKind.NOT_FOUND, "model_not_found": FailureKind.NOT_FOUND,
    "conflict_error": FailureKind.CONFLICT,
    "memory_path_conflict_error": FailureKind.CONFLICT,
    "memory_precondition_failed_error": FailureKind.CONFLICT,
    "request_too_large": FailureKind.TOO_LARGE, "timeout_error": FailureKind.TIMEOUT,
    "api_error": FailureKind.SERVER, "server_error": FailureKind.SERVER,
}
_STATUS_KINDS: Mapping[int, FailureKind] = {
    400: FailureKind.INVALID_REQUEST, 401: FailureKind.AUTH, 403: FailureKind.PERMISSION,
    404: FailureKind.NOT_FOUND, 408: FailureKind.TIMEOUT, 409: FailureKind.CONFLICT,
    413: FailureKind.TOO_LARGE,
    429: FailureKind.RATE_LIMITED, 529: FailureKind.OVERLOADED,
}


@attrs.frozen
class ProviderFailure:
    """A provider's error answer, parsed: its status, kind and (bounded) message."""

    status: int
    kind: FailureKind
    message: str = ""


def parse_failure(status: int, body: object) -> ProviderFailure:
    """Read an error body in Anthropic's (``{"type": "error", "error": {"type",
    "message"}}``), OpenAI's (``{"error": {"type", "code", "message"}}``) or the proxy's
    (``{"error": word, "detail"}``) shape; anything else falls back on the status."""
    kind: FailureKind | None = None
    message = ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        # OpenAI's code is the more specific word (type invalid_request_error, code
        # invalid_api_key); Anthropic sends only a type.
        for field in ("code", "type"):
            word = error.get(field)
            if isinstance(word, str) and word in _KINDS:
                kind = _KINDS[word]
                break
        text = error.get("message")
        if isinstance(text, str):
            message = text
    elif isinstance(error, str) and isinstance(body, dict):
        detail = body.get("detail")
        message = detail if isinstance(detail, str) else error
    if kind is None:
        kind = _STATUS_KINDS.get(status, FailureKind.SERVER if status >= 500
                                 else FailureKind.UNKNOWN)
    return ProviderFailure(status, kind, message[:MAX_ERROR_MESSAGE])
