"""The IRC line protocol, as pure functions: no sockets, no Trio.

* :func:`parse_line` / :func:`format_line`: RFC 1459/2812 messages with IRCv3 message
  tags. Formatting refuses anything that could smuggle a second command onto the wire
  (CR, LF, NUL anywhere; a space or leading ``:`` in a middle parameter).
* :class:`Casemap`: IRC's case-insensitivity (``rfc1459``, ``strict-rfc1459``,
  ``ascii``), as the server announces it in ``ISUPPORT CASEMAPPING``.
* :func:`is_mention`: was our nick addressed (``nick:``, ``nick,``, ``@nick``, or the
  nick as a whole word)?
* :func:`outgoing_lines`: a reply cut into ``PRIVMSG`` payloads that keep the line the
  server relays to others (``:nick!user@host PRIVMSG <target> :<text>\\r\\n``) within
  512 bytes, cut at newlines first and never inside a UTF-8 character, with the
  control characters that could inject commands or CTCP removed.
"""

from __future__ import annotations

import re

import attrs

from ironclaw.host.channels.platform import Measure, split_text

__all__ = [
    "CHANNEL_PREFIXES",
    "MAX_LINE_BYTES",
    "PREFIX_BUDGET",
    "Casemap",
    "Message",
    "ProtocolError",
    "ctcp_action",
    "decode_line",
    "format_line",
    "is_channel",
    "is_mention",
    "outgoing_lines",
    "parse_line",
    "payload_budget",
    "strip_formatting",
    "valid_nick",
    "valid_target",
]

MAX_LINE_BYTES = 512  # the whole line, CR LF included (RFC 1459 §2.3)
MAX_TAGS_BYTES = 8191  # IRCv3 message-tags: the tag section, ``@`` and space included
# The longest line we accept from a server; longer ones are dropped, not parsed.
MAX_INBOUND_BYTES = MAX_TAGS_BYTES + MAX_LINE_BYTES
# What we assume ``nick!user@host`` takes when the server relays our message, until we
# learn it (and at least this much after, so a reply splits the same way on every
# connection: see ``payload_budget``).
PREFIX_BUDGET = 100
CHANNEL_PREFIXES = "#&+!"

_NICK = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,63}")
# A PRIVMSG target: a channel or a nick; nothing that ends a parameter or a line, no
# comma (a target list), no BEL (forbidden in channel names), no leading colon.
_TARGET = re.compile(r"[^\s,:\x00\x07][^\s,\x00\x07]{0,199}")
_NICK_CHARS = "A-Za-z0-9\\[\\]\\\\`_^{|}-"
# mIRC-style formatting: bold, colour (with its digits), hex colour, reset, monospace,
# reverse, italics, strikethrough, underline.
_FORMATTING = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?"
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]")
# What we never send: line and command terminators, and the CTCP delimiter (an agent
# must not be able to make our message a CTCP request such as DCC).
_UNSENDABLE = re.compile(r"[\x00\x01\r]")
_TAG_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class ProtocolError(ValueError):
    """A line we cannot parse or must not send."""


@attrs.frozen
class Message:
    command: str  # upper case; numerics stay three digits
    params: tuple[str, ...] = ()
    prefix: str | None = None  # ``nick!user@host`` or a server name
    tags: dict[str, str] = attrs.field(factory=dict)

    @property
    def nick(self) -> str | None:
        """The sender's nick, when the prefix names a user."""
        if self.prefix is None:
            return None
        nick, bang, _ = self.prefix.partition("!")
        if bang or "@" in self.prefix or "." not in self.prefix:
            return nick.partition("@")[0]
        return None  # a server name

    def param(self, index: int, default: str = "") -> str:
        return self.params[index] if len(self.params) > index else default


