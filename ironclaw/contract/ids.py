"""Typed identifiers shared by both sides of the wall.

Every id that becomes part of a filesystem path or crosses the wall is validated
here, once, so that a path trick (``../``, a NUL, a slash) can never reach ``open``.
The ``NewType`` wrappers cost nothing at run time but let mypy keep a session id
from being passed where a message id is expected.
"""

from __future__ import annotations

import re
import secrets
from typing import NewType

SessionId = NewType("SessionId", str)
MessageId = NewType("MessageId", str)
AgentGroupId = NewType("AgentGroupId", str)
MessagingGroupId = NewType("MessagingGroupId", str)
UserId = NewType("UserId", str)
ChangeId = NewType("ChangeId", str)

# Session ids name directories on the host, so they are the strictest:
# a fixed prefix and lowercase hex only. Nothing else can form a path.
_SESSION_ID = re.compile(r"ses_[0-9a-f]{16,64}")
# Message ids come from both sides (the sandbox mints outbound ones). They are
# compared and stored, never used as paths, but still kept to a safe alphabet so
# that logs and dedup keys stay printable and bounded.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


class InvalidId(ValueError):
    """An identifier did not match its required form."""


def validate_session_id(value: object) -> SessionId:
    if not isinstance(value, str) or not _SESSION_ID.fullmatch(value):
        raise InvalidId(f"not a session id: {value!r:.80}")
    return SessionId(value)


def validate_message_id(value: object) -> MessageId:
    if not isinstance(value, str) or not _MESSAGE_ID.fullmatch(value):
        raise InvalidId(f"not a message id: {value!r:.80}")
    return MessageId(value)


def new_session_id() -> SessionId:
    return SessionId("ses_" + secrets.token_hex(8))


def new_message_id(prefix: str = "msg") -> MessageId:
    return validate_message_id(f"{prefix}_{secrets.token_hex(12)}")


def new_change_id() -> ChangeId:
    return ChangeId("chg_" + secrets.token_hex(16))
