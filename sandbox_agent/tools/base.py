"""What a tool is, the registry that holds them, and what a tool may touch.

Tools are compiled in. Configuration may switch some off (``enabled_tools``) but can
never add one, and the registry refuses names that would let an agent change itself or
run arbitrary code, so a future edit cannot slip one in by accident.

A tool never writes to the queue itself. What it sends (a message, a request to the
host) goes into the turn's outbox, which commits in the same transaction as the reply
and the ``completed`` ack: a crash mid-turn leaves nothing half-sent, and a re-run
after restart cannot send anything twice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from ironclaw.contract.actions import SystemAction, render_system_action
from ironclaw.contract.agent_config import PersonaDocs
from ironclaw.contract.enums import MessageKind
from ironclaw.contract.ids import MessageId, new_message_id, validate_message_id
from ironclaw.contract.rows import MAX_CONTENT_BYTES, Destination, NewOutboundMessage

from ..workspace import Workspace

# Names no compiled-in tool may carry: each would be a way for the agent to change what
# it is or may do, or to run code, without passing the gateway.
FORBIDDEN_TOOL_NAMES = frozenset({
    "install_package", "install_packages", "add_mcp_server", "remove_mcp_server",
    "self_edit", "edit_self", "edit_source", "set_persona", "set_permissions",
    "set_enabled_tools", "grant_access", "create_agent", "shell", "exec", "bash", "sh",
    "run_command", "run_shell", "eval", "python", "spawn", "subprocess",
})
# Always present, whatever enabled_tools says: without them the agent could not even
# ask for what it lacks.
MANDATORY_TOOLS = ("request_capability_change", "ask_user_question")
CURRENT_CHAT = "current"

_TOOL_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class ToolError(Exception):
    """A tool's refusal or failure, told to the model as an error result."""


class ToolRegistryError(ValueError):
    pass


def turn_row_id(prefix: str, inbound_id: str, slot: str) -> MessageId:
    """The id of an outbound row a turn writes: a function of the inbound row it
    answers and of the row's place in the turn, never random. A turn runs again after
    a crash or a restart (its first run never committed), and whatever it sends then
    carries the same ids, and so the same delivery keys, as any earlier run's: a
    channel that dedups by idempotency key recognises a repeat."""
    digest = hashlib.sha256(f"{inbound_id}\0{slot}".encode()).hexdigest()[:24]
    return validate_message_id(f"{prefix}_{digest}")


@attrs.define
class ToolContext:
    """What one turn's tools can see and do. ``turn`` is the inbound row being answered
    (the rows the tools queue take their ids from it); empty outside a turn."""

    workspace: Workspace
    persona: PersonaDocs
    destinations: Sequence[Destination]
    outbox: list[NewOutboundMessage] = attrs.Factory(list)
    turn: str = ""

    def _next_id(self, prefix: str) -> MessageId:
        if not self.turn:
            return new_message_id(prefix)
        return turn_row_id(prefix, self.turn, f"tool:{len(self.outbox)}")

    def destination_named(self, name: str | None) -> str | None:
        """Resolve ``to``: omitted or "current" is the origin chat (None on the wire)."""
        if name is None or name == "" or name == CURRENT_CHAT:
            return None
        for destination in self.destinations:
            if destination.name == name:
                return destination.name
        known = ", ".join(sorted(d.name for d in self.destinations)[:20]) or "none"
        raise ToolError(f"unknown destination {name!r:.80}; known: {known}")

    def emit_chat(self, text: str, *, destination: str | None) -> NewOutboundMessage:
        if len(text.encode()) > MAX_CONTENT_BYTES:
            raise ToolError(f"message exceeds {MAX_CONTENT_BYTES} bytes")
        # No in_reply_to: that marks the one answer to an inbound row (the turn's
        # reply), which the host may thread or dedup on; this is a message of its own.
        row = NewOutboundMessage(id=self._next_id("out"), kind=MessageKind.CHAT,
                                 content=text, destination=destination)
        self.outbox.append(row)
        return row

    def emit_system(self, action: SystemAction) -> NewOutboundMessage:
        row = NewOutboundMessage(id=self._next_id("act"), kind=MessageKind.SYSTEM,
                                 content=render_system_action(action))
        self.outbox.append(row)
        return row


Invoke = Callable[[ToolContext, Mapping[str, Any]], Awaitable[str]]


@attrs.frozen
class Tool:
    name: str
    description: str
    input_schema: Mapping[str, Any]
    invoke: Invoke
    # Declared to the host through container_state, so a long tool call is not
    # mistaken for a stuck agent; also enforced here.
    timeout_s: float = 30.0


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if not _TOOL_NAME.fullmatch(tool.name):
            raise ToolRegistryError(f"tool name {tool.name!r:.80} is not a lowercase word")
        if tool.name in FORBIDDEN_TOOL_NAMES:
            raise ToolRegistryError(f"tool name {tool.name!r} is forbidden")
        if tool.name in self._tools:
            raise ToolRegistryError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def extended(self, extra: Iterable[Tool]) -> tuple[ToolRegistry, list[str]]:
        """This registry plus ``extra``, leaving out any whose name is taken or refused;
        returns the new registry and the names left out."""
        registry = ToolRegistry(self._tools.values())
        refused: list[str] = []
        for tool in extra:
            try:
                registry.register(tool)
            except ToolRegistryError:
                refused.append(tool.name[:80])
        return registry, refused

    def filtered(self, enabled: Sequence[str]) -> tuple[ToolRegistry, list[str]]:
        """Empty ``enabled`` keeps every tool; otherwise the mandatory ones plus those
        named. Returns the new registry and the names it did not know."""
        if not enabled:
            return ToolRegistry(self._tools.values()), []
        wanted = set(enabled) | set(MANDATORY_TOOLS)
        unknown = sorted(set(enabled) - set(self._tools))
        return ToolRegistry(t for t in self._tools.values() if t.name in wanted), unknown


# Argument readers. Tool input comes from the model, which is steerable by anyone who
# can get text in front of it: every field is checked for type and size.

def string_arg(args: Mapping[str, Any], name: str, *, max_bytes: int,
               required: bool = True) -> str | None:
    value = args.get(name)
    if value is None:
        if required:
            raise ToolError(f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise ToolError(f"'{name}' must be a string")
    if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ToolError(f"'{name}' exceeds {max_bytes} bytes")
    if "\x00" in value:
        raise ToolError(f"'{name}' contains a NUL character")
    return value


def required_string(args: Mapping[str, Any], name: str, *, max_bytes: int) -> str:
    value = string_arg(args, name, max_bytes=max_bytes)
    assert value is not None
    if not value.strip():
        raise ToolError(f"'{name}' must not be empty")
    return value


def schema(properties: Mapping[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": dict(properties), "required": list(required),
            "additionalProperties": False}


STRING = {"type": "string"}
