"""``/v1/quarantine``: the sessions held because their sandbox proved hostile.

Any principal may list them. Only an owner principal may lift a hold (an admin or
approver gets 403): it lets an agent that was caught attacking the host run again.
The lift is audited (``session.quarantine_lifted``, with the principal); the session
starts again at its next wake. See docs/operations.md, "A quarantined session".
"""

from __future__ import annotations

from quart_trio import QuartTrio

from ironclaw.host.gateway.rbac import OWNER

from ..context import Access, ApiContext, access, principal
from ..errors import ApiError
from ..scope import Scope, Visibility, scope


def register(app: QuartTrio, ctx: ApiContext) -> None:
    @app.get("/v1/quarantine")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def list_quarantined() -> dict[str, object]:
        seen = Visibility.of(principal(), ctx.handles)
        held = {session_id: hold for session_id, hold in ctx.handles.quarantine.all().items()
                if seen.group(hold.agent_group_id)}
        return {"sessions": [{"session_id": session_id, "agent_group_id": hold.agent_group_id,
                              "reason": hold.reason, "since": hold.since_us}
                             for session_id, hold in sorted(held.items(),
                                                            key=lambda i: i[1].since_us)]}

    @app.post("/v1/quarantine/<session_id>/lift")
    @access(Access.WRITE)
    @scope(Scope.UNSCOPED)  # owners only, and an owner is never scoped
    async def lift_quarantine(session_id: str) -> dict[str, object]:
        who = principal()
        if OWNER not in who.roles:
            raise ApiError(403, f"only an owner may lift a quarantine; {who.name} is not")
        hold = await ctx.handles.quarantine.lift(session_id, by=who.name)
        if hold is None:
            raise ApiError(404, f"session {session_id[:128]!r} is not quarantined")
        return {"session_id": session_id, "agent_group_id": hold.agent_group_id,
                "lifted": True}
