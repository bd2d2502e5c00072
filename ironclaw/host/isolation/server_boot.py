"""The first program in an MCP server's sandbox: start the egress relay, become the server.

This file runs INSIDE the sandbox, under the interpreter of the server's image; the
image builder copies it to ``/opt/ironclaw/boot.py`` and nothing on the host imports
it. It uses the standard library only.

    boot.py [--relay PORT=SOCKET] (--entry MODULE:ATTR | --exec PATH) -- ARGV0 [ARG...]

``--relay``: the sandbox has no network but loopback, and a server such as
mcp-server-fetch speaks plain HTTP(S) through a proxy URL. The relay listens on
``127.0.0.1:PORT`` and carries each connection, byte for byte, to the unix socket
``SOCKET`` (the host's egress broker in its CONNECT mode, which decides what may
leave). The listening socket is bound before the fork, so the server can never race
it. The relay process keeps no stdin or stdout: those are the server's JSON-RPC pipes.
It dies with the server, which is the sandbox's first process.

``--entry``: call a console-script entry point the way pip's wrapper would;
``--exec``: replace this process with a program of the image (``git`` and the like).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import sys
from typing import Any

RELAY_MAX_CONNECTIONS = 32
RELAY_CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(RELAY_CHUNK):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _relay(listener: socket.socket, target: str) -> None:
    slots = asyncio.Semaphore(RELAY_MAX_CONNECTIONS)

    async def carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if slots.locked():
            writer.close()
            return
        async with slots:
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(target)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(carry, sock=listener)
    async with server:
        await server.serve_forever()


def start_relay(port: int, target: str) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(RELAY_MAX_CONNECTIONS)
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        try:
            asyncio.run(_relay(listener, target))
        finally:
            os._exit(1)
    listener.close()


def main(argv: list[str]) -> int:
    split = argv.index("--")
    options, server_argv = argv[:split], argv[split + 1:]
    values = dict(zip(options[::2], options[1::2], strict=True))
    if "--relay" in values:
        port, _, target = values["--relay"].partition("=")
        start_relay(int(port), target)
    if "--exec" in values:
        os.execv(values["--exec"], server_argv)
    module_name, _, attr = values["--entry"].partition(":")
    sys.argv = server_argv
    entry: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        entry = getattr(entry, part)
    result = entry()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
