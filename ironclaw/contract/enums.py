"""Wire-visible enumerations. The string values are frozen: they are stored in queue
files and host.db, and both sides compare them."""

from __future__ import annotations

import enum


class MessageKind(enum.StrEnum):
    CHAT = "chat"
    TASK = "task"
    WEBHOOK = "webhook"
    SYSTEM = "system"


class EngageMode(enum.StrEnum):
    PATTERN = "pattern"
    MENTION = "mention"
    MENTION_STICKY = "mention-sticky"


class SenderScope(enum.StrEnum):
    ALL = "all"
    KNOWN = "known"


class IgnoredMessagePolicy(enum.StrEnum):
    DROP = "drop"
    ACCUMULATE = "accumulate"


class UnknownSenderPolicy(enum.StrEnum):
    STRICT = "strict"
    REQUEST_APPROVAL = "request_approval"
    PUBLIC = "public"


class SessionMode(enum.StrEnum):
    SHARED = "shared"
    PER_THREAD = "per-thread"
    AGENT_SHARED = "agent-shared"


class ChangeKind(enum.StrEnum):
    """Everything that changes what an agent is or may do. Each is a ChangeRequest."""

    PERSONA = "persona"
    ENABLED_TOOLS = "enabled_tools"
    PACKAGES = "packages"
    WIRING = "wiring"
    PERMISSIONS = "permissions"
    MOUNTS = "mounts"
    CREATE_AGENT = "create_agent"
    MCP_ACCESS = "mcp_access"
    EGRESS = "egress"
    ACCESS = "access"
    CHAT_POLICY = "chat_policy"
    MODEL = "model"
    CONNECT_CHAT = "connect_chat"


class Verdict(enum.IntEnum):
    """A verifier's answer. The order matters: a chain's result is decided by
    reject first (short-circuit), then require-human, then pass."""

    PASS = 0
    REJECT = 1
    REQUIRE_HUMAN = 2


class DecisionOutcome(enum.StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class ChangeStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    APPLIED = "applied"
    EXPIRED = "expired"


class InboundStatus(enum.StrEnum):
    """Status of a host-written inbound row. The host alone writes it, advancing it
    from the sandbox's acks."""

    QUEUED = "queued"  # due now
    SCHEDULED = "scheduled"  # due at process_after
    PROCESSING = "processing"  # the sandbox acked that it picked it up
    COMPLETED = "completed"  # the sandbox acked that it is done
    FAILED = "failed"  # the sandbox gave up on it


class AckStatus(enum.StrEnum):
    """What the sandbox may say about an inbound row, in its own outbound file."""

    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


# Statuses the sandbox still has to act on.
PENDING_INBOUND_STATUSES: frozenset[InboundStatus] = frozenset(
    {InboundStatus.QUEUED, InboundStatus.SCHEDULED, InboundStatus.PROCESSING}
)
