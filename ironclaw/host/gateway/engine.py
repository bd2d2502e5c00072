"""The change engine: what the gateway actor does with each message.

It runs only in the actor's task, so checks and writes never interleave. Every step
is recorded in host.db first and then audited (ids and counts only); a crash between
the two can lose an audit line but never a change or a decision.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import trio

from ironclaw.contract.enums import ChangeStatus, DecisionOutcome, Verdict
from ironclaw.contract.gateway import (
    MAX_CHANGE_BYTES,
    ChangeRequest,
    Decision,
    Verifier,
    VerifierResult,
)
from ironclaw.contract.ids import AgentGroupId, UserId, new_change_id
from ironclaw.contract.jsonvalue import JSONValue, canonical_json, parse_json
from ironclaw.host.store import HostStore
from ironclaw.host.store.changes import ChangeConflict, ChangeNotFound, ChangeStore, StoredChange
from ironclaw.runtime import EventSink, WallClock

from . import records
from .apply import apply_change
from .config import GatewayConfig
from .kinds import ChangeContext
from .messages import DecideChange, SubmitChange
from .protocols import (
    AuditSink,
    ChangeApplied,
    ChangeApplyFailed,
    ChangeDecided,
    ChangeExpired,
    ChangeSubmitted,
    Notifier,
    Respawner,
)
from .rbac import (
    ChatOrigin,
    Conflict,
    Forbidden,
    NoSuchChange,
    Principal,
    StaleChange,
    chat_principal_name,
    may_approve,
    out_of_scope,
)
from .state import snapshot
from .verifiers import VERIFIER, build_chain, policy_may_approve, run_chain

log = logging.getLogger(__name__)

POLICY = "policy"
ALL = 1_000_000
_VERDICT = {Verdict.PASS: "pass", Verdict.REJECT: "reject",
            Verdict.REQUIRE_HUMAN: "require_human"}


class ChangeEngine:
    def __init__(self, store: HostStore, audit: AuditSink, *, config: GatewayConfig,
                 notifier: Notifier, respawner: Respawner, events: EventSink, clock: WallClock,
                 extra_verifiers: Sequence[Verifier], arm: Callable[[ChangeRequest], None],
                 disarm: Callable[[str], None]) -> None:
        self._store = store
        self._changes = ChangeStore(store)
        self._audit = audit
        self._config = config
        self._notifier = notifier
        self._respawner = respawner
        self._events = events
        self._clock = clock
        self._extra = tuple(extra_verifiers)
        self._arm = arm
        self._disarm = disarm

    async def get(self, change_id: str) -> StoredChange:
        try:
            return await self._changes.get(change_id)
        except ChangeNotFound:
            raise NoSuchChange(change_id) from None

    async def on_submit(self, m: SubmitChange) -> StoredChange:
        if m.change_id is not None:
            existing = await self._store.call(records.find, m.change_id)
            if existing is not None:
                return existing  # a re-delivered request: the change already exists
        after = parse_json(m.after, max_bytes=MAX_CHANGE_BYTES)
        kinds = self._config.kinds
        group = kinds[m.kind].subject(m.agent_group, after)
        before, context = await self._store.call(snapshot, kinds, m.kind, group, after)
        now = self._clock.now_us()
        change = ChangeRequest.of(
            id=m.change_id or new_change_id(), kind=m.kind, agent_group=AgentGroupId(group),
            requested_by=UserId(m.requested_by), before=before, after=after, created_at=now,
            reason=m.reason, expires_at=None if m.ttl_us is None else now + m.ttl_us)
        verdict, deciding = self._verify(change, context)
        decision = None
        if verdict is Verdict.REJECT:
            decision = Decision(change.id, DecisionOutcome.REJECT, UserId(VERIFIER), now,
                                deciding.reason if deciding else None)
        elif verdict is Verdict.PASS:
            decision = Decision(change.id, DecisionOutcome.APPROVE, UserId(POLICY), now,
                                "approved by policy")
        stored, created = await self._store.transaction(
            records.record_submit, change, decision, self._config)
        if not created:
            return stored
        await self._audit.append("change.submit", change_id=change.id, kind=change.kind.value,
                                 agent_group=change.agent_group,
                                 requested_by=change.requested_by, digest=change.digest())
        await self._audit.append("change.verdict", change_id=change.id,
                                 verdict=_VERDICT[verdict],
                                 verifier=deciding.verifier if deciding else None)
        self._events.publish(ChangeSubmitted(change.id, change.kind.value, change.agent_group,
                                             change.requested_by, stored.status.value))
        if decision is not None:
            await self._audit_decision(decision)
        if verdict is Verdict.REJECT:
            await self._notify(change, ChangeStatus.REJECTED)
        elif verdict is Verdict.PASS:
            return await self._apply(change.id)
        else:
            self._arm(change)
        return stored

    def _verify(self, change: ChangeRequest, context: ChangeContext
                ) -> tuple[Verdict, VerifierResult | None]:
        verdict, deciding = run_chain(build_chain(context, self._config, self._extra), change)
        if verdict is Verdict.PASS and (not self._config.kinds[change.kind].auto_approvable
                                         or not policy_may_approve(self._config, change)):
            # Belt and braces: whatever the chain said, the floor holds.
            return Verdict.REQUIRE_HUMAN, VerifierResult("gateway", Verdict.REQUIRE_HUMAN,
                                                         "a human decides")
        return verdict, deciding

    async def on_decide(self, m: DecideChange) -> StoredChange:
        stored = await self.get(m.change_id)
        change = stored.change
        if stored.status is not ChangeStatus.PENDING:
            raise Conflict(f"{change.id} is already {stored.status.value}")
        if m.digest is not None and m.digest != change.digest():
            raise Conflict(f"{change.id} is not the change that was shown (digest differs)")
        if change.is_expired(self._clock.now_us()):
            await self.on_expire(change.id)
            raise Conflict(f"{change.id} has expired")
        if not m.principal.covers(change.agent_group):
            raise out_of_scope(m.principal, change.agent_group)
        first_approver: str | None = None
        if m.outcome is DecisionOutcome.APPROVE:
            after = parse_json(change.after, max_bytes=MAX_CHANGE_BYTES)
            owner_grant = self._config.kinds[change.kind].grants_owner(after)
            if not may_approve(m.principal, change.kind, grants_owner=owner_grant,
                               approvals=self._config.approvals):
                raise Forbidden(f"{m.principal.name} may not approve {change.kind.value}")
            earlier = await self._two_person_rule(change, m.principal)
            await self._recheck(change, after)
            if len(earlier) + 1 < self._config.approvals_needed(change.kind):
                return await self._record_first_approval(change, m)
            first_approver = earlier[0] if earlier else None
        decision = Decision(change.id, m.outcome, UserId(m.principal.name),
                            self._clock.now_us(), m.reason)
        try:
            stored = await self._store.transaction(records.record_decision, decision,
                                                   self._config)
        except ChangeConflict as exc:
            raise Conflict(str(exc)) from None
        self._disarm(change.id)
        await self._audit_decision(decision, m.principal.via,
                                   change.digest() if m.digest is not None else None,
                                   first_approver)
        if m.outcome is DecisionOutcome.APPROVE:
            return await self._apply(change.id)
        await self._notify(change, ChangeStatus.REJECTED)
        return stored

    async def _two_person_rule(self, change: ChangeRequest, principal: Principal
                               ) -> list[str]:
        """Refuse a self-approval where the kind's rule says so, and a second approval
        by the principal who gave the first. Returns the approvals already given."""
        if not self._config.approver_must_differ(change.kind):
            return []
        if _person(principal.name) == _person(change.requested_by):
            raise Forbidden(f"two-person rule: {principal.name} submitted {change.id}, so "
                            f"another principal must approve it")
        earlier = await self._store.call(records.approvers_of, change.id)
        if _person(principal.name) in map(_person, earlier):
            raise Conflict(f"{principal.name} already approved {change.id}; it waits for "
                           "a second, different approver")
        return earlier

    async def _record_first_approval(self, change: ChangeRequest, m: DecideChange
                                     ) -> StoredChange:
        """The first of two approvals: kept (durably), audited; the change stays
        pending for a second, distinct principal."""
        try:
            stored = await self._store.transaction(records.record_first_approval, change.id,
                                                   m.principal.name, self._clock.now_us())
        except ChangeConflict as exc:
            raise Conflict(str(exc)) from None
        origin = _origin(m.principal.via, change.digest() if m.digest is not None else None)
        await self._audit.append("change.approval", change_id=change.id,
                                 approved_by=m.principal.name, approvals=1,
                                 needed=self._config.approvals_needed(change.kind), **origin)
        return stored

    async def _recheck(self, change: ChangeRequest, after: JSONValue) -> None:
        """Refuse to apply what nobody saw: the state and the verdict must still hold."""
        before, context = await self._store.call(snapshot, self._config.kinds, change.kind,
                                                 change.agent_group, after)
        verdict, deciding = self._verify(change, context)
        if verdict is Verdict.REJECT and deciding is not None:
            problem, verifier = deciding.reason, deciding.verifier
        elif canonical_json(before) != change.before:
            problem, verifier = "the state changed since this change was submitted", "stale"
        else:
            return
        decision = Decision(change.id, DecisionOutcome.REJECT, UserId(VERIFIER),
                            self._clock.now_us(), problem)
        await self._store.transaction(records.record_decision, decision, self._config)
        self._disarm(change.id)
        await self._audit.append("change.verdict", change_id=change.id, verdict="reject",
                                 verifier=verifier)
        await self._audit_decision(decision)
        await self._notify(change, ChangeStatus.REJECTED)
        raise StaleChange(f"{change.id} was rejected: {problem}")

    async def on_retry(self, change_id: str) -> StoredChange:
        stored = await self.get(change_id)
        if stored.status is ChangeStatus.APPLIED:
            return stored
        if stored.status is not ChangeStatus.APPROVED:
            raise Conflict(f"{change_id} is {stored.status.value}, not approved")
        return await self._apply(change_id)

    async def _apply(self, change_id: str) -> StoredChange:
        try:
            result = await self._store.transaction(apply_change, change_id,
                                                   self._clock.now_us(), self._config)
        except ChangeConflict as exc:
            raise Conflict(str(exc)) from None
        except Exception as exc:
            # Rolled back: nothing of it is applied; it stays approved for a retry.
            log.warning("change %s not applied: %s", change_id, type(exc).__name__)
            stored = await self.get(change_id)
            await self._audit.append("change.apply_failed", change_id=change_id,
                                     kind=stored.change.kind.value)
            self._events.publish(ChangeApplyFailed(change_id, stored.change.kind.value))
            return stored
        change = result.stored.change
        if result.already:
            return result.stored
        respawn = self._config.kinds[change.kind].respawns
        await self._audit.append("change.apply", change_id=change.id, kind=change.kind.value,
                                 agent_group=change.agent_group, effects=result.effects,
                                 respawn=respawn)
        self._events.publish(ChangeApplied(change.id, change.kind.value, change.agent_group,
                                           result.effects))
        if respawn:
            await self._bounded(self._respawner.respawn_group, change.agent_group,
                                f"change {change.id} ({change.kind.value}) applied")
        await self._notify(change, ChangeStatus.APPLIED)
        return result.stored

    async def on_expire(self, change_id: str) -> None:
        self._disarm(change_id)
        try:
            stored = await self._store.transaction(records.record_expiry, change_id,
                                                   self._clock.now_us(), self._config)
        except (ChangeConflict, ChangeNotFound):
            return  # decided meanwhile
        await self._audit.append("change.expire", change_id=change_id)
        self._events.publish(ChangeExpired(change_id))
        await self._notify(stored.change, ChangeStatus.EXPIRED)

    async def resume(self) -> None:
        applied = 0
        for stored in await self._changes.approved_unapplied(ALL):
            result = await self._apply(stored.change.id)
            applied += result.status is ChangeStatus.APPLIED
        pending = await self._changes.pending(ALL)
        now = self._clock.now_us()
        for stored in pending:
            if stored.change.is_expired(now):
                await self.on_expire(stored.change.id)
            else:
                self._arm(stored.change)
        await self._audit.append("gateway.resume", pending=len(pending), applied=applied)


    async def _audit_decision(self, decision: Decision, via: ChatOrigin | None = None,
                              digest: str | None = None, first_approver: str | None = None
                              ) -> None:
        """A decision from chat also names the chat it came from, and the digest the
        owner confirmed (ids only: the channel, its instance, the chat's platform id).
        The second of two approvals also names the first approver."""
        origin = _origin(via, digest)
        if first_approver is not None:
            origin["first_approver"] = first_approver
        await self._audit.append("change.decision", change_id=decision.change_id,
                                 outcome=decision.outcome.value,
                                 decided_by=decision.decided_by, **origin)
        self._events.publish(ChangeDecided(decision.change_id, decision.outcome.value,
                                           decision.decided_by))

    async def _notify(self, change: ChangeRequest, status: ChangeStatus) -> None:
        await self._bounded(self._notifier.change_resolved, change, status)

    async def _bounded(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """A notifier or respawner may fail or hang; the gateway carries on."""
        with trio.move_on_after(self._config.callback_timeout) as scope:
            try:
                await fn(*args)
            except Exception:
                log.exception("gateway callback %s failed", getattr(fn, "__name__", fn))
        if scope.cancelled_caught:
            log.warning("gateway callback %s timed out", getattr(fn, "__name__", fn))


LOCAL_CHAT = chat_principal_name("local:")


def _person(name: str) -> str:
    """Who is behind a deciding or requesting name, for the two-person rule. A local
    chat sender is the API principal that posted under its own name (or the daemon's
    terminal, the operator's), so ``chat:local:<name>`` and ``<name>`` are one person.
    Other chat identities cannot be linked to a principal and count as their own."""
    return name.removeprefix(LOCAL_CHAT)


def _origin(via: ChatOrigin | None, digest: str | None) -> dict[str, str | None]:
    if via is None:
        return {}
    return {"via_channel": via.channel, "via_instance": via.instance or None,
            "via_chat": via.platform_id, "digest": digest}