def decode_line(raw: bytes) -> str:
    """IRC has no declared encoding: UTF-8 when it is valid, else Latin-1 (which
    decodes anything), the usual client fallback."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _unescape_tag(value: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\":
            index += 1
            if index < len(value):
                out.append(_TAG_UNESCAPE.get(value[index], value[index]))
        else:
            out.append(char)
        index += 1
    return "".join(out)


def parse_line(line: str) -> Message:
    """One line (without its CR LF) as a :class:`Message`; :class:`ProtocolError` if it
    has no command."""
    rest = line.lstrip(" ")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        section, _, rest = rest[1:].partition(" ")
        for item in section.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = _unescape_tag(value)
        rest = rest.lstrip(" ")
    prefix = None
    if rest.startswith(":"):
        prefix, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    trailing = None
    if " :" in rest:
        rest, trailing = rest.split(" :", 1)
    elif rest.startswith(":"):
        rest, trailing = "", rest[1:]
    words = rest.split()
    if not words:
        raise ProtocolError("a line without a command")
    params = words[1:] + ([trailing] if trailing is not None else [])
    return Message(words[0].upper(), tuple(params), prefix or None, tags)


def format_line(command: str, *params: str) -> bytes:
    """``command params...`` as a wire line with CR LF; the last parameter is sent as
    a trailing one (``:``) when it needs to be. Raises :class:`ProtocolError` rather
    than send anything that could end the line early or shift the parameters."""
    if not re.fullmatch(r"[A-Za-z]+|\d{3}", command):
        raise ProtocolError("bad command")
    parts = [command]
    for index, param in enumerate(params):
        if any(char in param for char in "\r\n\x00"):
            raise ProtocolError("a parameter contains a line terminator")
        last = index == len(params) - 1
        if last and (not param or " " in param or param.startswith(":")):
            parts.append(":" + param)
        elif not param or " " in param or param.startswith(":"):
            raise ProtocolError("a middle parameter is empty or has a space or colon")
        else:
            parts.append(param)
    line = (" ".join(parts) + "\r\n").encode("utf-8")
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError("line longer than 512 bytes")
    return line


@attrs.frozen
class Casemap:
    """IRC's case folding; build with :meth:`named` from ``CASEMAPPING``."""

    name: str = "rfc1459"

    @classmethod
    def named(cls, name: str) -> Casemap:
        name = name.lower()
        return cls(name if name in ("ascii", "rfc1459", "strict-rfc1459") else "rfc1459")

    def fold(self, text: str) -> str:
        if self.name == "ascii":
            return text.translate(_ASCII)
        if self.name == "strict-rfc1459":
            return text.translate(_STRICT)
        return text.translate(_RFC1459)

    def equal(self, left: str, right: str) -> bool:
        return self.fold(left) == self.fold(right)


_ASCII = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_STRICT = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\", "abcdefghijklmnopqrstuvwxyz{}|")
_RFC1459 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")


def valid_nick(nick: str) -> bool:
    return _NICK.fullmatch(nick) is not None


def valid_target(target: str) -> bool:
    """Safe to put in a ``PRIVMSG``'s target parameter."""
    return _TARGET.fullmatch(target) is not None


def is_channel(target: str, prefixes: str = CHANNEL_PREFIXES) -> bool:
    return bool(target) and target[0] in prefixes


def strip_formatting(text: str) -> str:
    return _FORMATTING.sub("", text)


def ctcp_action(text: str) -> str | None:
    """The body of a CTCP ``ACTION`` (``/me``); None for anything else."""
    if not text.startswith("\x01"):
        return None
    body = text[1:-1] if text.endswith("\x01") else text[1:]
    verb, _, rest = body.partition(" ")
    return rest if verb.upper() == "ACTION" else None


def is_mention(text: str, nicks: tuple[str, ...], casemap: Casemap) -> bool:
    """Whether ``text`` addresses one of ``nicks``: ``nick:`` or ``nick,`` at the start,
    ``@nick``, or the nick as a whole word (not part of a longer nick), compared under
    the server's case mapping."""
    folded = casemap.fold(strip_formatting(text))
    for nick in nicks:
        if not nick:
            continue
        target = re.escape(casemap.fold(nick))
        if re.search(rf"(?<![{_NICK_CHARS}]){target}(?![{_NICK_CHARS}])", folded):
            return True
    return False


def payload_budget(target: str, prefix_len: int | None) -> int:
    """Bytes of text that fit in one ``PRIVMSG <target>`` as the server relays it."""
    prefix = max(prefix_len or 0, PREFIX_BUDGET)
    overhead = len(f":{'x' * prefix} PRIVMSG {target} :\r\n".encode())
    return MAX_LINE_BYTES - overhead


def outgoing_lines(text: str, budget: int) -> list[str]:
    """``text`` as the payloads of successive ``PRIVMSG`` lines: NUL, CR and the CTCP
    delimiter removed, one or more lines per line of text (IRC has no multi-line
    message), each at most ``budget`` UTF-8 bytes, blank lines skipped."""
    if budget < 16:
        raise ValueError("no room for text in a line")
    lines: list[str] = []
    # Lone surrogates cannot be encoded; replace them rather than fail the delivery.
    text = text.encode("utf-8", "replace").decode("utf-8")
    for line in _UNSENDABLE.sub("", text).split("\n"):
        if line.strip():
            lines.extend(piece for piece in split_text(line.rstrip(), budget, Measure.BYTES)
                         if piece)
    return lines
