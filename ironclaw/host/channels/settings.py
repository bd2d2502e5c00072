"""How a platform adapter is configured: the daemon's config file plus the environment.

In the daemon's TOML file, each adapter instance is one ``[[channels]]`` table::

    [[channels]]
    type = "telegram"          # which adapter
    instance = ""              # optional; "" is the default instance of that type
    api_base = "https://api.telegram.org"
    # token = "..."            # possible, but prefer the environment:

Secrets should come from the environment: ``IRONCLAW_<TYPE>_<KEY>`` for the default
instance, ``IRONCLAW_<TYPE>_<INSTANCE>_<KEY>`` for a named one (upper case, ``-`` as
``_``), e.g. ``IRONCLAW_TELEGRAM_TOKEN`` or ``IRONCLAW_SLACK_WORK_APP_TOKEN``. The
environment wins over the file. A secret is held in :class:`Secret`, whose ``repr``
and ``str`` never show it, so a settings object can be logged.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["ChannelSettings", "InvalidChannelSettings", "Secret", "is_loopback_host",
           "parse_channel_tables", "problems_parsing"]

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
Scalar = str | int | float | bool


class InvalidChannelSettings(ValueError):
    """A channel's configuration is unusable; the message says which key and why."""


@attrs.frozen(repr=False)
class Secret:
    """A credential. Only :meth:`reveal` gives the value."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@attrs.frozen
class ChannelSettings:
    """One adapter instance's configuration: its type, instance name and options."""

    type: str
    instance: str = ""
    options: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    # The environment to read secrets from; the process environment by default.
    environ: Mapping[str, str] = attrs.field(factory=lambda: os.environ, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not _NAME.fullmatch(self.type):
            raise InvalidChannelSettings(f"channel type {self.type!r} is not a valid name")
        if self.instance and not _NAME.fullmatch(self.instance):
            raise InvalidChannelSettings(
                f"{self.type}: instance {self.instance!r} is not a valid name")

    @property
    def label(self) -> str:
        return f"{self.type}/{self.instance or 'default'}"

    def env_name(self, key: str) -> str:
        parts = ["IRONCLAW", self.type] + ([self.instance] if self.instance else []) + [key]
        return "_".join(parts).upper().replace("-", "_")

    def _raw(self, key: str) -> Any:
        from_env = self.environ.get(self.env_name(key))
        return from_env if from_env is not None else self.options.get(key)

    def secret(self, key: str) -> Secret:
        value = self._raw(key)
        if not isinstance(value, str) or not value:
            raise InvalidChannelSettings(
                f"{self.label}: {key} is not set (set {self.env_name(key)} in the "
                "environment)")
        return Secret(value)

    def text(self, key: str, default: str | None = None) -> str:
        value = self._raw(key)
        if value is None:
            if default is None:
                raise InvalidChannelSettings(
                    f"{self.label}: {key} is required (or set {self.env_name(key)})")
            return default
        if not isinstance(value, str):
            raise InvalidChannelSettings(f"{self.label}: {key} must be a string")
        return value

    def number(self, key: str, default: float) -> float:
        value = self._raw(key)
        if value is None:
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidChannelSettings(f"{self.label}: {key} must be a number") from None
        if number != number or number < 0:
            raise InvalidChannelSettings(f"{self.label}: {key} must be >= 0")
        return number

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._raw(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise InvalidChannelSettings(f"{self.label}: {key} must be true or false")

    def port(self, key: str, default: int) -> int:
        number = self.number(key, default)
        if number != int(number) or not 0 < number < 65536:
            raise InvalidChannelSettings(f"{self.label}: {key} must be 1..65535")
        return int(number)

    def host(self, key: str, default: str | None = None) -> str:
        """A host name or address: present and one word."""
        host = self.text(key, default)
        if not host or any(char.isspace() for char in host):
            raise InvalidChannelSettings(f"{self.label}: {key} must be a host name or "
                                         "address")
        return host

    def seconds(self, key: str, default: float, *, low: float = 0.1,
                high: float = 3600.0) -> float:
        seconds = self.number(key, default)
        if not low <= seconds <= high:
            raise InvalidChannelSettings(f"{self.label}: {key} must be {low:g}..{high:g} "
                                         "seconds")
        return float(seconds)

    def strings(self, key: str) -> tuple[str, ...]:
        """A list option; from the environment, a comma-separated string."""
        value = self._raw(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise InvalidChannelSettings(f"{self.label}: {key} must be a list of strings")


def parse_channel_tables(tables: object, *,
                         environ: Mapping[str, str] | None = None
                         ) -> tuple[ChannelSettings, ...]:
    """The ``[[channels]]`` array of a parsed config file, validated."""
    if tables is None:
        return ()
    if not isinstance(tables, list):
        raise InvalidChannelSettings("channels must be an array of tables ([[channels]])")
    parsed: list[ChannelSettings] = []
    seen: set[tuple[str, str]] = set()
    for index, table in enumerate(tables):
        if not isinstance(table, dict):
            raise InvalidChannelSettings(f"channels[{index}] must be a table")
        options = dict(table)
        kind = options.pop("type", None)
        instance = options.pop("instance", "")
        if not isinstance(kind, str) or not isinstance(instance, str):
            raise InvalidChannelSettings(f"channels[{index}]: type and instance are strings")
        for key in options:
            if not _KEY.fullmatch(key):
                raise InvalidChannelSettings(f"channels[{index}]: bad key {key!r}")
        settings = ChannelSettings(kind, instance, options,
                                   **({} if environ is None else {"environ": environ}))
        if (kind, instance) in seen:
            raise InvalidChannelSettings(f"{settings.label} is configured twice")
        seen.add((kind, instance))
        parsed.append(settings)
    return tuple(parsed)


def problems_parsing(parse: Callable[[ChannelSettings], object],
                     settings: ChannelSettings) -> list[str]:
    """``check_settings`` for a platform whose only checks are its parser's."""
    try:
        parse(settings)
    except InvalidChannelSettings as exc:
        return [str(exc)]
    return []


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address: a server a channel may reach without TLS."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
