"""``create_agent``: ``{"name", "folder", "provider"?, "model"?, "persona"?, "tools"?}``,
a new agent group whose id is its folder. The change is about the group it creates."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

import attrs

from ironclaw.contract.enums import ChangeKind
from ironclaw.contract.gateway import ChangeRequest
from ironclaw.contract.jsonvalue import JSONValue
from ironclaw.host.registry import AgentGroup, NotFound, Persona
from ironclaw.host.registry import queries as q

from ..payloads import ENTITY_ID, expect_object, expect_text
from .base import (
    ApplyError,
    ApplyJob,
    ChangeContext,
    ChangeKindSpec,
    Conn,
    KindVerifier,
    unknown_tool,
)
from .enabled_tools import parse_tools
from .persona import parse_persona

if TYPE_CHECKING:
    from ..config import GatewayConfig

AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
AGENT_FOLDER = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
PROVIDER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}")


@attrs.frozen
class NewAgent:
    name: str
    folder: str
    provider: str | None
    model: str | None
    persona: dict[str, str]
    tools: tuple[str, ...]


def parse_create_agent(value: JSONValue) -> NewAgent:
    obj = expect_object(value, "create_agent", ("name", "folder", "provider", "model",
                                                "persona", "tools"), ("name", "folder"))
    tools = parse_tools(obj["tools"]).tools if "tools" in obj else ()
    persona = parse_persona(obj["persona"], allow_empty=True) if "persona" in obj else {}
    return NewAgent(
        expect_text(obj["name"], "name", 64), expect_text(obj["folder"], "folder", 64),
        expect_text(obj["provider"], "provider", 128) if "provider" in obj else None,
        expect_text(obj["model"], "model", 128) if "model" in obj else None,
        persona, tools)


def subject(agent_group: str, after: JSONValue) -> str:
    """The group it creates (its id is the folder)."""
    if isinstance(after, dict):
        folder = after.get("folder")
        if isinstance(folder, str) and ENTITY_ID.fullmatch(folder):
            return folder
    return agent_group


def read_before(conn: Conn, group: str, after: JSONValue) -> JSONValue:
    del conn, group, after
    return {}


def check_shape(change: ChangeRequest, parsed: NewAgent, context: ChangeContext,
                config: GatewayConfig) -> str | None:
    del change, context
    return unknown_tool(parsed.tools, config)


class CreateAgentVerifier(KindVerifier):
    name = "create-agent"
    kinds = frozenset({ChangeKind.CREATE_AGENT})

    def __init__(self, context: ChangeContext, config: GatewayConfig) -> None:
        self._context = context
        self._config = config

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        agent = parse_create_agent(after)
        ctx, reserved = self._context, self._config.reserved_agent_names
        if not AGENT_NAME.fullmatch(agent.name) or ".." in agent.name:
            return f"invalid agent name {agent.name!r:.70}"
        if not AGENT_FOLDER.fullmatch(agent.folder):
            return f"invalid folder {agent.folder!r:.70}"
        if agent.folder in reserved or agent.name.casefold() in reserved:
            return "that name is reserved"
        if agent.folder in ctx.group_folders or agent.folder in ctx.group_ids:
            return f"the folder {agent.folder!r} is already in use"
        if agent.name.casefold() in ctx.group_names:
            return f"an agent named {agent.name!r:.70} already exists"
        if agent.provider is not None and (not PROVIDER.fullmatch(agent.provider) or (
                self._config.providers is not None
                and agent.provider not in self._config.providers)):
            return f"unknown provider {agent.provider!r:.70}"
        if agent.model is not None and not MODEL.fullmatch(agent.model):
            return f"invalid model {agent.model!r:.70}"
        return None


def apply(job: ApplyJob) -> int:
    agent = parse_create_agent(job.after)
    try:
        q.get_agent_group(job.conn, agent.folder)
    except NotFound:
        pass
    else:
        raise ApplyError(f"agent group {agent.folder!r} already exists")
    q.put_agent_group(job.conn, AgentGroup(
        id=agent.folder, name=agent.name, folder=agent.folder,
        provider=agent.provider or job.config.default_provider,
        model=agent.model or job.config.default_model, persona=Persona(**agent.persona),
        enabled_tools=cast(Any, agent.tools)), job.now)
    return 1


SPEC = ChangeKindSpec(
    kind=ChangeKind.CREATE_AGENT, parse=parse_create_agent, read_before=read_before,
    apply=apply, check_shape=check_shape, verifiers=(CreateAgentVerifier,),
    needs_existing_group=False, subject=subject)
