"""``ironctl chat``: talk to an agent over the local channel.

By default the talk runs over the API's chat websocket
(``/v1/channels/local/chat``): each line read from standard input is sent as a
``message`` frame, and every new transcript entry comes back as it happens. When the
server has no such socket (or with ``--poll``), each line is posted with ``POST
/v1/channels/local/messages`` and the conversation is read with ``GET
.../conversations/{conversation}/messages?after=N`` until the agent answers.

Either way ironctl waits for the agent's answer before reading the next line, so a
script piped in gets a transcript in order. End with Ctrl-D (end of input), Ctrl-C
or ``/quit``. The exit status is 0, or 1 when some message got no reply within
``--reply-timeout`` seconds (or was refused).
"""

from __future__ import annotations

import json
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
)

from .client import AUTH, FAILED, OK, CliError, path
from .context import Ctx
from .wsconn import connect, parse_frame, rejected

QUIT = "/quit"
PAGE = 200
FIRST_POLL = 0.05
MAX_POLL = 1.0
CHAT_ROUTE = "/v1/channels/local/chat"
CLOSE_CODES = {4401: AUTH, 4403: AUTH, 4408: AUTH}


class Chat:
    """The input loop and the display; :meth:`say` is the transport's."""

    def __init__(self, ctx: Ctx, sender: str) -> None:
        self.ctx = ctx
        self.sender = sender
        self.group: str = ctx.args.group
        self.conversation: str | None = ctx.args.conversation
        self.tty = _isatty(ctx.stdin)

    async def run(self) -> int:
        out, status = self.ctx.console, OK
        prompt = self.tty and not out.json_mode
        if prompt:
            out.line(f"Talking to agent group {self.group!r} as {self.sender!r}. "
                     f"Ctrl-D or {QUIT} to stop.")
        while True:
            if prompt:
                out.line("you> ", end="")
            line = await trio.to_thread.run_sync(self.ctx.stdin.readline,
                                                 abandon_on_cancel=True)
            if not line:
                if prompt:
                    out.line()
                return status
            text = line.strip()
            if text == QUIT:
                return status
            if text and not await self.say(text):
                status = FAILED

    async def say(self, text: str) -> bool:
        raise NotImplementedError

    def show(self, entry: dict[str, Any]) -> None:
        """Print an entry: everything in ``--json``; otherwise all but our own lines."""
        out = self.ctx.console
        role, sender = entry.get("role"), entry.get("sender")
        if out.json_mode:
            out.json(entry, compact=True)
        elif role == "agent":
            out.line(f"{sender or 'agent'}> {entry.get('text')}")
        elif sender != self.sender:
            out.line(f"{sender} (user)> {entry.get('text')}")

    def no_reply(self) -> bool:
        self.ctx.console.note(f"-- no reply within {self.ctx.args.reply_timeout:g} s")
        return False


class PollChat(Chat):
    """POST each message, then read the conversation until the agent answers."""

    def __init__(self, ctx: Ctx, sender: str) -> None:
        super().__init__(ctx, sender)
        self.cursor = -1  # the highest transcript index already shown
        self.synced = False  # whether the cursor has caught up with this chat

    async def say(self, text: str) -> bool:
        body: dict[str, Any] = {"agent_group": self.group, "sender": self.sender,
                                "text": text}
        if self.conversation is not None:
            body["conversation"] = self.conversation
        accepted = await self.ctx.api.post("/v1/channels/local/messages", body)
        self.conversation = str(accepted.get("conversation"))
        message_id = accepted.get("message_id")
        mine: int | None = None
        poll = FIRST_POLL
        with trio.move_on_after(self.ctx.args.reply_timeout):
            while True:
                for entry in await self.fetch():
                    index = entry.get("index")
                    if not isinstance(index, int):
                        continue
                    self.cursor = max(self.cursor, index)
                    if entry.get("message_id") == message_id and entry.get("role") == "user":
                        mine = index
                    elif mine is None and not self.synced:
                        continue  # history from before this chat: not ours to replay
                    self.show(entry)
                    if mine is not None and index > mine and entry.get("role") == "agent":
                        self.synced = True
                        return True
                self.synced = self.synced or mine is not None
                await trio.sleep(poll)
                poll = min(poll * 2, MAX_POLL)
        return self.no_reply()

    async def fetch(self) -> list[dict[str, Any]]:
        """Every transcript entry after the cursor, oldest first."""
        assert self.conversation is not None
        url = path("/v1/channels/local/conversations", self.conversation, "messages")
        found: list[dict[str, Any]] = []
        after = self.cursor
        while True:
            page = await self.ctx.api.get(url, after=after, limit=PAGE)
            entries = [e for e in page.get("messages", []) if isinstance(e, dict)]
            found += entries
            indexes = [e["index"] for e in entries if isinstance(e.get("index"), int)]
            if len(entries) < PAGE or not indexes:
                return found
            after = max(indexes)


