"""From the event bus to the audit log: :class:`AuditRecorder` appends the gated actions
other actors publish (sandbox launches and exits, model calls, egress requests, MCP
calls and server instances, access requests) to the audit log. It reads through a large
buffer; if it ever falls behind, the gap itself is audited, so a lost entry is visible
rather than silent.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ironclaw.runtime import EventBus, Lagged

from .log import AuditLog

logger = logging.getLogger(__name__)

# Bus event type -> the fields copied into the audit entry (ids and counts only).
AUDITED: dict[str, tuple[str, ...]] = {
    "runtime.selected": ("runtime", "strength", "warning"),
    "sandbox.launched": ("session_id", "runtime", "pid"),
    "sandbox.exited": ("session_id", "runtime", "returncode"),
    "sandbox.stopped": ("session_id", "runtime", "reason"),
    "session.failed": ("session_id", "error"),
    "session.quarantined": ("session_id", "agent_group_id", "reason"),
    "session.quarantine_lifted": ("session_id", "agent_group_id", "by"),
    "session.deleted": ("session_id", "agent_group_id", "workspace", "by"),
    "model.call": ("session_id", "agent_group_id", "provider", "host", "method", "path",
                   "status", "request_bytes", "response_bytes", "duration_ms",
                   "redactions", "stop", "failure"),
    "model.provider_failing": ("provider", "failure", "consecutive"),
    "model.provider_recovered": ("provider", "failed_calls"),
    "egress.request": ("session_id", "agent_group_id", "operation", "host", "final_host",
                       "method", "status", "outcome", "upstream", "request_bytes",
                       "response_bytes", "duration_ms", "redirects", "suppressed"),
    "mcp.call": ("session_id", "agent_group_id", "operation", "server", "tool", "status",
                 "outcome", "request_bytes", "response_bytes", "duration_ms"),
    "mcp.server": ("session_id", "agent_group_id", "server", "state", "reason", "tools",
                   "refused_tools"),
    "access.requested": ("request_id", "messaging_group_id", "user_id"),
    "delivery.dead_lettered": ("session_id", "outbound_id"),
}


class AuditRecorder:
    def __init__(self, bus: EventBus, audit: AuditLog, *, buffer: int = 65536) -> None:
        self._bus = bus
        self._audit = audit
        self._buffer = buffer

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with self._bus.subscribe(list(AUDITED), buffer_size=self._buffer) as events:
            task_status.started()
            async for item in events:
                if isinstance(item, Lagged):
                    await self._audit.append("audit.lagged", missed=item.missed)
                    continue
                fields = _fields(item.event, AUDITED.get(item.type, ()))
                try:
                    await self._audit.append(item.type, **fields)
                except ValueError:
                    logger.exception("audit refused a %s entry", item.type)


def _fields(event: Any, names: tuple[str, ...]) -> dict[str, str | int | bool | None]:
    out: dict[str, str | int | bool | None] = {}
    for name in names:
        value = getattr(event, name, None)
        if isinstance(value, float):
            value = int(value)
        elif value is not None and not isinstance(value, str | int | bool):
            value = str(value)
        if isinstance(value, str):
            value = value[:256]
        out[name] = value
    return out
