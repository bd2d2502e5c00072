"""The IRC adapter's settings, read from a ``[[channels]]`` table and the environment."""

from __future__ import annotations

from pathlib import Path

import attrs

from ironclaw.host.channels.settings import (
    ChannelSettings,
    InvalidChannelSettings,
    Secret,
    is_loopback_host,
)

from .protocol import CHANNEL_PREFIXES, valid_nick, valid_target

__all__ = ["IrcConfig", "check_settings"]


@attrs.frozen
class IrcConfig:
    server: str
    port: int
    nick: str
    username: str
    realname: str
    channels: tuple[str, ...] = ()
    password: Secret | None = attrs.field(default=None, repr=False)
    tls: bool = True
    tls_verify: bool = True
    tls_ca_file: str | None = None  # a private CA, added to the system trust store
    send_rate: float = 1.0  # lines per second once the burst is spent
    send_burst: int = 4
    ping_interval: float = 60.0  # send our own PING after this long without traffic
    ping_timeout: float = 30.0  # ... and give the link up if nothing answers in this long
    connect_timeout: float = 30.0  # TCP, TLS and registration (until 001)
    join_timeout: float = 10.0  # how long to wait for the JOINs before reporting up
    deliver_wait: float = 30.0  # how long a delivery waits for a connection
    rejoin_delay: float = 5.0  # after a KICK

    @classmethod
    def from_settings(cls, settings: ChannelSettings) -> IrcConfig:
        label = settings.label
        tls = settings.flag("tls", True)
        port = settings.port("port", 6697 if tls else 6667)
        server = settings.host("server")
        nick = settings.text("nick")
        if not valid_nick(nick):
            raise InvalidChannelSettings(f"{label}: nick {nick!r} is not a valid IRC nick")
        username = settings.text("username", nick)
        if not username or not all(char.isalnum() or char in "-_.[]\\`^{|}~"
                                   for char in username):
            raise InvalidChannelSettings(f"{label}: username must be one word")
        realname = settings.text("realname", "IronClaw")
        if any(char in realname for char in "\r\n\x00"):
            raise InvalidChannelSettings(f"{label}: realname must be one line")
        channels = settings.strings("channels")
        for channel in channels:
            if channel[:1] not in CHANNEL_PREFIXES or not valid_target(channel):
                raise InvalidChannelSettings(
                    f"{label}: {channel!r} is not a channel name (#name, no spaces or commas)")
        password: Secret | None
        try:
            password = settings.secret("password")
        except InvalidChannelSettings:
            password = None
        if password is not None and any(c in password.reveal() for c in " \r\n\x00"):
            raise InvalidChannelSettings(f"{label}: password must be one word")
        ca_file = settings.text("tls_ca_file", "") or None
        send_rate = settings.number("send_rate", 1.0)
        send_burst = settings.number("send_burst", 4)
        if send_rate <= 0 or send_burst < 1:
            raise InvalidChannelSettings(f"{label}: send_rate must be > 0, send_burst >= 1")
        timings = {key: settings.number(key, default) for key, default in (
            ("ping_interval", 60.0), ("ping_timeout", 30.0), ("connect_timeout", 30.0),
            ("join_timeout", 10.0), ("deliver_wait", 30.0), ("rejoin_delay", 5.0))}
        if min(timings.values()) <= 0:
            raise InvalidChannelSettings(f"{label}: timeouts and intervals must be > 0")
        return cls(server=server, port=port, nick=nick, username=username,
                   realname=realname, channels=channels, password=password, tls=tls,
                   tls_verify=settings.flag("tls_verify", True), tls_ca_file=ca_file,
                   send_rate=send_rate, send_burst=int(send_burst), **timings)


def check_settings(settings: ChannelSettings) -> list[str]:
    """Problems ``ironctl doctor`` reports; contacts nothing."""
    try:
        config = IrcConfig.from_settings(settings)
    except InvalidChannelSettings as exc:
        return [str(exc)]
    problems = []
    remote = not is_loopback_host(config.server)
    if remote and not config.tls:
        problems.append(f"{settings.label}: tls is off: messages"
                        + (" and the password" if config.password else "")
                        + f" cross the network to {config.server} in clear text")
    if config.tls and not config.tls_verify:
        problems.append(f"{settings.label}: tls_verify is off: anyone on the path can "
                        "impersonate the server")
    if config.tls_ca_file and not Path(config.tls_ca_file).is_file():
        problems.append(f"{settings.label}: tls_ca_file {config.tls_ca_file} is not a file")
    if not config.channels:
        problems.append(f"{settings.label}: no channels: only direct messages will reach "
                        "the agent")
    return problems
