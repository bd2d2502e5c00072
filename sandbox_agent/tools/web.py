"""http_fetch and web_search: the web, through the host's egress broker.

The sandbox has no network. These tools POST JSON to ``egress.sock``, the session's own
socket, whose far end is the host's egress broker: it checks every request against
the agent group's allowlist (hosts a human approved through an ``egress`` change),
makes the TLS connection itself and answers with a bounded JSON document. Nothing
here can widen that: the tools exist only when the host says the group has egress
(``AgentConfig.egress``), and a refusal comes back as guidance for the model, not as
a crash. The wire protocol is in ``docs/egress.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from .base import STRING, Tool, ToolContext, ToolError, required_string, schema, string_arg
from .brokers import BrokerRefusal, ask_broker

__all__ = ["EGRESS_HOST", "web_tools"]

# The Host header of requests to the broker; it means nothing (the socket is the route).
EGRESS_HOST = "egress.ironclaw.invalid"
METHODS = ("GET", "POST", "HEAD")
MAX_URL_BYTES = 8192
MAX_BODY_BYTES = 256 * 1024
MAX_HEADERS = 32
MAX_QUERY_BYTES = 512
# The broker's answer is capped host-side; anything far beyond is a fault.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
# What one tool call hands the model: enough to read a page, not to flood the context.
MAX_TOOL_TEXT = 48 * 1024
TIMEOUT = httpx.Timeout(connect=10.0, read=55.0, write=30.0, pool=10.0)
NEEDS_APPROVAL = ("A human has to approve access first: ask with request_api_access "
                  "(hosts and a reason), then try again once it is approved.")


async def _call(socket_path: Path, path: str, payload: Mapping[str, Any],
                transport: httpx.AsyncBaseTransport | None) -> dict[str, Any]:
    try:
        return await ask_broker(socket_path, host=EGRESS_HOST, what="egress broker",
                                method="POST", path=path, payload=payload, limits=TIMEOUT,
                                max_answer_bytes=MAX_ANSWER_BYTES, transport=transport)
    except BrokerRefusal as refusal:
        raise ToolError(_refusal(refusal.response, refusal.error, refusal.detail)) from None


def _refusal(response: httpx.Response, error: str, detail: str) -> str:
    text = f"egress refused ({response.status_code} {error}): {detail}"
    if error in ("host_not_allowed", "redirect_not_allowed"):
        text += " " + NEEDS_APPROVAL
    elif response.status_code == 429:
        text += f" Retry after {response.headers.get('retry-after', 'a few')} seconds."
    return text


def _clip(text: str) -> tuple[str, bool]:
    if len(text) <= MAX_TOOL_TEXT:
        return text, False
    return text[:MAX_TOOL_TEXT], True


def _fetch_args(args: Mapping[str, Any]) -> dict[str, Any]:
    url = required_string(args, "url", max_bytes=MAX_URL_BYTES)
    method = (string_arg(args, "method", max_bytes=8, required=False) or "GET").upper()
    if method not in METHODS:
        raise ToolError(f"'method' must be one of {', '.join(METHODS)}")
    payload: dict[str, Any] = {"url": url.strip(), "method": method}
    headers = args.get("headers")
    if headers is not None:
        if (not isinstance(headers, dict) or len(headers) > MAX_HEADERS
                or not all(isinstance(k, str) and isinstance(v, str)
                           for k, v in headers.items())):
            raise ToolError(f"'headers' must be an object of at most {MAX_HEADERS} "
                            "string values")
        payload["headers"] = headers
    body = string_arg(args, "body", max_bytes=MAX_BODY_BYTES, required=False)
    if body is not None:
        if method != "POST":
            raise ToolError("only a POST carries a body")
        payload["body"] = body
    return payload


def _render_fetch(answer: Mapping[str, Any]) -> str:
    status = answer.get("status")
    raw_headers, raw_body = answer.get("headers"), answer.get("body")
    headers = raw_headers if isinstance(raw_headers, dict) else {}
    body = raw_body if isinstance(raw_body, str) else ""
    lines = [f"HTTP {status} from {str(answer.get('url', ''))[:2048]}"]
    for name in ("content-type", "location", "retry-after"):
        value = headers.get(name)
        if isinstance(value, str):
            lines.append(f"{name}: {value[:300]}")
    text, clipped = _clip(body)
    if answer.get("truncated") is True:
        lines.append("(the host cut the body at its size cap)")
    if clipped:
        lines.append(f"(showing the first {MAX_TOOL_TEXT} characters)")
    return "\n".join(lines) + "\n\n" + text


def _render_results(answer: Mapping[str, Any]) -> str:
    results = answer.get("results")
    if not isinstance(results, list) or not results:
        return "no results"
    out: list[str] = []
    for index, item in enumerate(results, 1):
        if not isinstance(item, dict):
            continue
        title = str(item.get("title", ""))[:300]
        url = str(item.get("url", ""))[:2048]
        snippet = str(item.get("snippet", ""))[:1000]
        out.append(f"{index}. {title}\n   {url}\n   {snippet}".rstrip())
    return _clip("\n".join(out))[0] or "no results"


def web_tools(socket_path: Path, *, transport: httpx.AsyncBaseTransport | None = None
              ) -> tuple[Tool, ...]:
    """The two tools, bound to this session's egress socket (``transport`` replaces the
    socket in tests that need no real I/O)."""

    async def http_fetch(_ctx: ToolContext, args: Mapping[str, Any]) -> str:
        answer = await _call(socket_path, "/v1/fetch", _fetch_args(args), transport)
        return _render_fetch(answer)

    async def web_search(_ctx: ToolContext, args: Mapping[str, Any]) -> str:
        query = required_string(args, "query", max_bytes=MAX_QUERY_BYTES)
        payload: dict[str, Any] = {"query": query}
        count = args.get("max_results")
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 20:
                raise ToolError("'max_results' must be an integer from 1 to 20")
            payload["max_results"] = count
        return _render_results(await _call(socket_path, "/v1/search", payload, transport))

    return (
        Tool("http_fetch",
             "Fetch a URL over HTTPS through the host (GET, POST or HEAD). Only hosts a "
             "human approved for you are reachable; the answer is the status, a few "
             "headers and the body as text (size-capped).",
             schema({"url": STRING,
                     "method": {"type": "string", "enum": list(METHODS)},
                     "headers": {"type": "object", "additionalProperties": STRING},
                     "body": STRING}, ["url"]),
             http_fetch, timeout_s=60.0),
        Tool("web_search",
             "Search the web through the host's search backend; returns titles, URLs and "
             "snippets.",
             schema({"query": STRING,
                     "max_results": {"type": "integer", "minimum": 1, "maximum": 20}},
                    ["query"]),
             web_search, timeout_s=60.0),
    )
