"""Telegram, through the Bot API with long polling (``getUpdates``).

Receiving: ``getMe`` once per connection (the bot's id and @username, for mentions
and to ignore its own messages), then ``getUpdates`` in a loop with ``offset``,
``timeout`` and ``allowed_updates=["message"]``. The offset is the durable cursor
``offset``: it moves to ``update_id + 1`` only through ``ChannelState`` (with
``hand_over`` once the router committed the message, or ``save_cursor`` for an update we
skip), so a restart neither loses nor repeats an update. Telegram forgets what we
confirmed (every update below the offset we ask with), which is exactly the cursor.

* A private chat is ``direct`` and always ``mentioned``: every message in it is
  addressed to the bot.
* In a group, the bot is mentioned by a ``mention`` entity naming its @username, a
  ``text_mention`` of its user, a ``/command@username``, or a reply to one of its
  messages (not the topic's creation notice that Telegram attaches to every message in
  a forum topic).
* A forum topic is a thread: ``thread_id`` is the ``message_thread_id`` of a message
  with ``is_topic_message``; replies go back with ``message_thread_id``, and as a
  reply (``reply_parameters``) to the message they answer.
* The text is ``text``, or a media message's ``caption``; a document, photo, audio,
  voice or video is an attachment (``telegram_files``), fetched by the router's inbox;
  other messages (stickers, service messages) are skipped, cursor moved past them.

Sending: ``sendMessage`` per part, parts cut at 4096 UTF-16 code units; a file with
``sendDocument``. Telegram has
no idempotency key, so a retry after an answer lost in transit may show a message
twice; everything else is made idempotent by the delivery ledger.

The bot token is part of every URL (``/bot<token>/<method>``). It never reaches a log
line or an error text: transport errors are replaced by our own (see ``._http``) and a
log filter on the ``httpx`` logger, which logs each request URL at INFO, redacts it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import attrs
import httpx
import trio

from ironclaw.host.attachments import AttachmentRefused, InboundAttachment

from ..adapters import AdapterContext
from ..base import DeliveryFailed, DeliveryReceipt, InboundEvent, OutboundDelivery
from ..ledger import IdempotentDelivery
from ..platform import Measure, deliver_in_parts, delivery_failure, split_text
from ..settings import ChannelSettings, InvalidChannelSettings, Secret
from ._http import (
    Answer,
    PlatformError,
    PlatformUnreachable,
    Upload,
    bounded_sleep,
    is_loopback_url,
    request,
    transport_failure,
)
from .telegram_files import CAPTION_LIMIT, file_refs, telegram_attachment

__all__ = ["TelegramAdapter", "check_settings", "create_adapter", "parse_message"]

logger = logging.getLogger(__name__)

TELEGRAM = "telegram"
DEFAULT_API_BASE = "https://api.telegram.org"
DEFAULT_POLL_TIMEOUT_S = 30.0
MAX_POLL_TIMEOUT_S = 300.0
MESSAGE_LIMIT = 4096  # UTF-16 code units, Telegram's own measure
OFFSET = "offset"
ALLOWED_UPDATES = ("message",)
# Over the long poll itself: how long the answer may take on top of it.
_HTTP_MARGIN_S = 15.0
_CALL_TIMEOUT_S = 30.0
_SEND_TIMEOUT_S = 15.0
_TOKEN_SHAPE = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{20,200}")
_TOKEN_IN_URL = re.compile(r"/bot[^/\s\"']+")


class TelegramError(PlatformError):
    """The Bot API refused or did not understand us; the text is log-safe."""


class _RedactTokens(logging.Filter):
    """httpx logs every request URL at INFO; ours carry the bot token."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        redacted = _TOKEN_IN_URL.sub("/bot<redacted>", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _install_log_redaction() -> None:
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactTokens) for f in httpx_logger.filters):
        httpx_logger.addFilter(_RedactTokens())


_install_log_redaction()


@attrs.frozen
class BotIdentity:
    id: int
    username: str  # without "@"; "" if the bot has none (it always has one in practice)


# -- settings ------------------------------------------------------------------------------

@attrs.frozen
class _Config:
    token: Secret
    api_base: str
    poll_timeout_s: float


