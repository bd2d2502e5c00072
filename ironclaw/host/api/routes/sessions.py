"""``DELETE /v1/sessions/{id}``: delete a session, its queues, its key and its records.

An owner or admin may (anyone else gets 403). ``?workspace=true`` also empties its
agent group's workspace, which is refused (409) while another session of the group
exists: the workspace is the group's. A quarantined session is refused (409) until an
owner lifts the hold. Audited as ``session.deleted`` with the principal. What goes,
and in what order, is in :mod:`ironclaw.host.sessions.deletion`.
"""

from __future__ import annotations

from quart_trio import QuartTrio

from ironclaw.host.registry import NotFound
from ironclaw.host.sessions.deletion import SessionHeld, WorkspaceShared
from ironclaw.host.sessions.key_rotation import RotationFailed

from ..context import Access, ApiContext, access, is_operator, principal
from ..errors import ApiError
from ..scope import Scope, Visibility, scope
from ..validate import query_str


def register(app: QuartTrio, ctx: ApiContext) -> None:
    @app.delete("/v1/sessions/<session_id>")
    @access(Access.WRITE)
    @scope(Scope.FILTERED)
    async def delete_session(session_id: str) -> dict[str, object]:
        who = principal()
        if not is_operator(who):
            raise ApiError(403, f"only an owner or admin may delete a session; {who.name} "
                                "is neither")
        if not await Visibility.of(who, ctx.handles).session(session_id):
            raise ApiError(404, f"no session {session_id[:128]!r}")
        workspace = query_str("workspace", choices=("true", "false")) == "true"
        try:
            deleted = await ctx.handles.session_deleter.delete(
                session_id, by=who.name, workspace=workspace)
        except NotFound:
            raise ApiError(404, f"no session {session_id[:128]!r}") from None
        except (SessionHeld, WorkspaceShared) as exc:
            raise ApiError(409, str(exc)) from None
        return {"session_id": deleted.session_id, "agent_group_id": deleted.agent_group_id,
                "deleted": True, "workspace": deleted.workspace}

    @app.post("/v1/sessions/<session_id>/rotate-key")
    @access(Access.WRITE)
    @scope(Scope.FILTERED)
    async def rotate_session_key(session_id: str) -> dict[str, object]:
        """New keys for the session's two queue files (its sandbox is stopped for it
        and started again); audited as ``keys.session_rotated``. 409 if a queue file
        opens under neither key: the old key is kept."""
        who = principal()
        if not is_operator(who):
            raise ApiError(403, f"only an owner or admin may rotate a session's keys; "
                                f"{who.name} is neither")
        if not await Visibility.of(who, ctx.handles).session(session_id):
            raise ApiError(404, f"no session {session_id[:128]!r}")
        if ctx.handles.quarantine.held(session_id) is not None:
            raise ApiError(409, f"session {session_id[:128]!r} is quarantined; its files "
                                "are the evidence: lift the hold first")
        try:
            rotated = await ctx.handles.session_keys.rotate(session_id, by=who.name)
        except NotFound:
            raise ApiError(404, f"no session {session_id[:128]!r}") from None
        except RotationFailed as exc:
            raise ApiError(409, str(exc)) from None
        return {"session_id": rotated.session_id, "agent_group_id": rotated.agent_group_id,
                "rotated": True}
