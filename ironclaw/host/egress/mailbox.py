"""The egress broker's mailbox messages and what a session's route is.

The reply is the runtime's and the conflict error the socket server shell's; the
route is this broker's own: a session, its agent group (whose grant is the allowlist)
and the socket that *is* the session.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from ironclaw.contract.ids import SessionId, validate_session_id
from ironclaw.host.sockets.serving import SessionConflict
from ironclaw.runtime import Reply

__all__ = ["EgressMsg", "EgressRoute", "Reply", "ServeEgress", "SessionConflict", "StopEgress"]


@attrs.frozen
class EgressRoute:
    """One session's egress socket. Requests on ``socket_path`` are checked against
    ``agent_group_id``'s allowlist; nothing in a request can name another group."""

    session_id: SessionId = attrs.field(converter=validate_session_id)
    agent_group_id: str
    socket_path: Path = attrs.field(converter=Path)


@attrs.frozen
class ServeEgress:
    route: EgressRoute
    reply: Reply[Path] = attrs.field(factory=Reply, eq=False)


@attrs.frozen
class StopEgress:
    session_id: str
    reply: Reply[None] = attrs.field(factory=Reply, eq=False)


EgressMsg = ServeEgress | StopEgress