class SocketChat(Chat):
    """Over the chat websocket: a reader task shows entries as they arrive."""

    def __init__(self, ctx: Ctx, sender: str, ws: WebSocketConnection) -> None:
        super().__init__(ctx, sender)
        self.ws = ws
        self.user_index: dict[str, int] = {}  # message id -> transcript index
        self.last_agent = -1
        self.replies_in, self.replies = trio.open_memory_channel[dict[str, Any]](64)
        self.changed = trio.Event()
        self.lost: str | None = None

    async def start(self) -> int:
        ready = parse_frame(await self.ws.get_message(), "chat socket")
        if ready.get("type") != "ready":
            raise CliError(f"the chat socket refused: {ready.get('error')}: "
                           f"{ready.get('detail')}")
        self.conversation = str(ready.get("conversation"))
        failure: CliError | None = None
        status = FAILED
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.reader)
            try:
                status = await self.run()
            except CliError as exc:  # raised here, not through the nursery's group
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return status

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def reader(self) -> None:
        try:
            while True:
                frame = parse_frame(await self.ws.get_message(), "chat socket")
                kind = frame.pop("type", None)
                if kind == "message":
                    index, message_id = frame.get("index"), frame.get("message_id")
                    if isinstance(index, int):
                        if frame.get("role") == "agent":
                            self.last_agent = max(self.last_agent, index)
                        elif isinstance(message_id, str):
                            self.user_index[message_id] = index
                    self.show(frame)
                elif kind in ("accepted", "error"):
                    self.replies_in.send_nowait({"type": kind, **frame})
                self._notify()
        except ConnectionClosed as exc:
            reason = exc.reason
            self.lost = f"{reason.code} {reason.reason or reason.name}" if reason else "?"
        except CliError as exc:
            self.lost = exc.message
        self.replies_in.close()
        self._notify()

    async def say(self, text: str) -> bool:
        frame: dict[str, Any] = {"type": "message", "text": text}
        if self.ctx.args.sender:
            frame["sender"] = self.sender
        with trio.move_on_after(self.ctx.args.reply_timeout):
            try:
                await self.ws.send_message(json.dumps(frame, ensure_ascii=False))
            except ConnectionClosed:
                raise CliError(f"the chat connection was lost ({self.lost})") from None
            try:
                reply = await self.replies.receive()
            except trio.EndOfChannel:
                raise CliError(f"the chat connection was lost ({self.lost})") from None
            if reply.get("type") == "error":
                self.ctx.console.note(f"ironctl: the message was refused: "
                                      f"{reply.get('error')}: {reply.get('detail')}")
                return False
            message_id = str(reply.get("message_id"))
            while True:
                mine = self.user_index.get(message_id)
                if mine is not None and self.last_agent > mine:
                    return True
                if self.lost is not None:
                    raise CliError(f"the chat connection was lost ({self.lost})")
                await self.changed.wait()
        return self.no_reply()


async def _socket_chat(ctx: Ctx, sender: str) -> int | None:
    """The chat over the websocket; None when the server has no chat socket."""
    query: dict[str, object] = {"agent_group": ctx.args.group,
                                "conversation": ctx.args.conversation}
    try:
        async with connect(ctx.target, ctx.token, CHAT_ROUTE, query,
                           connect_timeout=ctx.api.timeout) as ws:
            return await SocketChat(ctx, sender, ws).start()
    except ConnectionRejected as exc:
        failure = rejected(exc)
        if failure.status in (404, 405):
            return None  # no such socket (an older API), or an unknown group: HTTP says
        raise failure from None
    except ConnectionClosed as exc:
        code = exc.reason.code if exc.reason is not None else None
        raise CliError(f"the chat connection closed ({code})",
                       CLOSE_CODES.get(code or 0, FAILED)) from None
    except HandshakeError as exc:
        raise CliError(f"cannot open the chat socket: {exc.__cause__ or exc}") from None


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:
        return False


async def cmd_chat(ctx: Ctx) -> int:
    sender = ctx.args.sender
    if not sender:
        who = await ctx.api.get("/v1/whoami")
        sender = str(who.get("name"))
    if not ctx.args.poll:
        status = await _socket_chat(ctx, sender)
        if status is not None:
            return status
    return await PollChat(ctx, sender).run()
