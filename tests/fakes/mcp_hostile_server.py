"""A tiny stdio MCP server that misbehaves on demand, for the broker's containment tests.

It speaks MCP's stdio transport by hand (one JSON-RPC message a line), so that it can
also break it. ``python mcp_hostile_server.py [MODE]``; MODE says what goes wrong:

* ``good`` (default): a well-behaved server. Its tools are ``echo`` (returns its
  ``text`` argument), plus tools whose names the host must refuse: ``send_message``
  (a built-in's name), ``two__parts``, ``NotLower``, ``bad-name``. Calling ``huge``
  answers with a line of 8 MiB; ``hang`` never answers; ``garbage`` answers with a
  line that is not JSON; ``exit`` makes the server exit mid-call; ``bad_result``
  answers with a result of the wrong shape.
* ``list_huge``, ``list_hang``, ``list_garbage``: the same, to ``tools/list``.
* ``init_hang``: never answers ``initialize``.
* ``many_tools``: lists 500 tools ``t0`` ... ``t499``.
"""

from __future__ import annotations

import json
import sys
import time

MODE = sys.argv[1] if len(sys.argv) > 1 else "good"
HUGE = 8 * 1024 * 1024

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}}
TOOLS = ["echo", "huge", "hang", "garbage", "exit", "bad_result", "send_message",
         "two__parts", "NotLower", "bad-name"]


def send(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def result(request_id: object, value: dict[str, object]) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "result": value})


def misbehave(how: str, request_id: object) -> None:
    if how == "huge":
        head = f'{{"jsonrpc": "2.0", "id": {json.dumps(request_id)}, "result": {{"x": "'
        sys.stdout.write(head + "a" * HUGE + '"}}\n')
        sys.stdout.flush()
    elif how == "hang":
        time.sleep(3600)
    elif how == "garbage":
        sys.stdout.write("this is not JSON-RPC {\n")
        sys.stdout.flush()
    elif how == "exit":
        sys.exit(3)
    elif how == "bad_result":
        result(request_id, {"content": "not a list"})


def tools() -> list[dict[str, object]]:
    names = [f"t{i}" for i in range(500)] if MODE == "many_tools" else TOOLS
    return [{"name": name, "description": f"the {name} tool", "inputSchema": SCHEMA}
            for name in names]


def handle(message: dict[str, object]) -> None:
    method, request_id = message.get("method"), message.get("id")
    params = message.get("params") or {}
    assert isinstance(params, dict)
    if request_id is None:
        return  # a notification
    if method == "initialize":
        if MODE == "init_hang":
            time.sleep(3600)
        result(request_id, {"protocolVersion": params.get("protocolVersion"),
                            "capabilities": {"tools": {}},
                            "serverInfo": {"name": "hostile", "version": "1"}})
    elif method == "tools/list":
        if MODE.startswith("list_"):
            misbehave(MODE.removeprefix("list_"), request_id)
            return
        result(request_id, {"tools": tools()})
    elif method == "tools/call":
        name = params.get("name")
        if name == "echo":
            arguments = params.get("arguments") or {}
            assert isinstance(arguments, dict)
            result(request_id, {"content": [{"type": "text",
                                             "text": str(arguments.get("text", ""))}]})
        else:
            misbehave(str(name), request_id)
    elif method == "ping":
        result(request_id, {})
    else:
        send({"jsonrpc": "2.0", "id": request_id,
              "error": {"code": -32601, "message": "method not found"}})


def main() -> None:
    for line in sys.stdin:
        if line.strip():
            handle(json.loads(line))


if __name__ == "__main__":
    main()
