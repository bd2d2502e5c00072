"""Matrix, through the client-server API v3 with long-polling ``/sync``.

Receiving: ``whoami`` once per connection (our user id: mentions, and our own events
to ignore), our display name (legacy mentions) and ``m.direct`` account data, then
``/sync`` in a loop with a filter that keeps only ``m.room.message`` timeline events
(and ``m.direct``). The ``since`` token is the durable cursor ``since``: it moves to a
batch's ``next_batch`` only with the last event of that batch handed over (or with
``save_cursor`` when the batch held nothing for the agent), so a restart resumes from
the last batch fully committed and the seen-id check drops whatever of a half-done
batch was already routed. A timeline the server cut short (``limited``) is completed
from ``/messages`` back to the previous ``since``, so an outage loses nothing.

* The very first sync (no cursor yet) only takes the position: history from before
  the bot was started is not answered.
* A room is ``direct`` when our ``m.direct`` lists it or it has exactly two joined
  members; a DM is always ``mentioned`` (every message there is addressed to us).
* Mentions: ``m.mentions.user_ids`` containing us, or, for events without
  ``m.mentions`` (older clients), our user id or display name in the text.
* Threads: an event with an ``m.thread`` relation has ``thread_id`` = the root's event
  id; replies to it are sent with the same relation, falling back (for clients without
  threads) to a reply to the event they answer.
* Invites are accepted only with ``auto_join = true`` (off by default: anyone who can
  invite the bot could otherwise pull it into any room).
* Files (``m.file``, ``m.image``, ``m.audio``, ``m.video``) are attachments, fetched
  from our homeserver's authenticated media endpoint (:mod:`.media`).
* Ignored: our own events, ``m.notice`` (bots' messages), edits, encrypted rooms.

Sending: ``PUT /rooms/{room}/send/m.room.message/{txnId}``, the transaction id derived
from the outbound id and part number, so a retry (even after a restart) is recognised
by the homeserver and not posted twice. Bodies are cut at 16 KiB of UTF-8, well under
the 64 KiB event limit. Replies carry an empty ``m.mentions`` so they never ping.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import attrs
import httpx
import trio

from ...adapters import AdapterContext
from ...base import DeliveryFailed, DeliveryReceipt, InboundEvent, OutboundDelivery
from ...ledger import IdempotentDelivery
from ...platform import Measure, deliver_in_parts, split_text
from ...settings import ChannelSettings, InvalidChannelSettings, Secret
from ...state import MAX_CURSOR_CHARS
from .._http import is_loopback_url
from .api import MatrixApi, MatrixError, compact
from .media import file_event
from .parse import RoomMessage, direct_rooms_of, joined_count_of, room_message

__all__ = ["MatrixAdapter", "check_settings", "create_adapter", "txn_id"]

logger = logging.getLogger(__name__)

MATRIX = "matrix"
SINCE = "since"
BODY_LIMIT_BYTES = 16 * 1024
DEFAULT_POLL_TIMEOUT_S = 30.0
MAX_POLL_TIMEOUT_S = 300.0
TIMELINE_LIMIT = 50
GAP_PAGE = 100
MAX_GAP_EVENTS = 1000
SYNC_FILTER = compact({
    "presence": {"types": []},
    "account_data": {"types": ["m.direct"]},
    "room": {"timeline": {"types": ["m.room.message"], "limit": TIMELINE_LIMIT},
             "state": {"types": []}, "ephemeral": {"types": []},
             "account_data": {"types": []}},
})
GAP_FILTER = compact({"types": ["m.room.message"]})
_MAX_KNOWN_ROOMS = 10_000


@attrs.frozen
class _Config:
    homeserver: str
    token: Secret
    user_id: str | None
    auto_join: bool
    poll_timeout_s: float


def _read(settings: ChannelSettings) -> _Config:
    label = settings.label
    homeserver = settings.text("homeserver").rstrip("/")
    try:
        url = httpx.URL(homeserver)
    except (httpx.InvalidURL, TypeError):
        raise InvalidChannelSettings(f"{label}: homeserver is not a URL") from None
    if url.scheme != "https" and not (url.scheme == "http" and is_loopback_url(url)):
        raise InvalidChannelSettings(
            f"{label}: homeserver must be https (plain http only on loopback)")
    token = settings.secret("access_token")
    user_id = settings.text("user_id", "") or None
    if user_id is not None and (not user_id.startswith("@") or ":" not in user_id):
        raise InvalidChannelSettings(f"{label}: user_id must look like @name:server")
    poll = settings.number("poll_timeout_s", DEFAULT_POLL_TIMEOUT_S)
    if not 1 <= poll <= MAX_POLL_TIMEOUT_S:
        raise InvalidChannelSettings(
            f"{label}: poll_timeout_s must be between 1 and {MAX_POLL_TIMEOUT_S:g}")
    return _Config(homeserver, token, user_id, settings.flag("auto_join", False), poll)


def check_settings(settings: ChannelSettings) -> list[str]:
    try:
        _read(settings)
    except InvalidChannelSettings as exc:
        return [str(exc)]
    return []


def create_adapter(settings: ChannelSettings, context: AdapterContext) -> MatrixAdapter:
    return MatrixAdapter(settings.instance, _read(settings), context)


def txn_id(key: str) -> str:
    """The transaction id for one part (``key`` is ``<outbound_id>`` or
    ``<outbound_id>#<n>``): stable across retries and restarts, URL-safe."""
    return "ironclaw-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


class MatrixAdapter:
    carries_files = True

    def __init__(self, instance: str, config: _Config, context: AdapterContext) -> None:
        self._instance = instance
        self._config = config
        self._state = context.state
        self._api = MatrixApi(context.http, config.homeserver, config.token)
        self._idempotent = IdempotentDelivery(context.ledger)
        self.user_id: str | None = None
        self._display_name: str | None = None
        self._direct: set[str] = set()
        self._members: dict[str, int | None] = {}  # joined member counts we know
        self._invites_noted: set[str] = set()

    @property
    def name(self) -> str:
        return MATRIX

    @property
    def instance(self) -> str:
        return self._instance

    # -- receiving ---------------------------------------------------------------------

    async def serve(self, events: trio.MemorySendChannel[InboundEvent], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        me = await self._api.whoami()
        if self._config.user_id is not None and me != self._config.user_id:
            raise MatrixError("whoami: the access token belongs to another user than "
                              "user_id")
        self.user_id = me
        self._display_name = await self._api.display_name(me)
        self._direct = direct_rooms_of(await self._api.direct_rooms(me))
        self._members.clear()  # counts may have changed while we were away
        since = await self._state.cursor(SINCE)
        task_status.started()
        if since is None:
            since = await self._take_position()
        timeout_ms = int(self._config.poll_timeout_s * 1000)
        while True:
            batch = await self._api.sync(since, timeout_ms, SYNC_FILTER)
            if batch is not None:
                since = await self._take_batch(events, batch, since)

    async def _take_position(self) -> str:
        """First start: note where the stream is, answer nothing from before."""
        while (batch := await self._api.sync(None, 0, SYNC_FILTER)) is None:
            pass
        next_batch = self._next_batch(batch)
        await self._absorb(batch)
        await self._state.save_cursor(SINCE, next_batch)
        return next_batch

    @staticmethod
    def _next_batch(batch: dict[str, Any]) -> str:
        token = batch["next_batch"]
        if len(token) > MAX_CURSOR_CHARS:
            raise MatrixError("sync: next_batch token too long")
        return str(token)

    async def _absorb(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Account data, member counts and invites; returns the joined rooms."""
        account = batch.get("account_data")
        for item in account.get("events", []) if isinstance(account, dict) else []:
            if isinstance(item, dict) and item.get("type") == "m.direct":
                self._direct = direct_rooms_of(item.get("content"))
        rooms = batch.get("rooms")
        rooms = rooms if isinstance(rooms, dict) else {}
        joined = rooms.get("join")
        joined = joined if isinstance(joined, dict) else {}
        for room_id, room in joined.items():
            if isinstance(room, dict) and (count := joined_count_of(room)) is not None:
                self._remember_count(room_id, count)
        invites = rooms.get("invite")
        for room_id in invites if isinstance(invites, dict) else {}:
            await self._on_invite(str(room_id))
        return joined

    async def _on_invite(self, room_id: str) -> None:
        if not room_id.startswith("!"):
            return
        if not self._config.auto_join:
            if room_id not in self._invites_noted and len(self._invites_noted) < 1000:
                self._invites_noted.add(room_id)
                logger.info("matrix: invited to %s; not joining (auto_join is off)", room_id)
            return
        try:
            await self._api.join(room_id)
        except MatrixError as exc:  # a refused join is that room's problem, not ours
            logger.warning("matrix: could not join %s: %s", room_id, exc)
            return
        self._members.pop(room_id, None)
        logger.info("matrix: joined %s on invitation", room_id)

    def _remember_count(self, room_id: str, count: int | None) -> None:
        if room_id not in self._members and len(self._members) >= _MAX_KNOWN_ROOMS:
            self._members.pop(next(iter(self._members)))
        self._members[room_id] = count

    async def _take_batch(self, events: trio.MemorySendChannel[InboundEvent],
                          batch: dict[str, Any], since: str) -> str:
        next_batch = self._next_batch(batch)
        joined = await self._absorb(batch)
        me = self.user_id
        assert me is not None
        found: list[tuple[str, RoomMessage]] = []
        for room_id, room in joined.items():
            if not isinstance(room, dict) or not str(room_id).startswith("!"):
                continue
            timeline = room.get("timeline")
            timeline = timeline if isinstance(timeline, dict) else {}
            items = timeline.get("events")
            items = list(items) if isinstance(items, list) else []
            if timeline.get("limited") is True and isinstance(timeline.get("prev_batch"), str):
                items = await self._gap(room_id, timeline["prev_batch"], since) + items
            for item in items:
                message = room_message(item, me, self._display_name)
                if message is not None:
                    found.append((room_id, message))
        if not found:
            await self._state.save_cursor(SINCE, next_batch)
            return next_batch
        for index, (room_id, message) in enumerate(found):
            last = index == len(found) - 1
            await self._state.hand_over(
                events, await self._event(room_id, message), event_id=message.event_id,
                cursor=(SINCE, next_batch) if last else None)
        return next_batch

    async def _gap(self, room_id: str, prev_batch: str, since: str) -> list[Any]:
        """The events the server left out of a limited timeline, oldest first."""
        collected: list[Any] = []
        start: str | None = prev_batch
        while start is not None and len(collected) < MAX_GAP_EVENTS:
            chunk, end = await self._api.messages_before(room_id, start, since, GAP_PAGE,
                                                         GAP_FILTER)
            collected.extend(chunk)
            start = end if chunk and end != start else None
        if len(collected) >= MAX_GAP_EVENTS:
            logger.warning("matrix: more than %d messages missed in %s; older ones skipped",
                           MAX_GAP_EVENTS, room_id)
        collected.reverse()
        return collected

    async def _event(self, room_id: str, message: RoomMessage) -> InboundEvent:
        direct = await self._is_direct(room_id)
        files = () if message.media is None else (self._api.download(message.media),)
        return InboundEvent(
            channel=MATRIX, instance=self._instance, platform_id=room_id,
            sender_handle=message.sender, text=message.body, thread_id=message.thread_id,
            mentioned=direct or message.mentioned, direct=direct,
            platform_message_id=message.event_id, attachments=files)

    async def _is_direct(self, room_id: str) -> bool:
        if room_id in self._direct:
            return True
        if room_id not in self._members:
            self._remember_count(room_id, await self._api.joined_member_count(room_id))
        return self._members.get(room_id) == 2

    # -- sending -----------------------------------------------------------------------

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        if not delivery.platform_id.startswith("!"):
            raise DeliveryFailed("not a Matrix room id", retryable=False)
        if delivery.thread_id is not None and not delivery.thread_id.startswith("$"):
            raise DeliveryFailed("not a Matrix thread root event id", retryable=False)
        if delivery.file is not None:
            return await self._idempotent.deliver(delivery, self._send_file)
        if not delivery.text.strip():
            raise DeliveryFailed("an empty reply cannot be sent to Matrix", retryable=False)
        parts = split_text(delivery.text, BODY_LIMIT_BYTES, Measure.BYTES)
        return await deliver_in_parts(self._idempotent, delivery, parts, self._send_part)

    async def _send_file(self, delivery: OutboundDelivery) -> str:
        assert delivery.file is not None
        uri = await self._api.upload(delivery.file)
        caption = split_text(delivery.text, BODY_LIMIT_BYTES, Measure.BYTES)[0]
        return await self._send_part(delivery, file_event(delivery.file, uri, caption))

    async def _send_part(self, part: OutboundDelivery,
                         content: dict[str, Any] | None = None) -> str:
        if content is None:
            content = {"msgtype": "m.text", "body": part.text, "m.mentions": {}}
        answered = part.in_reply_to if part.in_reply_to and part.in_reply_to.startswith(
            "$") else None
        if part.thread_id is not None:
            content["m.relates_to"] = {
                "rel_type": "m.thread", "event_id": part.thread_id,
                # For clients without threads: show it as a reply to the event answered
                # (the spec's fallback: the thread's latest event), else to the root.
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": answered or part.thread_id}}
        return await self._api.send(part.platform_id, txn_id(part.outbound_id), content)
