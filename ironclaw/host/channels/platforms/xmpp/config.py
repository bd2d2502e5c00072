"""The XMPP adapter's settings, read from a ``[[channels]]`` table and the environment."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ironclaw.host.attachments import Origin, origin_of
from ironclaw.host.channels.settings import (
    ChannelSettings,
    InvalidChannelSettings,
    Secret,
    is_loopback_host,
    problems_parsing,
)

from .protocol import bare, is_valid_jid, resource_of

__all__ = ["XmppConfig", "check_settings"]


@attrs.frozen
class XmppConfig:
    jid: str  # the bot's bare JID, user@domain
    password: Secret = attrs.field(repr=False)
    server: str  # where to connect; the JID's domain unless set
    port: int = 5222
    tls: bool = True  # STARTTLS, required; plain only to a loopback server
    tls_ca_file: str | None = None
    resource: str = "ironclaw"
    rooms: tuple[str, ...] = ()  # MUC rooms to join, by bare JID
    nick: str = "ironclaw"  # our nick in those rooms
    ping_interval: float = 60.0
    ping_timeout: float = 30.0
    connect_timeout: float = 30.0
    deliver_wait: float = 30.0
    upload_service: str | None = None  # the JID of an HTTP File Upload service
    file_hosts: tuple[Origin, ...] = ()  # where attachment URLs may be fetched from

    @property
    def domain(self) -> str:
        return self.jid.split("@", 1)[1]

    @classmethod
    def from_settings(cls, settings: ChannelSettings) -> XmppConfig:
        label = settings.label
        jid = settings.text("jid")
        if not is_valid_jid(jid) or "@" not in jid or resource_of(jid) is not None:
            raise InvalidChannelSettings(f"{label}: jid must be a bare JID, user@domain")
        password = settings.secret("password")
        server = settings.host("server", jid.split("@", 1)[1])
        port = settings.port("port", 5222)
        tls = settings.flag("tls", True)
        if not tls and not is_loopback_host(server):
            raise InvalidChannelSettings(
                f"{label}: tls = false is allowed only to a loopback server (the password "
                "would cross the network in the clear)")
        rooms = settings.strings("rooms")
        for room in rooms:
            if not is_valid_jid(room) or "@" not in room or bare(room) != room:
                raise InvalidChannelSettings(f"{label}: room {room!r} is not a bare JID")
        nick = settings.text("nick", jid.split("@", 1)[0])
        resource = settings.text("resource", "ironclaw")
        for name, value in (("nick", nick), ("resource", resource)):
            if not value or len(value) > 64 or any(c.isspace() or c in "/@" for c in value):
                raise InvalidChannelSettings(f"{label}: {name} must be one word")
        numbers = {key: settings.seconds(key, default) for key, default in (
            ("ping_interval", 60.0), ("ping_timeout", 30.0), ("connect_timeout", 30.0),
            ("deliver_wait", 30.0))}
        upload = settings.text("upload_service", "") or None
        if upload is not None and (not is_valid_jid(upload) or "/" in upload):
            raise InvalidChannelSettings(f"{label}: upload_service must be a JID")
        return cls(jid=jid, password=password, server=server, port=port, tls=tls,
                   tls_ca_file=settings.text("tls_ca_file", "") or None, resource=resource,
                   rooms=tuple(rooms), nick=nick, upload_service=upload,
                   file_hosts=_file_hosts(label, settings.strings("file_hosts")), **numbers)


def _file_hosts(label: str, urls: Sequence[str]) -> tuple[Origin, ...]:
    """``https://host[:port]`` each; plain ``http`` only on a loopback host."""
    found = []
    for url in urls:
        origin = origin_of(url)
        if origin is None or (origin[0] != "https" and not is_loopback_host(origin[1])):
            raise InvalidChannelSettings(
                f"{label}: file_hosts must be https URLs (plain http only on loopback)")
        found.append(origin)
    return tuple(found)


def check_settings(settings: ChannelSettings) -> list[str]:
    return problems_parsing(XmppConfig.from_settings, settings)
