"""Which platforms vouch for who sent a message.

A sender id (``<channel>:<handle>``) is only a credential when the platform itself
authenticates the sender: then nobody but that account can produce a message under
that id. Chat approvals decide changes on the strength of a sender id, so they are
allowed only on these channels (``docs/channels.md``, "Who the platform vouches for",
keeps the same table; a test holds the two equal).
"""

from __future__ import annotations

import attrs

__all__ = ["SENDER_AUTHENTICATION", "SenderAuthentication", "authenticates_senders"]


@attrs.frozen
class SenderAuthentication:
    authenticated: bool
    why: str  # what the platform guarantees, or why it guarantees nothing


SENDER_AUTHENTICATION: dict[str, SenderAuthentication] = {
    "local": SenderAuthentication(True, (
        "reached only through the API with a bearer token, or the daemon's own "
        "terminal; a chat command is posted only under the poster's own principal name")),
    "telegram": SenderAuthentication(True, (
        "Telegram's servers sign the user in and stamp the numeric user id on every "
        "update, which the bot fetches over HTTPS with its token")),
    "slack": SenderAuthentication(True, (
        "Slack stamps the workspace user id on every event it sends over the app's "
        "Socket Mode connection, opened with the app's token")),
    "discord": SenderAuthentication(True, (
        "Discord's gateway, over the bot's authenticated session, stamps the snowflake "
        "user id on every message")),
    "matrix": SenderAuthentication(True, (
        "the homeserver authenticates its own users and verifies other servers' "
        "signed events; the user id names the server that vouches for it")),
    "irc": SenderAuthentication(False, (
        "an IRC nick is anyone's who takes it while it is free; the adapter sees "
        "no account")),
    "xmpp": SenderAuthentication(False, (
        "the server authenticates a one-to-one sender's address, but in a room the "
        "sender is a nick, which is anyone's who takes it while it is free")),
    "email": SenderAuthentication(False, (
        "a From address is whatever the sender writes; DKIM, SPF and DMARC, where the "
        "receiving server checks them, vouch for a domain, not for a person")),
    "webhook": SenderAuthentication(False, (
        "the signature proves only that the caller holds the shared secret; the "
        "'sender' field is whatever that caller writes")),
}


def authenticates_senders(channel: str) -> bool:
    """True when ``channel``'s platform authenticates who sent a message (an unknown
    channel does not)."""
    found = SENDER_AUTHENTICATION.get(channel)
    return found is not None and found.authenticated
