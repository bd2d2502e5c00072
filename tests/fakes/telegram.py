"""A fake Telegram Bot API on loopback: ``getMe``, ``getUpdates``, ``sendMessage``, and
files: ``getFile``, the download at ``/file/bot<token>/<file_path>``, ``sendDocument``.

It speaks the real wire format: ``/bot<token>/<method>``, parameters as query string,
JSON or form body, answers ``{"ok": true, "result": ...}`` or ``{"ok": false,
"error_code": N, "description": "...", "parameters": {...}}``. ``getUpdates`` honours
``offset`` as Telegram does (every update below it is confirmed and forgotten; the
rest is returned, oldest first), ``timeout`` (a long poll: it answers as soon as an
update is there, else after the timeout with ``[]``), ``limit`` and
``allowed_updates``. ``sendMessage`` checks the chat, the topic and the 4096 UTF-16
unit limit the way Telegram does, and records what it accepted.

Knobs for tests: :meth:`rate_limit_sends` / :meth:`rate_limit_polls` (429 with
``retry_after``), :meth:`fail_polls` (5xx), :meth:`cut` (restart the server, dropping
connections mid-poll), and :meth:`redeliver` (the same message again under a new
update id).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .loopback_http import LoopbackServer, Reply, Request, Watch, open_loopback_server

__all__ = ["FakeTelegram", "Poll", "Sent", "SentDocument", "open_fake_telegram"]

TOKEN = "123456789:AAH-fake_token_for_tests_only_0123456"
BOT = {"id": 123456789, "is_bot": True, "first_name": "IronClaw", "username": "ironclaw_bot",
       "can_join_groups": True, "can_read_all_group_messages": True,
       "supports_inline_queries": False}


@attrs.frozen
class Sent:
    chat_id: int
    text: str
    message_id: int
    message_thread_id: int | None
    at: float  # trio.current_time() when accepted
    reply_to: int | None = None  # reply_parameters.message_id


@attrs.frozen
class SentDocument:
    chat_id: int
    caption: str | None
    filename: str
    media_type: str
    data: bytes
    message_id: int


@attrs.frozen
class Poll:
    offset: int | None
    timeout: int
    allowed_updates: list[str] | None
    status: int  # what we answered
    at: float


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _error(code: int, description: str, **parameters: Any) -> Reply:
    payload: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        payload["parameters"] = parameters
    return Reply.json(code, payload)


def _ok(result: Any) -> Reply:
    return Reply.json(200, {"ok": True, "result": result})


class FakeTelegram:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.bot = dict(BOT)
        self.server: LoopbackServer | None = None
        self.watch = Watch()
        self.pending: list[dict[str, Any]] = []  # unconfirmed updates, by update_id
        self.sent: list[Sent] = []
        self.polls: list[Poll] = []
        self.send_attempts = 0
        self.confirmed_below = 0
        self._update_ids = itertools.count(500_000)
        self._message_ids = itertools.count(1)
        self._chats: dict[int, dict[str, Any]] = {}
        self._topics: dict[int, set[int]] = {}
        self._bot_messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._send_429: list[int] = []
        self._poll_429: list[int] = []
        self._poll_fail: list[int] = []
        self.polls_waiting = 0
        self.send_delay = 0.0  # answer sendMessage this much later (it is sent already)
        self.update_ids: dict[int, int] = {}  # message_id -> update_id of its last update
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, bytes)
        self.downloads: list[str] = []  # file paths served
        self.documents: list[SentDocument] = []

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    # -- the test's side -------------------------------------------------------------

    def user(self, user_id: int, first_name: str, username: str | None = None
             ) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        return user

    def private_chat(self, user: dict[str, Any]) -> dict[str, Any]:
        chat = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        self._chats[user["id"]] = chat
        return chat

    def group(self, chat_id: int, title: str, *, forum: bool = False) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": chat_id, "title": title, "type": "supergroup"}
        if forum:
            chat["is_forum"] = True
        self._chats[chat_id] = chat
        return chat

    def create_topic(self, chat: dict[str, Any], name: str, *, by_bot: bool = True
                     ) -> dict[str, Any]:
        """A forum topic; returns its creation notice (a service message), whose
        message id is the topic's ``message_thread_id``. Not sent as an update."""
        creator = {k: self.bot[k] for k in ("id", "is_bot", "first_name", "username")} \
            if by_bot else self.user(1, "Admin")
        notice = {"message_id": next(self._message_ids), "from": creator,
                  "chat": chat, "date": 1_700_000_000, "is_topic_message": True,
                  "forum_topic_created": {"name": name, "icon_color": 7322096}}
        notice["message_thread_id"] = notice["message_id"]
        self._topics.setdefault(chat["id"], set()).add(notice["message_id"])
        return notice

    def message(self, chat: dict[str, Any], sender: dict[str, Any], text: str, *,
                mention: bool = False, topic: dict[str, Any] | None = None,
                reply_to: dict[str, Any] | None = None, text_mention: bool = False,
                caption: bool = False, document: tuple[str, str, bytes] | None = None
                ) -> dict[str, Any]:
        """Enqueue a user's message as an update and return the message. ``mention``
        prefixes ``@<bot username>`` with a ``mention`` entity; ``text_mention``
        marks the first word as a ``text_mention`` of the bot (no username)."""
        entities: list[dict[str, Any]] = []
        if mention:
            name = f"@{self.bot['username']}"
            text = f"{name} {text}"
            entities.append({"offset": 0, "length": _utf16_len(name), "type": "mention"})
        if text_mention:
            word = text.split(" ", 1)[0]
            entities.append({"offset": 0, "length": _utf16_len(word), "type": "text_mention",
                             "user": {k: self.bot[k] for k in ("id", "is_bot", "first_name")}})
        message: dict[str, Any] = {"message_id": next(self._message_ids), "from": sender,
                                   "chat": chat, "date": 1_700_000_000}
        if document is not None:
            name, media_type, data = document
            file_id = f"doc{len(self.files)}"
            self.files[file_id] = (f"documents/file_{len(self.files)}", data)
            message["document"] = {"file_id": file_id, "file_unique_id": f"u{file_id}",
                                   "file_name": name, "mime_type": media_type,
                                   "file_size": len(data)}
            if text:
                message["caption"] = text
        elif caption:
            message["photo"] = [{"file_id": "f", "file_unique_id": "u", "width": 1,
                                 "height": 1}]
            message["caption"] = text
            if entities:
                message["caption_entities"] = entities
        else:
            message["text"] = text
            if entities:
                message["entities"] = entities
        if topic is not None:
            message["message_thread_id"] = topic["message_id"]
            message["is_topic_message"] = True
            # Telegram attaches the topic's creation notice as the replied-to message.
            message["reply_to_message"] = reply_to or topic
        elif reply_to is not None:
            message["reply_to_message"] = reply_to
        self.enqueue({"message": message})
        return message

    def enqueue(self, update: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        message = update.get("message")
        if isinstance(message, dict):
            self.update_ids[message["message_id"]] = update_id
        self.pending.append({"update_id": update_id, **update})
        self.watch.poke()
        return update_id

    def redeliver(self, message: dict[str, Any]) -> int:
        """The same message again, under a new update id."""
        return self.enqueue({"message": message})

    def sent_to(self, chat_id: int) -> list[Sent]:
        return [sent for sent in self.sent if sent.chat_id == chat_id]

    def bot_message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        return self._bot_messages[(chat_id, message_id)]

    def rate_limit_sends(self, count: int, retry_after: int) -> None:
        self._send_429 = [retry_after] * count

    def rate_limit_polls(self, count: int, retry_after: int) -> None:
        self._poll_429 = [retry_after] * count

    def fail_polls(self, count: int, status: int = 502) -> None:
        self._poll_fail = [status] * count

    async def wait_sent(self, count: int) -> list[Sent]:
        with trio.fail_after(30):
            await self.watch.wait_until(lambda: len(self.sent) >= count)
        return self.sent

    async def wait_for(self, predicate: Any) -> None:
        await self.watch.wait_until(predicate)

    async def cut(self) -> None:
        """Drop every connection (the pending long poll too) and serve again."""
        assert self.server is not None
        await self.server.restart()
        self.watch.poke()

    # -- the platform's side ---------------------------------------------------------

    async def handle(self, request: Request) -> Reply:
        if request.path.startswith("/file/"):
            return self._download(request.path)
        parts = request.path.split("/")
        if len(parts) != 3 or not parts[1].startswith("bot"):
            return _error(404, "Not Found")
        if parts[1][3:] != self.token:
            return _error(401, "Unauthorized")
        params = request.params()
        if params is None:
            return _error(400, "Bad Request: can't parse JSON")
        method = parts[2]
        if method == "getMe":
            return _ok(self.bot)
        if method == "getUpdates":
            return await self._get_updates(params)
        if method == "sendMessage":
            return await self._send_message(params)
        if method == "getFile":
            return self._get_file(params)
        if method == "sendDocument":
            return self._send_document(request)
        return _error(404, "Not Found: method not found")

    def _get_file(self, params: dict[str, Any]) -> Reply:
        found = self.files.get(str(params.get("file_id")))
        if found is None:
            return _error(400, "Bad Request: invalid file_id")
        path, data = found
        return _ok({"file_id": params["file_id"], "file_unique_id": "u", "file_size": len(data),
                    "file_path": path})

    def _download(self, path: str) -> Reply:
        prefix = f"/file/bot{self.token}/"
        if not path.startswith(prefix):
            return _error(404, "Not Found")
        for file_path, data in self.files.values():
            if file_path == path[len(prefix):]:
                self.downloads.append(file_path)
                return Reply(200, data, (("content-type", "application/octet-stream"),))
        return _error(404, "Not Found")

    def _send_document(self, request: Request) -> Reply:
        fields, files = request.form()
        if "document" not in files:
            return _error(400, "Bad Request: there is no document in the request")
        try:
            chat_id = int(fields["chat_id"])
        except (KeyError, ValueError):
            return _error(400, "Bad Request: chat_id is empty")
        chat = self._chats.get(chat_id)
        if chat is None:
            return _error(400, "Bad Request: chat not found")
        filename, media_type, data = files["document"]
        message_id = next(self._message_ids)
        self.documents.append(SentDocument(chat_id, fields.get("caption"), filename,
                                           media_type, data, message_id))
        self.watch.poke()
        return _ok({"message_id": message_id, "date": 1_700_000_000, "chat": chat,
                    "document": {"file_id": f"sent{message_id}", "file_name": filename}})

    async def _get_updates(self, params: dict[str, Any]) -> Reply:
        try:
            offset = int(params["offset"]) if "offset" in params else None
            timeout = int(params.get("timeout", 0))
            limit = max(1, min(100, int(params.get("limit", 100))))
        except (TypeError, ValueError):
            return _error(400, "Bad Request: wrong parameter")
        allowed = params.get("allowed_updates")

        def record(status: int) -> None:
            self.polls.append(Poll(offset, timeout, allowed, status, trio.current_time()))
            self.watch.poke()

        if self._poll_429:
            retry_after = self._poll_429.pop(0)
            record(429)
            return _error(429, f"Too Many Requests: retry after {retry_after}",
                          retry_after=retry_after)
        if self._poll_fail:
            status = self._poll_fail.pop(0)
            record(status)
            return Reply(status, b"<html>Bad Gateway</html>", (("content-type", "text/html"),))
        if offset is not None:  # confirm everything below the offset
            self.pending = [u for u in self.pending if u["update_id"] >= offset]
            self.confirmed_below = max(self.confirmed_below, offset)
        record(200)

        def ready() -> list[dict[str, Any]]:
            kinds = set(allowed) if isinstance(allowed, list) and allowed else None
            return [u for u in self.pending
                    if kinds is None or any(kind in u for kind in kinds)][:limit]

        self.polls_waiting += 1
        self.watch.poke()
        try:
            with trio.move_on_after(timeout):
                await self.watch.wait_until(lambda: bool(ready()))
        finally:
            self.polls_waiting -= 1
        return _ok(ready())

    async def _send_message(self, params: dict[str, Any]) -> Reply:
        self.send_attempts += 1
        if self._send_429:
            retry_after = self._send_429.pop(0)
            self.watch.poke()
            return _error(429, f"Too Many Requests: retry after {retry_after}",
                          retry_after=retry_after)
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, TypeError, ValueError):
            return _error(400, "Bad Request: chat_id is empty")
        chat = self._chats.get(chat_id)
        if chat is None:
            return _error(400, "Bad Request: chat not found")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if _utf16_len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        thread = params.get("message_thread_id")
        if thread is not None:
            thread = int(thread)
            if thread not in self._topics.get(chat_id, set()):
                return _error(400, "Bad Request: message thread not found")
        reply_to = params.get("reply_parameters")
        if reply_to is not None:
            if not isinstance(reply_to, dict) or not isinstance(reply_to.get("message_id"),
                                                                int):
                return _error(400, "Bad Request: invalid reply parameters")
            reply_to = reply_to["message_id"]
        message_id = next(self._message_ids)
        message: dict[str, Any] = {
            "message_id": message_id, "date": 1_700_000_000, "chat": chat, "text": text,
            "from": {k: self.bot[k] for k in ("id", "is_bot", "first_name", "username")}}
        if thread is not None:
            message["message_thread_id"] = thread
            message["is_topic_message"] = True
        self._bot_messages[(chat_id, message_id)] = message
        self.sent.append(Sent(chat_id, text, message_id, thread, trio.current_time(), reply_to))
        self.watch.poke()
        await trio.sleep(self.send_delay)
        return _ok(message)


@asynccontextmanager
async def open_fake_telegram() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    async with open_loopback_server(fake.handle) as server:
        fake.server = server
        yield fake
