"""``enabled_tools``: ``["tool", ...]`` or ``{"tools": [...]}``, replacing the agent
group's list of enabled tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import attrs

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.registry import queries as q

from ..payloads import MAX_TOOLS, TOOL, expect_ident, expect_list, expect_object, unique
from .base import ApplyJob, ChangeContext, ChangeKindSpec, Conn, unknown_tool

if TYPE_CHECKING:
    from ..config import GatewayConfig


@attrs.frozen
class ToolList:
    tools: tuple[str, ...]
    wrapped: bool  # given as {"tools": [...]}


def parse_tools(value: JSONValue) -> ToolList:
    wrapped = isinstance(value, dict)
    items = (expect_object(value, "enabled_tools", ("tools",), ("tools",))["tools"]
             if wrapped else value)
    tools = expect_list(items, "enabled_tools", MAX_TOOLS)
    return ToolList(unique([expect_ident(t, "tool", TOOL) for t in tools], "enabled_tools"),
                    wrapped)


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    current = list(q.get_agent_group(conn, group).enabled_tools)
    return {"tools": current} if parse_tools(after).wrapped else current


def check_shape(change: ChangeRequest, parsed: ToolList, context: ChangeContext,
                config: GatewayConfig) -> str | None:
    del change, context
    return unknown_tool(parsed.tools, config)


def apply(job: ApplyJob) -> int:
    tools = parse_tools(job.after).tools
    group = attrs.evolve(job.agent_group(), enabled_tools=cast(Any, tools))
    q.put_agent_group(job.conn, group, job.now)
    return 1


SPEC = ChangeKindSpec(
    kind=ChangeKind.ENABLED_TOOLS, parse=parse_tools, read_before=read_before, apply=apply,
    check_shape=check_shape, auto_approvable=True, respawns=True, approver_may_approve=True)
