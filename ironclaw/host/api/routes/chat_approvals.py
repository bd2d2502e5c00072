"""``/v1/chat-approvals``: which owners may decide changes from a direct chat.

Off by default, per owner. Only a principal with the ``owner`` role may turn it on or
off (an admin or approver gets 403): it lets a chat account, a weaker credential than
an API token, decide changes (see docs/threat-model.md). The target must be a current
owner in the registry (``<channel>:<handle>``); turning it off always works. Both are
audited with the principal who did it.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from ironclaw.host.chatops import ChatApprovers
from ironclaw.host.gateway.rbac import OWNER

from ..context import Access, ApiContext, access, principal
from ..errors import ApiError
from ..schemas import CHAT_APPROVAL
from ..scope import Scope, scope
from ..validate import json_body


def register(app: QuartTrio, ctx: ApiContext) -> None:
    def approvers() -> ChatApprovers:
        return ctx.handles.chat_approvers

    @app.get("/v1/chat-approvals")
    @access(Access.READ)
    @scope(Scope.UNSCOPED)
    async def list_chat_approvers() -> dict[str, object]:
        return {"approvers": [{"user_id": a.user_id, "enabled_by": a.enabled_by,
                               "enabled_at": a.enabled_at, "owner": a.owner}
                              for a in await approvers().list()]}

    @app.post("/v1/chat-approvals")
    @access(Access.WRITE)
    @scope(Scope.UNSCOPED)
    async def set_chat_approvals() -> dict[str, object]:
        who = principal()
        if OWNER not in who.roles:
            raise ApiError(403, f"only an owner may change chat approvals; {who.name} is not")
        body = await json_body(CHAT_APPROVAL, ctx.settings.max_body_bytes)
        user_id, enabled = body["user_id"], body["enabled"]
        if enabled:
            changed = await approvers().enable(user_id, by=who.name)
        else:
            changed = await approvers().disable(user_id, by=who.name)
        return {"user_id": user_id, "enabled": enabled, "changed": changed}
