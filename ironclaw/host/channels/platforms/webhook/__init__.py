"""The webhook channel: any system that can send and receive signed JSON over HTTP.

Modules: :mod:`.signing` (the HMAC scheme), :mod:`.config` (settings), :mod:`.adapter`
(the inbound endpoint and the outbound poster). See ``docs/channels/webhook.md``.
"""

from __future__ import annotations

from ironclaw.host.channels.adapters import AdapterContext
from ironclaw.host.channels.settings import ChannelSettings

from .adapter import WebhookAdapter
from .config import WebhookConfig, check_settings

__all__ = ["WebhookAdapter", "check_settings", "create_adapter"]


def create_adapter(settings: ChannelSettings, context: AdapterContext) -> WebhookAdapter:
    return WebhookAdapter(WebhookConfig.from_settings(settings), context, settings.instance)
