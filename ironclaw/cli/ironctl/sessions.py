"""``ironctl sessions ID --delete [--workspace]``: delete a session for good; and
``ironctl sessions rotate-key ID``: new keys for its two queue files.

Its sandbox is stopped, then its queues, key, tasks, questions and delivery records
go; a later message from its chat starts a new session. ``--workspace`` also empties
its agent group's workspace (refused while the group has another session). Needs an
owner or admin token; audited as ``session.deleted``. A rotation stops the session's
sandbox, re-encrypts both files and starts it again (``keys.session_rotated``).
"""

from __future__ import annotations

from .client import OK, UsageError, path
from .context import Ctx

ROTATE_KEY = "rotate-key"


async def cmd_delete(ctx: Ctx) -> int:
    if not ctx.args.id:
        raise UsageError("--delete needs the session's id: ironctl sessions ID --delete")
    deleted = await ctx.api.delete(path("/v1/sessions", ctx.args.id),
                                   workspace="true" if ctx.args.workspace else None)
    if ctx.json_mode:
        ctx.console.json(deleted)
        return OK
    also = " and its agent group's workspace emptied" if deleted.get("workspace") else ""
    ctx.console.line(f"session {deleted.get('session_id')} deleted{also}; a new message "
                     "from its chat starts a new session")
    return OK


async def cmd_rotate_key(ctx: Ctx) -> int:
    a = ctx.args
    if not a.target or a.delete or a.workspace or a.live:
        raise UsageError(f"usage: ironctl sessions {ROTATE_KEY} ID")
    rotated = await ctx.api.post(path("/v1/sessions", a.target, "rotate-key"), {})
    if ctx.json_mode:
        ctx.console.json(rotated)
        return OK
    ctx.console.line(f"session {rotated.get('session_id')}: both queue files are under new "
                     "keys; the old key is forgotten and its sandbox started again")
    return OK