def _read(settings: ChannelSettings) -> _Config:
    token = settings.secret("token")
    if not _TOKEN_SHAPE.fullmatch(token.reveal()):
        raise InvalidChannelSettings(
            f"{settings.label}: token does not look like a Bot API token "
            "(<digits>:<letters>, as BotFather gives it)")
    api_base = settings.text("api_base", DEFAULT_API_BASE).rstrip("/")
    try:
        url = httpx.URL(api_base)
    except (httpx.InvalidURL, TypeError):
        raise InvalidChannelSettings(f"{settings.label}: api_base is not a URL") from None
    if url.scheme != "https" and not (url.scheme == "http" and is_loopback_url(url)):
        raise InvalidChannelSettings(
            f"{settings.label}: api_base must be https (plain http only on loopback): "
            "the bot token travels in the URL")
    poll = settings.number("poll_timeout_s", DEFAULT_POLL_TIMEOUT_S)
    if not 1 <= poll <= MAX_POLL_TIMEOUT_S:
        raise InvalidChannelSettings(
            f"{settings.label}: poll_timeout_s must be between 1 and {MAX_POLL_TIMEOUT_S:g}")
    return _Config(token, api_base, poll)


def check_settings(settings: ChannelSettings) -> list[str]:
    try:
        _read(settings)
    except InvalidChannelSettings as exc:
        return [str(exc)]
    return []


def create_adapter(settings: ChannelSettings, context: AdapterContext) -> TelegramAdapter:
    return TelegramAdapter(settings.instance, _read(settings), context)


# -- parsing (pure) -----------------------------------------------------------------------

def _utf16_slice(text: str, offset: object, length: object) -> str:
    """Telegram's entity offsets count UTF-16 code units."""
    if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
        return ""
    raw = text.encode("utf-16-le")[2 * offset:2 * (offset + length)]
    return raw.decode("utf-16-le", errors="ignore")


def _user_id(value: object) -> int | None:
    if isinstance(value, dict) and isinstance(value.get("id"), int):
        return int(value["id"])
    return None


def _is_mentioned(message: dict[str, Any], text: str, entities: object,
                  bot: BotIdentity) -> bool:
    name = f"@{bot.username}".lower() if bot.username else None
    for entity in entities if isinstance(entities, list) else ():
        if not isinstance(entity, dict):
            continue
        kind = entity.get("type")
        if kind == "text_mention" and _user_id(entity.get("user")) == bot.id:
            return True
        if name is None or kind not in ("mention", "bot_command"):
            continue
        named = _utf16_slice(text, entity.get("offset"), entity.get("length")).lower()
        if (kind == "mention" and named == name) or (
                kind == "bot_command" and named.endswith(name)):
            return True
    reply = message.get("reply_to_message")
    # In a forum topic, every message "replies" to the topic's creation notice.
    return (isinstance(reply, dict) and "forum_topic_created" not in reply
            and _user_id(reply.get("from")) == bot.id)


def _display_name(user: dict[str, Any]) -> str | None:
    names = [user.get("first_name"), user.get("last_name")]
    joined = " ".join(n for n in names if isinstance(n, str) and n)
    username = user.get("username")
    return joined or (username if isinstance(username, str) and username else None)


def parse_message(message: object, bot: BotIdentity, instance: str = ""
                  ) -> tuple[str, InboundEvent] | None:
    """``(event id, event)`` for a message the agent should see, else None (the bot's
    own, no text, or not the shape Telegram documents)."""
    if not isinstance(message, dict):
        return None
    chat, message_id = message.get("chat"), message.get("message_id")
    if not isinstance(chat, dict) or not isinstance(chat.get("id"), int) \
            or not isinstance(message_id, int):
        return None
    sender = message.get("from")
    if isinstance(sender, dict):
        sender_id = _user_id(sender)
        if sender_id is None or sender_id == bot.id:
            return None
        handle, display = str(sender_id), _display_name(sender)
    else:  # sent on behalf of a chat (anonymous admin, linked channel)
        on_behalf = message.get("sender_chat")
        if _user_id(on_behalf) is None:
            return None
        assert isinstance(on_behalf, dict)
        title = on_behalf.get("title")
        handle, display = f"chat{on_behalf['id']}", title if isinstance(title, str) else None
    if isinstance(message.get("text"), str):
        text, entities = message["text"], message.get("entities")
    elif isinstance(message.get("caption"), str):
        text, entities = message["caption"], message.get("caption_entities")
    elif file_refs(message):
        text, entities = "", None
    else:
        return None
    direct = chat.get("type") == "private"
    thread = message.get("message_thread_id")
    thread_id = str(thread) if message.get("is_topic_message") is True and isinstance(
        thread, int) else None
    chat_id = int(chat["id"])
    event = InboundEvent(
        channel=TELEGRAM, instance=instance, platform_id=str(chat_id), sender_handle=handle,
        text=text, thread_id=thread_id,
        mentioned=direct or _is_mentioned(message, text, entities, bot), direct=direct,
        platform_message_id=str(message_id), sender_display_name=display)
    return f"{chat_id}/{message_id}", event


