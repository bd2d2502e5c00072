"""The MCP broker's mailbox messages and what a session's route is.

The route is the session, its agent group (whose ``mcp_access`` grant is read for every
request), the socket that *is* the session, and the host paths its server instances
use: the directories their own workspaces go under (the session's, and the group's for
instances its sessions share), and the group's workspace (bound read-only for a server
whose catalogue entry asks for it).
"""

from __future__ import annotations

from pathlib import Path

import attrs

from ironclaw.contract.ids import SessionId, validate_session_id
from ironclaw.runtime import Reply

__all__ = ["McpMsg", "McpRoute", "ServeMcp", "StopMcp"]


@attrs.frozen
class McpRoute:
    session_id: SessionId = attrs.field(converter=validate_session_id)
    agent_group_id: str
    socket_path: Path = attrs.field(converter=Path)
    servers_dir: Path = attrs.field(converter=Path)
    group_servers_dir: Path = attrs.field(converter=Path)
    workspace: Path = attrs.field(converter=Path)


@attrs.frozen
class ServeMcp:
    route: McpRoute
    reply: Reply[Path] = attrs.field(factory=Reply, eq=False)


@attrs.frozen
class StopMcp:
    session_id: str
    reply: Reply[None] = attrs.field(factory=Reply, eq=False)


McpMsg = ServeMcp | StopMcp
