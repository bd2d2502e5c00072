"""The gateway protocol: what a change is, what a verifier says, what a human decides.

``before`` and ``after`` are canonical JSON text, so two hosts (or one host before
and after a restart) compute the same digest and the same diff for the same change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Protocol

import attrs

from .enums import ChangeKind, DecisionOutcome, Verdict
from .ids import AgentGroupId, ChangeId, UserId
from .jsonvalue import JSONValue, canonical_json, parse_json

MAX_CHANGE_BYTES = 256 * 1024


def _canonical(value: str) -> str:
    """Normalise JSON text to canonical form; refuse what is not JSON."""
    return canonical_json(parse_json(value, max_bytes=MAX_CHANGE_BYTES))


@attrs.frozen
class ChangeRequest:
    id: ChangeId
    kind: ChangeKind
    agent_group: AgentGroupId
    requested_by: UserId
    before: str = attrs.field(converter=_canonical)
    after: str = attrs.field(converter=_canonical)
    created_at: int
    reason: str | None = None
    expires_at: int | None = None  # microseconds; None: never expires

    @classmethod
    def of(cls, *, before: JSONValue, after: JSONValue, **fields: Any) -> ChangeRequest:
        return cls(before=canonical_json(before), after=canonical_json(after), **fields)

    def digest(self) -> str:
        """Stable over every field that defines the change; the audit log records it
        so an approval is bound to exactly what the human saw."""
        body = canonical_json({
            "id": self.id, "kind": self.kind.value, "agent_group": self.agent_group,
            "requested_by": self.requested_by, "before": parse_json(
                self.before, max_bytes=MAX_CHANGE_BYTES),
            "after": parse_json(self.after, max_bytes=MAX_CHANGE_BYTES),
            "created_at": self.created_at, "reason": self.reason,
            "expires_at": self.expires_at,
        })
        return hashlib.sha256(body.encode("utf-8")).hexdigest()

    def diff(self) -> list[DiffEntry]:
        return json_diff(parse_json(self.before, max_bytes=MAX_CHANGE_BYTES),
                         parse_json(self.after, max_bytes=MAX_CHANGE_BYTES))

    def is_expired(self, now_us: int) -> bool:
        return self.expires_at is not None and now_us >= self.expires_at


@attrs.frozen
class DiffEntry:
    path: str  # a JSON pointer (RFC 6901)
    op: str  # "add" | "remove" | "replace"
    before: JSONValue = None
    after: JSONValue = None

    def render(self) -> str:
        if self.op == "add":
            return f"+ {self.path or '/'}: {canonical_json(self.after)}"
        if self.op == "remove":
            return f"- {self.path or '/'}: {canonical_json(self.before)}"
        return (f"~ {self.path or '/'}: {canonical_json(self.before)} -> "
                f"{canonical_json(self.after)}")


def _pointer(parent: str, key: str | int) -> str:
    return f"{parent}/{str(key).replace('~', '~0').replace('/', '~1')}"


def json_diff(before: JSONValue, after: JSONValue, path: str = "") -> list[DiffEntry]:
    """A deterministic structural diff: keys in sorted order, lists by index."""
    if isinstance(before, dict) and isinstance(after, dict):
        entries: list[DiffEntry] = []
        for key in sorted(set(before) | set(after)):
            sub = _pointer(path, key)
            if key not in after:
                entries.append(DiffEntry(sub, "remove", before=before[key]))
            elif key not in before:
                entries.append(DiffEntry(sub, "add", after=after[key]))
            else:
                entries.extend(json_diff(before[key], after[key], sub))
        return entries
    if isinstance(before, list) and isinstance(after, list):
        entries = []
        for index in range(max(len(before), len(after))):
            sub = _pointer(path, index)
            if index >= len(after):
                entries.append(DiffEntry(sub, "remove", before=before[index]))
            elif index >= len(before):
                entries.append(DiffEntry(sub, "add", after=after[index]))
            else:
                entries.extend(json_diff(before[index], after[index], sub))
        return entries
    if canonical_json(before) == canonical_json(after):
        return []
    return [DiffEntry(path, "replace", before=before, after=after)]


@attrs.frozen
class VerifierResult:
    verifier: str
    verdict: Verdict
    reason: str


class Verifier(Protocol):
    """Deterministic: the same change always gets the same verdict. Never a model."""

    name: str

    def verify(self, change: ChangeRequest) -> VerifierResult: ...


def chain_verdict(results: Iterable[VerifierResult]) -> tuple[Verdict, VerifierResult | None]:
    """Reject short-circuits; otherwise any require-human wins; otherwise pass.
    Returns the deciding result (None when every verifier passed)."""
    deciding: VerifierResult | None = None
    for result in results:
        if result.verdict is Verdict.REJECT:
            return Verdict.REJECT, result
        if result.verdict is Verdict.REQUIRE_HUMAN and deciding is None:
            deciding = result
    return (Verdict.REQUIRE_HUMAN, deciding) if deciding else (Verdict.PASS, None)


@attrs.frozen
class Decision:
    change_id: ChangeId
    outcome: DecisionOutcome
    decided_by: UserId  # an authenticated principal, or "verifier"/"policy" for the system
    decided_at: int
    reason: str | None = None
