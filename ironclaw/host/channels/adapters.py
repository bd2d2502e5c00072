"""From configuration to running adapters: which module serves which channel type.

Each platform lives in ``ironclaw.host.channels.platforms.<type>`` and offers two
functions:

* ``create_adapter(settings, context) -> ChannelAdapter``: build the adapter, raising
  :class:`~.settings.InvalidChannelSettings` for unusable settings (at start, so a
  mistake stops the daemon with a clear message instead of a silent dead channel);
* ``check_settings(settings) -> list[str]``: the problems ``ironctl doctor`` reports,
  empty when the settings look usable. It must not contact the platform.

Modules are imported on demand, so a daemon with no Slack configured never loads the
Slack code.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import attrs
import httpx

from .base import ChannelAdapter
from .ledger import DeliveryLedger
from .settings import ChannelSettings, InvalidChannelSettings
from .state import ChannelState

__all__ = ["ADAPTER_TYPES", "AdapterContext", "check_settings", "create_adapter"]

ADAPTER_TYPES = ("telegram", "slack", "discord", "matrix", "irc", "webhook", "xmpp",
                 "email")


@attrs.frozen
class AdapterContext:
    """What the control plane lends an adapter."""

    state: ChannelState  # cursors and seen event ids, in host.db
    ledger: DeliveryLedger  # receipts of delivered parts, in host.db
    http: httpx.AsyncClient  # shared; per-request timeouts override its default


class _PlatformModule(Protocol):
    def create_adapter(self, settings: ChannelSettings,
                       context: AdapterContext) -> ChannelAdapter: ...

    def check_settings(self, settings: ChannelSettings) -> list[str]: ...


def _module(kind: str) -> _PlatformModule:
    if kind not in ADAPTER_TYPES:
        raise InvalidChannelSettings(
            f"unknown channel type {kind!r}; known: {', '.join(ADAPTER_TYPES)}")
    module: _PlatformModule = importlib.import_module(
        f"ironclaw.host.channels.platforms.{kind}")
    return module


def create_adapter(settings: ChannelSettings, context: AdapterContext) -> ChannelAdapter:
    return _module(settings.type).create_adapter(settings, context)


def check_settings(settings: ChannelSettings) -> list[str]:
    try:
        return _module(settings.type).check_settings(settings)
    except InvalidChannelSettings as exc:
        return [str(exc)]
