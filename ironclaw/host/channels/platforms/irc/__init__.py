"""IRC: a plain-socket client on Trio (TLS optional), one connection per instance.

Modules: :mod:`.protocol` (the line protocol, pure functions), :mod:`.config` (settings),
:mod:`.link` (one connection: registration, paced writes, keepalive, confirmed sends),
:mod:`.adapter` (the channel adapter). See ``docs/channels/irc.md``.
"""

from __future__ import annotations

from ironclaw.host.channels.adapters import AdapterContext
from ironclaw.host.channels.settings import ChannelSettings

from .adapter import IrcAdapter
from .config import IrcConfig, check_settings

__all__ = ["IrcAdapter", "check_settings", "create_adapter"]


def create_adapter(settings: ChannelSettings, context: AdapterContext) -> IrcAdapter:
    return IrcAdapter(IrcConfig.from_settings(settings), context, settings.instance)
