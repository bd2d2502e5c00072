"""The daemon's TOML config file: what the command line does not say.

Known top-level keys are listed in :data:`TOP_LEVEL_KEYS`; anything else is an error
(a typo must not silently drop a setting). Example::

    runtime = "runsc"
    idle_timeout_s = 900
    session_retention_days = 90

    [mounts]
    roots = ["/srv/shared", {path = "/srv/scratch", writable = true}]

    [[channels]]
    type = "telegram"

Values given on the command line win over the file. The keys in :data:`DAEMON_KEYS`
are the daemon's own (where the API listens, how it logs): the command line takes
them out before the rest becomes a :class:`~.config.ControlPlaneConfig`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from ironclaw.host.attachments import AttachmentPolicy
from ironclaw.host.channels.settings import InvalidChannelSettings, parse_channel_tables
from ironclaw.host.egress import EgressConfig
from ironclaw.host.gateway import GatewayConfig
from ironclaw.host.gateway.config import mount_roots_from_table
from ironclaw.host.isolation.pool import PoolSettings
from ironclaw.host.isolation.volumes import DiskCaps
from ironclaw.host.mcp import McpConfig

__all__ = ["DAEMON_KEYS", "LOG_FORMATS", "ConfigFileError", "load_config_file"]

DAEMON_KEYS = frozenset({"api_addr", "api_allow_public", "log_format"})
LOG_FORMATS = ("text", "json")
TOP_LEVEL_KEYS = frozenset({"state_dir", "runtime", "idle_timeout_s", "channels", "egress",
                            "sandbox_disk", "sandbox_pool", "gateway", "mock_model",
                            "session_retention_days", "mounts", "mcp",
                            "attachments"}) | DAEMON_KEYS
# Tables parsed by their own settings class: key -> from_table.
SECTION_PARSERS: dict[str, Callable[[Any], Any]] = {
    "egress": EgressConfig.from_table,
    "sandbox_disk": DiskCaps.from_table,
    "sandbox_pool": PoolSettings.from_table,
    "gateway": GatewayConfig.from_table,
    "mcp": McpConfig.from_table,
    "attachments": AttachmentPolicy.from_table,
}
MAX_CONFIG_BYTES = 1024 * 1024


class ConfigFileError(ValueError):
    """The config file is unreadable or invalid; the message says where."""


def load_config_file(path: Path) -> dict[str, Any]:
    """Keyword arguments for :class:`~.config.ControlPlaneConfig` from ``path``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigFileError(f"{path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigFileError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
    unknown = sorted(set(table) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigFileError(f"{path}: unknown key(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(TOP_LEVEL_KEYS))}")
    values: dict[str, Any] = {}
    try:
        values["channels"] = parse_channel_tables(table.get("channels"))
    except InvalidChannelSettings as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
    for key, parse in SECTION_PARSERS.items():
        if key in table:
            try:
                values[key] = parse(table[key])
            except (TypeError, ValueError) as exc:
                raise ConfigFileError(f"{path}: {exc}") from None
    if "mounts" in table:
        try:
            roots = mount_roots_from_table(table["mounts"])
        except (TypeError, ValueError) as exc:
            raise ConfigFileError(f"{path}: {exc}") from None
        values["gateway"] = attrs.evolve(values.get("gateway") or GatewayConfig(),
                                         mount_roots=roots)
    if "state_dir" in table:
        values["state_dir"] = Path(str(table["state_dir"]))
    if "runtime" in table:
        values["runtime"] = str(table["runtime"])
    if "api_addr" in table:
        if not isinstance(table["api_addr"], str):
            raise ConfigFileError(f"{path}: api_addr must be a string HOST:PORT")
        values["api_addr"] = table["api_addr"]
    if "api_allow_public" in table:
        if not isinstance(table["api_allow_public"], bool):
            raise ConfigFileError(f"{path}: api_allow_public must be true or false")
        values["api_allow_public"] = table["api_allow_public"]
    if "mock_model" in table:
        if not isinstance(table["mock_model"], bool):
            raise ConfigFileError(f"{path}: mock_model must be true or false")
        values["mock_model"] = table["mock_model"]
    if "log_format" in table:
        if table["log_format"] not in LOG_FORMATS:
            raise ConfigFileError(f"{path}: log_format must be one of {', '.join(LOG_FORMATS)}")
        values["log_format"] = table["log_format"]
    if "idle_timeout_s" in table:
        try:
            values["idle_timeout_s"] = float(table["idle_timeout_s"])
        except (TypeError, ValueError):
            raise ConfigFileError(f"{path}: idle_timeout_s must be a number") from None
    if "session_retention_days" in table:
        days = table["session_retention_days"]
        if isinstance(days, bool) or not isinstance(days, int | float) or not days > 0:
            raise ConfigFileError(f"{path}: session_retention_days must be a positive "
                                  "number of days")
        values["session_retention_s"] = float(days) * 86_400.0
    return values
