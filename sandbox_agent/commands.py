"""Slash commands the agent answers itself, without a model call: they work (and cost
nothing) even when the provider is down."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ironclaw.contract.agent_config import AgentConfig

HELP = "/help"
STATUS = "/status"
RESET = "/reset"
COMMANDS = {
    HELP: "show this help",
    STATUS: "show the session, model, history length and tools",
    RESET: "forget the conversation so far and start afresh",
}


@attrs.frozen
class CommandOutcome:
    reply: str
    reset_history: bool = False


def parse_command(text: str) -> str | None:
    """The command a message invokes, if it is exactly one of ours. Anything else
    starting with a slash is ordinary text for the model."""
    words = text.strip().split(maxsplit=1)
    if words and words[0].lower() in COMMANDS:
        return words[0].lower()
    return None


def run_command(command: str, *, config: AgentConfig, history_messages: int,
                tool_names: Sequence[str]) -> CommandOutcome:
    if command == RESET:
        return CommandOutcome("Conversation history cleared. Starting afresh.",
                              reset_history=True)
    if command == STATUS:
        provider = config.provider
        return CommandOutcome("\n".join((
            f"Session: {config.session_id}",
            f"Model: {provider.model} ({provider.api.value} via {provider.host})",
            f"History: {history_messages} messages",
            f"Tools: {', '.join(tool_names) or 'none'}",
        )))
    lines = ["Commands:"]
    lines += [f"{name} - {what}" for name, what in COMMANDS.items()]
    lines += ["", f"Tools: {', '.join(tool_names) or 'none'}"]
    return CommandOutcome("\n".join(lines))
