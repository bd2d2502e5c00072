"""What chat approvals say: short lists, and a change in full with its diff.

The diff lines are the ones ``ironctl change show --full`` prints (the same functions,
so an owner sees the same thing in chat as at the terminal), never shortened: a
decision from chat must follow the whole diff. A change too large to read in a chat
message is not offered for approval there at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from ironclaw.changediff import change_diff, diff_lines
from ironclaw.contract.gateway import MAX_CHANGE_BYTES
from ironclaw.contract.jsonvalue import JSONValue, canonical_json, parse_json
from ironclaw.host.store.changes import StoredChange

CODE_CHARS = 8  # the digest prefix an owner types back to confirm
MAX_VIEW_CHARS = 12_000  # a longer change is reviewed with ironctl, not in chat
MAX_LISTED = 20
MAX_REASON_CHARS = 500


def when(at_us: int | None) -> str:
    if at_us is None:
        return "-"
    moment = dt.datetime.fromtimestamp(at_us / 1e6, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def code_of(digest: str) -> str:
    return digest[:CODE_CHARS]


def pending_list(changes: Sequence[StoredChange]) -> str:
    if not changes:
        return "No changes are pending."
    lines = [f"Pending changes ({len(changes)}):"]
    for stored in changes[:MAX_LISTED]:
        c = stored.change
        lines.append(f"{c.id}  {c.kind.value}  {c.agent_group}  by {c.requested_by}"
                     f"  (expires {when(c.expires_at)})")
    if len(changes) > MAX_LISTED:
        lines.append(f"... and {len(changes) - MAX_LISTED} more (ironctl change pending)")
    lines.append("Show one in full: /show <change id>")
    return "\n".join(lines)


def change_view(stored: StoredChange) -> str:
    """The change in full: who asked, why, and every line of its diff."""
    c = stored.change
    lines = [f"Change {c.id}", f"kind: {c.kind.value}", f"agent group: {c.agent_group}",
             f"status: {stored.status.value}", f"requested by: {c.requested_by}",
             f"created: {when(c.created_at)}"]
    if c.expires_at is not None:
        lines.append(f"expires: {when(c.expires_at)}")
    if c.reason:
        reason = c.reason if len(c.reason) <= MAX_REASON_CHARS \
            else c.reason[:MAX_REASON_CHARS] + f"... ({len(c.reason)} chars)"
        lines.append(f"reason: {reason}")
    before = parse_json(c.before, max_bytes=MAX_CHANGE_BYTES)
    after = parse_json(c.after, max_bytes=MAX_CHANGE_BYTES)
    context = _unchanged(before, after)
    if context:
        # What the change is about but does not alter (whose access, which wiring):
        # not part of a diff, yet needed to judge it.
        lines.append("about (unchanged):")
        lines.extend("  " + line for line in context)
    diff = diff_lines(change_diff(before, after), full=True)
    lines.append("diff:" if diff else "diff: (no change)")
    lines.extend("  " + line for line in diff)
    lines.append(f"digest: {c.digest()}")
    return "\n".join(lines)


def confirm_hint(stored: StoredChange) -> str:
    c = stored.change
    return (f"To approve exactly this change, send: /approve {c.id} {code_of(c.digest())}\n"
            f"To reject it: /reject {c.id} [reason]")


def _unchanged(before: JSONValue, after: JSONValue) -> list[str]:
    """``= /key: value`` for each top-level field a change names but leaves as it is."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return []
    return [f"= /{key.replace('~', '~0').replace('/', '~1')}: {canonical_json(after[key])}"
            for key in sorted(after)
            if key in before and canonical_json(before[key]) == canonical_json(after[key])]
