"""Chat approvals: an owner who opted in lists, reads and decides changes from a direct
chat with the bot.

Commands (the first word of a message; Telegram's ``/cmd@botname`` form too):

* ``/pending``: the pending changes, one line each;
* ``/show <change id>``: the change in full, its whole diff, and the code to approve it;
* ``/approve <change id>``: the same as ``/show`` (an approval never comes first);
* ``/approve <change id> <code>``: approve, where ``<code>`` is the start of the change's
  digest as shown in *this* chat to *this* owner within ``shown_ttl_s``; it is bound to
  that digest, so a change that is not exactly what was shown is refused;
* ``/reject <change id> [reason]``: reject (the safe direction: no diff needed first).

A change id may be shortened to a unique prefix (8 characters or more) of a pending one.

The router hands every message to :meth:`ChatCommands.intercept` first. A message whose
first word is one of those four commands is taken, whoever sent it and wherever: it
never reaches an agent. Anything else (an owner's ordinary text included) is routed as
usual. A taken command is refused, with a reply and an audit entry, unless its sender
is an owner, has opted in, and wrote in a direct chat; only the platform's stable sender
id counts (the router's ``<channel>:<handle>``), never a display name. Per-sender and
global token buckets bound the work (and the audit entries) a flood of commands can
cause: beyond them, commands are dropped without a reply.

A decision goes through the gateway like any other, as a principal named
``chat:<channel>:<handle>`` with the owner role and ``via`` the chat it came from, so
the audit entry of the decision names the owner's chat identity, the channel, its
instance and the chat. The gateway, not this module, checks the role for the kind and
re-verifies the change. One extra rule here: a change that would make someone an owner
is never approved from chat.

Replies go straight to the chat (a fresh outbound id each), best effort: a lost reply
is visible to the owner (no answer) and asking again is safe.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from typing import ClassVar, Protocol

import attrs
import trio

from ironclaw.contract.enums import ChangeStatus, DecisionOutcome
from ironclaw.contract.gateway import MAX_CHANGE_BYTES
from ironclaw.contract.jsonvalue import parse_json
from ironclaw.host.channels.base import InboundEvent, OutboundDelivery, safe_reason
from ironclaw.host.channels.trust import authenticates_senders
from ironclaw.host.gateway import (
    AuditSink,
    ChatOrigin,
    Conflict,
    Forbidden,
    GatewayError,
    NoSuchChange,
    Principal,
    chat_principal_name,
)
from ironclaw.host.gateway.kinds import grants_owner
from ironclaw.host.gateway.rbac import OWNER
from ironclaw.host.registry import namespace_user
from ironclaw.host.store.changes import StoredChange
from ironclaw.runtime import DiscardEvents, EventSink
from ironclaw.runtime.ratelimit import KeyedRateLimiter, TokenBucket

from . import render
from .approvers import ChatApprovers
from .notices import ChannelSender

log = logging.getLogger(__name__)

COMMANDS = frozenset({"pending", "show", "approve", "reject"})
MIN_PREFIX = 8
MAX_ID_CHARS = 64
MAX_SHOWN = 1024
MAX_REJECT_REASON = 500

REFUSED_OTHERS = ("Refused. Only an owner who has turned on chat approvals can do this, "
                  "in a direct chat with the bot.")
REFUSED_NOT_ENABLED = ("Refused: chat approvals are off for you. An owner can turn them on "
                       "with: ironctl owners chat-approvals enable {user}")
REFUSED_NOT_DIRECT = "Refused: changes are decided only in a direct chat with the bot."
REFUSED_UNAUTHENTICATED = ("Refused: this platform does not authenticate who sends a "
                           "message, so changes are never decided from it.")
REFUSED_OWNER_GRANT = ("Refused: a change that makes someone an owner is approved only "
                       "through the API (ironctl change approve), never from chat.")
USAGE = ("Commands: /pending, /show <change id>, /approve <change id> [code], "
         "/reject <change id> [reason]")


class DecisionGate(Protocol):
    """What chat approvals need of the gateway (``ironclaw.host.gateway.Gateway``)."""

    async def pending(self, limit: int = 1000) -> list[StoredChange]: ...

    async def get(self, change_id: str) -> StoredChange: ...

    async def decide(self, change_id: str, outcome: DecisionOutcome | str,
                     principal: Principal, reason: str | None = None, *,
                     digest: str | None = None) -> StoredChange: ...


@attrs.frozen
class CommandPolicy:
    sender_rate: float = 0.2  # tokens per second per sender (12 a minute)
    sender_burst: int = 6
    global_rate: float = 2.0
    global_burst: int = 30
    shown_ttl_s: float = 900.0  # how long a /show counts for an /approve
    mailbox: int = 64
    reply_timeout_s: float = 30.0


@attrs.frozen
class ChatCommand:
    name: str  # one of COMMANDS
    args: tuple[str, ...]
    tail: str  # the text after the first argument (a rejection's reason)


def parse_command(text: str) -> ChatCommand | None:
    """The command in ``text``, or None when it is not one (and is routed as usual)."""
    stripped = text.strip()
    if not stripped.startswith("/"):
        return None
    words = stripped.split(maxsplit=2)
    name = words[0][1:].split("@", 1)[0].lower()
    if name not in COMMANDS:
        return None
    args = tuple(stripped.split()[1:3])
    tail = words[2].strip() if len(words) > 2 else ""
    return ChatCommand(name, args, tail)


@attrs.frozen
class ChatCommandSeen:
    """Published for every command taken (ids only)."""

    type: ClassVar[str] = "chat.command"
    user_id: str
    channel: str
    command: str
    result: str  # "ok", "refused:<reason>", "dropped" or "error"


@attrs.define
class _Job:
    event: InboundEvent
    command: ChatCommand
    user: str
    refused: bool = False


_ShownKey = tuple[str, str, str, str, str]  # user, channel, instance, chat, change id


class ChatCommands:
    """Start with ``nursery.start(commands.run)``. Implements the router's
    ``CommandInterceptor``."""

    def __init__(self, *, approvers: ChatApprovers, gateway: DecisionGate,
                 channels: ChannelSender, audit: AuditSink, events: EventSink | None = None,
                 policy: CommandPolicy | None = None) -> None:
        self.approvers = approvers
        self._gateway = gateway
        self._channels = channels
        self._audit = audit
        self._events = events or DiscardEvents()
        self._policy = policy or CommandPolicy()
        self._senders = KeyedRateLimiter(self._policy.sender_rate, self._policy.sender_burst)
        self._all = TokenBucket(self._policy.global_rate, self._policy.global_burst)
        self._send, self._receive = trio.open_memory_channel[_Job](self._policy.mailbox)
        self._shown: OrderedDict[_ShownKey, tuple[str, float]] = OrderedDict()

    # The router's hook: quick, never blocks.

    async def intercept(self, event: InboundEvent) -> bool:
        await trio.lowlevel.checkpoint()
        command = parse_command(event.text)
        if command is None:
            return False
        user = namespace_user(event.channel, event.sender_handle)
        if self._senders.take(user) > 0 or self._all.try_acquire() > 0:
            self._seen(user, event, command, "dropped")
            return True
        try:
            self._send.send_nowait(_Job(event, command, user))
        except trio.WouldBlock:
            log.warning("chat command from %s dropped: the command mailbox is full",
                        _safe(user))
            self._seen(user, event, command, "dropped")
        return True

    # The actor.

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        await self.approvers.drop_unauthenticated()
        task_status.started()
        async with self._receive:
            async for job in self._receive:
                try:
                    await self._handle(job)
                except Exception as exc:  # one bad command must not stop the others
                    log.exception("chat command %s failed: %s", job.command.name,
                                  type(exc).__name__)
                    self._seen(job.user, job.event, job.command, "error")

    async def _handle(self, job: _Job) -> None:
        event, command = job.event, job.command
        if not authenticates_senders(event.channel):
            # Checked first: on such a channel, even "not an owner" would tell a
            # claimed nick something about who the owners are.
            return await self._refuse(job, "unauthenticated_channel",
                                      REFUSED_UNAUTHENTICATED)
        is_owner, enabled = await self.approvers.allowed(job.user)
        if not is_owner:
            return await self._refuse(job, "not_owner", REFUSED_OTHERS)
        if not enabled:
            return await self._refuse(job, "not_enabled",
                                      REFUSED_NOT_ENABLED.format(user=job.user))
        if not event.direct:
            return await self._refuse(job, "not_direct", REFUSED_NOT_DIRECT)
        try:
            origin = ChatOrigin(user_id=job.user, channel=event.channel,
                                instance=event.instance, platform_id=event.platform_id)
        except ValueError:
            return await self._refuse(job, "bad_identity", REFUSED_OTHERS)
        principal = Principal(chat_principal_name(job.user), frozenset({OWNER}), via=origin)
        if command.name == "pending":
            await self._reply(event, render.pending_list(await self._gateway.pending()))
        elif not command.args or len(command.args[0]) > MAX_ID_CHARS:
            await self._reply(event, USAGE)
        elif command.name in ("show", "approve") and len(command.args) == 1:
            await self._show(job, command.args[0])
        elif command.name == "approve":
            await self._approve(job, principal, command.args[0], command.args[1])
        elif command.name == "reject":
            await self._reject(job, principal, command.args[0],
                               command.tail[:MAX_REJECT_REASON] or None)
        else:
            await self._reply(event, USAGE)
        if not job.refused:
            self._seen(job.user, event, command, "ok")

    async def _show(self, job: _Job, token: str) -> None:
        stored = await self._resolve(job.event, token)
        if stored is None:
            return
        view = render.change_view(stored)
        if len(view) > render.MAX_VIEW_CHARS:
            await self._reply(job.event, (
                f"Change {stored.change.id} ({stored.change.kind.value}) is too large to "
                f"review in chat ({len(view)} characters). Review and decide it with: "
                f"ironctl change show {stored.change.id} --full"))
            return
        if stored.status is ChangeStatus.PENDING:
            self._remember(job, stored)
            view += "\n\n" + render.confirm_hint(stored)
        await self._reply(job.event, view)

    async def _approve(self, job: _Job, principal: Principal, token: str, code: str
                       ) -> None:
        stored = await self._resolve(job.event, token)
        if stored is None:
            return
        change = stored.change
        if stored.status is not ChangeStatus.PENDING:
            await self._reply(job.event, f"{change.id} is already {stored.status.value}.")
            return
        digest = change.digest()
        seen = self._recall(job, change.id)
        if seen is None:
            await self._reply(job.event, "Read it first; nothing was decided.")
            await self._show(job, change.id)
            return
        if seen != digest or render.code_of(digest) != code.lower():
            await self._refuse(job, "digest_mismatch", (
                "Refused: that code does not confirm the change as it is now (it may have "
                "changed since it was shown). Nothing was decided."))
            self._forget(job, change.id)
            await self._show(job, change.id)
            return
        after = parse_json(change.after, max_bytes=MAX_CHANGE_BYTES)
        if grants_owner(change.kind, after):
            await self._refuse(job, "grants_owner", REFUSED_OWNER_GRANT)
            return
        self._forget(job, change.id)
        decided = await self._decide(job, principal, change.id, DecisionOutcome.APPROVE,
                                     None, digest)
        if decided is None:
            return
        if decided.status is ChangeStatus.APPLIED:
            text = f"Approved and applied: {change.id} ({change.kind.value})."
        elif decided.status is ChangeStatus.PENDING:
            text = (f"Your approval of {change.id} is recorded. It needs a second approver "
                    "(the two-person rule), so it is still pending.")
        else:
            text = (f"Approved: {change.id} is now {decided.status.value}. If its apply "
                    f"failed, an operator can retry it.")
        await self._reply(job.event, text)

    async def _reject(self, job: _Job, principal: Principal, token: str,
                      reason: str | None) -> None:
        stored = await self._resolve(job.event, token)
        if stored is None:
            return
        if stored.status is not ChangeStatus.PENDING:
            await self._reply(job.event,
                              f"{stored.change.id} is already {stored.status.value}.")
            return
        self._forget(job, stored.change.id)
        decided = await self._decide(job, principal, stored.change.id,
                                     DecisionOutcome.REJECT, reason, None)
        if decided is not None:
            await self._reply(job.event, f"Rejected: {stored.change.id}.")

    async def _decide(self, job: _Job, principal: Principal, change_id: str,
                      outcome: DecisionOutcome, reason: str | None, digest: str | None
                      ) -> StoredChange | None:
        try:
            return await self._gateway.decide(change_id, outcome, principal, reason,
                                              digest=digest)
        except Forbidden as exc:
            await self._refuse(job, "forbidden", f"Refused by the gateway: {exc}")
        except (Conflict, NoSuchChange) as exc:
            await self._reply(job.event, f"Not decided: {exc}")
        except GatewayError as exc:
            await self._reply(job.event, f"Not decided ({type(exc).__name__}); try again "
                                         "later.")
        return None

    async def _resolve(self, event: InboundEvent, token: str) -> StoredChange | None:
        """A change by id, or by a unique prefix of a pending change's id."""
        try:
            return await self._gateway.get(token)
        except NoSuchChange:
            pass
        matches: Sequence[StoredChange] = []
        if len(token) >= MIN_PREFIX:
            matches = [c for c in await self._gateway.pending()
                       if c.change.id.startswith(token)]
        if len(matches) == 1:
            return matches[0]
        await self._reply(event, "That prefix names several pending changes; use more of "
                                 "the id." if matches else "No such change.")
        return None

    # What was shown to whom, where.

    def _key(self, job: _Job, change_id: str) -> _ShownKey:
        e = job.event
        return (job.user, e.channel, e.instance, e.platform_id, change_id)

    def _remember(self, job: _Job, stored: StoredChange) -> None:
        key = self._key(job, stored.change.id)
        self._shown[key] = (stored.change.digest(), trio.current_time())
        self._shown.move_to_end(key)
        while len(self._shown) > MAX_SHOWN:
            self._shown.popitem(last=False)

    def _recall(self, job: _Job, change_id: str) -> str | None:
        found = self._shown.get(self._key(job, change_id))
        if found is None or trio.current_time() - found[1] > self._policy.shown_ttl_s:
            return None
        return found[0]

    def _forget(self, job: _Job, change_id: str) -> None:
        self._shown.pop(self._key(job, change_id), None)

    # Saying things.

    async def _refuse(self, job: _Job, reason: str, text: str) -> None:
        e = job.event
        job.refused = True
        await self._audit.append("chat.command_refused", user_id=_safe(job.user),
                                 channel=_safe(e.channel), instance=_safe(e.instance) or None,
                                 chat=_safe(e.platform_id), command=job.command.name,
                                 reason=reason)
        self._seen(job.user, e, job.command, f"refused:{reason}")
        await self._reply(e, text)

    async def _reply(self, event: InboundEvent, text: str) -> None:
        delivery = OutboundDelivery(
            outbound_id=f"cmd_{secrets.token_hex(12)}", channel=event.channel,
            instance=event.instance, platform_id=event.platform_id,
            thread_id=event.thread_id, text=text)
        try:
            with trio.fail_after(self._policy.reply_timeout_s):
                await self._channels.deliver(delivery)
        except Exception as exc:
            log.warning("chat command reply to %s not delivered: %s", _safe(event.channel),
                        safe_reason(exc))

    def _seen(self, user: str, event: InboundEvent, command: ChatCommand, result: str
              ) -> None:
        self._events.publish(ChatCommandSeen(_safe(user), _safe(event.channel), command.name,
                                             result))


def _safe(value: str) -> str:
    """Ids for the audit log and logs: printable, bounded."""
    return "".join(c if c.isprintable() else "?" for c in value[:200])
