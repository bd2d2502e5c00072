"""A minimal MCP client over a server's stdio, for the MCP bench and the server tests.

Newline-delimited JSON-RPC 2.0, as MCP's stdio transport defines it: enough to
initialize, list tools and call one, against real servers from PyPI. The same client
drives a sandboxed server and a direct child process, so the bench compares the two
paths and nothing else.
"""

from __future__ import annotations

import json
from typing import Any

import trio

MAX_LINE = 4 * 1024 * 1024
PROTOCOL_VERSION = "2025-11-25"


class RpcError(Exception):
    def __init__(self, error: Any) -> None:
        super().__init__(str(error)[:500])
        self.error = error


class StdioRpc:
    def __init__(self, send: trio.abc.SendStream, receive: trio.abc.ReceiveStream) -> None:
        self._send = send
        self._receive = receive
        self._buffer = bytearray()
        self._next_id = 0

    async def _line(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                raise RpcError("line too long")
            chunk = await self._receive.receive_some(65536)
            if not chunk:
                raise EOFError("the server closed its stdout")
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        message: dict[str, Any] = json.loads(line)
        return message

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message = {"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})}
        await self._send.send_all(json.dumps(message).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self._next_id += 1
        ident = self._next_id
        message = {"jsonrpc": "2.0", "id": ident, "method": method, "params": params or {}}
        await self._send.send_all(json.dumps(message).encode() + b"\n")
        while True:
            answer = await self._line()
            if answer.get("id") != ident:
                continue  # a notification or a request of the server's: not ours
            if "error" in answer:
                raise RpcError(answer["error"])
            return answer["result"]

    async def initialize(self) -> Any:
        result = await self.request("initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "ironclaw-tests", "version": "1"}})
        await self.notify("notifications/initialized")
        return result

    async def tool_names(self) -> set[str]:
        return {tool["name"] for tool in (await self.request("tools/list"))["tools"]}

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        return await self.request("tools/call", {"name": name, "arguments": arguments})


def text_of(result: Any) -> str:
    return "\n".join(item.get("text", "") for item in result.get("content", []))
