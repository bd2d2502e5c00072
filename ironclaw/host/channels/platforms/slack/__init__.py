"""Slack, receiving through Socket Mode and sending through the Web API.

Receiving: ``apps.connections.open`` (app-level token, ``xapp-``) gives a ``wss://`` URL;
Slack greets with ``hello``, then sends envelopes. Each ``events_api`` envelope is
turned into at most one message (see :mod:`.events`), handed over, and only then
acknowledged with ``{"envelope_id": ...}``: an ack is a promise that the message is
durable (invariant 10), and ``hand_over`` returns once the router has committed it.
Slack redelivers an envelope that is not acknowledged within 3 seconds, or when the
connection drops first; the redelivery carries the same message, whose id
(``<channel>:<ts>``) is then in the seen set, so it is dropped and acknowledged. A
hand-over normally takes milliseconds; one slower than ``ACK_WARN_S`` is logged, since
it will earn a (harmless) redelivery. Envelopes of other kinds (slash commands,
interactivity) are acknowledged and ignored.

``disconnect`` envelopes: ``refresh_requested`` and ``warning`` (Slack is about to
recycle the connection) are answered by opening a fresh URL at once, inside this
receive loop; ``link_disabled`` (Socket Mode switched off for the app) raises, so the
supervisor backs off and eventually parks the channel. A dropped connection raises too.

Rate limits on this side: a ``ratelimited`` answer from ``auth.test`` or
``apps.connections.open`` is waited out (``Retry-After``), not retried at once.

Sending: ``chat.postMessage`` with the bot token (``xoxb-``), in parts of at most
``TEXT_LIMIT`` characters (Slack cuts a text at 40,000 and advises at most 4,000), into
the thread when the delivery names one (``thread_ts``). Slack has no idempotency key
for posting, so exactly-once rests on the delivery ledger alone. The agent's text is
escaped (``&``, ``<``, ``>``), as Slack asks for literal text: it shows as written and
cannot ping ``<!channel>`` or disguise a link. Files go both ways (:mod:`.files`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs
import trio
import trio_websocket

from ...adapters import AdapterContext
from ...base import ChannelError, DeliveryReceipt, InboundEvent, OutboundDelivery
from ...ledger import IdempotentDelivery
from ...platform import Measure, deliver_in_parts, split_text
from ...settings import ChannelSettings, InvalidChannelSettings, Secret
from .._ws import SocketLost, check_api_base, close_code, decode_frame, open_socket
from .events import BotIdentity, incoming_message
from .files import slack_attachments, slack_origins, upload_file
from .webapi import DEFAULT_API_BASE, SlackApiError, SlackWebApi

__all__ = ["SlackAdapter", "check_settings", "create_adapter"]

logger = logging.getLogger(__name__)

CHANNEL = "slack"
TEXT_LIMIT = 4000
HELLO_TIMEOUT = 30.0
ACK_WARN_S = 2.0
MAX_FRAME_BYTES = 1 << 20
MAX_RATE_LIMIT_WAIT = 300.0
_REFRESH = frozenset({"refresh_requested", "warning"})


class SlackError(ChannelError):
    """The Socket Mode connection failed in a way worth telling the operator."""


def check_settings(settings: ChannelSettings) -> list[str]:
    problems: list[str] = []
    for key, prefix, kind in (("app_token", "xapp-", "an app-level token"),
                              ("bot_token", "xoxb-", "a bot token")):
        try:
            value = settings.secret(key).reveal()
        except InvalidChannelSettings as exc:
            problems.append(str(exc))
            continue
        if not value.startswith(prefix):
            problems.append(f"{settings.label}: {key} should be {kind} ({prefix}...)")
    try:
        base = settings.text("api_base", DEFAULT_API_BASE)
    except InvalidChannelSettings as exc:
        problems.append(str(exc))
    else:
        if (problem := check_api_base(base)) is not None:
            problems.append(f"{settings.label}: api_base {problem}")
    return problems


def create_adapter(settings: ChannelSettings, context: AdapterContext) -> SlackAdapter:
    problems = check_settings(settings)
    if problems:
        raise InvalidChannelSettings("; ".join(problems))
    return SlackAdapter(settings, context)


def escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackAdapter:
    carries_files = True

    def __init__(self, settings: ChannelSettings, context: AdapterContext) -> None:
        self._instance = settings.instance
        self._app_token: Secret = settings.secret("app_token")
        self._bot_token: Secret = settings.secret("bot_token")
        api_base = settings.text("api_base", DEFAULT_API_BASE)
        self._api = SlackWebApi(context.http, api_base)
        self._http = context.http
        self._origins = slack_origins(api_base)
        self._state = context.state
        self._idempotent = IdempotentDelivery(context.ledger)
        self._bot: BotIdentity | None = None

    @property
    def name(self) -> str:
        return CHANNEL

    @property
    def instance(self) -> str:
        return self._instance

    # -- receiving ----------------------------------------------------------------------

    async def serve(self, events: trio.MemorySendChannel[InboundEvent], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        bot = await self._identity()
        started = False
        while True:
            answer = await self._patiently("apps.connections.open", self._app_token)
            url = answer.get("url")
            if not isinstance(url, str):
                raise SlackError("slack apps.connections.open: no url in the answer")
            async with open_socket(url, what="slack socket", max_message_size=MAX_FRAME_BYTES,
                                   close_with=1000) as ws:
                await self._hello(ws)
                if not started:
                    task_status.started()
                    started = True
                reason = await self._pump(ws, events, bot)
            logger.info("slack %s: reconnecting (%s)", self._label, reason)

    @property
    def _label(self) -> str:
        return self._instance or "default"

    async def _identity(self) -> BotIdentity:
        if self._bot is None:
            answer = await self._patiently("auth.test", self._bot_token)
            user_id = answer.get("user_id")
            bot_id = answer.get("bot_id")
            if not isinstance(user_id, str) or not user_id:
                raise SlackError("slack auth.test: no user_id in the answer")
            self._bot = BotIdentity(user_id, bot_id if isinstance(bot_id, str) else None)
        return self._bot

    async def _patiently(self, method: str, token: Secret) -> dict[str, Any]:
        """Call ``method``, waiting out rate limits (and only those)."""
        while True:
            try:
                return await self._api.call(method, token)
            except SlackApiError as exc:
                if not exc.rate_limited:
                    raise
                wait = min(exc.retry_after or 1.0, MAX_RATE_LIMIT_WAIT)
                logger.warning("slack %s: %s rate limited; waiting %.1f s", self._label,
                               method, wait)
                await trio.sleep(wait)

    async def _receive(self, ws: trio_websocket.WebSocketConnection) -> dict[str, Any] | None:
        try:
            message = await ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise SocketLost("slack socket: the connection closed", close_code(exc)) from None
        return decode_frame(message, max_bytes=MAX_FRAME_BYTES)

    async def _send(self, ws: trio_websocket.WebSocketConnection, frame: dict[str, Any]
                    ) -> None:
        try:
            await ws.send_message(json.dumps(frame))
        except trio_websocket.ConnectionClosed as exc:
            raise SocketLost("slack socket: the connection closed", close_code(exc)) from None

    async def _hello(self, ws: trio_websocket.WebSocketConnection) -> None:
        with trio.move_on_after(HELLO_TIMEOUT):
            while True:
                frame = await self._receive(ws)
                if frame is not None and frame.get("type") == "hello":
                    return
                if frame is not None and frame.get("type") == "disconnect":
                    self._refuse(frame)
        raise SlackError("slack socket: no hello within "
                         f"{HELLO_TIMEOUT:g} s of connecting")

    @staticmethod
    def _refuse(frame: dict[str, Any]) -> None:
        if frame.get("reason") == "link_disabled":
            raise SlackError("slack socket: Socket Mode is disabled for this app "
                             "(link_disabled); enable it in the app's settings")

    async def _pump(self, ws: trio_websocket.WebSocketConnection,
                    events: trio.MemorySendChannel[InboundEvent], bot: BotIdentity) -> str:
        """Handle envelopes until Slack asks us to reconnect; return why."""
        while True:
            frame = await self._receive(ws)
            if frame is None:
                logger.warning("slack %s: ignored a frame that is not a JSON object",
                               self._label)
                continue
            kind = frame.get("type")
            if kind == "disconnect":
                self._refuse(frame)
                reason = frame.get("reason")
                return reason if isinstance(reason, str) and reason in _REFRESH else (
                    "disconnect")
            envelope_id = frame.get("envelope_id")
            if not isinstance(envelope_id, str) or not envelope_id:
                continue  # hello again, or something without an ack to give
            if kind == "events_api":
                await self._deliver_envelope(frame, events, bot)
            await self._send(ws, {"envelope_id": envelope_id})

    async def _deliver_envelope(self, frame: dict[str, Any],
                                events: trio.MemorySendChannel[InboundEvent],
                                bot: BotIdentity) -> None:
        payload = frame.get("payload")
        event = payload.get("event") if isinstance(payload, dict) else None
        incoming = incoming_message(event, bot, self._instance)
        if incoming is None:
            return
        event_in = attrs.evolve(incoming.event, attachments=slack_attachments(
            event, self._http, self._bot_token, self._origins))
        began = trio.current_time()
        await self._state.hand_over(events, event_in, event_id=incoming.event_id)
        took = trio.current_time() - began
        if took > ACK_WARN_S:
            logger.warning("slack %s: a message took %.1f s to be committed; Slack "
                           "redelivers after 3 s (the copy will be dropped)", self._label,
                           took)

    # -- sending ------------------------------------------------------------------------

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        if delivery.file is not None:
            return await self._idempotent.deliver(delivery, self._upload)
        parts = split_text(delivery.text, TEXT_LIMIT, Measure.CHARS)
        return await deliver_in_parts(self._idempotent, delivery, parts, self._post)

    async def _upload(self, delivery: OutboundDelivery) -> str:
        assert delivery.file is not None
        return await upload_file(self._api, self._http, self._bot_token, self._origins,
                                 channel=delivery.platform_id, thread_ts=delivery.thread_id,
                                 comment=escape_text(delivery.text[:TEXT_LIMIT]),
                                 file=delivery.file)

    async def _post(self, part: OutboundDelivery) -> str:
        body: dict[str, Any] = {"channel": part.platform_id, "text": escape_text(part.text)}
        if part.thread_id:
            body["thread_ts"] = part.thread_id
        answer = await self._api.call("chat.postMessage", self._bot_token, body)
        ts = answer.get("ts")
        if not isinstance(ts, str) or not ts:
            # Posted, but we cannot name it; the receipt still records the delivery.
            return "unknown"
        return ts
