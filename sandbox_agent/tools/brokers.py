"""Asking one of the host's brokers (egress, MCP) over its unix socket: JSON in, a JSON
object out, every failure a :class:`ToolError` the model can read.

The broker's answer is read as hostile (it relays what an upstream or a server said):
its size is capped, it must be a JSON object, and an error status comes back as
:class:`BrokerRefusal` with the broker's ``error`` word and ``detail``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from ironclaw.contract.jsonvalue import JSONRejected, parse_json

from .base import ToolError

__all__ = ["BrokerRefusal", "ask_broker"]


class BrokerRefusal(ToolError):
    """The broker answered with an error status."""

    def __init__(self, status: int, error: str, detail: str,
                 response: httpx.Response) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.error, self.detail, self.response = status, error, detail, response


async def ask_broker(socket_path: Path, *, host: str, what: str, method: str, path: str,
                     payload: Mapping[str, Any] | None, limits: httpx.Timeout,
                     max_answer_bytes: int,
                     transport: httpx.AsyncBaseTransport | None = None) -> dict[str, Any]:
    """The broker's JSON object answer to one request (``transport`` replaces the socket
    in tests)."""
    chosen = transport or httpx.AsyncHTTPTransport(uds=str(socket_path), retries=0)
    async with httpx.AsyncClient(transport=chosen, base_url=f"http://{host}",
                                 timeout=limits, trust_env=False,
                                 follow_redirects=False) as http:
        try:
            response = await http.request(
                method, path, json=None if payload is None else dict(payload))
        except httpx.TransportError as exc:
            raise ToolError(f"the host's {what} could not be reached "
                            f"({type(exc).__name__})") from None
    try:
        data = parse_json(response.content, max_bytes=max_answer_bytes)
    except JSONRejected:
        raise ToolError(f"the {what} answered {response.status_code} with something "
                        "that is not JSON") from None
    if not isinstance(data, dict):
        raise ToolError(f"the {what}'s answer is not a JSON object")
    if response.status_code != 200:
        raise BrokerRefusal(response.status_code, str(data.get("error", "error"))[:60],
                            str(data.get("detail", ""))[:500], response)
    return data
