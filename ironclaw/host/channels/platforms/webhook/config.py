"""The webhook adapter's settings, from a ``[[channels]]`` table and the environment."""

from __future__ import annotations

import ipaddress
import urllib.parse

import attrs

from ironclaw.host.channels.settings import ChannelSettings, InvalidChannelSettings, Secret

__all__ = ["WebhookConfig", "check_settings"]

MIN_SECRET_CHARS = 16


@attrs.frozen
class WebhookConfig:
    secret: Secret = attrs.field(repr=False)
    outbound_secret: Secret = attrs.field(repr=False)  # the inbound secret unless set
    listen: str = "127.0.0.1:8790"
    url: str | None = attrs.field(default=None, repr=False)  # may carry a token in it
    max_text_chars: int = 8000
    max_body_bytes: int = 64 * 1024
    timestamp_tolerance: float = 300.0
    request_timeout: float = 15.0
    accept_timeout: float = 10.0  # how long a request waits for the router to commit
    max_in_flight: int = 64

    @classmethod
    def from_settings(cls, settings: ChannelSettings) -> WebhookConfig:
        label = settings.label
        secret = settings.secret("secret")
        if len(secret.reveal()) < MIN_SECRET_CHARS:
            raise InvalidChannelSettings(
                f"{label}: secret must be at least {MIN_SECRET_CHARS} characters "
                "(e.g. openssl rand -hex 32)")
        try:
            outbound = settings.secret("outbound_secret")
        except InvalidChannelSettings:
            outbound = secret
        listen = settings.text("listen", "127.0.0.1:8790")
        split_listen(listen, label)
        url = settings.text("url", "") or None
        if url is not None:
            parsed = urllib.parse.urlsplit(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise InvalidChannelSettings(f"{label}: url must be an http(s) URL")
        numbers = {key: settings.number(key, default) for key, default in (
            ("max_text_chars", 8000), ("max_body_bytes", 64 * 1024),
            ("timestamp_tolerance", 300.0), ("request_timeout", 15.0),
            ("accept_timeout", 10.0), ("max_in_flight", 64))}
        if numbers["max_text_chars"] < 16 or numbers["max_body_bytes"] < 256:
            raise InvalidChannelSettings(
                f"{label}: max_text_chars must be >= 16 and max_body_bytes >= 256")
        if min(numbers["request_timeout"], numbers["accept_timeout"],
               numbers["max_in_flight"], numbers["timestamp_tolerance"]) <= 0:
            raise InvalidChannelSettings(f"{label}: timeouts and limits must be > 0")
        return cls(secret=secret, outbound_secret=outbound, listen=listen, url=url,
                   max_text_chars=int(numbers["max_text_chars"]),
                   max_body_bytes=int(numbers["max_body_bytes"]),
                   timestamp_tolerance=numbers["timestamp_tolerance"],
                   request_timeout=numbers["request_timeout"],
                   accept_timeout=numbers["accept_timeout"],
                   max_in_flight=int(numbers["max_in_flight"]))


def split_listen(listen: str, label: str = "webhook") -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) into its parts; the host must be an IP address."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise InvalidChannelSettings(
            f"{label}: listen must be <ip>:<port>, e.g. 127.0.0.1:8790") from None
    if not sep or not 0 <= number < 65536:
        raise InvalidChannelSettings(f"{label}: listen port must be 0..65535")
    return host, number


def check_settings(settings: ChannelSettings) -> list[str]:
    """Problems ``ironctl doctor`` reports; contacts nothing."""
    try:
        config = WebhookConfig.from_settings(settings)
    except InvalidChannelSettings as exc:
        return [str(exc)]
    problems = []
    host, _ = split_listen(config.listen)
    if not ipaddress.ip_address(host).is_loopback:
        problems.append(f"{settings.label}: listens on {config.listen}, beyond this machine: "
                        "put TLS (a reverse proxy) in front of it")
    if config.url is None:
        problems.append(f"{settings.label}: no url: replies cannot be delivered")
    else:
        parsed = urllib.parse.urlsplit(config.url)
        loopback = parsed.hostname in ("localhost",) or _is_loopback_ip(parsed.hostname)
        if parsed.scheme != "https" and not loopback:
            problems.append(f"{settings.label}: url is not https: replies cross the "
                            "network in clear text")
    return problems


def _is_loopback_ip(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