# -- the adapter --------------------------------------------------------------------------

def _chat_id(platform_id: str) -> int | str:
    if platform_id.lstrip("-").isdigit():
        return int(platform_id)
    if platform_id.startswith("@") and len(platform_id) > 1:
        return platform_id  # a public channel or supergroup by @username
    raise DeliveryFailed("not a Telegram chat id", retryable=False)


def _api_error(answer: Answer, method: str) -> str:
    """The Bot API's own error description, which names the problem but never the
    token, shortened; the status alone if there is none."""
    body = answer.json()
    description = body.get("description") if isinstance(body, dict) else None
    if isinstance(description, str) and description:
        return f"{method}: {_TOKEN_IN_URL.sub('/bot<redacted>', description)[:200]}"
    return f"{method}: HTTP {answer.status}"


class TelegramAdapter:
    carries_files = True

    def __init__(self, instance: str, config: _Config, context: AdapterContext) -> None:
        self._instance = instance
        self._config = config
        self._state = context.state
        self._http = context.http
        self._idempotent = IdempotentDelivery(context.ledger)
        self.bot: BotIdentity | None = None

    @property
    def name(self) -> str:
        return TELEGRAM

    @property
    def instance(self) -> str:
        return self._instance

    def _url(self, method: str) -> str:
        return f"{self._config.api_base}/bot{self._config.token.reveal()}/{method}"

    async def _call(self, method: str, body: dict[str, Any], *, timeout_s: float) -> Answer:
        return await request(self._http, "POST", self._url(method), what=method,
                             timeout_s=timeout_s, json_body=body)

    # -- receiving ---------------------------------------------------------------------

    async def serve(self, events: trio.MemorySendChannel[InboundEvent], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        bot = self.bot = await self._get_me()
        stored = await self._state.cursor(OFFSET)
        offset = int(stored) if stored is not None and stored.isdigit() else None
        task_status.started()
        while True:
            for update in await self._get_updates(offset):
                offset = await self._take(events, update, bot)

    async def _get_me(self) -> BotIdentity:
        answer = await self._call("getMe", {}, timeout_s=_CALL_TIMEOUT_S)
        result = self._result(answer, "getMe")
        if not isinstance(result, dict) or not isinstance(result.get("id"), int):
            raise TelegramError("getMe: unexpected answer")
        username = result.get("username")
        return BotIdentity(int(result["id"]), username if isinstance(username, str) else "")

    async def _get_updates(self, offset: int | None) -> list[Any]:
        body: dict[str, Any] = {"timeout": int(self._config.poll_timeout_s),
                                "allowed_updates": list(ALLOWED_UPDATES)}
        if offset is not None:
            body["offset"] = offset
        answer = await self._call("getUpdates", body,
                                  timeout_s=self._config.poll_timeout_s + _HTTP_MARGIN_S)
        if answer.status == 429:  # the receive side is rate limited too: wait, then poll
            await bounded_sleep(answer.retry_after())
            return []
        result = self._result(answer, "getUpdates")
        if not isinstance(result, list):
            raise TelegramError("getUpdates: unexpected answer")
        return result

    def _result(self, answer: Answer, method: str) -> Any:
        body = answer.json()
        if answer.ok and isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        if answer.status in (401, 404):
            raise TelegramError(f"{method}: the bot token was refused ({answer.status})")
        if answer.status == 409:
            raise TelegramError(f"{method}: another poller or a webhook holds this bot (409)")
        raise TelegramError(_api_error(answer, method))

    async def _take(self, events: trio.MemorySendChannel[InboundEvent], update: object,
                    bot: BotIdentity) -> int:
        """Hand one update over (or skip it); return the next offset."""
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int) \
                or update["update_id"] < 0:
            # Without an id we cannot move past it; polling again would spin on it.
            raise TelegramError("getUpdates: an update without a valid update_id")
        offset = int(update["update_id"]) + 1
        cursor = (OFFSET, str(offset))
        parsed = parse_message(update.get("message"), bot, self._instance)
        if parsed is None:
            await self._state.save_cursor(*cursor)
        else:
            event_id, event = parsed
            event = attrs.evolve(event, attachments=self._attachments(update["message"]))
            await self._state.hand_over(events, event, event_id=event_id, cursor=cursor)
        return offset

    def _attachments(self, message: dict[str, Any]) -> tuple[InboundAttachment, ...]:
        config = self._config
        return tuple(telegram_attachment(self._http, config.api_base, config.token.reveal(),
                                         ref, self._get_file) for ref in file_refs(message))

    async def _get_file(self, file_id: str) -> str:
        try:
            answer = await self._call("getFile", {"file_id": file_id},
                                      timeout_s=_CALL_TIMEOUT_S)
            result = self._result(answer, "getFile")
        except PlatformError as exc:
            raise AttachmentRefused(str(exc)) from None
        path = result.get("file_path") if isinstance(result, dict) else None
        if not isinstance(path, str) or not path or len(path) > 1024:
            raise AttachmentRefused("getFile: no file path (the file may be too large "
                                    "for bots)")
        return path

    # -- sending -----------------------------------------------------------------------

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        _chat_id(delivery.platform_id)
        if delivery.thread_id is not None and not delivery.thread_id.isdigit():
            raise DeliveryFailed("not a Telegram topic id", retryable=False)
        if delivery.file is not None:
            return await self._idempotent.deliver(delivery, self._send_document)
        if not delivery.text.strip():
            raise DeliveryFailed("an empty reply cannot be sent to Telegram", retryable=False)
        parts = split_text(delivery.text, MESSAGE_LIMIT, Measure.UTF16)
        return await deliver_in_parts(self._idempotent, delivery, parts, self._send_part)

    async def _send_part(self, part: OutboundDelivery) -> str:
        body: dict[str, Any] = {"chat_id": _chat_id(part.platform_id), "text": part.text}
        if part.thread_id is not None:
            body["message_thread_id"] = int(part.thread_id)
        if part.in_reply_to is not None and part.in_reply_to.isdigit():
            # Shown as a reply to the message answered; sent anyway if it was deleted.
            body["reply_parameters"] = {"message_id": int(part.in_reply_to),
                                        "allow_sending_without_reply": True}
        return await self._sent("sendMessage", json_body=body)

    async def _send_document(self, delivery: OutboundDelivery) -> str:
        assert delivery.file is not None
        fields = {"chat_id": str(_chat_id(delivery.platform_id))}
        if delivery.text.strip():
            fields["caption"] = delivery.text[:CAPTION_LIMIT]
        if delivery.thread_id is not None:
            fields["message_thread_id"] = delivery.thread_id
        file = delivery.file
        upload = Upload(fields, {"document": (file.name, file.data, file.media_type)})
        return await self._sent("sendDocument", upload=upload)

    async def _sent(self, method: str, *, json_body: dict[str, Any] | None = None,
                    upload: Upload | None = None) -> str:
        try:
            # Telegram has no idempotency key: a send cancelled after it left (at
            # shutdown) is a message we would post again after the restart. So once
            # it is on the wire, let it finish, within its own timeout, and be recorded.
            with trio.CancelScope(shield=True):
                answer = await request(self._http, "POST", self._url(method), what=method,
                                       timeout_s=_SEND_TIMEOUT_S, json_body=json_body,
                                       upload=upload)
        except PlatformUnreachable as exc:
            raise transport_failure(exc) from None
        failure = delivery_failure(answer.response(), method)
        if failure is not None:
            if not failure.retryable:  # say why: "chat not found", "bot was blocked"
                failure = DeliveryFailed(_api_error(answer, method), retryable=False)
            raise failure
        body_out = answer.json()
        result = body_out.get("result") if isinstance(body_out, dict) else None
        if not isinstance(result, dict) or not isinstance(result.get("message_id"), int):
            # Sent (2xx) but unreadable: report success without an id rather than
            # inviting a retry that would post it twice.
            logger.warning("telegram %s: 2xx without a message id", method)
            return ""
        return str(result["message_id"])
