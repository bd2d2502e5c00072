"""The gateway actor: every change to what an agent is or may do passes through here.

submit -> deterministic verifiers -> (reject | policy | a human) -> idempotent apply.

* One task serves the mailbox (:mod:`.engine` does the work), so checks and writes
  never interleave; each public method posts a frozen message and awaits its reply.
* ``before`` is read from the registry at submit; the digest in the audit log binds
  an approval to exactly what the approver saw. At approval the state is read again
  and the chain re-run: if either moved, the change is rejected as stale, never
  applied to something nobody saw.
* A verifier's reject never reaches a human. The human floor is always last.
* Pending changes survive a restart: on start, approved-but-unapplied changes are
  applied, and pending ones get their TTL timers back (one task each, in the actor's
  nursery, cancelled when the change is decided).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

import trio

from ironclaw.contract.enums import ChangeKind, DecisionOutcome
from ironclaw.contract.gateway import MAX_CHANGE_BYTES, ChangeRequest, Verifier
from ironclaw.contract.ids import ChangeId
from ironclaw.contract.jsonvalue import JSONRejected, JSONValue, canonical_json, parse_json
from ironclaw.host.gateway import grants, records
from ironclaw.host.gateway.config import GatewayConfig
from ironclaw.host.gateway.engine import ChangeEngine
from ironclaw.host.gateway.messages import (
    DecideChange,
    ExpireChange,
    GatewayMessage,
    RetryApply,
    SubmitChange,
    access_change_id,
    change_id_for,
)
from ironclaw.host.gateway.payloads import ENTITY_ID
from ironclaw.host.gateway.protocols import AuditSink, NoNotifier, NoRespawner, Notifier, Respawner
from ironclaw.host.gateway.rbac import (
    SYSTEM_REQUESTER,
    Forbidden,
    GatewayUnavailable,
    InvalidChange,
    Principal,
    may_reject,
    may_submit,
    out_of_scope,
)
from ironclaw.host.registry import AccessRequest
from ironclaw.host.store import HostStore
from ironclaw.host.store.changes import ChangeStore, StoredChange
from ironclaw.runtime import DiscardEvents, EventSink, Reply, SystemClock, WallClock, drain

log = logging.getLogger(__name__)

MAILBOX_SIZE = 256
MAX_REASON = 2000


class Gateway:
    def __init__(self, store: HostStore, audit: AuditSink, *,
                 config: GatewayConfig | None = None, notifier: Notifier | None = None,
                 respawner: Respawner | None = None, events: EventSink | None = None,
                 clock: WallClock | None = None, extra_verifiers: Sequence[Verifier] = ()
                 ) -> None:
        self._config = config or GatewayConfig()
        self._clock = clock or SystemClock()
        self._store = store
        self._changes = ChangeStore(store)
        self._engine = ChangeEngine(
            store, audit, config=self._config, notifier=notifier or NoNotifier(),
            respawner=respawner or NoRespawner(), events=events or DiscardEvents(),
            clock=self._clock, extra_verifiers=extra_verifiers, arm=self._arm,
            disarm=self._disarm)
        self._outbox, self._inbox = trio.open_memory_channel[GatewayMessage](MAILBOX_SIZE)
        self._timers: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    # The actor

    async def run(self, *, task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Resume (apply what was approved, re-arm TTLs), then serve the mailbox."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._engine.resume()
                task_status.started(self)
                async for message in self._inbox:
                    await self._handle(message)
            finally:
                self._nursery = None
                self._timers.clear()
                self._drain()

    async def _handle(self, message: GatewayMessage) -> None:
        if isinstance(message, ExpireChange):
            try:
                await self._engine.on_expire(message.change_id)
            except Exception:
                log.exception("expiring change %s failed", message.change_id)
            return
        reply = message.reply
        try:
            reply.ok(await self._dispatch(message))
        except Exception as exc:
            reply.fail(exc)
        finally:
            if not reply.answered:  # cancelled: the actor is stopping
                reply.fail(_stopped())

    async def _dispatch(self, message: SubmitChange | DecideChange | RetryApply) -> object:
        if isinstance(message, SubmitChange):
            return await self._engine.on_submit(message)
        if isinstance(message, DecideChange):
            return await self._engine.on_decide(message)
        return await self._engine.on_retry(message.change_id)

    def _drain(self) -> None:
        """Whoever still waits on a message the actor will not handle hears so."""
        drain(self._inbox, _refuse)

    async def _ask(self, build: Callable[[Reply[Any]], GatewayMessage]) -> Any:
        reply: Reply[Any] = Reply()
        await self._outbox.send(build(reply))
        return await reply.wait()

    # TTL timers

    def _arm(self, change: ChangeRequest) -> None:
        if change.expires_at is None or change.id in self._timers or self._nursery is None:
            return
        scope = trio.CancelScope()
        self._timers[change.id] = scope
        self._nursery.start_soon(self._expire_at, change.id, change.expires_at, scope)

    def _disarm(self, change_id: str) -> None:
        scope = self._timers.pop(change_id, None)
        if scope is not None:
            scope.cancel()

    async def _expire_at(self, change_id: ChangeId, at_us: int, scope: trio.CancelScope
                         ) -> None:
        with scope:
            await self._clock.sleep_until(at_us)
            await self._outbox.send(ExpireChange(change_id))

    # Public API

    async def submit(self, kind: ChangeKind | str, agent_group: str, after: JSONValue, *,
                     requested_by: Principal | str, reason: str | None = None,
                     ttl_seconds: float | None = None) -> StoredChange:
        """Submit a change; returns it as stored (pending, rejected, or applied by
        policy). Raises InvalidChange, Forbidden or TooManyPending."""
        try:
            change_kind = ChangeKind(kind)
            text = canonical_json(after)
        except (ValueError, JSONRejected) as exc:
            raise InvalidChange(str(exc)) from None
        if len(text.encode("utf-8")) > MAX_CHANGE_BYTES:
            raise InvalidChange(f"a change is at most {MAX_CHANGE_BYTES} bytes")
        if not isinstance(agent_group, str) or not ENTITY_ID.fullmatch(agent_group):
            raise InvalidChange(f"invalid agent group id {agent_group!r:.70}")
        requester = self._requester(requested_by)
        if isinstance(requested_by, Principal) and not requested_by.covers(agent_group):
            raise out_of_scope(requested_by, agent_group)
        ttl_us = self._ttl(ttl_seconds)
        return cast(StoredChange, await self._ask(lambda reply: SubmitChange(
            change_kind, agent_group, text, requester, _reason(reason), ttl_us, None, reply)))

    async def decide(self, change_id: str, outcome: DecisionOutcome | str,
                     principal: Principal, reason: str | None = None, *,
                     digest: str | None = None) -> StoredChange:
        """Approve or reject as ``principal`` (authenticated by the caller). With
        ``digest``, only the change with exactly that digest is decided. Raises
        Forbidden, NoSuchChange, Conflict (already decided, or not the change of that
        digest), StaleChange (refused now)."""
        try:
            decision = DecisionOutcome(outcome)
        except ValueError:
            raise InvalidChange(f"unknown outcome {outcome!r:.40}") from None
        if not isinstance(principal, Principal):
            raise Forbidden("a decision needs an authenticated principal")
        if not may_reject(principal):
            raise Forbidden(f"{principal.name} may not decide changes")
        return cast(StoredChange, await self._ask(lambda reply: DecideChange(
            change_id, decision, principal, _reason(reason), reply, digest=digest)))

    async def retry_apply(self, change_id: str) -> StoredChange:
        """Apply an approved change whose apply failed; a no-op if already applied."""
        return cast(StoredChange, await self._ask(lambda reply: RetryApply(change_id, reply)))

    async def submit_from_sandbox(self, *, session_id: str, agent_group_id: str,
                                  kind: str, payload: str, reason: str | None,
                                  outbound_id: str) -> str:
        """The :class:`~ironclaw.host.mailboxes.CapabilityGate` seam. An action the
        contract does not know is privileged: it becomes ``permissions`` with the
        original action kept. Raises ValueError for a payload that is not JSON."""
        change_id = change_id_for(session_id, outbound_id)
        value = parse_json(payload, max_bytes=MAX_CHANGE_BYTES)
        try:
            change_kind, after = ChangeKind(kind), value
        except ValueError:
            change_kind, after = ChangeKind.PERMISSIONS, {"action": kind, "payload": value}
        requester = f"session:{session_id}"
        if not SYSTEM_REQUESTER.fullmatch(requester):
            raise InvalidChange("invalid session id")
        ttl_us = self._ttl(self._config.request_ttl_seconds)
        stored = await self._ask(lambda reply: SubmitChange(
            change_kind, agent_group_id, canonical_json(after), requester, _reason(reason),
            ttl_us, change_id, reply))
        return cast(StoredChange, stored).change.id

    async def submit_access_request(self, request: AccessRequest) -> StoredChange:
        """The router's access request as an ``access`` change: granting it makes the
        sender a member of exactly the agent groups the approver saw."""
        groups = await self._store.call(grants.wired_agent_groups, request.messaging_group_id)
        after = {"request": request.id, "user": request.user_id,
                 "messaging_group": request.messaging_group_id, "member_of": groups}
        ttl_us = self._ttl(self._config.access_ttl_seconds)
        return cast(StoredChange, await self._ask(lambda reply: SubmitChange(
            ChangeKind.ACCESS, groups[0] if groups else request.messaging_group_id,
            canonical_json(after), "system:router", "access request", ttl_us,
            access_change_id(request.id), reply)))

    async def get(self, change_id: str) -> StoredChange:
        """Raises NoSuchChange."""
        return await self._engine.get(change_id)

    async def approvals(self, change_id: str) -> list[str]:
        """Who has approved a pending change that needs two approvers (two-person
        rule), so far; empty otherwise."""
        return await self._store.call(records.approvers_of, change_id)

    async def pending(self, limit: int = 1000) -> list[StoredChange]:
        return await self._changes.pending(limit)

    async def history(self, limit: int = 100) -> list[StoredChange]:
        return await self._changes.history(limit)

    def _requester(self, requested_by: Principal | str) -> str:
        if isinstance(requested_by, Principal):
            if not may_submit(requested_by):
                raise Forbidden(f"{requested_by.name} may not submit changes")
            return requested_by.name
        if not isinstance(requested_by, str) or not SYSTEM_REQUESTER.fullmatch(requested_by):
            raise InvalidChange("requested_by is a principal, session:<id> or system:<what>")
        return requested_by

    def _ttl(self, ttl_seconds: float | None) -> int | None:
        if ttl_seconds is None:
            return None
        if not 0 < ttl_seconds <= self._config.max_ttl_seconds:
            raise InvalidChange(f"ttl_seconds must be in (0, {self._config.max_ttl_seconds}]")
        return round(ttl_seconds * 1_000_000)


def _reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    return str(reason)[:MAX_REASON]


def _stopped() -> GatewayUnavailable:
    return GatewayUnavailable("the gateway stopped before answering")


def _refuse(message: GatewayMessage) -> None:
    if not isinstance(message, ExpireChange):
        message.reply.fail(_stopped())
