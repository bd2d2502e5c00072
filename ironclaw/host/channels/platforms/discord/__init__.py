"""Discord: the gateway websocket for receiving, REST for sending.

Receiving is :mod:`.gateway` (heartbeats, Identify/Resume, the persisted resume point)
and :mod:`.messages` (which messages count, DMs, mentions, threads). Sending is
``POST /channels/{id}/messages``, into the thread's channel when the delivery names a
thread, in parts of at most ``TEXT_LIMIT`` UTF-16 code units (Discord's limit is 2000
characters; code units are never fewer than characters, so a part always fits). Each
part carries a ``nonce`` derived from its idempotency key with ``enforce_nonce``, so
Discord itself drops a repeat sent within its dedup window (a crash between Discord's
answer and our receipt); the delivery ledger covers the rest. Rate limits: see
:mod:`.rest`.

Settings: ``token`` (secret; ``IRONCLAW_DISCORD_TOKEN``), ``api_base`` (default
``https://discord.com/api/v10``), ``intents`` (default GUILDS | GUILD_MESSAGES |
DIRECT_MESSAGES | MESSAGE_CONTENT = 37377).
"""

from __future__ import annotations

import hashlib

import trio

from ...adapters import AdapterContext
from ...base import DeliveryFailed, DeliveryReceipt, InboundEvent, OutboundDelivery
from ...ledger import IdempotentDelivery
from ...platform import Measure, deliver_in_parts, split_text
from ...settings import ChannelSettings, InvalidChannelSettings
from .._ws import check_api_base
from .files import discord_attachments, discord_origins
from .gateway import DEFAULT_INTENTS, DiscordGateway
from .messages import snowflake
from .rest import DEFAULT_API_BASE, DiscordRest

__all__ = ["DiscordAdapter", "check_settings", "create_adapter", "nonce_for"]

CHANNEL = "discord"
TEXT_LIMIT = 2000
MAX_NONCE_CHARS = 25
MAX_INTENTS = (1 << 26) - 1


def check_settings(settings: ChannelSettings) -> list[str]:
    problems: list[str] = []
    try:
        token = settings.secret("token").reveal()
    except InvalidChannelSettings as exc:
        problems.append(str(exc))
    else:
        if token.lower().startswith("bot ") or any(c.isspace() for c in token):
            problems.append(f"{settings.label}: token should be the bare bot token "
                            "(no 'Bot ' prefix, no spaces)")
    try:
        base = settings.text("api_base", DEFAULT_API_BASE)
    except InvalidChannelSettings as exc:
        problems.append(str(exc))
    else:
        if (problem := check_api_base(base)) is not None:
            problems.append(f"{settings.label}: api_base {problem}")
    try:
        intents = settings.number("intents", DEFAULT_INTENTS)
    except InvalidChannelSettings as exc:
        problems.append(str(exc))
    else:
        if intents != int(intents) or not 0 < intents <= MAX_INTENTS:
            problems.append(f"{settings.label}: intents must be a positive integer bit set")
    return problems


def create_adapter(settings: ChannelSettings, context: AdapterContext) -> DiscordAdapter:
    problems = check_settings(settings)
    if problems:
        raise InvalidChannelSettings("; ".join(problems))
    return DiscordAdapter(settings, context)


def nonce_for(key: str) -> str:
    """Discord's nonce (at most 25 characters) for one part's idempotency key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:MAX_NONCE_CHARS]


class DiscordAdapter:
    carries_files = True

    def __init__(self, settings: ChannelSettings, context: AdapterContext) -> None:
        self._instance = settings.instance
        token = settings.secret("token")
        api_base = settings.text("api_base", DEFAULT_API_BASE)
        self._rest = DiscordRest(context.http, api_base, token)
        origins = discord_origins(api_base)
        self._gateway = DiscordGateway(rest=self._rest, state=context.state, token=token,
                                intents=int(settings.number("intents", DEFAULT_INTENTS)),
                                instance=self._instance,
                                attachments=lambda message: discord_attachments(
                                    message, context.http, origins))
        self._idempotent = IdempotentDelivery(context.ledger)

    @property
    def name(self) -> str:
        return CHANNEL

    @property
    def instance(self) -> str:
        return self._instance

    async def serve(self, events: trio.MemorySendChannel[InboundEvent], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._gateway.serve(events, task_status=task_status)

    async def deliver(self, delivery: OutboundDelivery) -> DeliveryReceipt:
        target = snowflake(delivery.thread_id or delivery.platform_id)
        if target is None:
            raise DeliveryFailed("discord: the delivery names no Discord channel id",
                                 retryable=False)
        if delivery.file is not None:
            file = delivery.file

            async def upload(whole: OutboundDelivery) -> str:
                return await self._rest.create_message(
                    target, whole.text[:TEXT_LIMIT], nonce_for(whole.outbound_id), file=file)

            return await self._idempotent.deliver(delivery, upload)
        parts = split_text(delivery.text, TEXT_LIMIT, Measure.UTF16)

        async def post(part: OutboundDelivery) -> str:
            return await self._rest.create_message(target, part.text,
                                                   nonce_for(part.outbound_id))

        return await deliver_in_parts(self._idempotent, delivery, parts, post)
