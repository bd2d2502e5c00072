"""A person on a real homeserver, for the Matrix tests against Synapse: makes rooms,
speaks, and reads back what the bot said, over the client-server API."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import attrs
import httpx
import trio

from tests.fakes.synapse import Account

CLIENT = "/_matrix/client/v3"


@attrs.define
class Person:
    account: Account
    http: httpx.AsyncClient

    @property
    def user_id(self) -> str:
        return self.account.user_id

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   params: dict[str, Any] | None = None) -> Any:
        answer = await self.http.request(
            method, CLIENT + path, json=body, params=params,
            headers={"Authorization": f"Bearer {self.account.token}"})
        answer.raise_for_status()
        return answer.json()

    async def create_room(self, *invite: str, direct: bool = False) -> str:
        body: dict[str, Any] = {"preset": "private_chat", "invite": list(invite),
                                "is_direct": direct}
        return str((await self.call("POST", "/createRoom", body))["room_id"])

    async def join(self, room_id: str) -> None:
        await self.call("POST", f"/join/{quote(room_id, safe='')}", {})

    async def say(self, room_id: str, text: str, *, mentions: list[str] | None = None,
                  thread: str | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if mentions is not None:
            content["m.mentions"] = {"user_ids": mentions}
        if thread is not None:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread}
        txn = secrets.token_hex(8)
        answer = await self.call(
            "PUT", f"/rooms/{quote(room_id, safe='')}/send/m.room.message/{txn}", content)
        return str(answer["event_id"])

    async def share_file(self, room_id: str, name: str, media_type: str, data: bytes) -> str:
        """Upload ``data`` to the media repository and post it as an ``m.file``."""
        headers = {"Authorization": f"Bearer {self.account.token}",
                   "Content-Type": media_type}
        answer = await self.http.post("/_matrix/media/v3/upload", content=data,
                                      params={"filename": name}, headers=headers)
        answer.raise_for_status()
        content = {"msgtype": "m.file", "body": name, "url": answer.json()["content_uri"],
                   "info": {"mimetype": media_type, "size": len(data)}}
        txn = secrets.token_hex(8)
        sent = await self.call(
            "PUT", f"/rooms/{quote(room_id, safe='')}/send/m.room.message/{txn}", content)
        return str(sent["event_id"])

    async def download(self, uri: str) -> bytes:
        """An ``mxc://`` URI's bytes, from the authenticated media endpoint."""
        server, media_id = uri[len("mxc://"):].split("/", 1)
        answer = await self.http.get(
            f"/_matrix/client/v1/media/download/{server}/{media_id}",
            headers={"Authorization": f"Bearer {self.account.token}"})
        answer.raise_for_status()
        return answer.content

    async def events_from(self, room_id: str, sender: str) -> list[dict[str, Any]]:
        """Every ``m.room.message`` ``sender`` posted in ``room_id``, oldest first."""
        found: list[dict[str, Any]] = []
        start: str | None = None
        while True:
            params: dict[str, Any] = {"dir": "b", "limit": 500}
            if start is not None:
                params["from"] = start
            page = await self.call("GET", f"/rooms/{quote(room_id, safe='')}/messages",
                                   params=params)
            found += [e for e in page.get("chunk", [])
                      if e.get("type") == "m.room.message" and e.get("sender") == sender]
            start = page.get("end")
            if not page.get("chunk") or start is None:
                break
        found.reverse()
        return found

    async def wait_bodies(self, room_id: str, sender: str, count: int,
                          poll_s: float = 0.05) -> list[str]:
        """Until ``sender`` has posted at least ``count`` messages in ``room_id``: their
        bodies, oldest first."""
        while True:
            events = await self.events_from(room_id, sender)
            if len(events) >= count:
                return [str(e["content"].get("body")) for e in events]
            await trio.sleep(poll_s)
