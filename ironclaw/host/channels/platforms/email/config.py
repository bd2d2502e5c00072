"""The email adapter's settings, read from a ``[[channels]]`` table and the environment."""

from __future__ import annotations

import attrs

from ironclaw.host.channels.settings import (
    ChannelSettings,
    InvalidChannelSettings,
    Secret,
    is_loopback_host,
    problems_parsing,
)

__all__ = ["EmailConfig", "check_settings"]

TLS_MODES = ("tls", "starttls", "none")


@attrs.frozen
class EmailConfig:
    address: str  # the agent's own address: replies come from it
    username: str
    password: Secret = attrs.field(repr=False)
    imap_server: str
    smtp_server: str
    allowed_senders: tuple[str, ...]
    imap_port: int = 993
    imap_tls: str = "tls"
    smtp_port: int = 587
    smtp_tls: str = "starttls"
    smtp_login: bool = True
    tls_ca_file: str | None = None
    authserv_id: str | None = None
    idle_s: float = 300.0  # one IDLE (or, without IDLE, the polling interval)
    max_message_bytes: int = 1024 * 1024

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]

    @classmethod
    def from_settings(cls, settings: ChannelSettings) -> EmailConfig:
        label = settings.label
        address = settings.text("address").strip().lower()
        if address.count("@") != 1 or any(c.isspace() for c in address):
            raise InvalidChannelSettings(f"{label}: address must be one email address")
        imap_server = settings.host("imap_server")
        smtp_server = settings.host("smtp_server", imap_server)
        modes: dict[str, str] = {}
        for key, default in (("imap_tls", "tls"), ("smtp_tls", "starttls")):
            mode = settings.text(key, default)
            if mode not in TLS_MODES:
                raise InvalidChannelSettings(f"{label}: {key} must be one of "
                                             f"{', '.join(TLS_MODES)}")
            server = imap_server if key == "imap_tls" else smtp_server
            if mode == "none" and not is_loopback_host(server):
                raise InvalidChannelSettings(
                    f"{label}: {key} = \"none\" is allowed only to a loopback server")
            modes[key] = mode
        ports = {key: settings.port(key, default) for key, default in (
            ("imap_port", 993 if modes["imap_tls"] == "tls" else 143),
            ("smtp_port", 465 if modes["smtp_tls"] == "tls" else 587))}
        allowed = tuple(s.strip().lower() for s in settings.strings("allowed_senders"))
        if not allowed:
            raise InvalidChannelSettings(
                f"{label}: allowed_senders is required (addresses, or @domain for a "
                "whole domain): mail from anyone else is never read")
        for entry in allowed:
            if entry.count("@") != 1 or (not entry.startswith("@") and entry.endswith("@")):
                raise InvalidChannelSettings(f"{label}: allowed sender {entry!r} is not an "
                                             "address or @domain")
        # RFC 2177: re-issue IDLE at least every 29 minutes.
        idle_s = settings.seconds("idle_s", 300.0, low=1, high=1740)
        max_bytes = settings.number("max_message_bytes", 1024 * 1024)
        if not 1024 <= max_bytes <= 64 * 1024 * 1024:
            raise InvalidChannelSettings(f"{label}: max_message_bytes must be 1 KiB..64 MiB")
        return cls(
            address=address, username=settings.text("username", address),
            password=settings.secret("password"), imap_server=imap_server,
            smtp_server=smtp_server, allowed_senders=allowed, imap_tls=modes["imap_tls"],
            smtp_tls=modes["smtp_tls"], smtp_login=settings.flag("smtp_login", True),
            tls_ca_file=settings.text("tls_ca_file", "") or None,
            authserv_id=settings.text("authserv_id", "") or None, idle_s=idle_s,
            max_message_bytes=int(max_bytes), **ports)


def check_settings(settings: ChannelSettings) -> list[str]:
    return problems_parsing(EmailConfig.from_settings, settings)
