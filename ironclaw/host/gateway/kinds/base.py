"""What a change kind is to the gateway: one :class:`ChangeKindSpec` names its payload
grammar, how its ``before`` is read, its verifiers, how it is applied, and the rules
of approval that depend on it. The gateway's engine, verifier chain, applier and
records consult the spec and never the kind itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ironclaw.contract.enums import ChangeKind, Verdict
from ironclaw.contract.gateway import (
    MAX_CHANGE_BYTES,
    ChangeRequest,
    Verifier,
    VerifierResult,
)
from ironclaw.contract.jsonvalue import JSONRejected, JSONValue, parse_json
from ironclaw.host.registry import AgentGroup
from ironclaw.host.registry import queries as q

from ..payloads import PayloadError

if TYPE_CHECKING:
    from ..config import GatewayConfig

Conn = Any


class ApplyError(Exception):
    """The approved change no longer fits the registry (a folder taken since, a wiring
    gone). Nothing was written; the change stays approved."""


@attrs.frozen
class ChangeContext:
    """What the deterministic verifiers may consult besides the change itself: the
    agent groups there are, and what the change's kind read about the things it names
    (``facts``, see :attr:`ChangeKindSpec.read_facts`)."""

    group_exists: bool
    group_ids: frozenset[str] = frozenset()
    group_names: frozenset[str] = frozenset()  # casefolded
    group_folders: frozenset[str] = frozenset()
    facts: object = None


@attrs.frozen
class ApplyJob:
    """One approved change being applied, inside the host.db transaction."""

    conn: Conn
    change: ChangeRequest
    after: JSONValue
    now: int
    config: GatewayConfig
    decided_by: str

    @property
    def group(self) -> str:
        return self.change.agent_group

    def agent_group(self) -> AgentGroup:
        return q.get_agent_group(self.conn, self.group)


def _no_facts(conn: Conn, agent_group: str, after: JSONValue) -> object:
    del conn, agent_group, after
    return None


def _no_shape_check(change: ChangeRequest, parsed: Any, context: ChangeContext,
                    config: GatewayConfig) -> str | None:
    del change, parsed, context, config
    return None


def _never(after: JSONValue) -> bool:
    del after
    return False


def _own_group(agent_group: str, after: JSONValue) -> str:
    del after
    return agent_group


@attrs.frozen
class ChangeKindSpec:
    """Everything kind-specific about one change kind."""

    kind: ChangeKind
    # The typed form of ``after``; raises PayloadError. The applier parses with the
    # same function, so what was verified is what is applied.
    parse: Callable[[JSONValue], Any]
    # The current state of exactly the parts ``after`` names, in its shape (on the
    # store's thread).
    read_before: Callable[[Conn, str, JSONValue], JSONValue]
    # Write the change; returns the number of records written. Raises ApplyError.
    apply: Callable[[ApplyJob], int]
    # What the registry says about the things the change names, for check_shape.
    read_facts: Callable[[Conn, str, JSONValue], object] = _no_facts
    # What the payload names must exist and belong to the change's agent group.
    check_shape: Callable[[ChangeRequest, Any, ChangeContext, GatewayConfig],
                          str | None] = _no_shape_check
    # Policy verifiers, built per change from the context and the configuration.
    verifiers: Sequence[Callable[[ChangeContext, GatewayConfig], Verifier]] = ()
    # False: never approved by policy, whatever the configuration says.
    auto_approvable: bool = False
    # The apply changes what a running sandbox was started with.
    respawns: bool = False
    # The ``approver`` role may approve it by default (owners and admins always may).
    approver_may_approve: bool = False
    # The change is about an agent group that must already exist.
    needs_existing_group: bool = True
    # The agent group the change is about (create_agent: the one it creates).
    subject: Callable[[str, JSONValue], str] = _own_group
    # Approving it makes someone an owner, so only an owner may approve it.
    grants_owner: Callable[[JSONValue], bool] = _never
    # The change was refused or expired (in the same transaction).
    on_refused: Callable[[Conn, ChangeRequest, str, int], None] | None = None
    # Count the pending change against the kind's own quota (raising TooManyPending);
    # returns False to leave it to the per-requester quota.
    own_quota: Callable[[Conn, ChangeRequest, GatewayConfig], bool] | None = None
    # Non-empty: nothing in the host enforces this kind, so every request of it is
    # refused with this reason (a human never approves a grant that has no effect).
    refused: str = ""


def refuse_apply(job: ApplyJob) -> int:
    """The applier of a refused kind: the verifier chain refuses it before approval and
    again before apply, so reaching this is a defect; fail closed."""
    raise ApplyError(f"{job.change.kind.value} changes are refused: "
                     f"{job.config.kinds[job.change.kind].refused}")


class KindVerifier:
    """A verifier of one kind: passes every other kind, and rejects a payload it cannot
    parse (fail closed, even when used alone)."""

    name = "kind"
    kinds: frozenset[ChangeKind] = frozenset()

    def verify(self, change: ChangeRequest) -> VerifierResult:
        if self.kinds and change.kind not in self.kinds:
            return self.ok()
        try:
            problem = self.check(change, parse_json(change.after, max_bytes=MAX_CHANGE_BYTES))
        except (PayloadError, JSONRejected) as exc:
            problem = str(exc)
        return self.reject(problem) if problem else self.ok()

    def check(self, change: ChangeRequest, after: JSONValue) -> str | None:
        raise NotImplementedError

    def ok(self, reason: str = "ok") -> VerifierResult:
        return VerifierResult(self.name, Verdict.PASS, reason)

    def reject(self, reason: str) -> VerifierResult:
        return VerifierResult(self.name, Verdict.REJECT, reason[:500])


def unknown_tool(tools: Sequence[str], config: GatewayConfig) -> str | None:
    """A tool the host does not know, when it keeps a list of the tools it knows."""
    known = config.known_tools
    missing = [] if known is None else [t for t in tools if t not in known]
    return f"unknown tool {missing[0]!r}" if missing else None
