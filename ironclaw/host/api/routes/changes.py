"""``/v1/changes``: submit, list, show and decide ChangeRequests.

The gateway does the work; these routes only shape input and output. The submitter
and the decider are the principal the token names: a body cannot say who it is.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from ironclaw.contract.enums import ChangeStatus
from ironclaw.host.gateway.rbac import NoSuchChange

from .. import render
from ..context import Access, ApiContext, access, principal
from ..schemas import CHANGE_SUBMIT, DECISION
from ..scope import Scope, Visibility, scope
from ..validate import json_body, query_int, query_str

MAX_LIST = 1000
DEFAULT_LIST = 100
STATUSES = tuple(s.value for s in ChangeStatus)


def register(app: QuartTrio, ctx: ApiContext) -> None:
    gateway = ctx.handles.gateway
    limit_body = ctx.settings.max_body_bytes

    def view() -> Visibility:
        return Visibility.of(principal(), ctx.handles)

    async def visible(change_id: str) -> None:
        if not await view().change(change_id):
            raise NoSuchChange(change_id)

    @app.post("/v1/changes")
    @access(Access.WRITE)
    @scope(Scope.FILTERED)
    async def submit_change() -> tuple[dict[str, object], int]:
        body = await json_body(CHANGE_SUBMIT, limit_body)
        stored = await gateway.submit(
            body["kind"], body["agent_group"], body["payload"], requested_by=principal(),
            reason=body.get("reason"), ttl_seconds=body.get("ttl_seconds"))
        return {"id": stored.change.id, "status": stored.status.value}, 202

    @app.get("/v1/changes/pending")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def pending_changes() -> dict[str, object]:
        limit = query_int("limit", DEFAULT_LIST, 1, MAX_LIST)
        seen = view()
        found = seen.only(await gateway.pending(limit if seen.everything else MAX_LIST),
                          lambda c: c.change.agent_group)
        return {"changes": [render.change(c) for c in found[:limit]]}

    @app.get("/v1/changes/history")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def change_history() -> dict[str, object]:
        limit = query_int("limit", DEFAULT_LIST, 1, MAX_LIST)
        status = query_str("status", choices=STATUSES)
        found = await gateway.history(MAX_LIST if status or not view().everything
                                      else limit)
        if status:
            found = [c for c in found if c.status.value == status]
        found = view().only(found, lambda c: c.change.agent_group)
        return {"changes": [render.change(c) for c in found[:limit]]}

    @app.get("/v1/changes/<change_id>")
    @access(Access.READ)
    @scope(Scope.FILTERED)
    async def show_change(change_id: str) -> dict[str, object]:
        await visible(change_id)
        stored = await gateway.get(change_id)
        return render.change_with_approvals(stored, await gateway.approvals(change_id))

    @app.post("/v1/changes/<change_id>/decision")
    @access(Access.WRITE)
    @scope(Scope.FILTERED)
    async def decide_change(change_id: str) -> dict[str, object]:
        await visible(change_id)
        body = await json_body(DECISION, limit_body)
        stored = await gateway.decide(change_id, body["outcome"], principal(),
                                      body.get("reason"))
        return render.change_with_approvals(stored, await gateway.approvals(change_id))
