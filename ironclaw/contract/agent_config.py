"""The agent's configuration file: how the host tells the sandboxed agent who it is.

The host writes it (JSON) and binds it read-only into the sandbox; the agent reads it
at start. Persona and tool lists travel here, never as argv (visible in process
listings, size-bound) and never as environment variables. Paths default to the
in-sandbox layout; the dev ``process`` runtime points them at host paths instead.
Nothing secret is in it: the queue keys are in their own key file, and provider
credentials never leave the host.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from .ids import validate_session_id
from .jsonvalue import JSONRejected, parse_json
from .layout import (
    EGRESS_SOCKET,
    MCP_SOCKET,
    SANDBOX_INBOUND_DIR,
    SANDBOX_KEY_FILE,
    SANDBOX_OUTBOUND_DIR,
    SANDBOX_SOCKET_DIR,
    SANDBOX_WORKSPACE,
)

SANDBOX_CONFIG_FILE = Path("/run/ironclaw/agent.json")
MAX_CONFIG_BYTES = 512 * 1024


class InvalidAgentConfig(ValueError):
    pass


class ModelApi(enum.StrEnum):
    """The wire shape the agent speaks to the model proxy."""

    ANTHROPIC_MESSAGES = "anthropic-messages"  # POST /v1/messages
    OPENAI_CHAT = "openai-chat"  # POST /v1/chat/completions


# The upstream host the mock provider answers for. The proxy serves it itself; it
# never leaves the host.
MOCK_MODEL_HOST = "mock.ironclaw.invalid"


def _names(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


class MaxTokensField(enum.StrEnum):
    """What an OpenAI-shaped request calls its output cap."""

    MAX_TOKENS = "max_tokens"  # what most compatible servers understand
    MAX_COMPLETION_TOKENS = "max_completion_tokens"  # OpenAI's own (o-series refuse the other)


class ToolCallContent(enum.StrEnum):
    """What an OpenAI-shaped assistant turn that only calls tools carries as content."""

    NULL = "null"  # the API's documented form
    EMPTY = "empty"  # "": some local servers refuse null with a 500


@attrs.frozen
class WireQuirks:
    """Where OpenAI-compatible servers differ. The host picks them per provider
    (``ironclaw.host.sessions.model_provider.PROVIDER_QUIRKS``); the agent only follows them."""

    max_tokens_field: MaxTokensField = attrs.field(default=MaxTokensField.MAX_TOKENS,
                                                   converter=MaxTokensField)
    tool_call_content: ToolCallContent = attrs.field(default=ToolCallContent.NULL,
                                                     converter=ToolCallContent)


def _quirks(value: WireQuirks | dict[str, Any]) -> WireQuirks:
    return value if isinstance(value, WireQuirks) else WireQuirks(**value)


@attrs.frozen
class ProviderConfig:
    api: ModelApi = attrs.field(converter=ModelApi)
    # The upstream host named in each request's Host header; the proxy allowlists it.
    host: str
    model: str
    max_tokens: int = 4096
    quirks: WireQuirks = attrs.field(factory=WireQuirks, converter=_quirks)


@attrs.frozen
class PersonaDocs:
    identity: str = ""
    soul: str = ""
    instructions: str = ""


@attrs.frozen
class AgentLimits:
    max_tool_iterations: int = 8
    history_max_messages: int = 60
    history_max_bytes: int = 256 * 1024
    provider_retries: int = 4
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0


@attrs.frozen
class AgentConfig:
    session_id: str = attrs.field(validator=lambda _s, _a, v: validate_session_id(v))
    agent_group_id: str
    provider: ProviderConfig
    persona: PersonaDocs = PersonaDocs()
    # Empty means every compiled-in tool; otherwise the mandatory ones plus these.
    enabled_tools: tuple[str, ...] = attrs.field(default=(), converter=_names)
    inbound_dir: Path = attrs.field(default=SANDBOX_INBOUND_DIR, converter=Path)
    outbound_dir: Path = attrs.field(default=SANDBOX_OUTBOUND_DIR, converter=Path)
    key_file: Path = attrs.field(default=SANDBOX_KEY_FILE, converter=Path)
    socket_dir: Path = attrs.field(default=SANDBOX_SOCKET_DIR, converter=Path)
    workspace: Path = attrs.field(default=SANDBOX_WORKSPACE, converter=Path)
    scratch_dir: Path = attrs.field(default=Path("/tmp"), converter=Path)
    egress: bool = False
    # The group holds an MCP grant: the host serves mcp.sock (RFC-0009).
    mcp: bool = False
    limits: AgentLimits = AgentLimits()
    heartbeat_interval_s: float = 5.0
    safety_poll_interval_s: float = 2.0
    # The host ended this session's previous sandbox itself (stopped it, or the control
    # plane died), so a turn that run left unfinished does not count against its
    # message (RFC-0005).
    previous_run_blameless: bool = False

    def render(self) -> str:
        def encode(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, enum.Enum):
                return value.value
            if isinstance(value, tuple):
                return list(value)
            return value

        return json.dumps(attrs.asdict(self, value_serializer=lambda _i, _a, v: encode(v)),
                          sort_keys=True, indent=1)

    @classmethod
    def parse(cls, text: str | bytes) -> AgentConfig:
        try:
            raw = parse_json(text, max_bytes=MAX_CONFIG_BYTES)
            if not isinstance(raw, dict):
                raise InvalidAgentConfig("the agent config must be a JSON object")
            raw = dict(raw)
            raw["provider"] = ProviderConfig(**raw["provider"])
            if "persona" in raw:
                raw["persona"] = PersonaDocs(**raw["persona"])
            if "limits" in raw:
                raw["limits"] = AgentLimits(**raw["limits"])
            return cls(**raw)
        except InvalidAgentConfig:
            raise
        except (JSONRejected, KeyError, TypeError, ValueError) as exc:
            raise InvalidAgentConfig(f"bad agent config: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        return cls.parse(path.read_bytes())

    @property
    def model_socket(self) -> Path:
        return self.socket_dir / "model.sock"

    @property
    def wake_socket(self) -> Path:
        return self.socket_dir / "wake.sock"

    @property
    def egress_socket(self) -> Path:
        return self.socket_dir / EGRESS_SOCKET

    @property
    def mcp_socket(self) -> Path:
        return self.socket_dir / MCP_SOCKET
